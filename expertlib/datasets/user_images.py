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

Stated rules, so that no image is silently added, merged or dropped:

- hidden and tool folders and files (a name starting with ``.`` or ``__``: ``.ipynb_checkpoints``,
  ``__MACOSX``, ``.DS_Store``) are ignored, and listed in :attr:`UserImages.ignored`;
- a class is the images directly in its folder: a folder inside a class folder (``thumbnails/``) is not read,
  and is listed; so is every file whose extension is not an image's;
- a class folder reached twice (a symlink to another class folder) and a file given two labels are refused;
- repeated files (the same path, or the same bytes under two paths: by content hash) are refused unless
  ``duplicates="keep"``, since they would sit in training and test at once or weigh twice;
- a CSV is read as UTF-8 (with or without a byte-order mark) or UTF-16 (with one); other encodings are refused
  by name.
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
    # (path, reason) of everything found but not used: hidden or tool folders and files, folders inside a
    # class, files that are not images, undecodable files
    ignored: list[tuple[Path, str]] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)  # each image's sha256, read once by load_images

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

        digests = self.digests or [hashlib.sha256(p.read_bytes()).digest() for p in self.paths]
        h = hashlib.sha256()
        for d, y, s in zip(digests, self.labels, self.splits, strict=True):
            h.update(f"{y}|{s}|".encode() + d)
        return h.hexdigest()[:16]


def _hidden(p: Path) -> bool:
    return p.name.startswith((".", "__"))


def _images_in(folder: Path, ignored: list[tuple[Path, str]]) -> list[Path]:
    """A class folder's own images; everything else in it is listed in ``ignored`` with the rule that left it."""
    out = []
    for p in sorted(folder.iterdir()):
        if _hidden(p):
            ignored.append((p, "hidden or tool file or folder"))
        elif p.is_dir():
            ignored.append(
                (p, "a folder inside a class folder: a class is the images directly in its folder")
            )
        elif p.suffix.lower() not in IMAGE_EXTENSIONS:
            ignored.append((p, f"not an image file ({', '.join(IMAGE_EXTENSIONS)})"))
        else:
            out.append(p)
    return out


def _folders(folder: Path, ignored: list[tuple[Path, str]]) -> list[Path]:
    """The sub-folders of ``folder`` that count; hidden and tool entries and loose files are listed instead."""
    out = []
    for d in sorted(folder.iterdir()):
        if _hidden(d):
            ignored.append((d, "hidden or tool file or folder"))
        elif d.is_dir():
            out.append(d)
        else:
            ignored.append((d, "a file beside the class folders: images go inside a class folder"))
    return out


def _from_tree(root: Path, ignored: list[tuple[Path, str]]) -> tuple[list[Path], list[str], list[str | None]]:
    tops = _folders(root, ignored)
    split_dirs = [d for d in tops if d.name in SPLITS]
    if split_dirs and len(split_dirs) != len(tops):
        others = [d.name for d in tops if d.name not in SPLITS]
        raise ImagesError(f"{root} mixes split folders ({', '.join(d.name for d in split_dirs)}) with other "
                          f"folders ({', '.join(others[:5])}): put every class folder under train/, val/ or test/, "
                          "or use class folders only")  # fmt: skip
    groups = [(d, d.name, _folders(d, ignored)) for d in split_dirs] if split_dirs else [(root, None, tops)]
    paths, names, splits = [], [], []
    seen: dict[Path, Path] = {}
    for folder, split, classes in groups:
        if not classes:
            raise ImagesError(f"no class folders under {folder}: expected {folder}/<class>/<image>")
        for c in classes:
            real = c.resolve()
            if real in seen:
                raise ImagesError(f"class folders {seen[real]} and {c} are the same folder ({real}, through a symbolic "
                                  "link): each class must be its own folder; remove the link")  # fmt: skip
            seen[real] = c
            files = _images_in(c, ignored)
            if not files:
                raise ImagesError(f"class folder {c} holds no images ({', '.join(IMAGE_EXTENSIONS)}): add images or "
                                  "remove the folder")  # fmt: skip
            paths += files
            names += [c.name] * len(files)
            splits += [split] * len(files)
    return paths, names, splits


def _read_csv_text(path: Path) -> str:
    raw = path.read_bytes()
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if raw.startswith(bom):
            return raw.decode(codec)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ImagesError(f"{path} is not UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r}) nor UTF-16 with a byte-"
                          "order mark: re-save it as UTF-8 (e.g. Excel: 'CSV UTF-8')") from None  # fmt: skip


def _from_csv(path: Path) -> tuple[list[Path], list[str], list[str | None]]:
    import io

    rows = list(csv.DictReader(io.StringIO(_read_csv_text(path), newline="")))
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


def _check_duplicates(paths: list[Path], names: list[str], duplicates: str) -> list[bytes]:
    """Refuse a file given two labels; and, unless ``duplicates == "keep"``, the same file twice or the same
    bytes under two paths (they would be in training and test at once, or count twice). Returns each file's
    sha256, which the images' fingerprint reuses."""
    import hashlib

    by_file: dict[Path, int] = {}
    by_content: dict[bytes, int] = {}
    digests: list[bytes] = []
    for i, p in enumerate(paths):
        real = p.resolve()
        if real in by_file:
            j = by_file[real]
            if names[j] != names[i]:
                raise ImagesError(
                    f"{p} is given two labels ({names[j]!r} and {names[i]!r}): give each image one label"
                )
            if duplicates != "keep":
                raise ImagesError(f"{p} is listed twice (as {paths[j]} too): remove the repeated entry, or pass "
                                  "duplicates='keep' (--keep-duplicates) to keep it")  # fmt: skip
        by_file.setdefault(real, i)
        digest = hashlib.sha256(p.read_bytes()).digest()
        if digest in by_content and duplicates != "keep" and paths[by_content[digest]].resolve() != real:
            j = by_content[digest]
            raise ImagesError(f"{paths[j]} and {p} hold the same image (identical bytes): one copy could be trained on "
                              "and tested on; remove one, or pass duplicates='keep' (--keep-duplicates)")  # fmt: skip
        by_content.setdefault(digest, i)
        digests.append(digest)
    return digests


def load_images(source: str | os.PathLike, test_fraction: float = 0.2, seed: int = 0, min_per_class: int = 2,
                on_corrupt: str = "error", duplicates: str = "refuse") -> UserImages:  # fmt: skip
    """Read and check a folder tree or CSV of labelled images (see the module docstring for the rules).

    ``min_per_class``: training images every class needs (kNN's k + 1 for leave-one-out kNN);
    ``duplicates``: "refuse" (default) or "keep" repeated files and identical images."""
    if on_corrupt not in ("error", "skip"):
        raise ValueError(f"on_corrupt must be 'error' or 'skip', not {on_corrupt!r}")
    if duplicates not in ("refuse", "keep"):
        raise ValueError(f"duplicates must be 'refuse' or 'keep', not {duplicates!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    src = Path(source)
    if not src.exists():
        raise ImagesError(f"{src} does not exist: pass a folder of class folders or a CSV of path,label")
    ignored: list[tuple[Path, str]] = []
    paths, names, given = _from_csv(src) if src.is_file() else _from_tree(src, ignored)
    digests = _check_duplicates(paths, names, duplicates)
    keep, skipped = [], []
    for i, p in enumerate(paths):  # decode every image once, up front: no model runs on a broken set
        try:
            read_image(p)
            keep.append(i)
        except CorruptImageError as e:
            if on_corrupt == "error":
                raise
            skipped.append(p)
            ignored.append((p, f"undecodable: {str(e).split('. ')[0]}"))
    paths, names, given = [paths[i] for i in keep], [names[i] for i in keep], [given[i] for i in keep]
    digests = [digests[i] for i in keep]
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
    return UserImages(paths, labels, splits, classes, skipped, ignored, digests)
