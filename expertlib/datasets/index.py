"""ImageNet-21k's 14 million file names in flat, memory-mapped arrays: listed once per tree, shared by every
process.

A list of 14.2 M ``Path`` objects costs about 600 bytes a file (9 GB) in every notebook process and torchrun
rank, and a forked DataLoader worker copies every Python object it touches (reference counts defeat
copy-on-write). :class:`FileIndex` holds the same information as fixed-width byte strings of file names (about
25 bytes for ImageNet's ``n01440764_10026.JPEG``), a label and a split flag per file, and the class names:
written once as an uncompressed ``.npz`` and memory-mapped by every reader, so a worker that reads every path
allocates only the path it is reading.

The cache key changes when the tree changes: it hashes every class folder's name and modification time (a
file added to or removed from a folder changes the folder's), the held-out list's, and the held-out rule.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from expertlib.utils.runtime import atomic_write

SPLIT_CODES = {"train": 0, "test": 1}


class PathList(Sequence):
    """Paths ``root / classes[label] / names[i]``, decoded on access from fixed-width byte arrays (memory-mapped
    or not): no Python object per file exists until one is asked for."""

    def __init__(self, root: Path, classes: np.ndarray, names: np.ndarray, labels: np.ndarray,
                 rows: np.ndarray) -> None:  # fmt: skip
        self.root, self.classes, self.names, self.labels, self.rows = Path(root), classes, names, labels, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        r = int(self.rows[i])
        return self.root / self.classes[int(self.labels[r])].decode() / self.names[r].decode()

    def __iter__(self) -> Iterator[Path]:
        return (self[i] for i in range(len(self)))


class FileIndex:
    """Every image file of a class-folder tree: file names (fixed-width bytes), labels into ``classes``, and a
    split flag per file, in the order the on-disk benchmark reads them (per split, by file name then label)."""

    def __init__(self, root: Path, classes: np.ndarray, names: np.ndarray, labels: np.ndarray,
                 splits: np.ndarray) -> None:  # fmt: skip
        self.root, self.classes, self.names = Path(root), classes, names
        self.labels, self.splits = labels, splits

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, name: str) -> tuple[PathList, np.ndarray]:
        """The paths and labels of split ``name``."""
        rows = np.flatnonzero(np.asarray(self.splits) == SPLIT_CODES[name])
        return (PathList(self.root, self.classes, self.names, self.labels, rows),
                np.asarray(self.labels[rows], dtype=np.int64))  # fmt: skip

    def save(self, path: Path) -> Path:
        def write(p: Path) -> None:
            with open(p, "wb") as f:  # uncompressed, so that every array can be memory-mapped
                np.savez(f, classes=self.classes, names=self.names, labels=self.labels, splits=self.splits)

        return atomic_write(path, write)

    @classmethod
    def load(cls, root: Path, path: Path) -> FileIndex:
        """Memory-map a saved index: nothing is read until used, and pages are shared between processes."""
        z = np.load(path, mmap_mode="r")
        return cls(root, np.asarray(z["classes"]), z["names"], z["labels"], z["splits"])


def tree_key(up: Path, classes: Sequence[str], extra: str = "") -> str:
    """A key that changes when the tree changes: each class folder's name and modification time, the held-out
    list's modification time, and ``extra`` (the held-out rule)."""
    h = hashlib.sha256(extra.encode())
    for c in classes:
        h.update(f"{c}:{os.stat(up / c).st_mtime_ns}\n".encode())
    listed = up / "heldout.txt"
    h.update(f"heldout:{listed.stat().st_mtime_ns if listed.is_file() else None}".encode())
    return h.hexdigest()[:20]


def build_index(up: Path, classes: Sequence[str], is_test: Callable[[str, list[str]], set[str]],
                is_image: Callable[[str], bool]) -> FileIndex:  # fmt: skip
    """List the tree once: per class, its image file names (sorted); ``is_test(class, names)`` gives the names
    held out. Python strings live one class at a time; the index itself is a few fixed-width arrays."""
    names, labels, splits = [], [], []
    for label, c in enumerate(classes):
        with os.scandir(up / c) as it:
            files = sorted(e.name for e in it if e.is_file() and is_image(e.name))
        test = is_test(c, files)
        names.append(np.array([f.encode() for f in files], dtype=bytes))
        labels.append(np.full(len(files), label, dtype=np.int32))
        splits.append(np.array([SPLIT_CODES["test" if f in test else "train"] for f in files], dtype=np.int8))
    width = max((a.dtype.itemsize for a in names if len(a)), default=1)
    all_names = np.concatenate([a.astype(f"S{width}") for a in names]) if names else np.zeros(0, f"S{width}")
    all_labels, all_splits = (
        np.concatenate(labels or [np.zeros(0, np.int32)]),
        np.concatenate(splits or [np.zeros(0, np.int8)]),
    )
    order = np.lexsort((all_labels, all_names, all_splits))  # per split, by file name, then label
    return FileIndex(up, np.array([c.encode() for c in classes], dtype=bytes), all_names[order], all_labels[order],
                     all_splits[order])  # fmt: skip


def cached_index(up: Path, classes: Sequence[str], is_test, is_image, cache_dir: Path | None,
                 extra: str = "") -> FileIndex:  # fmt: skip
    """The tree's index: memory-mapped from ``cache_dir`` when one was built for this very tree, else built and
    saved there by rank 0 alone (``None``: built in memory, not saved). Under torchrun every rank must call it."""
    if cache_dir is None:
        return build_index(up, classes, is_test, is_image)
    from expertlib.utils.distributed import barrier, is_primary

    path = Path(cache_dir) / f"index-{tree_key(up, classes, extra)}.npz"
    if not path.is_file() and is_primary():  # under torchrun rank 0 lists, once
        path.parent.mkdir(parents=True, exist_ok=True)
        build_index(up, classes, is_test, is_image).save(path)
    barrier()  # the other ranks map what rank 0 wrote
    return FileIndex.load(up, path)
