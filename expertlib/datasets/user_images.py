"""A user's own labelled images, for ranking models on them (:mod:`expertlib.rank`).

Two layouts:

- a folder tree, one folder per class (``root/<class>/<image>``), optionally split first
  (``root/{train,val,test}/<class>/<image>``);
- a CSV file with columns ``path,label`` and optionally ``split`` (paths relative to the CSV's folder).

Without a given split, each class is split deterministically (a fixed seeded shuffle of its files sorted by
name): ``test_fraction`` of it for testing, the rest for training. Everything is checked before any model
runs, each problem named with its fix: an empty class folder, a single class, a class with fewer training
images than kNN's k, files that are not decodable images (an error, or skipped and counted with
``on_corrupt="skip"``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from expertlib.datasets.batches import ImageData
from expertlib.datasets.folders import IMAGE_EXTENSIONS, CorruptImageError, read_image

SPLITS = ("train", "val", "test")


class ImagesError(ValueError):
    """The user's images cannot be ranked on as given; the message says what to change."""


@dataclass
class UserImages:
    """Image paths, integer labels and a split name per image, with the class names in label order."""

    paths: list[Path]
    labels: np.ndarray
    splits: np.ndarray
    classes: list[str]
    skipped: list[Path] = field(default_factory=list)  # undecodable files left out (on_corrupt="skip")

    def split(self, name: str) -> np.ndarray:
        """Positions of the images in split ``name`` ('train'; 'test' is 'test', or 'val' when no test)."""
        if name == "test" and not (self.splits == "test").any():
            name = "val"
        return np.flatnonzero(self.splits == name)

    def data(self, name: str, precrop: int, crop: int, flip: bool = True) -> ImageData:
        """Split ``name`` as training data at a model's resolution (BiT's [-1, 1] pixels)."""
        idx = self.split(name)
        paths = [self.paths[i] for i in idx]
        return ImageData(paths, self.labels[idx], precrop, crop, flip, read=lambda i: read_image(paths[i]))

    def fingerprint(self) -> str:
        """Changes when any image's content, label or split changes; not when the folder moves (the same images
        elsewhere, e.g. in a fresh clone, reuse cached features)."""
        import hashlib

        h = hashlib.sha256()
        for p, y, s in zip(self.paths, self.labels, self.splits, strict=True):
            h.update(f"{y}|{s}|".encode() + hashlib.sha256(p.read_bytes()).digest())
        return h.hexdigest()[:16]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _from_tree(root: Path) -> tuple[list[Path], list[str], list[str | None]]:
    tops = sorted(d for d in root.iterdir() if d.is_dir())
    split_dirs = [d for d in tops if d.name in SPLITS]
    if split_dirs and len(split_dirs) != len(tops):
        others = [d.name for d in tops if d.name not in SPLITS]
        raise ImagesError(f"{root} mixes split folders ({', '.join(d.name for d in split_dirs)}) with other "
                          f"folders ({', '.join(others[:5])}): put every class folder under train/, val/ or test/, "
                          "or use class folders only")  # fmt: skip
    groups = [(d, d.name) for d in split_dirs] if split_dirs else [(root, None)]
    paths, names, splits = [], [], []
    for folder, split in groups:
        classes = sorted(d for d in folder.iterdir() if d.is_dir())
        if not classes:
            raise ImagesError(f"no class folders under {folder}: expected {folder}/<class>/<image>")
        for c in classes:
            files = _images_in(c)
            if not files:
                raise ImagesError(f"class folder {c} holds no images ({', '.join(IMAGE_EXTENSIONS)}): add images or "
                                  "remove the folder")  # fmt: skip
            paths += files
            names += [c.name] * len(files)
            splits += [split] * len(files)
    return paths, names, splits


def _from_csv(path: Path) -> tuple[list[Path], list[str], list[str | None]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise ImagesError(f"{path} needs a header with columns path,label (and optionally split)")
    paths, names, splits = [], [], []
    for i, r in enumerate(rows, 2):
        p = Path(r["path"])
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            raise ImagesError(f"{path}, line {i}: image {p} does not exist")
        split = (r.get("split") or "").strip() or None
        if split is not None and split not in SPLITS:
            raise ImagesError(f"{path}, line {i}: split {split!r} is not one of {', '.join(SPLITS)}")
        paths.append(p)
        names.append(str(r["label"]).strip())
        splits.append(split)
    return paths, names, splits


def load_images(source: str | os.PathLike, test_fraction: float = 0.2, seed: int = 0, min_per_class: int = 2,
                on_corrupt: str = "error") -> UserImages:  # fmt: skip
    """Read and check a folder tree or CSV of labelled images (see the module docstring).

    ``min_per_class``: training images every class needs (kNN's k + 1 for leave-one-out kNN)."""
    if on_corrupt not in ("error", "skip"):
        raise ValueError(f"on_corrupt must be 'error' or 'skip', not {on_corrupt!r}")
    src = Path(source)
    if not src.exists():
        raise ImagesError(f"{src} does not exist: pass a folder of class folders or a CSV of path,label")
    paths, names, given = _from_csv(src) if src.is_file() else _from_tree(src)
    keep, skipped = [], []
    for i, p in enumerate(paths):  # decode every image once, up front: no model runs on a broken set
        try:
            read_image(p)
            keep.append(i)
        except CorruptImageError:
            if on_corrupt == "error":
                raise
            skipped.append(p)
    paths, names, given = [paths[i] for i in keep], [names[i] for i in keep], [given[i] for i in keep]
    classes = sorted(set(names))
    if len(classes) < 2:
        raise ImagesError(f"{src} has {len(classes)} class ({', '.join(classes) or 'none'}): ranking needs at least "
                          "two classes of images")  # fmt: skip
    labels = np.array([classes.index(n) for n in names], dtype=np.int64)
    splits = np.array([g or "" for g in given], dtype=object)
    if any(g is None for g in given):
        if not all(g is None for g in given):
            raise ImagesError(f"{src}: give a split for every image or for none")
        rng = np.random.default_rng(seed)
        for c in range(len(classes)):
            members = np.flatnonzero(labels == c)  # in file-name order
            members = members[rng.permutation(len(members))]
            n_test = int(round(test_fraction * len(members))) if len(members) > min_per_class else 0
            splits[members[:n_test]] = "test"
            splits[members[n_test:]] = "train"
    train = labels[splits == "train"]
    counts = np.bincount(train, minlength=len(classes))
    short = [f"{classes[c]} ({counts[c]})" for c in range(len(classes)) if counts[c] < min_per_class]
    if short:
        raise ImagesError(f"too few training images in {', '.join(short[:10])}: each class needs at least "
                          f"{min_per_class} (kNN's k + 1); add images or lower k")  # fmt: skip
    return UserImages(paths, labels, splits, classes, skipped)
