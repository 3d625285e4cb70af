"""VTAB-1k: the 19-task registry, torchvision loaders, a folder fallback, and the 800/200/test convention.

VTAB-1k trains on 1,000 examples per task: ``train800`` (the first 800 of the dataset's training part) and
``val200`` (the first 200 of its validation part); hyper-parameters are picked on train800 -> val200, then
the model is retrained on both and tested on ``test``. TFDS example order cannot be reproduced through
torchvision, so our convention (deterministic, documented):

- training part: the dataset's train split (OxfordIIITPet: trainval); validation part: its val split when it
  has one, else the last 10% of a fixed permutation of the training part (as VTAB carves CIFAR-100's);
  test: its test split. Datasets without any split (Caltech101, SUN397, EuroSAT) are split by a fixed
  permutation: 60% training part, 10% validation part, 30% test.
- train800 / val200: the first 800 / 200 of a fixed permutation (seed 0) of each part (torchvision
  datasets list their examples by class, so a prefix would hold few classes).

Tasks torchvision does not ship (or ships without the VTAB label) use the folder fallback:
``<data_root>/vtab/<task>/{train,val,test}/<label>/<image>``, where ``<label>`` is the integer VTAB label
(0..K-1) or a class name (class names are sorted alphabetically to give labels); or TFDS's TFRecord shards in
that folder (:mod:`expertlib.datasets.tfrecords`). Within a split, examples are
ordered by file name across label folders, and train800 / val200 are the first 800 / 200 of that order: name
files by their TFDS example index and the folders give VTAB's own train800 / val200. A missing ``val``
folder is carved from ``train`` as above. Label rules for deriving those folders are given per task in
``VTAB_TASKS[...].note``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, Subset

from expertlib.datasets.folders import DatasetNotFoundError, is_image, load_sample


@dataclass(frozen=True)
class VtabTask:
    name: str
    group: str
    num_classes: int
    torchvision: str | None  # loader name in torchvision.datasets, or None for the folder fallback
    note: str = ""


VTAB_TASKS: dict[str, VtabTask] = {
    t.name: t
    for t in [
        VtabTask("caltech101", "natural", 102, "Caltech101",
                 "torchvision drops BACKGROUND_Google (101 classes); TFDS keeps it (102)"),
        VtabTask("cifar100", "natural", 100, "CIFAR100"),
        VtabTask("dtd", "natural", 47, "DTD"),
        VtabTask("oxford_flowers102", "natural", 102, "Flowers102"),
        VtabTask("oxford_iiit_pet", "natural", 37, "OxfordIIITPet"),
        VtabTask("svhn", "natural", 10, "SVHN"),
        VtabTask("sun397", "natural", 397, "SUN397"),
        VtabTask("patch_camelyon", "specialized", 2, "PCAM", "needs h5py"),
        VtabTask("eurosat", "specialized", 10, "EuroSAT"),
        VtabTask("resisc45", "specialized", 45, None, "folders per class name from NWPU-RESISC45"),
        VtabTask("diabetic_retinopathy", "specialized", 5, None,
                 "Kaggle retinopathy, btgraham-300 preprocessing; label = grade 0-4"),
        VtabTask("clevr_count", "structured", 8, "CLEVRClassification", "label = number of objects - 3"),
        VtabTask("clevr_distance", "structured", 6, None,
                 "CLEVR scenes; label = bin of the nearest object's pixel_coords z, "
                 "thresholds [0, 8, 8.5, 9, 9.5, 10, inf]"),
        VtabTask("dmlab", "structured", 6, None, "DMLab frames; label as in TFDS dmlab"),
        VtabTask("kitti_distance", "structured", 4, None,
                 "KITTI object; label from the closest vehicle's z distance (VTAB closest_vehicle_distance)"),
        VtabTask("dsprites_location", "structured", 16, None, "label = value_x_position // 2 (32 -> 16 bins)"),
        VtabTask("dsprites_orientation", "structured", 16, None, "label = value_orientation * 16 // 40"),
        VtabTask("smallnorb_azimuth", "structured", 18, None, "label = azimuth index (0-17)"),
        VtabTask("smallnorb_elevation", "structured", 9, None, "label = elevation index (0-8)"),
    ]
}  # fmt: skip

# VTAB-1k's test-split sizes and each dataset's (height, width) of a typical image, as published (the VTAB
# paper's task table and TFDS's dataset cards): enough to price a plan before anything is downloaded. The
# HyperRule resolution follows from the image size: 5 tasks (32 and 64 px images) train at 128 px, 14 at 480.
PUBLISHED_TEST_SIZES: dict[str, tuple[int, tuple[int, int]]] = {
    "caltech101": (6084, (200, 300)), "cifar100": (10000, (32, 32)), "dtd": (1880, (300, 300)),
    "oxford_flowers102": (6149, (500, 500)), "oxford_iiit_pet": (3669, (500, 500)), "svhn": (26032, (32, 32)),
    "sun397": (21750, (500, 500)), "patch_camelyon": (32768, (96, 96)), "eurosat": (5400, (64, 64)),
    "resisc45": (6300, (256, 256)), "diabetic_retinopathy": (42670, (300, 300)), "clevr_count": (15000, (320, 480)),
    "clevr_distance": (15000, (320, 480)), "dmlab": (22735, (360, 480)), "kitti_distance": (711, (375, 1242)),
    "dsprites_location": (73728, (64, 64)), "dsprites_orientation": (73728, (64, 64)),
    "smallnorb_azimuth": (12150, (96, 96)), "smallnorb_elevation": (12150, (96, 96)),
}  # fmt: skip

PERMUTATION_SEED = 0


@dataclass
class VtabSplits:
    task: VtabTask
    train800: Dataset
    val200: Dataset
    test: Dataset

    @property
    def train800val200(self) -> Dataset:
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
    if task.torchvision:
        how = (
            f"torchvision.datasets.{task.torchvision} expects its files under {where}; pass download=True to "
            "fetch them where the dataset's licence allows it, or copy them there"
        )
    else:
        how = (
            f"torchvision has no loader with VTAB's label for {task.name}: put images in "
            f"{root / 'vtab' / task.name}/{{train,val,test}}/<label>/ ({task.note}), or its TFDS shards "
            f"(<dataset>-{{train,validation,test}}.tfrecord-*) in {root / 'vtab' / task.name}/"
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
    from expertlib.datasets.tfrecords import TFRecordSplit, shards

    if shards(base, "train") and shards(base, "test"):  # TFDS shards, read without TensorFlow
        train, test = (TFRecordSplit(shards(base, s), task.name, transform) for s in ("train", "test"))
        if shards(base, "val"):
            return train, TFRecordSplit(shards(base, "val"), task.name, transform), test
        tr, va = _carve(train, (0.9, 0.1))
        return tr, va, test
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


def load_vtab(
    task: str | VtabTask,
    data_root: str | os.PathLike,
    transform: Callable | None = None,
    download: bool = False,
    use_torchvision: bool = True,
) -> VtabSplits:
    """The VTAB-1k splits of ``task`` from ``data_root`` (torchvision layout, or the folder fallback)."""
    if isinstance(task, VtabTask):  # a task outside the registry, described by its folder's task.json
        info = task
    elif task in VTAB_TASKS:
        info = VTAB_TASKS[task]
    else:
        raise KeyError(f"unknown VTAB task {task!r}; known: {', '.join(VTAB_TASKS)}")
    root = Path(data_root)
    folder = root / "vtab" / info.name
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
