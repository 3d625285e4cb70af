"""ImageNet-21k's 14 million file names in flat, memory-mapped arrays: listed once per tree, shared by every
process.

A list of 14.2 M ``Path`` objects costs about 600 bytes a file (9 GB) in every notebook process and torchrun
rank, and a forked DataLoader worker copies every Python object it touches (reference counts defeat
copy-on-write). :class:`FileIndex` holds the same information as one UTF-8 byte buffer of relative paths, an
offsets array, labels and a split flag: a few bytes per file beyond the path itself, written once as an
uncompressed ``.npz`` and memory-mapped by every reader, so a worker that reads every path allocates only the
path it is reading.

The cache key changes when the tree changes: it hashes every class folder's name and modification time (a
file added to or removed from a folder changes the folder's), the held-out list's, and the held-out rule.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from expertlib.runtime import atomic_write

SPLIT_CODES = {"train": 0, "test": 1}


class PathList(Sequence):
    """Paths ``root / names[i]`` decoded on access from a byte buffer and offsets (memory-mapped or not)."""

    def __init__(self, root: Path, blob: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> None:
        self.root, self.blob, self.offsets, self.rows = Path(root), blob, offsets, rows

    def __len__(self) -> int:
        return len(self.rows)

    def name(self, i: int) -> str:
        r = int(self.rows[i])
        return bytes(self.blob[self.offsets[r] : self.offsets[r + 1]]).decode("utf-8")

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.root / self.name(i)

    def __iter__(self) -> Iterator[Path]:
        return (self[i] for i in range(len(self)))


class FileIndex:
    """Every image file of a class-folder tree: relative paths (one byte buffer + offsets), labels, splits."""

    def __init__(self, root: Path, blob: np.ndarray, offsets: np.ndarray, labels: np.ndarray,
                 splits: np.ndarray) -> None:  # fmt: skip
        self.root, self.blob, self.offsets, self.labels, self.splits = Path(root), blob, offsets, labels, splits

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, name: str) -> tuple[PathList, np.ndarray]:
        """The paths and labels of split ``name``, in the order the index holds them."""
        rows = np.flatnonzero(self.splits == SPLIT_CODES[name])
        return PathList(self.root, self.blob, self.offsets, rows), np.asarray(self.labels[rows], dtype=np.int64)

    def save(self, path: Path) -> Path:
        def write(p: Path) -> None:
            with open(p, "wb") as f:  # uncompressed, so that every array can be memory-mapped
                np.savez(f, blob=self.blob, offsets=self.offsets, labels=self.labels, splits=self.splits)

        return atomic_write(path, write)

    @classmethod
    def load(cls, root: Path, path: Path) -> FileIndex:
        """Memory-map a saved index: nothing is read until used, and pages are shared between processes."""
        z = np.load(path, mmap_mode="r")
        return cls(root, z["blob"], z["offsets"], z["labels"], z["splits"])


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
    held out. The index holds each split ordered by (file name, label), as the on-disk benchmark reads it."""
    names: list[bytes] = []
    labels: list[int] = []
    splits: list[int] = []
    for label, c in enumerate(classes):
        with os.scandir(up / c) as it:
            files = sorted(e.name for e in it if e.is_file() and is_image(e.name))
        test = is_test(c, files)
        for f in files:
            names.append(f"{c}/{f}".encode())
            labels.append(label)
            splits.append(SPLIT_CODES["test" if f in test else "train"])
    labels_a, splits_a = np.asarray(labels, dtype=np.int32), np.asarray(splits, dtype=np.int8)
    base = [n.rsplit(b"/", 1)[1] for n in names]
    order = sorted(range(len(names)), key=lambda i: (splits_a[i], base[i], labels_a[i]))
    lengths = np.fromiter((len(names[i]) for i in order), dtype=np.int64, count=len(order))
    offsets = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    blob = np.frombuffer(b"".join(names[i] for i in order), dtype=np.uint8)
    return FileIndex(up, blob, offsets, labels_a[order], splits_a[order])


def cached_index(up: Path, classes: Sequence[str], is_test, is_image, cache_dir: Path | None,
                 extra: str = "") -> FileIndex:  # fmt: skip
    """The tree's index: memory-mapped from ``cache_dir`` when one was built for this very tree, else built and
    saved there (``None``: built in memory, not saved)."""
    if cache_dir is None:
        return build_index(up, classes, is_test, is_image)
    path = Path(cache_dir) / f"index-{tree_key(up, classes, extra)}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        build_index(up, classes, is_test, is_image).save(path)
    return FileIndex.load(up, path)
