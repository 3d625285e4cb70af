"""VTAB tasks from TFDS TFRecord shards (written here by the tfrecord package, the format TFDS writes), read
through TFDS split expressions."""

import functools
import io
import shutil

import numpy as np
import pytest
from PIL import Image
from tfrecord.writer import TFRecordWriter

from expertlib.datasets.folders import CorruptImageError, DatasetNotFoundError
from expertlib.datasets.tfrecords import Slice, SplitExpressionError, TFDSShards, resolve
from expertlib.datasets.vtab import VTAB_TASKS, load_vtab, targets


@functools.cache
def _png(value: int, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    shape = (8, 8, 3) if mode == "RGB" else (8, 8)
    Image.fromarray(np.full(shape, value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _shard(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    w = TFRecordWriter(str(path))
    for r in records:
        w.write(r)
    w.close()


def _split(folder, dataset, split, sizes, first_id=0, **features):
    """``split`` of ``dataset`` in shards of ``sizes`` records, TFDS-named; feature ``id`` numbers the records
    in split order from ``first_id``; ``features``: name -> (fn of the id, tfrecord type)."""
    i = first_id
    for k, n in enumerate(sizes):
        recs = []
        for _ in range(n):
            recs.append({"image": (_png(i % 256), "byte"), "id": (i, "int"),
                         **{name: (fn(i), kind) for name, (fn, kind) in features.items()}})  # fmt: skip
            i += 1
        _shard(folder / f"{dataset}-{split}.tfrecord-{k:05d}-of-{len(sizes):05d}", recs)


def test_resolve_slices_as_tfds():
    """TFDS's slicing (tfrecords_reader: a boundary past the split is an error, negative ones count from the
    end, percent boundaries round with int(round(p * n / 100)), Python's half-to-even round)."""
    counts = {"train": 50000, "test": 5, "validation": 1001}
    assert resolve("train[:800]", counts) == [Slice("train", 0, 800)]
    assert resolve("train[45000:45200]", counts) == [Slice("train", 45000, 45200)]
    assert resolve("train", counts) == resolve("train[:]", counts) == [Slice("train", 0, 50000)]
    assert resolve("train[-10:]", counts) == [Slice("train", 49990, 50000)]
    assert resolve("train[:-10]", counts) == [Slice("train", 0, 49990)]
    assert resolve("test[50%:]", counts) == [Slice("test", 2, 5)]  # 2.5 rounds to even: 2
    assert resolve("test[:70%]", counts) == [Slice("test", 0, 4)]  # 3.5 rounds to even: 4
    assert resolve("validation[33%:-10%]", counts) == [Slice("validation", 330, 901)]  # 330.33, -100.1
    assert resolve("train[:800] + validation[:200]", counts) == [
        Slice("train", 0, 800),
        Slice("validation", 0, 200),
    ]
    assert resolve("test[50%:]", {"test": 24300}) == [Slice("test", 12150, 24300)]  # smallnorb's VTAB test


@pytest.mark.parametrize(
    "expression, error",
    [
        ("train[:801]", "asks for example 801 but split 'train' holds 800"),
        ("train[-801:]", "asks for example -801"),
        ("train[:101%]", "outside"),
        ("extra[:10]", "reads split 'extra', which is not here; splits: train \\(800 examples\\)"),
        ("train[10:20%]", "mixes a percent and an absolute boundary"),
        ("train[20:10]", "selects no example"),
        ("train(:10)", "cannot read"),
    ],
)
def test_bad_expressions_are_named(expression, error):
    with pytest.raises(SplitExpressionError, match=error):
        resolve(expression, {"train": 800})


def test_expressions_read_the_ids_tfds_reads(tmp_path):
    """Shards of uneven sizes: each expression reads exactly its slice of the split, shard by shard, record by
    record, across shard boundaries."""
    _split(tmp_path, "toy", "train", [7, 5, 9])  # ids 0..20
    _split(tmp_path, "toy", "test", [6, 4], first_id=100)  # ids 100..109
    shards = TFDSShards(tmp_path, "toy")
    assert shards.counts() == {"test": 10, "train": 21}
    expected = {
        "train[:8]": list(range(0, 8)),
        "train[5:13]": list(range(5, 13)),  # spans all three shards
        "train[-4:]": [17, 18, 19, 20],
        "train[10%:60%]": list(range(2, 13)),  # round(2.1) = 2, round(12.6) = 13
        "test[50%:]": list(range(105, 110)),
        "train[:3]+test[-2:]": [0, 1, 2, 108, 109],
        "train": list(range(21)),
    }
    for expr, ids in expected.items():
        split = shards.read(expr)
        assert [v[0] for v in split.values("id")] == ids, expr
        assert len(split) == len(ids) and split.expression == expr
    img, y = shards.read("train[12:13]", {"kind": "identity", "feature": "id"})[0]
    assert np.asarray(img)[0, 0, 0] == 12 and img.mode == "RGB" and y == 12


def _all_features(i: int) -> dict:
    """Every label feature VTAB-1k's tasks read, as TFDS names them (Sequence features flattened)."""
    n = 3 + i % 8
    return {"label": (lambda j: j % 2, "int"), "label_x_position": (lambda j: j % 32, "int"),
            "label_orientation": (lambda j: j % 40, "int"), "label_azimuth": (lambda j: j % 18, "int"),
            "label_elevation": (lambda j: j % 9, "int"), "objects/size": (lambda j: [0] * n, "int"),
            "objects/pixel_coords": (lambda j: [1.0, 2.0, 7.5 + (j % 7) / 2] * n, "float"),
            "objects/type": (lambda j: [j % 5] * n, "int"),
            "objects/location": (lambda j: [0.0, 1.0, float(j % 30)] * n, "float")}  # fmt: skip


def test_every_task_reads_from_its_shards_including_those_without_a_test_split(tmp_path):
    """All 19 tasks from shards named as TFDS names them, with only the splits the TFDS dataset has (eurosat,
    resisc45 and dsprites: train alone): VTAB's own splits, the ids of the registry's expressions at these
    counts, labels in range, and counts_match False (these are not the published TFDS versions' counts)."""
    src = tmp_path / "src"
    sizes = {"train": ([1000, 1000], 0), "validation": ([300], 10000), "test": ([200, 200], 20000)}
    for split, (parts, first) in sizes.items():
        _split(src, "x", split, parts, first, **_all_features(0))
    for name, task in VTAB_TASKS.items():
        folder = tmp_path / "vtab" / name
        folder.mkdir(parents=True)
        for split in task.published_counts:
            for f in src.glob(f"x-{split}.tfrecord-*"):
                shutil.copy(f, folder / f.name.replace("x-", f"{task.tfds_name}-", 1))
        s = load_vtab(name, tmp_path)
        assert s.vtab_splits and s.counts_match is False, name
        counts = {
            k: n
            for k, n in {"train": 2000, "validation": 300, "test": 400}.items()
            if k in task.published_counts
        }
        assert s.counts == counts and s.expressions == task.split_expressions(counts), name
        for part in ("train800", "val200", "test"):
            ids = [v[0] for v in getattr(s, part).values("id")]
            want = [
                sizes[sl.split][1] + k
                for sl in resolve(s.expressions[part], counts)
                for k in range(sl.start, sl.stop)
            ]
            assert ids == want, (name, part)
        assert (len(s.train800), len(s.val200)) == (800, 200)
        assert all(0 <= y < task.num_classes for y in targets(s.val200)), name
    # no test split: the test is the end of train (eurosat 60/20/20, dsprites 80/10/10 at 2,000)
    assert load_vtab("eurosat", tmp_path).expressions["test"] == "train[1600:]"
    assert load_vtab("dsprites_location", tmp_path).expressions["test"] == "train[1800:]"
    assert load_vtab("clevr_count", tmp_path).expressions["test"] == "validation"


def test_published_counts_match_and_dsprites_images_are_scaled(tmp_path):
    """dSprites stores 0/1 pixels (task_adaptation multiplies by 255); shards at TFDS's own counts match."""
    folder = tmp_path / "vtab" / "dsprites_location"
    _split(folder, "dsprites", "train", [1000, 1000], label_x_position=(lambda i: i % 32, "int"))
    s = load_vtab("dsprites_location", tmp_path)
    assert s.counts_match is False and targets(s.train800)[:4] == [0, 0, 1, 1]
    _shard(folder / "dsprites-train.tfrecord-00000-of-00002",
           [{"image": (_png(1, "L"), "byte"), "label_x_position": (31, "int")}] * 1000)  # fmt: skip
    img, y = load_vtab("dsprites_location", tmp_path).train800[0]
    assert img.mode == "RGB" and np.asarray(img).min() == 255 and y == 15
    # kitti at TFDS 3.1.0's own counts (6,347 / 423 / 711): VTAB's splits, counts matching
    kitti = tmp_path / "vtab" / "kitti_distance"
    objects = {
        "objects/type": (lambda i: [i % 4], "int"),
        "objects/location": (lambda i: [0.0, 1.0, float(i % 30)], "float"),
    }
    for split, n in VTAB_TASKS["kitti_distance"].published_counts.items():
        _split(kitti, "kitti", split, [n // 2, n - n // 2], **objects)
    s = load_vtab("kitti_distance", tmp_path)
    assert s.vtab_splits and s.counts_match and len(s.test) == 711
    # record i: one object of type i % 4 at z = i % 30; type 3 is no vehicle, and z = 8 is not above 8
    assert targets(s.val200)[:12] == [0, 0, 0, 3, 0, 0, 0, 3, 0, 1, 1, 3]


def test_incomplete_shards_and_short_splits_are_refused(tmp_path):
    folder = tmp_path / "vtab" / "cifar100"
    _split(folder, "cifar100", "train", [400, 400, 400])
    _split(folder, "cifar100", "test", [50])
    (folder / "cifar100-train.tfrecord-00001-of-00003").unlink()
    with pytest.raises(
        DatasetNotFoundError, match="split 'train' of cifar100 has 2 of its 3 shards \\(missing 00001\\)"
    ):
        load_vtab("cifar100", tmp_path)
    _split(folder, "cifar100", "train", [400, 400, 400])
    # 1,200 examples: val200 = train[1080:1280] runs past the end; the error names the counts and the source
    with pytest.raises(DatasetNotFoundError, match=r"hold \{.*'train': 1200\}.*cifar100:3\.\*\.\* \(3\.0\.2, read by "
                       r"task_adaptation/data/cifar\.py\) holds \{'train': 50000, 'test': 10000\}.*train\[1080:1280\]"):  # fmt: skip
        load_vtab("cifar100", tmp_path)
    _split(folder, "cifar100", "train", [1200, 1200])  # beside the 3 shards: two versions' shards
    with pytest.raises(DatasetNotFoundError, match="'train' shards of cifar100 disagree on their number"):
        load_vtab("cifar100", tmp_path)
    for f in folder.glob("cifar100-train.tfrecord-*-of-00003"):
        f.unlink()
    _split(folder, "cifar100", "validation", [10])  # a split VTAB's cifar100 does not read is harmless
    s = load_vtab("cifar100", tmp_path)
    assert s.expressions["val200"] == "train[2160:2360]" and len(s.test) == 50


def test_corrupt_files_and_missing_features_are_named(tmp_path):
    folder = tmp_path / "vtab" / "smallnorb_azimuth"
    _split(folder, "smallnorb", "train", [900], label_azimuth=(lambda i: i % 18, "int"))
    _split(folder, "smallnorb", "test", [400], label_azimuth=(lambda i: i % 18, "int"))
    s = load_vtab("smallnorb_azimuth", tmp_path)
    assert s.expressions["test"] == "test[50%:]" and len(s.test) == 200 and targets(s.val200)[:3] == [0, 1, 2]
    with pytest.raises(KeyError, match="no feature 'label_x_position'.*label_azimuth"):
        _ = (
            TFDSShards(folder, "smallnorb")
            .read("train[:2]", {"kind": "bin", "feature": "label_x_position"})
            .targets
        )
    broken = folder / "smallnorb-test.tfrecord-00000-of-00001"
    broken.write_bytes(broken.read_bytes()[:-7])
    with pytest.raises(CorruptImageError, match="runs past the end"):
        load_vtab("smallnorb_azimuth", tmp_path)
