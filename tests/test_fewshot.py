import numpy as np
import pandas as pd
import pytest

from expertlib.datasets.batches import ArrayData
from expertlib.datasets.benchmark import Benchmark, TaskInfo, UnknownSplitError
from expertlib.datasets.fewshot import (
    FewShotBenchmark,
    few_shot_name,
    few_shot_positions,
    per_class_split,
    regime,
    regime_order,
    split_name,
    tasks_with_few_shot,
)
from expertlib.run.presets import get_scale


class Tiny(Benchmark):
    """One task, 3 classes: train800 has 30 images per class, val200 has 8; image i holds the value i, so a
    subset's images say which examples it took."""

    name = "tiny"
    classes = ["a", "b"]
    hierarchy = None

    def __init__(self):
        self.labels = {
            "train800": np.repeat([0, 1, 2], 30),
            "val200": np.tile([0, 1, 2], 8),
            "test": np.arange(12) % 3,
        }
        self.labels["train800val200"] = np.concatenate([self.labels["train800"], self.labels["val200"]])
        offset = {"train800": 0, "val200": 90, "train800val200": 0, "test": 1000}
        self.images = {s: offset[s] + np.arange(len(y)) for s, y in self.labels.items()}

    def upstream_data(self, split):
        return ArrayData(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1]), 4, 4, True)

    domain_names = ["d"]
    domain_of_label = np.array([0, 0])
    task_names = ["t"]

    def task_info(self, task):
        if task != "t":
            raise KeyError(task)
        return TaskInfo("t", "natural", ("x", "y", "z"), relates_to="a")

    def task(self, task, split):
        if split not in self.labels:
            raise UnknownSplitError(split)
        ids = self.images[split]
        img = np.broadcast_to((ids % 256).astype(np.uint8)[:, None, None, None], (len(ids), 4, 4, 3)).copy()
        img[:, 0, 0, 0], img[:, 0, 0, 1] = ids // 256, ids % 256  # the id, exactly
        return ArrayData(img, self.labels[split], 4, 4, True)

    def samples(self, per_row=12):
        return {}

    def summary(self, accuracy=None):
        return pd.DataFrame()


def ids(data):
    img = data.images.numpy()
    return img[:, 0, 0, 0].astype(int) * 256 + img[:, 0, 0, 1]


def test_names_and_regimes_round_trip():
    assert few_shot_name("sprite_xpos", 5) == "sprite_xpos@5shot"
    assert split_name("sprite_xpos@5shot") == ("sprite_xpos", 5) and split_name("sprite_xpos") == (
        "sprite_xpos",
        None,
    )
    assert regime("a@25shot") == "25-shot" and regime("a") == "1k"
    assert regime_order(["1k", "25-shot", "5-shot", "25-shot"]) == ["5-shot", "25-shot", "1k"]
    assert tasks_with_few_shot(("a", "b"), (25, 5)) == (
        "a",
        "b",
        "a@5shot",
        "b@5shot",
        "a@25shot",
        "b@25shot",
    )


def test_per_class_split_follows_vtab_proportions_and_rejects_one_shot():
    assert per_class_split(5) == (4, 1) and per_class_split(25) == (20, 5) and per_class_split(2) == (1, 1)
    with pytest.raises(ValueError, match="at least 2 images per class"):
        per_class_split(1)
    with pytest.raises(ValueError, match="at least 2"):
        FewShotBenchmark(Tiny(), (1,))


def test_positions_take_k_per_class_nested_and_fixed():
    labels = np.repeat([0, 1, 2], 30)
    five, twenty = few_shot_positions(labels, 5, "k"), few_shot_positions(labels, 20, "k")
    assert (
        np.bincount(labels[five]).tolist() == [5, 5, 5] and np.bincount(labels[twenty]).tolist() == [20] * 3
    )
    assert set(five) <= set(twenty), "fewer shots are a subset of more shots"
    assert np.array_equal(five, few_shot_positions(labels, 5, "k"))
    assert not np.array_equal(five, few_shot_positions(labels, 5, "other task"))
    # a class with fewer images than asked gives all it has
    short = few_shot_positions(np.array([0, 0, 1]), 2, "k")
    assert sorted(np.array([0, 0, 1])[short].tolist()) == [0, 0, 1]


def test_few_shot_task_splits_come_from_the_right_vtab_splits():
    fs = FewShotBenchmark(Tiny(), (5, 25))
    assert fs.task_names == ["t", "t@5shot", "t@25shot"]
    assert fs.task_info("t@5shot").name == "t@5shot" and fs.task_info("t@5shot").num_classes == 3
    assert fs.task_info("t@5shot").relates_to == "a"
    tr, va, both = (fs.task("t@5shot", s) for s in ("train800", "val200", "train800val200"))
    assert np.bincount(tr.labels).tolist() == [4, 4, 4] and np.bincount(va.labels).tolist() == [1, 1, 1]
    assert (ids(tr) < 90).all() and (ids(va) >= 90).all(), (
        "train800 part from train800, val200 part from val200"
    )
    assert ids(both).tolist() == ids(tr).tolist() + ids(va).tolist(), (
        "train800 first, as selection's val_split needs"
    )
    labels_by_id = dict(
        zip(ids(Tiny().task("t", "train800val200")).tolist(), Tiny().labels["train800val200"], strict=True)
    )
    assert [labels_by_id[i] for i in ids(both)] == both.labels.tolist()
    assert ids(fs.task("t@5shot", "test")).tolist() == ids(Tiny().task("t", "test")).tolist()
    # 25-shot asks 20 + 5 per class: train800 has 30 per class, val200 only 8 -> 5
    big = fs.task("t@25shot", "train800val200")
    assert np.bincount(big.labels).tolist() == [25, 25, 25] and set(ids(both)) <= set(ids(big))
    assert ids(fs.task("t", "train800")).tolist() == ids(Tiny().task("t", "train800")).tolist()


def test_unknown_tasks_and_splits_are_named():
    fs = FewShotBenchmark(Tiny(), (5,))
    with pytest.raises(KeyError, match="unknown task 't@7shot'.*few_shot setting: \\[5\\]"):
        fs.task("t@7shot", "train800")
    with pytest.raises(KeyError, match="unknown task 'u@5shot'"):
        fs.task_info("u@5shot")
    with pytest.raises(UnknownSplitError):
        fs.task("t@5shot", "train")


def test_resolution_and_upstream_pass_through():
    inner = Tiny()
    fs = FewShotBenchmark(inner, (5,))
    fs.resolution = (40, 32)
    assert inner.resolution == (40, 32) and fs.resolution == (40, 32)
    assert fs.classes == ["a", "b"] and len(fs.upstream_data("train")) == 2
    assert fs.describe()["few_shot"] == [5]


def test_scales_declare_their_regimes():
    assert get_scale("cpu").study.few_shot == (5, 25) and get_scale("paper").study.few_shot == ()
    assert get_scale("smoke").study.few_shot == (3,)


def test_few_shot_labels_alone_are_the_labels_of_the_subsets():
    """What sizes and test scoring read: the same labels as the subsets, from the inner benchmark's labels."""
    fs = FewShotBenchmark(Tiny(), [2, 5])
    for task in fs.task_names:
        for split in ("train800", "val200", "train800val200", "test"):
            assert np.array_equal(fs.task_labels(task, split), fs.task(task, split).labels), (task, split)
    assert len(fs.task_labels("t@5shot", "train800val200")) == 15
    with pytest.raises(UnknownSplitError):
        fs.task_labels("t@5shot", "holdout")
