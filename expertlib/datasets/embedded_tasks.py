"""The embedded benchmark's downstream tasks: the registry (12 core tasks, and 7 more that widen it to VTAB-1k's
19) and the rendering of each split from classes or factors that upstream never labels."""

from __future__ import annotations

import numpy as np

from expertlib.datasets import procedural as P
from expertlib.datasets import procedural_natural as PN
from expertlib.datasets import procedural_specialized as PS
from expertlib.datasets import procedural_structured as PT
from expertlib.datasets import sources as S
from expertlib.datasets.benchmark import TaskInfo
from expertlib.datasets.embedded_world import ArraySplit, source_pool

TASK_PHOTOS = ("astronaut", "chelsea", "coins", "gravel", "ihc", "retina", "text", "cell", "china", "flower")
TASK_ANIMALS = (6, 7, 8, 9)  # giraffe horse sheep zebra
GRATING_TASK = ([22.5, 67.5, 112.5, 157.5], [2.75, 4.25, 6.0])
GLYPH_SEED_TASK = 202  # upstream's glyphs: GLYPH_SEED_UP, another seed
SCENE_DIST_BINS = np.array([0.0, 0.1, 0.2, 0.32, 0.45, 0.62, 1.01])
TASK_LETTERS = "ABCDEFGHJK"  # printed capitals: upstream labels digits and stroke glyphs, never letters
TOY_INSTANCES = {"train": (0, 5), "val": (5, 7), "test": (7, 10)}  # of each category's 10 toys
SPLIT_BANDS = {"train": (0.0, 0.55), "val": (0.55, 0.70), "test": (0.70, 1.0)}  # downstream photo bands
POOL_FRACTIONS = {"train": (0.0, 0.6), "val": (0.6, 0.75), "test": (0.75, 1.0)}  # downstream source pools


# -- rendering downstream tasks ------------------------------------------------------------------------------------
# Augmentation per task, by BiT's rule for VTAB-1k (the BiT paper's Supplementary F): no random flip where a mirror
# changes the label (rotations, mirrored digits, chiral glyphs and letters, x position, orientations, azimuth), no
# random crop where the label is a count, a distance or a position, which a crop can cut or move: the x position,
# the object count, the nearest object's and vehicle's distance (as VTAB's dSprites-location, Clevr-count,
# Clevr-distance and KITTI-distance), and the retinopathy grades, whose grades 0-2 are counts of microaneurysms
# spread over the whole frame (a crop can cut a grade-1 image's only one; VTAB's real fundus photographs keep the
# crop). Kept: orientation, azimuth and elevation (a window shows the same view), textures, tissue (a density),
# gratings' frequency (cycles per pixel survive a window; the precrop zoom that every task gets shifts it by 11%,
# against classes 1.4x apart).
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
            TaskInfo("land_cover", "specialized", PS.LAND_COVER, None, True, "EuroSAT-like land-cover classes"),
            TaskInfo("tissue", "specialized", ("normal", "tumour"), None, True, "PCam-like tissue patches"),
            TaskInfo("retinopathy", "specialized", tuple(f"grade{g}" for g in range(5)), None, True,
                     "retinopathy-like fundus crops graded by lesion load", crop=False),
            TaskInfo("sprite_xpos", "structured", tuple(f"x{b}" for b in range(16)), "sprite", False,
                     "dSprites x position, 16 bins (VTAB dsprites label_x_position)", crop=False),
            TaskInfo("sprite_orient", "structured", tuple(f"o{b}" for b in range(16)), "sprite", False,
                     "dSprites orientation, 16 bins (VTAB dsprites label_orientation)"),
            TaskInfo("scene_count", "structured", tuple(str(c) for c in range(3, 11)), "scene", True,
                     "CLEVR-like object count 3-10 (VTAB clevr count_all)", crop=False),
            TaskInfo("scene_dist", "structured", tuple(f"d{b}" for b in range(6)), "scene", True,
                     "CLEVR-like nearest-object distance, 6 bins (VTAB clevr closest_object_distance)", crop=False),
            TaskInfo("grating_new", "structured",
                     tuple(f"o{o}_f{f}" for o in GRATING_TASK[0] for f in GRATING_TASK[1]), "grating", False,
                     "gratings at held-out orientations x frequencies"),
            # the VTAB-like extension: built only when a spec names them
            TaskInfo("street_letters", "natural", tuple(TASK_LETTERS), "symbol", False,
                     "printed capitals A-K in 19 typefaces, flanked by neighbours, on clutter (VTAB svhn)"),
            TaskInfo("texture", "natural", PN.TEXTURES, "pattern", True,
                     "12 describable textures upstream's patterns lack (VTAB dtd)"),
            TaskInfo("animal_coat", "natural", tuple(f"{a}_{c}" for a in animals for c in PN.COATS), "animal", True,
                     "held-out animals x coat plain/spotted/striped, fine-grained (VTAB oxford_iiit_pet)"),
            TaskInfo("aerial_scene", "specialized", PS.AERIAL_SCENES, None, True,
                     "RESISC-like aerial scenes the land-cover task lacks (VTAB resisc45)"),
            TaskInfo("toy_azimuth", "structured", tuple(f"az{a}" for a in PT.TOY_AZIMUTHS), None, False,
                     "smallNORB-like toys, azimuth 18 x 20 degrees (VTAB smallnorb label_azimuth)"),
            TaskInfo("toy_elevation", "structured", tuple(f"el{e}" for e in PT.TOY_ELEVATIONS), None, True,
                     "smallNORB-like toys, elevation 30-70 degrees (VTAB smallnorb label_elevation)"),
            TaskInfo("road_dist", "structured", ("under8m", "8to20m", "over20m", "none"), "scene", True,
                     "KITTI-like nearest vehicle's distance (VTAB kitti closest_vehicle_distance)", crop=False),
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


def task_split_labels(info: TaskInfo, n: int, rng: np.random.Generator) -> np.ndarray:
    """A split's labels, balanced over the task's classes: the first draw from the split's ``rng``, so they are
    known without rendering a single image (a report that reads only labels renders nothing)."""
    return rng.permutation(np.arange(n) % info.num_classes)


def render_task_split(info: TaskInfo, split: str, n: int, rng: np.random.Generator) -> ArraySplit:
    k, labels = info.num_classes, task_split_labels(info, n, rng)
    src = np.array([f"{info.name}:{split}:{rng.integers(1 << 62)}:{i}" for i in range(n)])
    name = info.name
    if name == "animal_pose":
        images, lab = S.animal_silhouettes()
        animal, rot = labels // 3, np.array([0, 1, 3])[labels % 3]
        idx = held_out_animals(rng, lab, animal, split)
        imgs = P.silhouettes(rng, images[idx], rot)
        src = np.array([f"animal:{i}" for i in idx])
    elif name == "digit_mirror":
        images, lab = S.handwritten_digits()
        digit, mirror = 5 + labels // 2, labels % 2 == 1
        idx = np.empty(n, int)
        for d in range(5, 10):
            members = np.flatnonzero(lab == d)
            pool = members[source_pool(len(members), POOL_FRACTIONS[split], 17)]
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
        imgs = PS.land_cover(rng, labels)
    elif name == "tissue":
        imgs = PS.tissue(rng, labels)
    elif name == "retinopathy":
        imgs = PS.fundus(rng, labels)
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
        imgs = PN.printed_characters(rng, S.printed_glyphs(TASK_LETTERS), labels)
    elif name == "texture":
        imgs = PN.textures(rng, labels)
    elif name == "animal_coat":
        images, lab = S.animal_silhouettes()
        animal, coat = labels // len(PN.COATS), labels % len(PN.COATS)
        idx = held_out_animals(rng, lab, animal, split)  # animal_pose's pools: an image keeps its split
        imgs = PN.coated_silhouettes(rng, images[idx], coat)
        src = np.array([f"animal:{i}" for i in idx])
    elif name == "aerial_scene":
        imgs = PS.aerial_scenes(rng, labels)
    elif name in ("toy_azimuth", "toy_elevation"):
        imgs, src = _toys(rng, labels, split, azimuth=name == "toy_azimuth")
    elif name == "road_dist":
        bins = np.array(PT.ROAD_DISTANCE_BINS)
        near = np.minimum(labels, len(bins) - 2)
        imgs = PT.road_scenes(
            rng, np.where(labels < len(bins) - 1, rng.uniform(bins[near], bins[near + 1]), np.inf)
        )
    else:
        raise KeyError(f"no renderer for task {name!r}")
    return ArraySplit(imgs, labels.astype(np.int64), src)


def held_out_animals(rng: np.random.Generator, source_labels: np.ndarray, animal: np.ndarray, split: str
                     ) -> np.ndarray:  # fmt: skip
    """For each example's held-out animal (an index into TASK_ANIMALS), a silhouette drawn from that animal's pool
    of source images for ``split``: disjoint pools per split, the same pools in every task that uses them."""
    idx = np.empty(len(animal), int)
    for a, c in enumerate(TASK_ANIMALS):
        pool = np.flatnonzero(source_labels == c)[source_pool(1000, POOL_FRACTIONS[split], 13)]
        sel = animal == a
        idx[sel] = rng.choice(pool, sel.sum(), replace=sel.sum() > len(pool))
    return idx


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
    toys = PT.toy_instances()
    cat = rng.integers(len(PT.TOY_CATEGORIES), size=n)
    inst = rng.integers(*TOY_INSTANCES[split], size=n)
    if azimuth:
        az, el = PT.TOY_AZIMUTHS[labels], rng.choice(PT.TOY_ELEVATIONS, n)
    else:
        az, el = rng.choice(PT.TOY_AZIMUTHS, n), PT.TOY_ELEVATIONS[labels]
    src = np.array([f"toy:{PT.TOY_CATEGORIES[c]}:{k}" for c, k in zip(cat, inst, strict=True)])
    return PT.toys(rng, toys[cat, inst], az, el), src
