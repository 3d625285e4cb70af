"""Image files on disk: shared reading, errors that name the file, and the ImageNet-21k folder reader.

ImageNet-21k (Fall 2011) unpacks as ``root/<wnid>/*.JPEG``; the WordNet files ``wordnet.is_a.txt`` and
``words.txt`` give the hierarchy. :class:`ImageFolderTree` reads that layout, gives per-expert subset views
(the images under an expert's subtree, relabelled) and multi-label targets (a class and, if asked, its
ancestors that are labels too, as BiT's sigmoid training uses).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from expertlib.datasets.hierarchy import LabelHierarchy, UnknownNodeError, multi_label_targets

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder is missing: the message says where to put it and how to get it."""


class CorruptImageError(OSError):
    """An image file that cannot be decoded; names the file. ``problem`` is what is wrong without the advice on
    skipping such files, which each reader words for its own option (``ImageFolderTree(skip_corrupt=True)``,
    ``load_images(on_corrupt="skip")``, ``rank --skip-corrupt``)."""

    def __init__(self, message: str, problem: str | None = None) -> None:
        super().__init__(message)
        self.problem = problem or message


DEFAULT_MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS
"""The largest image read by default, in pixels: where PIL itself stops (twice its warning limit), as a guard
against decompression bombs (a small file that unpacks to gigabytes)."""


class ImageTooLargeError(CorruptImageError):
    """An image above the pixel limit; ``pixels``: its size. Each reader names its own way to raise the limit."""

    def __init__(self, message: str, problem: str, pixels: int) -> None:
        super().__init__(message, problem)
        self.pixels = pixels


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open an image as 8-bit RGB, correctly for every mode PIL opens, or raise :class:`CorruptImageError`
    naming the file and why:

    - EXIF orientation is applied (a phone photo stored sideways is read upright);
    - 16-bit images (``I;16``, and ``I`` with values within 0-65535) are scaled by 255/65535, not clipped to
      white; float images (``F``) with values in [0, 1] are scaled by 255, others refused;
    - palette, bilevel, grey, CMYK and YCbCr images are converted; alpha is dropped (colours kept as stored);
    - an image above ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`, or twice ``PIL.Image.MAX_IMAGE_PIXELS``
      where a program set that) is refused (:class:`ImageTooLargeError`, skippable) before it is decoded."""
    limit = max_pixels or (2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None)
    saved = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = (
            None  # PIL's own check replaced by the limit below (opening reads the header only)
        )
        with Image.open(path) as im:
            pixels = im.width * im.height
            if limit and pixels > limit:
                problem = (f"image {path} has {pixels:,} pixels, more than the limit of {limit:,} (a guard against "
                           "decompression bombs): resize it, or raise the limit if you trust the file")  # fmt: skip
                raise ImageTooLargeError(f"{problem} (read_image(..., max_pixels=N))", problem, pixels)
            im.load()
            return to_rgb(ImageOps.exif_transpose(im), path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, CorruptImageError):
            raise
        problem = f"cannot decode image {path}: {e}"
        raise CorruptImageError(
            f"{problem}. Delete or replace the file, or construct the dataset with skip_corrupt=True to skip such files",
            problem,
        ) from e
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def to_rgb(im: Image.Image, path: str | os.PathLike = "image") -> Image.Image:
    """An opened image as 8-bit RGB, scaling high-bit-depth modes instead of clipping them (see read_image)."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im, dtype=np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise CorruptImageError(f"{path}: a 32-bit integer image with values outside 0-65535; save it with 8 or 16 "
                                    "bits per channel")  # fmt: skip
        return Image.fromarray(np.round(a * (255 / 65535)).astype(np.uint8)).convert("RGB")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if a.size and (not np.isfinite(a).all() or a.min() < 0 or a.max() > 1):
            raise CorruptImageError(f"{path}: a floating-point image with values outside [0, 1]; save it with 8 or 16 "
                                    "bits per channel")  # fmt: skip
        return Image.fromarray(np.round(a * 255).astype(np.uint8)).convert("RGB")
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    return im.convert("RGB")


def load_sample(path: Path, label: int, transform: Callable | None) -> tuple:
    """One (image, label) pair from disk, with the dataset's transform applied."""
    img = read_image(path)
    return (transform(img) if transform else img), label


def is_image(path: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> bool:
    return path.suffix.lower() in extensions


class ImageFolderTree(Dataset):
    """``root/<class id>/<image>`` with class ids from a hierarchy (WordNet ids for ImageNet-21k).

    ``skip_corrupt``: decode every file once at construction and drop those that fail (``self.skipped``
    lists them); otherwise a corrupt file raises :class:`CorruptImageError` when it is read.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        hierarchy: LabelHierarchy | None = None,
        classes: Sequence[str] | None = None,
        transform: Callable | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetNotFoundError(
                f"image folder {self.root} not found. Unpack ImageNet-21k (fall11_whole.tar, from image-net.org "
                "after registration) so that it holds one folder per WordNet id, e.g. "
                f"{self.root}/n01440764/n01440764_10026.JPEG, and pass that folder as data_root"
            )
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if classes is None:
            classes = found
        missing = [c for c in classes if c not in found]
        if missing:
            raise DatasetNotFoundError(f"class folders missing under {self.root}: {missing[:5]}")
        if hierarchy is not None:
            unknown = [c for c in classes if c not in hierarchy]
            if unknown:
                raise UnknownNodeError(
                    f"class folders {unknown[:5]} are not in the hierarchy; is the WordNet file from the same release?"
                )
        self.hierarchy = hierarchy
        self.classes = list(classes)
        self.transform = transform
        self.samples: list[tuple[Path, int]] = []
        for i, c in enumerate(self.classes):
            files = sorted(p for p in (self.root / c).iterdir() if p.is_file() and is_image(p))
            self.samples += [(p, i) for p in files]
        self.skipped: list[Path] = []
        if skip_corrupt:
            good = []
            for p, y in self.samples:
                try:
                    read_image(p)
                    good.append((p, y))
                except CorruptImageError:
                    self.skipped.append(p)
            self.samples = good

    @property
    def targets(self) -> np.ndarray:
        return np.array([y for _, y in self.samples], dtype=np.int64)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.targets, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts, strict=True)}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int):
        return load_sample(*self.samples[idx], self.transform)

    def multi_label_matrix(self, with_ancestors: bool = True) -> torch.Tensor:
        """[classes, classes] 0/1 rows: the labels each class activates (itself and labelled ancestors)."""
        if self.hierarchy is None:
            raise ValueError(
                "multi-label targets need the hierarchy: pass hierarchy=LabelHierarchy.from_wordnet(...)"
            )
        rows = multi_label_targets(self.hierarchy, self.classes, with_ancestors)
        m = torch.zeros(len(self.classes), len(self.classes))
        for i, r in enumerate(rows):
            m[i, r] = 1.0
        return m

    def expert_subset(self, expert: str) -> ExpertSubset:
        """The images under ``expert``'s subtree (an id or a lemma), relabelled 0..K-1 in class order."""
        if self.hierarchy is None:
            raise ValueError(
                "expert subsets need the hierarchy: pass hierarchy=LabelHierarchy.from_wordnet(...)"
            )
        node = self.hierarchy.resolve(expert, self.class_counts())
        members = self.hierarchy.expert_classes(node, self.classes)
        return ExpertSubset(self, node, members)


class ExpertSubset(Dataset):
    """A view of a dataset restricted to an expert's classes; ``class_indices`` index the parent's classes
    (use them as ``head_rows`` to initialise the expert's head from B's)."""

    def __init__(self, parent: ImageFolderTree, node: str, classes: Sequence[str]) -> None:
        self.parent, self.node, self.classes = parent, node, list(classes)
        pos = {c: i for i, c in enumerate(parent.classes)}
        self.class_indices = [pos[c] for c in self.classes]
        remap = {p: i for i, p in enumerate(self.class_indices)}
        self.indices = [i for i, (_, y) in enumerate(parent.samples) if y in remap]
        self._remap = remap

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int):
        img, y = self.parent[self.indices[idx]]
        return img, self._remap[y]
