"""VTAB-1k's tasks into the data root from a TensorFlow Datasets data folder, or built there by ``tensorflow_datasets``.

TFDS keeps a built dataset as ``<data_dir>/<name>/[<config>/]<version>/`` (``dataset_info.json``, ``features.json``
and the shards ``<name>-<split>.tfrecord-NNNNN-of-MMMMM``). :func:`link_tasks` finds, for each task, the newest
version its registry row allows (``cifar100:3.*.*``, ``diabetic_retinopathy_detection/btgraham-300:3.*.*``) and
links (or copies) the shards of the splits VTAB reads into ``<data_root>/vtab/<task>/``, without TensorFlow.
:func:`build_tasks` first builds the missing datasets with ``tensorflow_datasets`` (the ``[vtab]`` extra); a
dataset that TFDS cannot download itself (diabetic retinopathy's Kaggle files, RESISC45's archive) is named with
exactly what to fetch and where to put it, and the other tasks go on.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from expertlib.datasets.tfrecords import shard_files
from expertlib.datasets.vtab import VTAB_TASKS, VtabTask
from expertlib.utils.runtime import atomic_write

# what TFDS cannot fetch by itself, in our words (TFDS prints its own instructions too when it is installed)
MANUAL: dict[str, str] = {
    "diabetic_retinopathy_detection": "the Kaggle competition 'diabetic-retinopathy-detection' data (sign in to Kaggle "
    "and accept the competition's rules; about 88 GB: train.zip.*, test.zip.*, sample.zip, trainLabels.csv), "
    "unpacked as TFDS's diabetic_retinopathy_detection instructions say",
    "resisc45": "NWPU-RESISC45.rar (about 400 MB) from the RESISC45 authors' link on TFDS's resisc45 catalog page, "
    "extracted",
}


@dataclass(frozen=True)
class Linked:
    """What :func:`link_task` did for one task: ``status`` is 'linked', 'copied', 'present' or 'missing'."""

    task: str
    status: str
    source: Path | None = None
    files: int = 0
    message: str = ""


def _version_key(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in v.split("."))


def tfds_parts(task: VtabTask) -> tuple[str, str | None, str]:
    """(dataset, config or None, version pattern) of a registry row's ``tfds`` (``name[/config]:version``)."""
    spec, _, version = task.tfds.partition(":")
    name, _, config = spec.partition("/")
    return name, config or None, version or "*"


def find_version(tfds_dir: str | os.PathLike, task: VtabTask) -> Path | None:
    """The newest ``<tfds_dir>/<name>/[<config>/]<version>/`` the task's pinned version allows and that holds
    ``dataset_info.json``; None when there is none."""
    name, config, pattern = tfds_parts(task)
    base = Path(tfds_dir) / name / (config or "")
    if not base.is_dir():
        return None
    found = [p for p in base.iterdir() if p.is_dir() and fnmatch.fnmatch(p.name, pattern)
             and (p / "dataset_info.json").is_file()]  # fmt: skip
    return max(found, key=lambda p: _version_key(p.name), default=None)


def link_task(
    tfds_dir: str | os.PathLike, data_root: str | os.PathLike, task: str, copy: bool = False
) -> Linked:
    """Link (``copy``: copy) the shards VTAB reads for ``task`` from a TFDS data folder into
    ``<data_root>/vtab/<task>/``, with the version's ``dataset_info.json``. Shards of another version already
    there are never mixed in: the task is reported instead."""
    info = VTAB_TASKS[task]
    name, config, pattern = tfds_parts(info)
    where = Path(tfds_dir) / name / (config or "") / pattern
    source = find_version(tfds_dir, info)
    if source is None:
        return Linked(
            task, "missing", message=f"{task}: no {where} with dataset_info.json in the TFDS folder"
        )
    try:
        splits = shard_files(source, name)
    except Exception as e:  # noqa: BLE001 - an incomplete copy is named, the other tasks go on
        return Linked(task, "missing", source, message=f"{task}: {e}")
    lacking = [s for s in info.tfds_splits if s not in splits]
    if lacking:
        return Linked(task, "missing", source, message=f"{task}: {source} has no {', '.join(lacking)} shards "
                      f"(has {', '.join(sorted(splits)) or 'none'}): build it again with tensorflow_datasets")  # fmt: skip
    files = [p for s in info.tfds_splits for p in splits[s]] + [source / "dataset_info.json"]
    dest = Path(data_root) / "vtab" / task
    dest.mkdir(parents=True, exist_ok=True)
    ours = {p.name for p in files}
    others = [p.name for p in dest.glob(f"{name}-*.tfrecord*") if p.name not in ours]
    if others:
        return Linked(task, "missing", source, message=f"{task}: {dest} already holds other shards ({others[0]}, "
                      f"...): another version? Empty that folder and run again")  # fmt: skip
    done = 0
    for p in files:
        target = dest / p.name
        if target.exists() or target.is_symlink():
            if target.is_symlink() and Path(os.readlink(target)) == p.resolve():
                continue
            if not target.is_symlink() and target.stat().st_size == p.stat().st_size:
                continue
            target.unlink()
        if copy:
            atomic_write(target, lambda tmp, src=p: shutil.copyfile(src, tmp))
        else:
            os.symlink(p.resolve(), target)
        done += 1
    status = ("copied" if copy else "linked") if done else "present"
    return Linked(task, status, source, len(files), f"{task}: {status} {len(files)} files from {source}")


def link_tasks(tfds_dir: str | os.PathLike, data_root: str | os.PathLike, tasks: Sequence[str],
               copy: bool = False, log: Callable[[str], None] = print) -> list[Linked]:  # fmt: skip
    """:func:`link_task` for every task, each result logged in one line; a missing task does not stop the rest."""
    if not Path(tfds_dir).is_dir():
        raise FileNotFoundError(f"--from-tfds-dir {tfds_dir} is not a folder: pass the folder TFDS builds into "
                                "(its data_dir, ~/tensorflow_datasets by default)")  # fmt: skip
    out = []
    for task in tasks:
        out.append(link_task(tfds_dir, data_root, task, copy))
        log(out[-1].message)
    return out


def manual_instructions(name: str, manual_dir: Path, tfds_text: str = "") -> str:
    """What to fetch by hand for TFDS dataset ``name`` and where it goes."""
    what = MANUAL.get(name, "the files TFDS's instructions below name")
    text = f"{name} needs a manual download: put {what} into {manual_dir}, then run the same command again"
    return text + (f"\n  TFDS says: {' '.join(tfds_text.split())}" if tfds_text.strip() else "")


def build_tasks(data_root: str | os.PathLike, tasks: Sequence[str], tfds_dir: str | os.PathLike,
                manual_dir: str | os.PathLike | None = None, copy: bool = False,
                log: Callable[[str], None] = print) -> list[Linked]:  # fmt: skip
    """Build each task's TFDS dataset at the registry's version into ``tfds_dir`` with ``tensorflow_datasets``
    (skipping those built already), then link its shards into the data root. A dataset that needs a manual
    download and lacks it is named (what to fetch, where) and skipped."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError("download vtab builds VTAB-1k with tensorflow-datasets, which is not installed: pip install "
                          "'expertlib[vtab]' (tensorflow-datasets and tensorflow), or link shards you already have "
                          "with --from-tfds-dir DIR (no TensorFlow needed)") from None  # fmt: skip
    tfds_dir = Path(tfds_dir)
    manual_root = Path(manual_dir) if manual_dir else tfds_dir / "downloads" / "manual"
    built: dict[str, str] = {}  # dataset spec -> '' (ok) or why not
    for task in tasks:
        info = VTAB_TASKS[task]
        if find_version(tfds_dir, info) is not None or info.tfds in built:
            continue
        name, config, _ = tfds_parts(info)
        builder = tfds.builder(
            info.tfds, data_dir=str(tfds_dir)
        )  # the pinned version, as task_adaptation asks
        needs = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
        manual = manual_root / name
        if needs and not (manual.is_dir() and any(manual.iterdir())):
            built[info.tfds] = manual_instructions(name, manual, needs)
            continue
        log(f"building {info.tfds} with tensorflow_datasets into {tfds_dir} (this downloads the dataset)")
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
        built[info.tfds] = ""
    out = []
    for task in tasks:
        why = built.get(VTAB_TASKS[task].tfds, "")
        out.append(
            Linked(task, "missing", message=f"{task}: {why}")
            if why
            else link_task(tfds_dir, data_root, task, copy)
        )
        log(out[-1].message)
    return out
