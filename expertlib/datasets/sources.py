"""Real images that PyPI packages ship, usable offline, with their licences.

- animal silhouettes: ``animal-shape-mnist`` 0.39 (MIT): 10,000 28x28 grayscale silhouettes, 1,000 per class,
  read directly from the package's gzip-pickled arrays (its own loaders import TensorFlow).
- handwritten digits: scikit-learn ``load_digits`` (BSD-3; UCI ML hand-written digits): 1,797 8x8 images.
- photographs and textures: scikit-image's sample data (CC0 or public domain, per each function's notes)
  and scikit-learn's two sample photos (china: public domain; flower: CC BY 2.0).
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

# The package's label order (alphabetical), documented by its README.
ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")


class SourceUnavailableError(RuntimeError):
    """A packaged image source is missing: says which package to install."""


@lru_cache(maxsize=1)
def animal_silhouettes() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [10000, 28, 28], labels int64 [10000]) from animal-shape-mnist."""
    spec = importlib.util.find_spec("animal_shape_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailableError(
            "animal-shape-mnist is not installed: pip install animal-shape-mnist==0.39"
        )
    root = Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal Shape"
    arrays = []
    for name in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        path = root / name
        if not path.is_file():
            raise SourceUnavailableError(f"{path} is missing: reinstall animal-shape-mnist==0.39")
        with gzip.open(path, "rb") as fh:
            arrays.append(np.asarray(pickle.load(fh)))  # noqa: S301 - a file shipped by a pinned package
    images, labels = arrays
    return images.astype(np.uint8), labels.astype(np.int64)


@lru_cache(maxsize=1)
def handwritten_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images float32 [1797, 8, 8] in [0, 1], labels int64) from scikit-learn."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


@dataclass(frozen=True)
class PhotoSource:
    name: str
    loader: str  # "skimage:<function>" or "sklearn:<file name>"
    licence: str


PHOTO_SOURCES: tuple[PhotoSource, ...] = (
    PhotoSource("astronaut", "skimage:astronaut", "public domain (NASA)"),
    PhotoSource("brick", "skimage:brick", "CC0 (CC0Textures)"),
    PhotoSource("camera", "skimage:camera", "CC0 (Lav Varshney)"),
    PhotoSource("chelsea", "skimage:chelsea", "CC0 (Stefan van der Walt)"),
    PhotoSource("coffee", "skimage:coffee", "CC0 (Rachel Michetti)"),
    PhotoSource("coins", "skimage:coins", "no known copyright restrictions"),
    PhotoSource("grass", "skimage:grass", "CC0 (CC0Textures)"),
    PhotoSource("gravel", "skimage:gravel", "CC0 (CC0Textures)"),
    PhotoSource("hubble", "skimage:hubble_deep_field", "public domain (NASA)"),
    PhotoSource("ihc", "skimage:immunohistochemistry", "no known copyright restrictions"),
    PhotoSource("retina", "skimage:retina", "CC0 1.0"),
    PhotoSource("rocket", "skimage:rocket", "public domain (SpaceX)"),
    PhotoSource("text", "skimage:text", "public domain"),
    PhotoSource("clock", "skimage:clock", "public domain (Stefan van der Walt)"),
    PhotoSource("cell", "skimage:cell", "CC0"),
    PhotoSource("china", "sklearn:china.jpg", "public domain"),
    PhotoSource("flower", "sklearn:flower.jpg", "CC BY 2.0"),
)


@cache
def photo(name: str) -> np.ndarray:
    """A packaged photo as uint8 RGB [H, W, 3], downscaled so its shorter side is at most 256 pixels."""
    src = {s.name: s for s in PHOTO_SOURCES}.get(name)
    if src is None:
        raise KeyError(f"unknown photo source {name!r}; known: {', '.join(s.name for s in PHOTO_SOURCES)}")
    kind, _, ref = src.loader.partition(":")
    if kind == "skimage":
        import skimage.data

        img = np.asarray(getattr(skimage.data, ref)())
    else:
        from sklearn.datasets import load_sample_image

        img = np.asarray(load_sample_image(ref))
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.uint8)
    short = min(img.shape[:2])
    if short > 256:
        from PIL import Image

        f = 256 / short
        size = (round(img.shape[1] * f), round(img.shape[0] * f))
        img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BOX))
    return img
