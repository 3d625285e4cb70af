import numpy as np
import pytest
from PIL import Image

from expertlib.datasets.folders import DatasetNotFoundError
from expertlib.datasets.tfrecords import label_of
from expertlib.datasets.vtab import PUBLISHED_TEST_SIZES, VTAB_TASKS, expand, load_vtab, split_size

# VTAB-1k as google-research/task_adaptation defines it (commit d7630d3c43ba052b5a35546b312d9454a9f2c96b), copied
# by hand from its source: the TFDS builder string, the label, and the tfds_splits dict of each data class with
# the split sizes filled in. The sizes are TFDS's (tensorflow/datasets, tensorflow_datasets/testing/metadata/
# <dataset>/<version>/dataset_info.json); task_adaptation reads them from dataset_builder.info.splits.
TV = (
    "validation[:200]",
    "train[:800]+validation[:200]",
)  # val200, train800val200 where TFDS has a validation split
REFERENCE = {
    # task_adaptation/data/caltech.py: tfds.builder("caltech101:3.*.*"); _TRAIN_SPLIT_PERCENT = 90;
    # train_count = (90 * 3060) // 100 = 2754; "val200": "train[{}:{}]".format(train_count, train_count+200)
    "caltech101": ("caltech101:3.*.*", 102, {"train": 3060, "test": 6084},
                   ("train[2754:2954]", "train[:800]+train[2754:2954]", "test")),
    # task_adaptation/data/cifar.py: tfds.builder("cifar100:3.*.*"); TRAIN_SPLIT_PERCENT = 90 of 50000
    "cifar100": ("cifar100:3.*.*", 100, {"train": 50000, "test": 10000},
                 ("train[45000:45200]", "train[:800]+train[45000:45200]", "test")),
    # task_adaptation/data/dtd.py: tfds.builder("dtd:3.*.*"); "val200": "validation[:200]"
    "dtd": ("dtd:3.*.*", 47, {"train": 1880, "validation": 1880, "test": 1880}, (*TV, "test")),
    # task_adaptation/data/oxford_flowers102.py: tfds.builder("oxford_flowers102:2.*.*"), train_split_percent=None
    "oxford_flowers102": ("oxford_flowers102:2.*.*", 102, {"train": 1020, "validation": 1020, "test": 6149},
                          (*TV, "test")),
    # task_adaptation/data/oxford_iiit_pet.py: tfds.builder("oxford_iiit_pet:3.*.*"); TRAIN_SPLIT_PERCENT = 80 of 3680
    "oxford_iiit_pet": ("oxford_iiit_pet:3.*.*", 37, {"train": 3680, "test": 3669},
                        ("train[2944:3144]", "train[:800]+train[2944:3144]", "test")),
    # task_adaptation/data/svhn.py: tfds.builder("svhn_cropped:3.*.*"); 90 * 73257 // 100 = 65931
    "svhn": ("svhn_cropped:3.*.*", 10, {"train": 73257, "test": 26032},
             ("train[65931:66131]", "train[:800]+train[65931:66131]", "test")),
    # task_adaptation/data/sun397.py: tfds.builder("sun397/tfds:4.*.*") (config="tfds")
    "sun397": ("sun397/tfds:4.*.*", 397, {"train": 76128, "validation": 10875, "test": 21750}, (*TV, "test")),
    # task_adaptation/data/patch_camelyon.py: tfds.builder("patch_camelyon:2.*.*")
    "patch_camelyon": ("patch_camelyon:2.*.*", 2, {"train": 262144, "validation": 32768, "test": 32768},
                       (*TV, "test")),
    # task_adaptation/data/eurosat.py: "eurosat/{}:2.*.*".format("rgb"); 60/20/20 of 27000:
    # "val200": "train[{}:{}]".format(train_count, train_count+200), "test": "train[{}:]".format(train_count+val_count)
    "eurosat": ("eurosat/rgb:2.*.*", 10, {"train": 27000},
                ("train[16200:16400]", "train[:800]+train[16200:16400]", "train[21600:]")),
    # task_adaptation/data/resisc45.py: tfds.builder("resisc45:3.*.*"); 60/20/20 of 31500
    "resisc45": ("resisc45:3.*.*", 45, {"train": 31500},
                 ("train[18900:19100]", "train[:800]+train[18900:19100]", "train[25200:]")),
    # task_adaptation/data/diabetic_retinopathy.py: "diabetic_retinopathy_detection/{}".format("btgraham-300:3.*.*")
    "diabetic_retinopathy": ("diabetic_retinopathy_detection/btgraham-300:3.*.*", 5,
                             {"train": 35126, "validation": 10906, "test": 42670}, (*TV, "test")),
    # task_adaptation/data/clevr.py: tfds.builder("clevr:3.*.*"); TRAIN_SPLIT_PERCENT = 90 of 70000; "test": "validation"
    "clevr_count": ("clevr:3.*.*", 8, {"train": 70000, "validation": 15000, "test": 15000},
                    ("train[63000:63200]", "train[:800]+train[63000:63200]", "validation")),
    "clevr_distance": ("clevr:3.*.*", 6, {"train": 70000, "validation": 15000, "test": 15000},
                       ("train[63000:63200]", "train[:800]+train[63000:63200]", "validation")),
    # task_adaptation/data/dmlab.py: tfds.builder("dmlab:2.0.1")
    "dmlab": ("dmlab:2.0.1", 6, {"train": 65550, "validation": 22628, "test": 22735}, (*TV, "test")),
    # task_adaptation/data/kitti.py: tfds.builder("kitti:3.1.0"); task closest_vehicle_distance, num_classes 4
    "kitti_distance": ("kitti:3.1.0", 4, {"train": 6347, "validation": 423, "test": 711}, (*TV, "test")),
    # task_adaptation/data/dsprites.py: tfds.builder("dsprites:2.*.*"); TRAIN 80, VAL 10 of 737280:
    # num_samples_train = 589824, trainval = 663552; "test": "train[{}:]".format(trainval)
    "dsprites_location": ("dsprites:2.*.*", 16, {"train": 737280},
                          ("train[589824:590024]", "train[:800]+train[589824:590024]", "train[663552:]")),
    "dsprites_orientation": ("dsprites:2.*.*", 16, {"train": 737280},
                             ("train[589824:590024]", "train[:800]+train[589824:590024]", "train[663552:]")),
    # task_adaptation/data/smallnorb.py: tfds.builder("smallnorb:2.*.*"); VAL_SPLIT_PERCENT = 50:
    # "val200": "test[:200]", "test": "test[{}%:]".format(50)
    "smallnorb_azimuth": ("smallnorb:2.*.*", 18, {"train": 24300, "test": 24300},
                          ("test[:200]", "train[:800]+test[:200]", "test[50%:]")),
    "smallnorb_elevation": ("smallnorb:2.*.*", 9, {"train": 24300, "test": 24300},
                            ("test[:200]", "train[:800]+test[:200]", "test[50%:]")),
}  # fmt: skip

# the label of each task (task_adaptation/data/<file>.py), and of the configs in scripts/run_all_tasks.sh
LABELS = {
    # dsprites.py: floordiv(cast(v, float32), num_original_classes / num_classes) with num_classes=16
    "dsprites_location": {"kind": "bin", "feature": "label_x_position", "num_original": 32, "num_classes": 16},
    "dsprites_orientation": {"kind": "bin", "feature": "label_orientation", "num_original": 40, "num_classes": 16},
    # smallnorb.py: label=tensors[predicted_attribute]
    "smallnorb_azimuth": {"kind": "identity", "feature": "label_azimuth"},
    "smallnorb_elevation": {"kind": "identity", "feature": "label_elevation"},
    # clevr.py _count_preprocess_fn: tf.size(x["objects"]["size"]) - 3
    "clevr_count": {"kind": "count", "feature": "objects/size", "offset": -3},
    # clevr.py _closest_object_preprocess_fn: dist = min(pixel_coords[:, 2]); thrs [0, 8, 8.5, 9, 9.5, 10, 100];
    # label = reduce_max(where(thrs - dist < 0))
    "clevr_distance": {"kind": "closest", "feature": "objects/pixel_coords", "width": 3, "axis": 2,
                       "thresholds": [0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0]},
    # kitti.py _closest_vehicle_distance_pp: vehicles = type < 3; z = location[:, 2] of them plus 1000.0;
    # thrs [-100, 8, 20, 999]
    "kitti_distance": {"kind": "closest", "feature": "objects/location", "width": 3, "axis": 2,
                       "where": {"feature": "objects/type", "below": 3}, "append": 1000.0,
                       "thresholds": [-100.0, 8.0, 20.0, 999.0]},
}  # fmt: skip
SOURCES = {"caltech101": "caltech", "cifar100": "cifar", "svhn": "svhn", "clevr_count": "clevr",
           "clevr_distance": "clevr", "kitti_distance": "kitti", "dsprites_location": "dsprites",
           "dsprites_orientation": "dsprites", "smallnorb_azimuth": "smallnorb", "smallnorb_elevation": "smallnorb"}  # fmt: skip


def _img(path, rng, size=(12, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


def test_registry_matches_vtab():
    assert len(VTAB_TASKS) == 19
    groups = [t.group for t in VTAB_TASKS.values()]
    assert (groups.count("natural"), groups.count("specialized"), groups.count("structured")) == (7, 4, 8)
    assert VTAB_TASKS["sun397"].num_classes == 397 and VTAB_TASKS["clevr_count"].num_classes == 8


@pytest.mark.parametrize("name", list(REFERENCE))
def test_every_row_is_task_adaptations(name):
    """Dataset and version, classes, label, source file, and the four split expressions at TFDS's published
    split sizes, held to task_adaptation's source as copied above."""
    tfds, classes, counts, (val200, both, test) = REFERENCE[name]
    task = VTAB_TASKS[name]
    assert (task.tfds, task.num_classes) == (tfds, classes)
    assert {s: n for s, n in task.published_counts.items() if s in counts} == counts
    assert task.split_expressions(task.published_counts) == {
        "train800": "train[:800]", "val200": val200, "train800val200": both, "test": test
    }  # fmt: skip
    assert task.label == LABELS.get(name, {"kind": "identity", "feature": "label"})
    assert task.source == f"task_adaptation/data/{SOURCES.get(name, name)}.py"
    assert (split_size(task, "train800"), split_size(task, "val200"), split_size(task, "train800val200")) == (
        800, 200, 1000
    )  # fmt: skip


# The BiT paper (Kolesnikov et al., ECCV 2020, arXiv 1912.11370), Supplementary F, on VTAB-1k: random horizontal
# flips are disabled for dSprites-orientation, sNORB-azimuth and dSprites-location; random crops for Clevr-count,
# Clevr-distance, DMLab, KITTI-distance and dSprites-location.
NO_FLIP = {"dsprites_orientation", "smallnorb_azimuth", "dsprites_location"}
NO_CROP = {"clevr_count", "clevr_distance", "dmlab", "kitti_distance", "dsprites_location"}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_every_row_augments_as_bits_supplement_says(name):
    """Each row's flip and crop switches are the supplement's list (the on-disk reader's use of them:
    tests/test_ondisk.py)."""
    task = VTAB_TASKS[name]
    assert (task.flip, task.crop) == (name not in NO_FLIP, name not in NO_CROP)


def test_the_registry_names_its_augmentation_source():
    import json

    from expertlib.datasets.vtab import REGISTRY_FILE

    source = json.loads(REGISTRY_FILE.read_text())["augmentation_source"]
    assert "Supplementary F" in source and "1912.11370" in source


def test_the_splits_vtab_reads():
    """Which TFDS splits a task's counts are checked on: those its expressions read (svhn's extra is not)."""
    reads = {t.name: t.tfds_splits for t in VTAB_TASKS.values()}
    assert reads["svhn"] == reads["cifar100"] == reads["smallnorb_azimuth"] == ("test", "train")
    assert reads["clevr_count"] == ("train", "validation") and reads["dtd"] == ("test", "train", "validation")
    assert reads["dsprites_location"] == reads["eurosat"] == reads["resisc45"] == ("train",)


def test_published_sizes_come_from_the_registry():
    """The plan's published test sizes (results/*/tables/plan.csv price them) are the test expressions'."""
    assert {t: n for t, (n, _) in PUBLISHED_TEST_SIZES.items()} == {
        "caltech101": 6084, "cifar100": 10000, "dtd": 1880, "oxford_flowers102": 6149, "oxford_iiit_pet": 3669,
        "svhn": 26032, "sun397": 21750, "patch_camelyon": 32768, "eurosat": 5400, "resisc45": 6300,
        "diabetic_retinopathy": 42670, "clevr_count": 15000, "clevr_distance": 15000, "dmlab": 22735,
        "kitti_distance": 711, "dsprites_location": 73728, "dsprites_orientation": 73728,
        "smallnorb_azimuth": 12150, "smallnorb_elevation": 12150,
    }  # fmt: skip
    assert PUBLISHED_TEST_SIZES["kitti_distance"][1] == (375, 1242)


def test_expressions_follow_task_adaptations_integer_arithmetic():
    """{train*90//100} is task_adaptation's 90 * count // 100 (floor), not TFDS's rounded percent."""
    assert expand("train[{train*90//100}:{train*90//100+200}]", {"train": 1999}) == "train[1799:1999]"
    assert expand("train[{train*80//100+train*10//100}:]", {"train": 1999}) == "train[1798:]"  # 1599 + 199
    with pytest.raises(ValueError, match="cannot compute 'validation\\*90//100'"):
        expand("train[{validation*90//100}:]", {"train": 10})


def _feature(**values):
    from tfrecord import example_pb2

    ex = example_pb2.Example()
    for k, v in values.items():
        v = v if isinstance(v, list) else [v]
        if v and isinstance(v[0], float):
            ex.features.feature[k].float_list.value.extend(v)
        else:
            ex.features.feature[k].int64_list.value.extend(v)
    return ex.features.feature


def test_label_rules_give_task_adaptations_labels():
    loc, ori = VTAB_TASKS["dsprites_location"].label, VTAB_TASKS["dsprites_orientation"].label
    assert [label_of(_feature(label_x_position=v), loc) for v in range(32)] == [v // 2 for v in range(32)]
    assert [label_of(_feature(label_orientation=v), ori) for v in (0, 2, 3, 4, 5, 37, 39)] == [
        0,
        0,
        1,
        1,
        2,
        14,
        15,
    ]
    count = VTAB_TASKS["clevr_count"].label
    assert [label_of(_feature(**{"objects/size": [1] * n}), count) for n in (3, 7, 10)] == [0, 4, 7]
    dist = VTAB_TASKS["clevr_distance"].label

    def coords(*z):  # objects' pixel_coords (x, y, z), flattened as TFDS stores a Sequence of (3,) tensors
        return {"objects/pixel_coords": [c for v in z for c in (10.0, 20.0, v)]}

    assert [label_of(_feature(**coords(*z)), dist) for z in ((7.9,), (12.0, 8.0), (8.6, 9.2), (10.5,))] == [
        0,
        0,
        2,
        5,
    ]
    kitti = VTAB_TASKS["kitti_distance"].label

    def objects(*typed):  # (type, z): types 0-2 are car, van, truck; 3+ pedestrians and others
        return _feature(**{"objects/type": [t for t, _ in typed],
                           "objects/location": [c for _, z in typed for c in (1.0, 1.5, z)]})  # fmt: skip

    assert label_of(objects((0, 5.0), (1, 30.0)), kitti) == 0  # closest vehicle under 8 m
    assert label_of(objects((3, 2.0), (2, 10.0)), kitti) == 1  # a pedestrian nearer does not count
    assert label_of(objects((1, 25.0)), kitti) == 2
    assert label_of(objects((4, 3.0)), kitti) == 3 and label_of(objects(), kitti) == 3  # no vehicle


def test_dtd_through_torchvision(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "dtd" / "dtd"
    classes = ["banded", "dotted", "woven"]
    for split, n in (("train", 400), ("val", 300), ("test", 60)):
        lines = []
        for i in range(n):
            c = classes[i % 3]
            name = f"{c}_{split}_{i}.jpg"
            _img(base / "images" / c / name, rng)
            lines.append(f"{c}/{name}")
        (base / "labels").mkdir(parents=True, exist_ok=True)
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    splits = load_vtab("dtd", tmp_path)
    assert (len(splits.train800), len(splits.val200), len(splits.test)) == (400, 200, 60)
    assert not splits.vtab_splits and splits.counts_match is None  # torchvision's order is not TFDS's
    again = load_vtab("dtd", tmp_path)
    assert splits.val200.indices == again.val200.indices  # deterministic
    img, y = splits.test[0]
    assert img.size == (12, 12) and y in (0, 1, 2)


def test_eurosat_carved_60_10_30(tmp_path):
    rng = np.random.default_rng(1)
    for c in ("Forest", "River"):
        for i in range(50):
            _img(tmp_path / "eurosat" / "2750" / c / f"{c}_{i}.jpg", rng)
    s = load_vtab("eurosat", tmp_path)
    assert (len(s.train800), len(s.val200), len(s.test)) == (60, 10, 30) and not s.vtab_splits

    def underlying(sub):  # Subset(Subset(full, part), first-k) -> indices into the full dataset
        return {sub.dataset.indices[i] for i in sub.indices}

    assert not (underlying(s.train800) | underlying(s.val200)) & set(s.test.indices)
    assert not underlying(s.train800) & underlying(s.val200)


def test_folder_fallback_and_carved_val(tmp_path):
    rng = np.random.default_rng(2)
    base = tmp_path / "vtab" / "dsprites_location"
    for split, n in (("train", 40), ("test", 16)):
        for i in range(n):
            _img(base / split / str(i % 16) / f"{i}.png", rng)
    s = load_vtab("dsprites_location", tmp_path)
    assert (len(s.train800), len(s.val200), len(s.test)) == (36, 4, 16) and not s.vtab_splits
    assert {y for _, y in (s.test[i] for i in range(16))} == set(range(16))


def test_missing_data_says_where_and_how(tmp_path):
    with pytest.raises(
        DatasetNotFoundError, match=r"vtab/resisc45.*train,val,test.*resisc45-<split>\.tfrecord"
    ):
        load_vtab("resisc45", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="download=True"):
        load_vtab("dtd", tmp_path)
    with pytest.raises(KeyError, match="unknown VTAB task 'cifar10'"):
        load_vtab("cifar10", tmp_path)
