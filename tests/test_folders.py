import numpy as np
import pytest
import torch
from PIL import Image

from expertlib.datasets.folders import CorruptImageError, DatasetNotFoundError, ImageFolderTree
from expertlib.datasets.hierarchy import EmptySubsetError, LabelHierarchy, UnknownNodeError

EDGES = [("n0", "n1"), ("n0", "n2"), ("n1", "n11"), ("n1", "n12"), ("n2", "n21")]
NAMES = {"n0": "entity", "n1": "animal", "n2": "artifact", "n11": "dog", "n12": "cat", "n21": "car, auto"}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "imagenet21k"
    rng = np.random.default_rng(0)
    for wnid, n in (("n11", 3), ("n12", 2), ("n21", 4), ("n1", 1)):
        (root / wnid).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
                root / wnid / f"{wnid}_{i}.JPEG"
            )
    (root / "n21" / "notes.txt").write_text("not an image")
    return root, LabelHierarchy.from_edges(EDGES, NAMES)


def test_reads_wnid_folders_and_expert_views(tree):
    root, h = tree
    ds = ImageFolderTree(root, h)
    assert ds.classes == ["n1", "n11", "n12", "n21"] and len(ds) == 10
    img, y = ds[0]
    assert img.size == (24, 20) and y == 0
    animal = ds.expert_subset("animal")
    assert animal.classes == ["n1", "n11", "n12"] and len(animal) == 6
    assert animal.class_indices == [0, 1, 2]
    assert sorted({animal[i][1] for i in range(len(animal))}) == [0, 1, 2]
    car = ds.expert_subset("car")
    assert len(car) == 4 and car[0][1] == 0 and car.class_indices == [3]
    with pytest.raises(UnknownNodeError):
        ds.expert_subset("unicorn")


def test_multi_label_rows_include_labelled_ancestors(tree):
    root, h = tree
    m = ImageFolderTree(root, h).multi_label_matrix(with_ancestors=True)
    assert torch.equal(m[1], torch.tensor([1.0, 1.0, 0.0, 0.0]))  # dog -> dog + animal (a label too)
    assert torch.equal(m[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_corrupt_images_raise_or_are_skipped(tree):
    root, h = tree
    bad = root / "n12" / "n12_broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    ds = ImageFolderTree(root, h)
    idx = [i for i, (p, _) in enumerate(ds.samples) if p == bad][0]
    with pytest.raises(CorruptImageError, match="n12_broken.JPEG"):
        ds[idx]
    skipping = ImageFolderTree(root, h, skip_corrupt=True)
    assert skipping.skipped == [bad] and len(skipping) == len(ds) - 1


def test_missing_root_and_unknown_wnid(tmp_path, tree):
    root, h = tree
    with pytest.raises(DatasetNotFoundError, match="one folder per WordNet id"):
        ImageFolderTree(tmp_path / "nowhere", h)
    (root / "n99").mkdir()
    with pytest.raises(UnknownNodeError, match="n99"):
        ImageFolderTree(root, h)
    (root / "n99").rmdir()
    empty = LabelHierarchy.from_edges(EDGES + [("n0", "n3")], {**NAMES, "n3": "plant"})
    with pytest.raises(EmptySubsetError, match="plant"):
        ImageFolderTree(root, empty).expert_subset("plant")
