"""The embedded benchmark's upstream world: its domains and label hierarchy, and the rendering of upstream
images (real images from disjoint source pools or bands, procedural families from their own seeds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from expertlib.datasets import procedural as P
from expertlib.datasets import sources as S
from expertlib.datasets.hierarchy import LabelHierarchy

GLYPH_SEED_UP = 101  # the tasks' glyphs come from another seed (embedded_tasks.GLYPH_SEED_TASK)
UPSTREAM_PHOTOS = ("brick", "camera", "coffee", "grass", "hubble", "rocket", "clock")
UPSTREAM_ANIMALS = (0, 1, 2, 3, 4, 5)  # bear bird cat cow dog elephant
GRATING_UP = ([0, 45, 90, 135], [2.0, 3.5, 5.0, 7.0])
UPSTREAM_BANDS = {"train": (0.0, 0.75), "test": (0.75, 1.0)}
UPSTREAM_POOLS = {"train": (0.0, 0.8), "test": (0.8, 1.0)}


@dataclass
class ArraySplit:
    """Images (uint8 NHWC), integer labels and a source id per example."""

    images: np.ndarray
    labels: np.ndarray
    source: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> ArraySplit:
        return ArraySplit(self.images[idx], self.labels[idx], self.source[idx])

    @staticmethod
    def concat(parts: Sequence[ArraySplit]) -> ArraySplit:
        return ArraySplit(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.source for p in parts]),
        )


@dataclass
class Domain:
    name: str
    parent: str
    classes: tuple[str, ...]  # class names within the domain
    source: str  # where its images come from (README table)


# -- the world's structure ------------------------------------------------------------------------------------
def domains() -> list[Domain]:
    sprite = tuple(f"{s}_{b}" for s in P.DSPRITES_SHAPES for b in ("small", "medium", "large"))
    scene = tuple(f"{s}_{z}" for s in P.CLEVR_SHAPES for z in ("small", "large"))
    grating = tuple(f"o{o}_f{f}" for o in GRATING_UP[0] for f in GRATING_UP[1])
    lattice = tuple(f"{k}_p{p}" for k in P.LATTICE_KINDS for p in (5, 9))
    return [
        Domain(
            "animal",
            "natural_image",
            tuple(S.ANIMAL_CLASSES[i] for i in UPSTREAM_ANIMALS),
            "animal-shape-mnist",
        ),
        Domain("photo", "natural_image", UPSTREAM_PHOTOS, "scikit-image / scikit-learn sample photos"),
        Domain("digit", "symbol", tuple(str(d) for d in range(5)), "scikit-learn digits"),
        Domain("glyph", "symbol", tuple(f"g{i:02d}" for i in range(40)), "procedural stroke glyphs"),
        Domain("sprite", "object_scene", sprite, "procedural dSprites"),
        Domain("scene", "object_scene", scene, "procedural CLEVR-like scenes"),
        Domain("grating", "pattern", grating, "procedural gratings"),
        Domain("lattice", "pattern", lattice, "procedural lattices"),
        Domain("palette", "pattern", tuple(f"p{i}" for i in range(10)), "procedural palette mosaics"),
    ]


MIRRORED_GRATINGS = (45, 135)  # a horizontal mirror turns a grating at 45 degrees into one at 135, and back


def mirror_keeps_label(classes: Sequence[str]) -> np.ndarray:
    """Per upstream class (``"domain/class"`` ids): whether a horizontal mirror keeps an image's label, so that
    upstream training may flip it (BiT flips every upstream image). False for the gratings at 45 and 135 degrees,
    which a mirror swaps; every other class keeps its label in a mirror (animals, photos, shapes, lattices and
    palettes are mirror-symmetric classes; a mirrored digit or glyph is no other class's image)."""
    swapped = tuple(f"grating/o{o}_" for o in MIRRORED_GRATINGS)
    return np.array([not c.startswith(swapped) for c in classes], dtype=bool)


def build_hierarchy(doms: Sequence[Domain]) -> LabelHierarchy:
    edges = [
        ("entity", "natural_image"),
        ("entity", "symbol"),
        ("entity", "geometric"),
        ("geometric", "object_scene"),
        ("geometric", "pattern"),
    ]
    for d in doms:
        edges.append((d.parent, d.name))
        edges += [(d.name, f"{d.name}/{c}") for c in d.classes]
    return LabelHierarchy.from_edges(edges)


# -- rendering upstream -------------------------------------------------------------------------------------------
def source_pool(n_total: int, frac: tuple[float, float], seed: int) -> np.ndarray:
    """A disjoint slice of a fixed permutation of ``range(n_total)``."""
    perm = np.random.default_rng(seed).permutation(n_total)
    return perm[int(frac[0] * n_total) : int(frac[1] * n_total)]


def domain_labels(d: Domain, per_class: int) -> np.ndarray:
    """A domain's upstream labels (``per_class`` of each class, in class order), known without rendering."""
    return np.repeat(np.arange(len(d.classes)), per_class)


def render_upstream_domain(d: Domain, split: str, per_class: int, rng: np.random.Generator) -> ArraySplit:
    k = len(d.classes)
    labels = domain_labels(d, per_class)
    n = len(labels)
    src = np.array([f"{d.name}:{split}:{rng.integers(1 << 62)}:{i}" for i in range(n)])
    if d.name == "animal":
        images, lab = S.animal_silhouettes()
        picks = []
        for c in UPSTREAM_ANIMALS:
            pool = np.flatnonzero(lab == c)[source_pool(1000, UPSTREAM_POOLS[split], 7)]
            picks.append(rng.choice(pool, per_class, replace=per_class > len(pool)))
        idx = np.concatenate(picks)
        imgs = P.silhouettes(rng, images[idx], np.zeros(n, int))  # upstream sees upright animals only
        src = np.array([f"animal:{i}" for i in idx])
    elif d.name == "digit":
        images, lab = S.handwritten_digits()
        picks = []
        for c in range(5):
            members = np.flatnonzero(lab == c)
            pool = members[source_pool(len(members), UPSTREAM_POOLS[split], 11)]
            picks.append(rng.choice(pool, per_class, replace=per_class > len(pool)))
        idx = np.concatenate(picks)
        imgs = P.digits(rng, images[idx], np.zeros(n, bool))
        src = np.array([f"digit:{i}" for i in idx])
    elif d.name == "photo":
        parts, srcs = [], []
        for name in d.classes:
            tiles, boxes = P.photo_tiles(rng, S.photo(name), per_class, UPSTREAM_BANDS[split])
            parts.append(tiles)
            srcs += [f"photo:{name}:x={b[1]}-{b[1] + b[3]}" for b in boxes]
        imgs, src = np.concatenate(parts), np.array(srcs)
    elif d.name == "glyph":
        imgs = P.glyphs(rng, P.glyph_prototypes(k, GLYPH_SEED_UP), labels)
    elif d.name == "sprite":
        shape, band = labels // 3, labels % 3
        scale_idx = band * 2 + rng.integers(0, 2, n)
        imgs = P.dsprites(
            rng,
            shape,
            P.DSPRITES_SCALES[scale_idx],
            rng.choice(P.DSPRITES_ORIENTATIONS, n),
            rng.choice(P.DSPRITES_POSITIONS, n),
            rng.choice(P.DSPRITES_POSITIONS, n),
        )
    elif d.name == "scene":
        imgs, labels = _scenes_by_label(rng, n, per_class, k)
    elif d.name == "grating":
        o = np.array(GRATING_UP[0], float)[labels // 4]
        f = np.array(GRATING_UP[1])[labels % 4]
        imgs = P.gratings(rng, o, f)
    elif d.name == "lattice":
        imgs = P.lattices(rng, labels // 2, np.array([5.0, 9.0])[labels % 2])
    elif d.name == "palette":
        imgs = P.palettes(rng, labels, P.palette_table(k))
    else:
        raise KeyError(f"no renderer for domain {d.name!r}")
    return ArraySplit(imgs, labels.astype(np.int64), src)


def _scenes_by_label(
    rng: np.random.Generator, n: int, per_class: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """CLEVR-like scenes (1-6 objects) labelled by the nearest object's shape x size, balanced."""
    got: list[list[np.ndarray]] = [[] for _ in range(k)]
    for _ in range(200):
        imgs, meta = P.clevr(rng, rng.integers(1, 7, 256))
        lab = (meta["nearest_shape"] * 2 + meta["nearest_size"]).astype(int)
        for c in range(k):
            need = per_class - sum(len(a) for a in got[c])
            if need > 0:
                got[c].append(imgs[lab == c][:need])
        if all(sum(len(a) for a in g) >= per_class for g in got):
            break
    images = np.concatenate([np.concatenate(g)[:per_class] for g in got])
    return images, np.repeat(np.arange(k), per_class)
