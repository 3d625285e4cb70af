import numpy as np
import pytest
from PIL import Image

from expertlib.datasets.folders import DatasetNotFoundError
from expertlib.datasets.vtab import VTAB_TASKS, load_vtab


def _img(path, rng, size=(12, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


def test_registry_matches_vtab():
    assert len(VTAB_TASKS) == 19
    groups = [t.group for t in VTAB_TASKS.values()]
    assert (groups.count("natural"), groups.count("specialized"), groups.count("structured")) == (7, 4, 8)
    assert VTAB_TASKS["sun397"].num_classes == 397 and VTAB_TASKS["clevr_count"].num_classes == 8


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
    assert (len(s.train800), len(s.val200), len(s.test)) == (60, 10, 30)

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
    assert (len(s.train800), len(s.val200), len(s.test)) == (36, 4, 16)
    assert {y for _, y in (s.test[i] for i in range(16))} == set(range(16))


def test_missing_data_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"vtab/resisc45.*train,val,test"):
        load_vtab("resisc45", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="download=True"):
        load_vtab("dtd", tmp_path)
    with pytest.raises(KeyError, match="unknown VTAB task 'cifar10'"):
        load_vtab("cifar10", tmp_path)
