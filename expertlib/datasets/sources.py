"""Real images that PyPI packages ship, usable offline, with their licences.

- animal silhouettes: ``animal-shape-mnist`` 0.39 (MIT): 10,000 28x28 grayscale silhouettes, 1,000 per class,
  read directly from the package's gzip-pickled arrays (its own loaders import TensorFlow).
- handwritten digits: scikit-learn ``load_digits`` (BSD-3; UCI ML hand-written digits): 1,797 8x8 images.
- photographs and textures: scikit-image's sample data (CC0 or public domain, per each function's notes)
  and scikit-learn's two sample photos (china: public domain; flower: CC BY 2.0).
- typefaces: the TrueType fonts matplotlib ships (DejaVu: Bitstream Vera licence; STIX: SIL OFL 1.1;
  Computer Modern: BaKoMa licence), read as glyph outlines and filled by Pillow, for printed characters.
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


# matplotlib's bundled typefaces: sans, serif, mono, bold and slanted cuts of three families.
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmtt10.ttf",
    "cmti10.ttf",
)  # fmt: skip


@cache
def printed_glyphs(chars: str, size: int = 48, supersample: int = 4) -> np.ndarray:
    """Coverage masks float32 [len(FONT_FILES), len(chars), size, size] in [0, 1] of ``chars`` in every
    typeface of :data:`FONT_FILES`: each glyph centred horizontally, its font's capital height filling 60% of
    the canvas, on a common baseline. Outlines come from the font files (matplotlib's ``TextPath``); Pillow
    fills them at ``supersample`` x the size (even-odd, so counters stay open) before averaging down."""
    import matplotlib
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath
    from matplotlib.transforms import Affine2D
    from PIL import Image, ImageDraw

    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    big = size * supersample
    out = np.zeros((len(FONT_FILES), len(chars), size, size), np.float32)
    for f, name in enumerate(FONT_FILES):
        if not (root / name).is_file():
            raise SourceUnavailableError(f"{root / name} is missing: reinstall matplotlib")
        prop = FontProperties(fname=root / name)
        cap = TextPath((0, 0), "H", size=1, prop=prop).get_extents()
        for c, ch in enumerate(chars):
            path = TextPath((0, 0), ch, size=1, prop=prop)
            ext = path.get_extents()
            scale = 0.6 * big / cap.height
            to_canvas = (
                Affine2D()
                .translate(-(ext.x0 + ext.x1) / 2, -(cap.y0 + cap.y1) / 2)
                .scale(scale, -scale)
                .translate(big / 2, big / 2)
            )
            filled = np.zeros((big, big), bool)
            for poly in path.to_polygons(transform=to_canvas, closed_only=True):
                canvas = Image.new("1", (big, big), 0)
                ImageDraw.Draw(canvas).polygon([tuple(q) for q in poly], fill=1)
                filled ^= np.asarray(canvas, bool)
            out[f, c] = filled.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return out
