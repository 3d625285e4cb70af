"""VTAB-1k: the 19-task registry, its splits from TFDS shards, torchvision loaders and a folder fallback.

VTAB-1k trains on 1,000 examples per task: ``train800`` and ``val200``; hyper-parameters are picked on
train800 -> val200, then the model is retrained on both (``train800val200``) and tested on ``test``.
google-research/task_adaptation defines each of the four as a TFDS split expression over a pinned TFDS
dataset (cifar100: ``train[:800]``, ``train[45000:45200]``, ...). :data:`VTAB_TASKS` holds those definitions
as data (``expertlib/data/vtab1k.json``: dataset and version, label rule, split expressions, the TFDS split
sizes they were written for, and the task_adaptation file each row comes from).

Where a task's data comes from decides whether its splits are VTAB's own (:attr:`VtabSplits.vtab_splits`):

- TFDS shards in ``<data_root>/vtab/<task>/`` (``<dataset>-<split>.tfrecord-NNNNN-of-MMMMM``): the registry's
  expressions resolve against the shards' example counts and are read in TFDS order
  (:mod:`expertlib.datasets.tfrecords`): VTAB's splits. Where the counts differ from those of the TFDS version
  task_adaptation read, the rules are VTAB's but the data another version's: ``counts_match`` is False.
- folders ``<data_root>/vtab/<task>/{train,val,test}/<label>/<image>`` (``<label>``: the integer VTAB label,
  or a class name, sorted to give labels): within a split, examples are ordered by file name across label
  folders and train800 / val200 are the first 800 / 200; a missing ``val`` folder is carved from ``train`` by
  a fixed permutation (last 10%). Not VTAB's splits (unless the files are named by TFDS index and split as
  VTAB splits them, which the loader cannot check). Label rules are in ``VTAB_TASKS[...].note``.
- torchvision's own layouts (the tasks torchvision ships): their order is not TFDS's, so never VTAB's splits.
  Convention (deterministic): training part the dataset's train split (OxfordIIITPet: trainval), validation
  part its val split or else the last 10% of a fixed permutation of the training part, test its test split
  (CLEVR: val); datasets without splits (Caltech101, SUN397, EuroSAT) are split 60/10/30 by a fixed
  permutation; train800 / val200 are the first 800 / 200 of a fixed permutation (seed 0) of each part.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, Subset

from expertlib.datasets.folders import DatasetNotFoundError, is_image, load_sample
from expertlib.datasets.tfrecords import IDENTITY, SplitExpressionError, TFDSShards, resolve

REGISTRY_FILE = Path(__file__).resolve().parents[1] / "data" / "vtab1k.json"


@dataclass(frozen=True)
class VtabTask:
    """A VTAB-1k task. ``torchvision``: its loader in torchvision.datasets (None: folders or shards only). The
    rest as ``expertlib/data/vtab1k.json`` describes it; left empty for a task outside VTAB-1k (folders only)."""

    name: str
    group: str
    num_classes: int
    torchvision: str | None
    note: str = ""
    tfds: str = ""  # TFDS dataset and version as task_adaptation pins it, e.g. "sun397/tfds:4.*.*"
    source: str = ""  # the task_adaptation file that defines the task
    config: str = ""  # its entry in task_adaptation's scripts/run_all_tasks.sh
    label: Mapping = field(default_factory=lambda: dict(IDENTITY))
    image_scale: int = 1
    splits: Mapping[str, str] = field(default_factory=dict)  # train800 / val200 / train800val200 / test
    published_version: str = ""
    published_counts: Mapping[str, int] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None
    flip: bool = True  # BiT's random horizontal flip keeps the labels (BiT paper, Supplementary F)
    crop: bool = True  # BiT's random crop keeps the labels (off: counts, distances, positions)

    @property
    def tfds_name(self) -> str:
        """The TFDS dataset's name, which starts its shards' file names (``sun397`` of ``sun397/tfds:4.*.*``)."""
        return self.tfds.split(":")[0].split("/")[0]

    @property
    def tfds_splits(self) -> tuple[str, ...]:
        """The TFDS splits VTAB-1k reads for this task (svhn: train and test, not extra)."""
        parts = (p for t in self.splits.values() for p in re.sub(r"\{[^{}]*\}", "0", t).split("+"))
        return tuple(sorted({p.split("[")[0].strip() for p in parts}))

    def split_expressions(self, counts: Mapping[str, int]) -> dict[str, str]:
        """The four splits' TFDS expressions at these TFDS split sizes (:func:`expand` of :attr:`splits`)."""
        if not self.splits:
            raise KeyError(f"task {self.name!r} has no VTAB-1k split expressions (it is not in the registry)")
        return {s: expand(t, counts) for s, t in self.splits.items()}


_TERM = re.compile(r"^(?P<split>[\w-]+)\*(?P<pct>\d+)//100$")


def expand(template: str, counts: Mapping[str, int]) -> str:
    """A registry expression with its ``{...}`` boundaries computed at the TFDS split sizes ``counts``: each is
    a sum of integers and terms ``<split>*<P>//100``, task_adaptation's ``P * count // 100``."""

    def boundary(m: re.Match) -> str:
        total = 0
        for term in (t.strip() for t in m[1].split("+")):
            t = _TERM.match(term)
            if term.isdigit():
                total += int(term)
            elif t and t["split"] in counts:
                total += counts[t["split"]] * int(t["pct"]) // 100
            else:
                raise SplitExpressionError(
                    f"expression {template!r}: cannot compute {term!r} from the split sizes {dict(counts)}"
                )
        return str(total)

    return re.sub(r"\{([^{}]*)\}", boundary, template)


def _load_registry(path: Path = REGISTRY_FILE) -> dict[str, VtabTask]:
    rows = json.loads(path.read_text())["tasks"]
    return {r["name"]: VtabTask(**{**r, "image_size": tuple(r["image_size"])}) for r in rows}


VTAB_TASKS: dict[str, VtabTask] = _load_registry()


def split_size(task: VtabTask, split: str, counts: Mapping[str, int] | None = None) -> int:
    """How many examples ``split`` of ``task`` holds at the TFDS split sizes ``counts`` (default: published)."""
    counts = task.published_counts if counts is None else counts
    return sum(len(s) for s in resolve(task.split_expressions(counts)[split], counts))


# VTAB-1k's test-split sizes (the registry's test expression at the published TFDS split sizes) and each
# dataset's (height, width) of a typical image: enough to price a plan before anything is downloaded. The
# HyperRule resolution follows from the image size: 5 tasks (32 and 64 px images) train at 128 px, 14 at 480.
PUBLISHED_TEST_SIZES: dict[str, tuple[int, tuple[int, int]]] = {
    t.name: (split_size(t, "test"), t.image_size) for t in VTAB_TASKS.values()
}

PERMUTATION_SEED = 0


@dataclass
class VtabSplits:
    """A task's splits, and where they come from. ``vtab_splits``: True when they are VTAB-1k's own,
    task_adaptation's expressions read from TFDS shards; False for folders and torchvision layouts.
    ``expressions`` and ``counts``: the resolved TFDS expressions and the shards' split sizes (shards only).
    ``counts_match``: whether the splits VTAB reads hold the registry's published sizes (None: not from shards).
    False means another TFDS version, or an incomplete copy: VTAB's rules, another version's examples."""

    task: VtabTask
    train800: Dataset
    val200: Dataset
    test: Dataset
    vtab_splits: bool = False
    expressions: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    counts_match: bool | None = None

    @property
    def train800val200(self) -> Dataset:
        """train800 then val200: the registry's train800val200 expression for every VTAB-1k task (tested)."""
        from torch.utils.data import ConcatDataset

        return ConcatDataset([self.train800, self.val200])


class FolderSplit(Dataset):
    """``folder/<label>/<image>``: integer folder names are labels, else sorted class names are."""

    def __init__(self, folder: Path, transform: Callable | None = None) -> None:
        dirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if all(d.isdigit() for d in dirs):
            self.class_to_idx = {d: int(d) for d in dirs}
        else:
            self.class_to_idx = {d: i for i, d in enumerate(dirs)}
        found = [
            (p, self.class_to_idx[d])
            for d in dirs
            for p in (folder / d).iterdir()
            if p.is_file() and is_image(p)
        ]
        self.samples = sorted(found, key=lambda s: (s[0].name, s[1]))  # file-name order across labels
        self.transform = transform

    @property
    def targets(self) -> list[int]:
        return [y for _, y in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int):
        return load_sample(*self.samples[idx], self.transform)


class _Relabel(Dataset):
    def __init__(self, base: Dataset, fn: Callable[[int], int]) -> None:
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, idx: int):
        x, y = self.base[idx]
        return x, self.fn(int(y))


def _perm(n: int) -> np.ndarray:
    return np.random.default_rng(PERMUTATION_SEED).permutation(n)


def _first(ds: Dataset, k: int) -> Subset:
    order = _perm(len(ds))
    return Subset(ds, order[: min(k, len(ds))].tolist())


def _head(ds: Dataset, k: int) -> Subset:
    return Subset(ds, list(range(min(k, len(ds)))))


def _carve(ds: Dataset, fractions: tuple[float, ...]) -> list[Subset]:
    order = _perm(len(ds))
    cuts = np.cumsum((0.0, *fractions)) * len(ds)
    return [Subset(ds, order[int(a) : int(b)].tolist()) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _missing(task: VtabTask, root: Path, where: Path) -> DatasetNotFoundError:
    shards = (
        f", or its TFDS shards ({task.tfds}: {task.tfds_name}-<split>.tfrecord-NNNNN-of-MMMMM) in "
        f"{root / 'vtab' / task.name}/"
        if task.tfds
        else ""
    )
    if task.torchvision:
        how = (
            f"torchvision.datasets.{task.torchvision} expects its files under {where}; pass download=True to "
            f"fetch them where the dataset's licence allows it, or copy them there{shards}"
        )
    else:
        how = (
            f"torchvision has no loader with VTAB's label for {task.name}: put images in "
            f"{root / 'vtab' / task.name}/{{train,val,test}}/<label>/ ({task.note}){shards}"
        )
    return DatasetNotFoundError(f"VTAB task {task.name!r}: data not found under {where}. {how}")


def _torchvision_parts(task: VtabTask, root: Path, download: bool, transform: Callable | None):
    import torchvision.datasets as tvd

    cls = getattr(tvd, task.torchvision)
    kw = {"transform": transform, "download": download}
    name = task.name
    try:
        if name == "cifar100":
            train, test = cls(root, train=True, **kw), cls(root, train=False, **kw)
            tr, va = _carve(train, (0.9, 0.1))
            return tr, va, test
        if name in ("caltech101", "sun397", "eurosat"):
            full = cls(root, **kw)
            return tuple(_carve(full, (0.6, 0.1, 0.3)))
        if name == "oxford_iiit_pet":
            train, test = cls(root, split="trainval", **kw), cls(root, split="test", **kw)
            tr, va = _carve(train, (0.9, 0.1))
            return tr, va, test
        if name == "svhn":
            train, test = cls(root, split="train", **kw), cls(root, split="test", **kw)
            tr, va = _carve(train, (0.9, 0.1))
            return tr, va, test
        if name == "clevr_count":
            # CLEVR's test split has no labels: VTAB tests on its validation split.
            train, val = cls(root, split="train", **kw), cls(root, split="val", **kw)
            tr, va = _carve(train, (0.9, 0.1))
            return tuple(_Relabel(d, lambda y: y - 3) for d in (tr, va, val))
        return tuple(cls(root, split=s, **kw) for s in ("train", "val", "test"))
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted..."
        raise _missing(task, root, root) from e


def _folder_parts(task: VtabTask, root: Path, transform: Callable | None):
    base = root / "vtab" / task.name
    absent = [s for s in ("train", "test") if not (base / s).is_dir()]
    if absent and any((base / s).is_dir() for s in ("train", "val", "test")):  # a task folder missing a split
        raise DatasetNotFoundError(
            f"VTAB task {task.name!r}: {base} has no {' or '.join(s + '/' for s in absent)}. A task folder needs "
            "train/ and test/ (val/ is carved from train/ when absent), each with one folder per label"
        )
    if absent:
        raise _missing(task, root, base)
    train = FolderSplit(base / "train", transform)
    test = FolderSplit(base / "test", transform)
    if (base / "val").is_dir():
        return train, FolderSplit(base / "val", transform), test
    tr, va = _carve(train, (0.9, 0.1))
    return tr, va, test


def _has_shards(task: VtabTask, folder: Path) -> bool:
    return bool(task.splits) and folder.is_dir() and any(folder.glob(f"{task.tfds_name}-*.tfrecord*"))


def _from_shards(task: VtabTask, folder: Path, transform: Callable | None) -> VtabSplits:
    """VTAB-1k's own splits: the registry's expressions at the shards' split sizes, read in TFDS order."""
    shards = TFDSShards(folder, task.tfds_name)
    counts = shards.counts()
    try:
        exprs = task.split_expressions(counts)
        parts = {s: shards.read(exprs[s], task.label, task.image_scale, transform) for s in ("train800", "val200", "test")}  # fmt: skip
    except SplitExpressionError as e:
        raise DatasetNotFoundError(
            f"VTAB task {task.name!r}: the shards in {folder} hold {counts} examples of {task.tfds_name}, "
            f"where {task.tfds} ({task.published_version}, read by {task.source}) holds {dict(task.published_counts)}: "
            f"{e}"
        ) from e
    match = all(counts.get(s) == task.published_counts[s] for s in task.tfds_splits)
    return VtabSplits(task, parts["train800"], parts["val200"], parts["test"], True, exprs, counts, match)


def load_vtab(
    task: str | VtabTask,
    data_root: str | os.PathLike,
    transform: Callable | None = None,
    download: bool = False,
    use_torchvision: bool = True,
) -> VtabSplits:
    """The VTAB-1k splits of ``task`` from ``data_root``: its TFDS shards (VTAB's own splits), else its folders,
    else torchvision's layout (neither VTAB's splits); :attr:`VtabSplits.vtab_splits` says which."""
    if isinstance(task, VtabTask):  # a task outside the registry, described by its folder's task.json
        info = task
    elif task in VTAB_TASKS:
        info = VTAB_TASKS[task]
    else:
        raise KeyError(f"unknown VTAB task {task!r}; known: {', '.join(VTAB_TASKS)}")
    root = Path(data_root)
    folder = root / "vtab" / info.name
    if _has_shards(info, folder):
        return _from_shards(info, folder, transform)
    if info.torchvision and use_torchvision and not folder.is_dir():
        train, val, test = _torchvision_parts(info, root, download, transform)
        return VtabSplits(info, _first(train, 800), _first(val, 200), test)
    train, val, test = _folder_parts(info, root, transform)
    return VtabSplits(info, _head(train, 800), _head(val, 200), test)


def targets(ds: Dataset) -> list[int]:
    """The labels of a VTAB split without decoding its images where the dataset allows it."""
    from torch.utils.data import ConcatDataset

    if isinstance(ds, Subset):
        inner = targets(ds.dataset)
        return [inner[i] for i in ds.indices]
    if isinstance(ds, ConcatDataset):
        return [y for d in ds.datasets for y in targets(d)]
    if isinstance(ds, _Relabel):
        return [ds.fn(int(y)) for y in targets(ds.base)]
    for attr in ("targets", "_labels", "labels", "y"):
        value = getattr(ds, attr, None)
        if value is not None and len(value) == len(ds):
            return [int(v) for v in value]
    return [int(ds[i][1]) for i in range(len(ds))]
