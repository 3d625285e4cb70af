"""One command per scale fetches its public inputs into the data root, checks each as it lands, then runs notebook
01's data check::

    python -m expertlib.download released --data-root /data [--mirror URL] [--jobs 4] [--from-tfds-dir DIR]
    python -m expertlib.download vtab --data-root /data [--tasks cifar100 ...] [--from-tfds-dir ~/tensorflow_datasets]

``released`` fetches everything the released scale reads, then VTAB-1k's tasks not in place yet (as ``vtab``
does). It fetches B, BiT-M R50x1 (``<data_root>/BiT-M-R50x1.npz``, from the BiT repository's public bucket),
and the 48 released experts, each a compressed SavedModel (``<data_root>/released_experts/<name>.tar.gz``,
from TF Hub's handle ``google/experts/bit/r50x1/in21k/<name>/1`` with ``?tf-hub-format=compressed``; tfhub.dev
redirects to Kaggle Models, which serves the same archive). ``--mirror URL`` fetches every file from
``URL/<its path in the data root>`` instead. Downloads resume, run several at a time and retry
(:mod:`expertlib.utils.fetch`); each file is checked before it takes its place
(:mod:`expertlib.models.download_checks`: no web page, the SavedModel's CRC32Cs, the size and SHA-256 of the
lock file ``downloads.lock.json``).

``vtab`` links each task's TFDS shards into ``<data_root>/vtab/<task>/`` from a TFDS data folder (``--from-tfds-dir``,
no TensorFlow), or builds them first with ``tensorflow_datasets`` (the ``[vtab]`` extra)
(:mod:`expertlib.datasets.tfds_dir`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from expertlib.datasets.hierarchy import released_experts
from expertlib.datasets.vtab import VTAB_TASKS
from expertlib.models.download_checks import DownloadLock, LockMismatchError, check_npz, check_saved_model
from expertlib.run.presets import get_scale
from expertlib.run.scale import Scale
from expertlib.utils.fetch import DownloadError, Remote, fetch_all, refuse_page

BIT_URL = "https://storage.googleapis.com/bit_models/{file}"  # BiT's README links its weights here
EXPERT_URL = "https://tfhub.dev/google/experts/bit/r50x1/in21k/{name}/1?tf-hub-format=compressed"
EXPERTS_DIR = "released_experts"


def released_scale(scale: str = "released", experts: Sequence[str] | None = None,
                   tasks: Sequence[str] | None = None) -> Scale:  # fmt: skip
    """The scale whose downloads to fetch and check, with its experts and tasks narrowed if asked."""
    sc = get_scale(scale)
    if sc.trains_upstream or not sc.upstream.weights:
        raise ValueError(f"scale {scale!r} downloads nothing: 'released' is the scale of public downloads (the paper "
                         "scale needs ImageNet-21k, see docs/paper_scale.md)")  # fmt: skip
    registry = released_experts()  # expertlib/data/released_experts.json
    unknown = [e for e in experts or () if e not in registry]
    if unknown:
        raise ValueError(
            f"unknown released expert(s) {unknown}; the {len(registry)} names: {', '.join(registry)}"
        )
    over = {k: tuple(v) for k, v in (("experts", experts), ("tasks", tasks)) if v}
    return sc.override(**over) if over else sc


def released_files(sc: Scale, data_root: str | Path, mirror: str | None = None) -> list[tuple[str, Remote]]:
    """(path in the data root, :class:`Remote`) for B's ``.npz`` and every expert archive of scale ``sc``."""
    root = Path(data_root)
    folder = sc.data.released_experts or EXPERTS_DIR
    names = sc.expert.names if sc.expert.names is not None else tuple(released_experts())  # the registry's 48
    wanted = [(sc.upstream.weights, BIT_URL.format(file=sc.upstream.weights), check_npz)]
    wanted += [(f"{folder}/{n}.tar.gz", EXPERT_URL.format(name=n), check_saved_model) for n in names]
    out = []
    for rel, url, check in wanted:
        url = f"{mirror.rstrip('/')}/{rel}" if mirror else url
        out.append((rel, Remote(rel, url, root / rel, check)))
    return out


def _with_lock(remote: Remote, rel: str, lock: DownloadLock) -> Remote:
    """``remote`` whose landing check also verifies (or records) its size and SHA-256 in the lock file."""

    def check(path: Path) -> None:
        remote.check(path)
        lock.verify_or_record(rel, path, remote.url)

    return Remote(remote.name, remote.url, remote.dest, check)


def _present(remote: Remote, rel: str, lock: DownloadLock) -> bool:
    """Whether ``remote`` is already in place and sound (verified by the lock file, or checked and recorded);
    raises :class:`DownloadError` for a file in place that the lock file refuses."""
    unpacked = remote.dest.with_name(remote.dest.name.removesuffix(".tar.gz"))
    if rel.endswith(".tar.gz") and (unpacked / "saved_model.pb").is_file():
        return True  # unpacked by hand: convert reads the folder (and checks its CRC32Cs then)
    if not remote.dest.is_file():
        return False
    try:
        if rel not in lock.entries:
            refuse_page(remote, remote.dest)
            remote.check(remote.dest)
        lock.verify_or_record(rel, remote.dest, remote.url)
    except (LockMismatchError, ValueError, DownloadError) as e:
        raise DownloadError(
            f"{e} (the file in place, {remote.dest}; delete it to download it again)"
        ) from None
    return True


def download_released(data_root: str | Path, sc: Scale, mirror: str | None = None, jobs: int = 4,
                      progress: bool = True, log=print, **fetch_options) -> list[str]:  # fmt: skip
    """Fetch what ``sc`` needs into ``data_root``, skipping files in place that pass their checks. Returns one
    line per failure (empty when everything is there)."""
    root = Path(data_root)
    root.mkdir(parents=True, exist_ok=True)
    lock = DownloadLock(root)
    todo, failures = [], []
    for rel, remote in released_files(sc, root, mirror):
        try:
            if not _present(remote, rel, lock):
                todo.append(_with_lock(remote, rel, lock))
        except DownloadError as e:
            failures.append(str(e))
    log(f"{len(todo)} file(s) to fetch into {root}" + (f" from {mirror}" if mirror else "")
        + (f" ({len(failures)} refused in place)" if failures else ""))  # fmt: skip
    failures += [str(e) for e in fetch_all(todo, jobs, progress, **fetch_options)]
    return failures


def vtab_tasks(sc: Scale, data_root: str | Path, from_tfds_dir: str | None = None, tfds_dir: str | None = None,
               manual_dir: str | None = None, copy: bool = False, skip_present: bool = False) -> list[str]:  # fmt: skip
    """VTAB-1k's tasks of ``sc`` into ``<data_root>/vtab/<task>/``: linked from ``from_tfds_dir``, else built by
    tensorflow_datasets in ``tfds_dir``. ``skip_present``: leave tasks whose folder exists (shards or class
    folders put there some other way). Returns one line per task not in place."""
    from expertlib.datasets import tfds_dir as T

    root = Path(data_root)
    tasks = [t for t in sc.data.tasks if not (skip_present and (root / "vtab" / t).is_dir())]
    if not tasks:
        return []
    try:
        done = (T.link_tasks(from_tfds_dir, root, tasks, copy) if from_tfds_dir else
                T.build_tasks(root, tasks, tfds_dir or Path.home() / "tensorflow_datasets", manual_dir, copy))  # fmt: skip
    except (ImportError, FileNotFoundError) as e:
        return [
            f"VTAB-1k ({len(tasks)} task(s): {', '.join(tasks[:4])}{' ...' if len(tasks) > 4 else ''}): {e}"
        ]
    return [d.message for d in done if d.status == "missing"]


def check_data(sc: Scale, data_root: str | Path, results_dir: str | Path = "results") -> str:
    """Notebook 01's data check (its first step, :func:`expertlib.pipeline.session.start`, without the
    notebook): the scale's benchmark loaded from ``data_root`` (each missing download or task named with where to
    get it), then the plan. Returns a one-line summary."""
    from expertlib.pipeline.inputs import load_benchmark
    from expertlib.pipeline.session import print_plan
    from expertlib.pipeline.workspace import Workspace

    ws = Workspace(sc, Path(results_dir) / sc.name, Path(data_root), "cpu", 0, progress=False)
    bench = load_benchmark(ws)
    print_plan(ws, bench)
    return f"data check passed: {len(bench.task_names)} tasks and the downloads of scale {sc.name!r} in {data_root}"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m expertlib.download", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-root", default="data")
    common.add_argument("--scale", default="released", help="whose downloads (default: released)")
    common.add_argument("--tasks", nargs="+", choices=sorted(VTAB_TASKS), help="only these VTAB tasks")
    common.add_argument("--results-dir", default="results", help="where a converted bank may already be")
    common.add_argument("--no-check", action="store_true", help="skip notebook 01's data check at the end")
    rel = sub.add_parser("released", parents=[common], help="BiT-M R50x1 and the 48 released experts")
    rel.add_argument("--mirror", help="fetch every file from URL/<its path in the data root> instead")
    rel.add_argument("--jobs", type=int, default=4, help="files fetched at a time (default 4)")
    rel.add_argument("--experts", nargs="+", help="only these released experts (default: the scale's)")
    rel.add_argument("--retries", type=int, default=5, help="tries after the first, with back-off")
    rel.add_argument("--no-progress", action="store_true")
    rel.add_argument(
        "--no-vtab", action="store_true", help="skip VTAB-1k (default: the tasks not in place yet)"
    )
    vt = sub.add_parser(
        "vtab", parents=[common], help="VTAB-1k's tasks as TFDS shards in <data_root>/vtab/<task>/"
    )
    for p in (rel, vt):
        p.add_argument(
            "--from-tfds-dir", help="link VTAB's shards from this TFDS data folder (no TensorFlow needed)"
        )
        p.add_argument("--tfds-dir", help="where tensorflow_datasets builds (default ~/tensorflow_datasets)")
        p.add_argument("--manual-dir", help="TFDS's manual downloads (default <tfds-dir>/downloads/manual)")
        p.add_argument("--copy", action="store_true", help="copy VTAB's shards instead of linking them")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        sc = released_scale(args.scale, getattr(args, "experts", None), args.tasks)
        failures = []
        if args.what == "released":
            failures += download_released(args.data_root, sc, args.mirror, args.jobs, not args.no_progress,
                                          retries=args.retries)  # fmt: skip
        if args.what == "vtab" or not args.no_vtab:
            failures += vtab_tasks(sc, args.data_root, args.from_tfds_dir, args.tfds_dir, args.manual_dir, args.copy,
                                   skip_present=args.what == "released")  # fmt: skip
    except (ValueError, OSError) as e:
        print(f"download failed: {e}", file=sys.stderr)
        return 1
    if failures:
        print(f"{len(failures)} download(s) failed; the others are in place:", file=sys.stderr)
        for line in failures:
            print(f"- {line}", file=sys.stderr)
        return 1
    if args.no_check:
        return 0
    try:
        print(check_data(sc, args.data_root, args.results_dir))
    except Exception as e:  # noqa: BLE001 - the check names what is still missing, in one message
        print(f"downloads done; notebook 01's data check still fails: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
