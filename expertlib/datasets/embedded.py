"""The embedded benchmark: a small world in which the paper's experiment means something, built offline.

Upstream: 9 domains, 107 leaf classes, in a 4-level hierarchy with nested candidate experts::

    entity
    ├── natural_image ── animal (6 real silhouettes), photo (7 real photographs, as tiles)
    ├── symbol ───────── digit (5 real handwritten digits), glyph (40 stroke glyphs)
    └── geometric
        ├── object_scene ── sprite (dSprites: 3 shapes x 3 scale bands), scene (CLEVR-like: nearest object)
        └── pattern ─────── grating (4 orientations x 4 frequencies), lattice (8), palette (10)

Downstream: 19 tasks in VTAB's three groups (as VTAB-1k's 19: natural 7, specialized 4, structured 8), each
with 800 train + 200 val (VTAB-1k's train800val200) and a test split, built only from classes or factors that
upstream never labels. The 12 core tasks (:data:`CORE_TASKS`, what ``EmbeddedSpec(tasks=None)`` builds and the
cpu scale runs):

- natural: held-out animals x 3 rotations (12), digits 5-9 x mirrored (10), 10 new photographs (10),
  20 new glyphs (20);
- specialized: EuroSAT-like land cover (10), PCam-like tissue (2), retinopathy-like grades (5);
- structured: dSprites x position (16 bins) and orientation (16 bins), CLEVR-like count 3-10 (8) and
  nearest-object distance (6 bins), held-out grating orientation x frequency (12).

and 7 more, built only when a spec names them (:data:`VTAB_LIKE_TASKS` lists all 19 in VTAB's order):

- natural: SVHN-like printed letters on clutter (10), DTD-like textures (12), pets-like held-out animals x
  coat (12);
- specialized: RESISC-like aerial scenes (12);
- structured: smallNORB-like toys' azimuth (18) and elevation (9), KITTI-like nearest-vehicle distance (4).

No leakage: real images are split into disjoint pools of source images (animals, digits) or disjoint
horizontal bands of each photograph (train 0-55%, val 55-70%, test 70-100% of the width); the toys are split
by instance (as smallNORB's train and test toys differ); procedural images are drawn from independent seeds per
split. Each example carries a ``source`` id that the tests use to check this. The build is deterministic from
the seed and cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from expertlib.datasets import procedural as P
from expertlib.datasets import sources as S
from expertlib.datasets.batches import ArrayData
from expertlib.datasets.benchmark import Benchmark, TaskInfo, check_task_split
from expertlib.hierarchy import LabelHierarchy
from expertlib.runtime import atomic_write

BUILD_VERSION = 2  # bump when rendering changes, so caches rebuild

UPSTREAM_PHOTOS = ("brick", "camera", "coffee", "grass", "hubble", "rocket", "clock")
TASK_PHOTOS = ("astronaut", "chelsea", "coins", "gravel", "ihc", "retina", "text", "cell", "china", "flower")
UPSTREAM_ANIMALS = (0, 1, 2, 3, 4, 5)  # bear bird cat cow dog elephant
TASK_ANIMALS = (6, 7, 8, 9)  # giraffe horse sheep zebra
GRATING_UP = ([0, 45, 90, 135], [2.0, 3.5, 5.0, 7.0])
GRATING_TASK = ([22.5, 67.5, 112.5, 157.5], [2.75, 4.25, 6.0])
GLYPH_SEED_UP, GLYPH_SEED_TASK = 101, 202
SCENE_DIST_BINS = np.array([0.0, 0.1, 0.2, 0.32, 0.45, 0.62, 1.01])
TASK_LETTERS = "ABCDEFGHJK"  # printed capitals: upstream labels digits and stroke glyphs, never letters
TOY_INSTANCES = {"train": (0, 5), "val": (5, 7), "test": (7, 10)}  # of each category's 10 toys

SPLIT_BANDS = {"train": (0.0, 0.55), "val": (0.55, 0.70), "test": (0.70, 1.0)}  # downstream photo bands
UPSTREAM_BANDS = {"train": (0.0, 0.75), "test": (0.75, 1.0)}
POOL_FRACTIONS = {"train": (0.0, 0.6), "val": (0.6, 0.75), "test": (0.75, 1.0)}  # downstream source pools
UPSTREAM_POOLS = {"train": (0.0, 0.8), "test": (0.8, 1.0)}


@dataclass(frozen=True)
class EmbeddedSpec:
    """Sizes of the embedded benchmark (the presets in :mod:`expertlib.presets` fill these)."""

    seed: int = 0
    upstream_train_per_class: int = 200
    upstream_test_per_class: int = 40
    task_train: int = 800
    task_val: int = 200
    task_test: int = 1000
    tasks: tuple[str, ...] | None = None  # None: CORE_TASKS (the 12 the cpu scale runs)

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "version": BUILD_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


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
class TaskData:
    info: TaskInfo
    train: ArraySplit
    val: ArraySplit
    test: ArraySplit

    @property
    def train_val(self) -> ArraySplit:
        """VTAB-1k's train800val200: what the proxies and the final fine-tuning see."""
        return ArraySplit.concat([self.train, self.val])


@dataclass
class Domain:
    name: str
    parent: str
    classes: tuple[str, ...]  # class names within the domain
    source: str  # where its images come from (README table)


@dataclass
class EmbeddedBenchmark(Benchmark):
    """The embedded benchmark in memory; implements :class:`~expertlib.datasets.benchmark.Benchmark`."""

    spec: EmbeddedSpec
    hierarchy: LabelHierarchy
    classes: list[str]  # upstream label ids ("animal/bear"), index = label
    domains: list[Domain]
    upstream_splits: dict[str, ArraySplit]  # "train", "test"
    tasks: dict[str, TaskData] = field(default_factory=dict)
    resolution: tuple[int, int] = (36, 32)
    name: str = "embedded"

    @property
    def upstream(self) -> dict[str, ArraySplit]:  # the raw arrays, by split
        return self.upstream_splits

    def upstream_data(self, split: str) -> ArrayData:
        s = self.upstream_splits[split]
        return ArrayData(s.images, s.labels, *self.resolution, flip=True)

    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]

    @property
    def domain_of_label(self) -> np.ndarray:
        names = self.domain_names
        return np.array([names.index(c.split("/")[0]) for c in self.classes])

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    def task_info(self, task: str) -> TaskInfo:
        return self.tasks[task].info

    def task(self, task: str, split: str) -> ArrayData:
        check_task_split(split)
        td = self.tasks[task]
        s = {"train800": td.train, "val200": td.val, "train800val200": td.train_val, "test": td.test}[split]
        return ArrayData(s.images, s.labels, *self.resolution, td.info.flip)

    def samples(self, per_row: int = 12) -> dict[str, np.ndarray]:
        rows = {}
        train = self.upstream_splits["train"]
        dom = self.domain_of_label[train.labels]
        for i, d in enumerate(self.domains):
            idx = np.flatnonzero(dom == i)
            rows[f"up: {d.name}"] = train.images[idx[np.linspace(0, len(idx) - 1, per_row).astype(int)]]
        for t, td in self.tasks.items():
            rows[f"task: {t}"] = td.train.images[:per_row]
        return rows

    def summary(self, accuracy: dict[str, float] | None = None) -> pd.DataFrame:
        return data_summary(self, accuracy)


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
def _pool(n_total: int, frac: tuple[float, float], seed: int) -> np.ndarray:
    """A disjoint slice of a fixed permutation of ``range(n_total)``."""
    perm = np.random.default_rng(seed).permutation(n_total)
    return perm[int(frac[0] * n_total) : int(frac[1] * n_total)]


def _render_upstream_domain(d: Domain, split: str, per_class: int, rng: np.random.Generator) -> ArraySplit:
    k = len(d.classes)
    labels = np.repeat(np.arange(k), per_class)
    n = len(labels)
    src = np.array([f"{d.name}:{split}:{rng.integers(1 << 62)}:{i}" for i in range(n)])
    if d.name == "animal":
        images, lab = S.animal_silhouettes()
        picks = []
        for c in UPSTREAM_ANIMALS:
            pool = np.flatnonzero(lab == c)[_pool(1000, UPSTREAM_POOLS[split], 7)]
            picks.append(rng.choice(pool, per_class, replace=per_class > len(pool)))
        idx = np.concatenate(picks)
        imgs = P.silhouettes(rng, images[idx], np.zeros(n, int))  # upstream sees upright animals only
        src = np.array([f"animal:{i}" for i in idx])
    elif d.name == "digit":
        images, lab = S.handwritten_digits()
        picks = []
        for c in range(5):
            members = np.flatnonzero(lab == c)
            pool = members[_pool(len(members), UPSTREAM_POOLS[split], 11)]
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


# -- rendering downstream tasks ------------------------------------------------------------------------------------
def _task_infos() -> dict[str, TaskInfo]:
    animals = [S.ANIMAL_CLASSES[i] for i in TASK_ANIMALS]
    return {
        t.name: t
        for t in [
            TaskInfo("animal_pose", "natural", tuple(f"{a}_rot{r}" for a in animals for r in (0, 90, 270)), "animal",
                     False, "held-out animals (giraffe, horse, sheep, zebra) x rotation 0/90/270 degrees"),
            TaskInfo("digit_mirror", "natural", tuple(f"{d}{m}" for d in range(5, 10) for m in ("", "_mirrored")),
                     "digit", False, "held-out digits 5-9, plain or mirrored"),
            TaskInfo("photo_new", "natural", TASK_PHOTOS, "photo", True, "tiles of 10 photographs upstream never saw"),
            TaskInfo("glyph_new", "natural", tuple(f"h{i:02d}" for i in range(20)), "glyph", False,
                     "20 new stroke glyphs (Omniglot-like)"),
            TaskInfo("land_cover", "specialized", P.LAND_COVER, None, True, "EuroSAT-like land-cover classes"),
            TaskInfo("tissue", "specialized", ("normal", "tumour"), None, True, "PCam-like tissue patches"),
            TaskInfo("retinopathy", "specialized", tuple(f"grade{g}" for g in range(5)), None, True,
                     "retinopathy-like fundus crops graded by lesion load"),
            TaskInfo("sprite_xpos", "structured", tuple(f"x{b}" for b in range(16)), "sprite", False,
                     "dSprites x position, 16 bins (VTAB dsprites label_x_position)"),
            TaskInfo("sprite_orient", "structured", tuple(f"o{b}" for b in range(16)), "sprite", False,
                     "dSprites orientation, 16 bins (VTAB dsprites label_orientation)"),
            TaskInfo("scene_count", "structured", tuple(str(c) for c in range(3, 11)), "scene", True,
                     "CLEVR-like object count 3-10 (VTAB clevr count_all)"),
            TaskInfo("scene_dist", "structured", tuple(f"d{b}" for b in range(6)), "scene", True,
                     "CLEVR-like nearest-object distance, 6 bins (VTAB clevr closest_object_distance)"),
            TaskInfo("grating_new", "structured",
                     tuple(f"o{o}_f{f}" for o in GRATING_TASK[0] for f in GRATING_TASK[1]), "grating", False,
                     "gratings at held-out orientations x frequencies"),
            # the VTAB-like extension: built only when a spec names them
            TaskInfo("street_letters", "natural", tuple(TASK_LETTERS), "symbol", False,
                     "printed capitals A-K in 19 typefaces, flanked by neighbours, on clutter (VTAB svhn)"),
            TaskInfo("texture", "natural", P.TEXTURES, "pattern", True,
                     "12 describable textures upstream's patterns lack (VTAB dtd)"),
            TaskInfo("animal_coat", "natural", tuple(f"{a}_{c}" for a in animals for c in P.COATS), "animal", True,
                     "held-out animals x coat plain/spotted/striped, fine-grained (VTAB oxford_iiit_pet)"),
            TaskInfo("aerial_scene", "specialized", P.AERIAL_SCENES, None, True,
                     "RESISC-like aerial scenes the land-cover task lacks (VTAB resisc45)"),
            TaskInfo("toy_azimuth", "structured", tuple(f"az{a}" for a in P.TOY_AZIMUTHS), None, False,
                     "smallNORB-like toys, azimuth 18 x 20 degrees (VTAB smallnorb label_azimuth)"),
            TaskInfo("toy_elevation", "structured", tuple(f"el{e}" for e in P.TOY_ELEVATIONS), None, True,
                     "smallNORB-like toys, elevation 30-70 degrees (VTAB smallnorb label_elevation)"),
            TaskInfo("road_dist", "structured", ("under8m", "8to20m", "over20m", "none"), "scene", True,
                     "KITTI-like nearest vehicle's distance (VTAB kitti closest_vehicle_distance)"),
        ]
    }  # fmt: skip


TASKS: dict[str, TaskInfo] = _task_infos()
# What EmbeddedSpec(tasks=None) builds: the 12 tasks the cpu scale and its committed results use.
CORE_TASKS = (
    "animal_pose", "digit_mirror", "photo_new", "glyph_new",
    "land_cover", "tissue", "retinopathy",
    "sprite_xpos", "sprite_orient", "scene_count", "scene_dist", "grating_new",
)  # fmt: skip
# All 19 in VTAB-1k's group order and counts (natural 7, specialized 4, structured 8), for the gpu scale.
VTAB_LIKE_TASKS = (
    "animal_pose", "digit_mirror", "photo_new", "glyph_new", "street_letters", "texture", "animal_coat",
    "land_cover", "tissue", "retinopathy", "aerial_scene",
    "sprite_xpos", "sprite_orient", "scene_count", "scene_dist", "grating_new", "toy_azimuth", "toy_elevation",
    "road_dist",
)  # fmt: skip


def _balanced(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % k)


def _render_task_split(info: TaskInfo, split: str, n: int, rng: np.random.Generator) -> ArraySplit:
    k = info.num_classes
    labels = _balanced(n, k, rng)
    src = np.array([f"{info.name}:{split}:{rng.integers(1 << 62)}:{i}" for i in range(n)])
    name = info.name
    if name == "animal_pose":
        images, lab = S.animal_silhouettes()
        animal, rot = labels // 3, np.array([0, 1, 3])[labels % 3]
        idx = np.empty(n, int)
        for a, c in enumerate(TASK_ANIMALS):
            pool = np.flatnonzero(lab == c)[_pool(1000, POOL_FRACTIONS[split], 13)]
            sel = animal == a
            idx[sel] = rng.choice(pool, sel.sum(), replace=sel.sum() > len(pool))
        imgs = P.silhouettes(rng, images[idx], rot)
        src = np.array([f"animal:{i}" for i in idx])
    elif name == "digit_mirror":
        images, lab = S.handwritten_digits()
        digit, mirror = 5 + labels // 2, labels % 2 == 1
        idx = np.empty(n, int)
        for d in range(5, 10):
            members = np.flatnonzero(lab == d)
            pool = members[_pool(len(members), POOL_FRACTIONS[split], 17)]
            sel = digit == d
            idx[sel] = rng.choice(pool, sel.sum(), replace=sel.sum() > len(pool))
        imgs = P.digits(rng, images[idx], mirror)
        src = np.array([f"digit:{i}" for i in idx])
    elif name == "photo_new":
        imgs = np.empty((n, P.SIZE, P.SIZE, 3), np.uint8)
        src = np.empty(n, dtype=object)
        for c, photo_name in enumerate(info.classes):
            sel = np.flatnonzero(labels == c)
            tiles, boxes = P.photo_tiles(rng, S.photo(photo_name), len(sel), SPLIT_BANDS[split])
            imgs[sel] = tiles
            src[sel] = [f"photo:{photo_name}:x={b[1]}-{b[1] + b[3]}" for b in boxes]
        src = src.astype(str)
    elif name == "glyph_new":
        imgs = P.glyphs(rng, P.glyph_prototypes(k, GLYPH_SEED_TASK), labels)
    elif name == "land_cover":
        imgs = P.land_cover(rng, labels)
    elif name == "tissue":
        imgs = P.tissue(rng, labels)
    elif name == "retinopathy":
        imgs = P.fundus(rng, labels)
    elif name in ("sprite_xpos", "sprite_orient"):
        if name == "sprite_xpos":
            pos_x = P.DSPRITES_POSITIONS[labels * 2 + rng.integers(0, 2, n)]
            orient = rng.choice(P.DSPRITES_ORIENTATIONS, n)
        else:
            pos_x = rng.choice(P.DSPRITES_POSITIONS, n)
            orient = P.DSPRITES_ORIENTATIONS[(labels * 40) // 16 + rng.integers(0, 2, n)]
        imgs = P.dsprites(
            rng,
            rng.integers(0, 3, n),
            rng.choice(P.DSPRITES_SCALES, n),
            orient,
            pos_x,
            rng.choice(P.DSPRITES_POSITIONS, n),
        )
    elif name == "scene_count":
        imgs, _ = P.clevr(rng, labels + 3)
    elif name == "scene_dist":
        imgs = _scenes_by_distance(rng, labels)
    elif name == "grating_new":
        o = np.array(GRATING_TASK[0])[labels // 3]
        f = np.array(GRATING_TASK[1])[labels % 3]
        imgs = P.gratings(rng, o, f)
    elif name == "street_letters":
        imgs = P.printed_characters(rng, S.printed_glyphs(TASK_LETTERS), labels)
    elif name == "texture":
        imgs = P.textures(rng, labels)
    elif name == "animal_coat":
        images, lab = S.animal_silhouettes()
        animal, coat = labels // len(P.COATS), labels % len(P.COATS)
        idx = np.empty(n, int)
        for a, c in enumerate(TASK_ANIMALS):  # animal_pose's pools: an image keeps its split in every task
            pool = np.flatnonzero(lab == c)[_pool(1000, POOL_FRACTIONS[split], 13)]
            sel = animal == a
            idx[sel] = rng.choice(pool, sel.sum(), replace=sel.sum() > len(pool))
        imgs = P.coated_silhouettes(rng, images[idx], coat)
        src = np.array([f"animal:{i}" for i in idx])
    elif name == "aerial_scene":
        imgs = P.aerial_scenes(rng, labels)
    elif name in ("toy_azimuth", "toy_elevation"):
        imgs, src = _toys(rng, labels, split, azimuth=name == "toy_azimuth")
    elif name == "road_dist":
        bins = np.array(P.ROAD_DISTANCE_BINS)
        near = np.minimum(labels, len(bins) - 2)
        imgs = P.road_scenes(
            rng, np.where(labels < len(bins) - 1, rng.uniform(bins[near], bins[near + 1]), np.inf)
        )
    else:
        raise KeyError(f"no renderer for task {name!r}")
    return ArraySplit(imgs, labels.astype(np.int64), src)


def _scenes_by_distance(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """CLEVR-like scenes of 3-10 objects whose nearest object lies in distance bin ``labels[i]``."""
    lo, hi = SCENE_DIST_BINS[labels], np.minimum(SCENE_DIST_BINS[labels + 1], 1.0)
    depth = rng.uniform(lo, hi)
    y0, y1 = P.CLEVR_Y
    imgs, _ = P.clevr(rng, rng.integers(3, 11, len(labels)), front_y=y1 - depth * (y1 - y0))
    return imgs


def _toys(
    rng: np.random.Generator, labels: np.ndarray, split: str, azimuth: bool
) -> tuple[np.ndarray, np.ndarray]:
    """smallNORB-like views labelled by azimuth (or elevation), of the toys of ``split``'s instance pool."""
    n = len(labels)
    toys = P.toy_instances()
    cat = rng.integers(len(P.TOY_CATEGORIES), size=n)
    inst = rng.integers(*TOY_INSTANCES[split], size=n)
    if azimuth:
        az, el = P.TOY_AZIMUTHS[labels], rng.choice(P.TOY_ELEVATIONS, n)
    else:
        az, el = rng.choice(P.TOY_AZIMUTHS, n), P.TOY_ELEVATIONS[labels]
    src = np.array([f"toy:{P.TOY_CATEGORIES[c]}:{k}" for c, k in zip(cat, inst, strict=True)])
    return P.toys(rng, toys[cat, inst], az, el), src


# -- building and caching ----------------------------------------------------------------------------------------
def _rng(seed: int, *keys: str) -> np.random.Generator:
    digest = hashlib.sha256("/".join((str(seed), *keys)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def task_names(spec: EmbeddedSpec) -> list[str]:
    names = list(spec.tasks) if spec.tasks is not None else list(CORE_TASKS)
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise KeyError(f"unknown embedded task(s) {unknown}; known tasks: {', '.join(TASKS)}")
    return names


def build_task(spec: EmbeddedSpec, task: str) -> TaskData:
    """One task's train, val and test splits at ``spec``'s sizes, without upstream (each split from its own
    seed, so a task's arrays do not depend on which other tasks are built)."""
    if task not in TASKS:
        raise KeyError(f"unknown embedded task {task!r}; known tasks: {', '.join(TASKS)}")
    sizes = {"train": spec.task_train, "val": spec.task_val, "test": spec.task_test}
    splits = {
        s: _render_task_split(TASKS[task], s, n, _rng(spec.seed, "task", task, s)) for s, n in sizes.items()
    }
    return TaskData(TASKS[task], splits["train"], splits["val"], splits["test"])


def build(
    spec: EmbeddedSpec = EmbeddedSpec(), cache_dir: str | os.PathLike | None = None, progress: bool = False
) -> EmbeddedBenchmark:
    """Build (or load from ``cache_dir``) the embedded benchmark for ``spec``."""
    doms = domains()
    hierarchy = build_hierarchy(doms)
    classes = [f"{d.name}/{c}" for d in doms for c in d.classes]
    names = task_names(spec)
    cache = Path(cache_dir) / f"embedded-{spec.key()}" if cache_dir is not None else None
    if cache is not None and (cache / "complete.json").is_file():
        upstream = {s: _load_split(cache / f"upstream_{s}.npz") for s in ("train", "test")}
        tasks = {
            t: TaskData(
                TASKS[t], *(_load_split(cache / f"task_{t}_{s}.npz") for s in ("train", "val", "test"))
            )
            for t in names
        }
        return EmbeddedBenchmark(spec, hierarchy, classes, doms, upstream, tasks)

    from tqdm import tqdm

    upstream: dict[str, ArraySplit] = {}
    offsets = np.cumsum([0] + [len(d.classes) for d in doms])
    for split, per_class in (
        ("train", spec.upstream_train_per_class),
        ("test", spec.upstream_test_per_class),
    ):
        parts = []
        for d, off in tqdm(
            list(zip(doms, offsets, strict=False)), desc=f"upstream {split}", disable=not progress
        ):
            part = _render_upstream_domain(d, split, per_class, _rng(spec.seed, "upstream", d.name, split))
            part.labels = part.labels + off
            parts.append(part)
        upstream[split] = ArraySplit.concat(parts)
    tasks = {t: build_task(spec, t) for t in tqdm(names, desc="tasks", disable=not progress)}
    bench = EmbeddedBenchmark(spec, hierarchy, classes, doms, upstream, tasks)
    if cache is not None:
        for s, a in upstream.items():
            _save_split(cache / f"upstream_{s}.npz", a)
        for t, td in tasks.items():
            for s in ("train", "val", "test"):
                _save_split(cache / f"task_{t}_{s}.npz", getattr(td, s))
        atomic_write(cache / "complete.json", lambda p: p.write_text(json.dumps(asdict(spec))))
    return bench


def _save_split(path: Path, split: ArraySplit) -> None:
    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(fh, images=split.images, labels=split.labels, source=split.source.astype(str))

    atomic_write(path, write)


def _load_split(path: Path) -> ArraySplit:
    with np.load(path) as z:
        return ArraySplit(z["images"], z["labels"], z["source"])


# -- statistics ------------------------------------------------------------------------------------------------
def data_summary(bench: EmbeddedBenchmark, accuracy: dict[str, float] | None = None) -> pd.DataFrame:
    """Per domain and per task: classes, sizes, chance level, and (when given) B's fine-tuned accuracy."""
    rows = []
    dom_of = bench.domain_of_label
    for i, d in enumerate(bench.domains):
        rows.append(
            {
                "kind": "upstream_domain",
                "name": d.name,
                "group": d.parent,
                "classes": len(d.classes),
                "train": int((dom_of[bench.upstream["train"].labels] == i).sum()),
                "val": 0,
                "test": int((dom_of[bench.upstream["test"].labels] == i).sum()),
                "chance": 1 / len(d.classes),
                "relates_to": "",
                "source": d.source,
            }
        )
    for t, td in bench.tasks.items():
        counts = np.bincount(td.test.labels, minlength=td.info.num_classes)
        rows.append(
            {
                "kind": "task",
                "name": t,
                "group": td.info.group,
                "classes": td.info.num_classes,
                "train": len(td.train),
                "val": len(td.val),
                "test": len(td.test),
                "chance": float(counts.max() / counts.sum()),
                "relates_to": td.info.relates_to or "none",
                "source": td.info.description,
            }
        )
    frame = pd.DataFrame(rows)
    if accuracy is not None:
        frame["generic_finetuned_accuracy"] = frame["name"].map(accuracy)
    return frame
