"""A tiny paper-scale dataset in the real on-disk formats, for the ``paper-smoke`` scale and the tests.

It exercises exactly the paper-scale readers: an ImageNet-21k-style tree of JPEG folders named by real
WordNet ids (a few subtrees: birds and carnivores under animal, plants, vehicles and containers under
artifact) with ``wordnet.is_a.txt`` and ``words.txt`` (the real ids and lemmas, the intermediate WordNet
nodes between them left out), and two VTAB tasks in class folders (``resisc45`` and ``dsprites_location``;
not VTAB's splits). The ``released-smoke`` fixture (:func:`write_released_fixture`) has ``dsprites_location``
as TFDS writes dSprites instead: a ``train`` split alone, in shards ``dsprites-train.tfrecord-NNNNN-of-MMMMM``
of 64 x 64 single-channel PNGs of 0/1 values with the ``label_*`` features, read through task_adaptation's
split expressions at the fixture's count (VTAB's splits). Images are procedural (a coloured shape per class
on a noisy background, of varying sizes; a white square for dSprites); the numbers mean nothing.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from expertlib.utils.runtime import atomic_write, atomic_write_text

# (wnid, lemma, parent wnid): real WordNet ids; edges skip the nodes in between
NODES = (
    ("n00001740", "entity", None),
    ("n00015388", "animal, animate being, beast, brute, creature, fauna", "n00001740"),
    ("n01503061", "bird", "n00015388"),
    ("n02075296", "carnivore", "n00015388"),
    ("n00017222", "plant, flora, plant life", "n00001740"),
    ("n00021939", "artifact, artefact", "n00001740"),
    ("n04524313", "vehicle", "n00021939"),
    ("n03094503", "container", "n00021939"),
    # classes (ImageNet-1k synsets)
    ("n01530575", "brambling, Fringilla montifringilla", "n01503061"),
    ("n01531178", "goldfinch, Carduelis carduelis", "n01503061"),
    ("n01532829", "house finch, linnet, Carpodacus mexicanus", "n01503061"),
    ("n02085620", "Chihuahua", "n02075296"),
    ("n02123045", "tabby, tabby cat", "n02075296"),
    ("n02129165", "lion, king of beasts, Panthera leo", "n02075296"),
    ("n11939491", "daisy", "n00017222"),
    ("n12057211", "yellow lady's slipper, yellow lady-slipper, Cypripedium calceolus", "n00017222"),
    ("n03100240", "convertible", "n04524313"),
    ("n04285008", "sports car, sport car", "n04524313"),
    ("n03063599", "coffee mug", "n03094503"),
    ("n04522168", "vase", "n03094503"),
)
CLASSES = tuple(n for n, _, _ in NODES if n not in {p for _, _, p in NODES})  # the leaves
TRAIN_PER_CLASS, HELDOUT_PER_CLASS = 6, 2
TASK_SIZES = {"train": 24, "val": 8, "test": 16}


def _image(rng: np.random.Generator, label: int, size: tuple[int, int]) -> Image.Image:
    w, h = size
    base = rng.integers(0, 60, (h, w, 3), dtype=np.uint8) + np.array(
        [40 * (label % 5), 30 * (label % 7), 20 * (label % 11)], np.uint8
    )
    img = Image.fromarray(base)
    draw = ImageDraw.Draw(img)
    color = tuple(int(c) for c in (255 - 17 * label % 255, 60 + 23 * label % 195, 90 + 31 * label % 165))
    x0, y0 = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
    box = (x0, y0, x0 + w // 2, y0 + h // 2)
    (draw.ellipse if label % 2 else draw.rectangle)(box, fill=color)
    return img


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: p.write_bytes(data))


FIXTURE_VERSION = 2  # 2: VTAB tasks laid out as the registry reads them (dSprites as TFDS train-only shards)
STAMP = f"fixture version {FIXTURE_VERSION}"


def fixture_current(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a complete fixture of this version (an older one is rewritten, not misread)."""
    done = Path(root) / "COMPLETE"
    return done.is_file() and STAMP in done.read_text().splitlines()


def write_paper_fixture(root: str | os.PathLike, seed: int = 0) -> Path:
    """Write the fixture under ``root`` (deterministic from ``seed``); returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    up = root / "imagenet21k"
    up.mkdir(parents=True, exist_ok=True)
    atomic_write_text(up / "wordnet.is_a.txt", "".join(f"{p} {n}\n" for n, _, p in NODES if p))
    atomic_write_text(up / "words.txt", "".join(f"{n}\t{lemma}\n" for n, lemma, _ in NODES))
    for label, wnid in enumerate(CLASSES):
        for i in range(TRAIN_PER_CLASS + HELDOUT_PER_CLASS):
            size = (int(rng.integers(36, 56)), int(rng.integers(36, 56)))
            _write(up / wnid / f"{wnid}_{i}.JPEG", _jpeg(_image(rng, label, size)))
    held = [
        f"{w}/{w}_{i}.JPEG"
        for w in CLASSES
        for i in range(TRAIN_PER_CLASS, TRAIN_PER_CLASS + HELDOUT_PER_CLASS)
    ]
    atomic_write_text(up / "heldout.txt", "\n".join(held) + "\n")
    _write_vtab_tasks(root, rng, dsprites_shards=False)
    atomic_write_text(
        root / "COMPLETE", f"written by expertlib.datasets.fixtures.write_paper_fixture\n{STAMP}\n"
    )
    return root


def _write_vtab_tasks(root: Path, rng: np.random.Generator, dsprites_shards: bool) -> None:
    """``resisc45`` in class folders, and ``dsprites_location`` as TFDS's ``train`` shards or in class folders.

    Shards hold :data:`DSPRITES_TRAIN` examples (VTAB's train800 and val200 are 1,000 of them), folders
    :data:`TASK_SIZES`: the paper-smoke scale fine-tunes and scores real R50x1 models on its tasks, and
    1,200 dSprites examples there took 66% more CPU time than its 48 (measured on 2 cores)."""
    # a VTAB task in folders: resisc45, five of its 45 classes
    for split, n in TASK_SIZES.items():
        for i in range(n):
            label = i % 5
            _write(
                root / "vtab" / "resisc45" / split / str(label) / f"{i:06d}.jpg",
                _jpeg(_image(rng, 20 + label, (40, 40))),
            )
    folder = root / "vtab" / "dsprites_location"
    if dsprites_shards:
        write_dsprites_shards(folder, rng)
        return
    for split, n in TASK_SIZES.items():  # folders named by VTAB's label: x position // 2
        for i, (x, y, *_) in enumerate(_sprite_factors(rng, n)):
            _write(folder / split / str(x // 2) / f"{i:06d}.png", _png(_sprite(x, y, 6) * 255))


def _sprite_factors(rng: np.random.Generator, n: int) -> list[tuple[int, int, int, int, int]]:
    """(x position, y position, orientation, scale, shape) of ``n`` dSprites, as dSprites' label indices."""
    return [(int(rng.integers(0, 32)), int(rng.integers(0, 32)), int(rng.integers(0, 40)), int(rng.integers(0, 6)),
             int(rng.integers(0, 3))) for _ in range(n)]  # fmt: skip


def _sprite(x: int, y: int, side: int) -> np.ndarray:
    """A 64 x 64 dSprites-like image of 0/1 values: a square at position (x, y) of 32 x 32."""
    img = np.zeros((64, 64), np.uint8)
    top, left = 2 + y * 56 // 32, 2 + x * 56 // 32
    img[top : top + side, left : left + side] = 1
    return img


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


# dSprites' VTAB splits are train[:800], train[80%:80%+200] and train[90%:] (task_adaptation's dsprites.py): 2,000
# examples is the smallest count at which the three are disjoint, as they are at TFDS's 737,280
DSPRITES_TRAIN, DSPRITES_SHARDS = 2000, 4


def write_dsprites_shards(folder: Path, rng: np.random.Generator, n: int = DSPRITES_TRAIN,
                          shards: int = DSPRITES_SHARDS) -> list[Path]:  # fmt: skip
    """TFDS dSprites in miniature: ``n`` examples in ``shards`` TFRecord files named as TFDS names them, each a
    64 x 64 PNG of 0/1 values (a square sprite at its x and y position) with dSprites' ``label_*`` features."""
    from tfrecord.writer import TFRecordWriter

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    bounds = np.linspace(0, n, shards + 1).astype(int)
    for k in range(shards):
        path = folder / f"dsprites-train.tfrecord-{k:05d}-of-{shards:05d}"
        rows = _sprite_factors(rng, int(bounds[k + 1] - bounds[k]))

        def write(p: Path, rows: list = rows) -> None:
            writer = TFRecordWriter(str(p))
            for x, y, orientation, scale, shape in rows:
                writer.write({"image": (_png(_sprite(x, y, 6 + scale)), "byte"), "label_x_position": (x, "int"),
                              "label_y_position": (y, "int"), "label_orientation": (orientation, "int"),
                              "label_scale": (scale, "int"), "label_shape": (shape, "int")})  # fmt: skip
            writer.close()

        atomic_write(path, write)
        paths.append(path)
    return paths


RELEASED_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "released_experts"
BIT_M_CLASSES = 21843


def write_released_fixture(root: str | os.PathLike, weights: str = "bit_m_fixture.npz", experts: str = "released_experts",
                           seed: int = 0) -> Path:  # fmt: skip
    """The ``released-smoke`` data root: what a user downloads, in miniature and in the real formats. The two
    VTAB tasks above (``dsprites_location`` as TFDS's ``train`` shards: VTAB's splits of a task without a TFDS
    test split); B as a BiT ``.npz`` (``weights``: the fixture's small B from ``base.npz`` with a seeded
    21,843-way head, as BiT-M's has); and three released-expert SavedModels that TensorFlow wrote
    (tests/fixtures/released_experts/, by tools/make_tf_expert_fixture.py), copied to ``experts/``. No
    ``imagenet21k/`` folder: this scale reads no upstream image."""
    import shutil

    root = Path(root)
    rng = np.random.default_rng(seed)
    _write_vtab_tasks(root, rng, dsprites_shards=True)
    arrays = dict(np.load(RELEASED_FIXTURES / "base.npz"))
    width = arrays["resnet/group_norm/gamma"].shape[0]
    arrays["resnet/head/conv2d/kernel"] = (0.05 * rng.standard_normal((1, 1, width, BIT_M_CLASSES))).astype(
        np.float32
    )
    arrays["resnet/head/conv2d/bias"] = np.zeros(BIT_M_CLASSES, np.float32)

    def save(p: Path) -> None:
        with open(p, "wb") as f:  # a file object: np.savez would add ".npz" to a temporary file's name
            np.savez(f, **arrays)

    atomic_write(root / weights, save)
    for src in sorted(p for p in RELEASED_FIXTURES.iterdir() if p.is_dir()):
        dst = root / experts / src.name
        if not dst.exists():
            shutil.copytree(src, dst)
    atomic_write_text(
        root / "COMPLETE", f"written by expertlib.datasets.fixtures.write_released_fixture\n{STAMP}\n"
    )
    return root


def write_image_folder(root: str | os.PathLike, images: np.ndarray, labels: np.ndarray, classes: list[str],
                       splits: list[str] | np.ndarray | None = None) -> Path:  # fmt: skip
    """uint8 NHWC ``images`` as a class-folder tree of PNGs, ``root/[<split>/]<class>/<index>.png``: the layout
    :mod:`expertlib.rank` reads (a benchmark task exported for the rank-your-own-models notebook, or test data)."""
    root = Path(root)
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        folder = root / (str(splits[i]) if splits is not None else "") / classes[int(y)]
        folder.mkdir(parents=True, exist_ok=True)
        png = np.asarray(img, dtype=np.uint8)
        atomic_write(folder / f"{i:05d}.png", lambda p, a=png: Image.fromarray(a).save(p, format="PNG"))
    return root
