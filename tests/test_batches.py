import numpy as np
import pytest
import torch
from PIL import Image

from expertlib.datasets.batches import ArrayData, ImageData, relabel_subset, subset, to_uint8


def _images(n=10, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def test_image_data_batches_equal_array_data_for_equal_sizes():
    imgs, labels = _images(), np.arange(10) % 3
    arr = ArrayData(imgs, labels, 20, 16, flip=True)
    pil = ImageData(
        [(Image.fromarray(a), int(y)) for a, y in zip(imgs, labels, strict=True)], None, 20, 16, True
    )
    assert np.array_equal(pil.labels, labels)
    idx = np.array([3, 1, 4, 1, 5, 9])
    for train in (True, False):
        a = arr.batch(idx, train, torch.Generator().manual_seed(5))
        b = pil.batch(idx, train, torch.Generator().manual_seed(5))
        assert torch.equal(a, b)


def test_a_share_of_a_global_batch_matches_the_whole_batch():
    imgs = _images(8)
    data = ImageData([(a, 0) for a in imgs], [0] * 8, 20, 16, True)
    idx = np.arange(8)
    whole = data.batch(idx, True, torch.Generator().manual_seed(1))
    part = data.batch(idx, True, torch.Generator().manual_seed(1), part=slice(4, 8))
    assert torch.equal(part, whole[4:])


def test_mixed_sizes_are_resized_and_bad_pixels_named():
    items = [(np.zeros((10, 12, 3), np.uint8), 0), (np.full((30, 20, 3), 255, np.uint8), 1)]
    data = ImageData(items, None, 20, 16, False)
    x = data.batch(np.arange(2), True, torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 16, 16) and x[0].max() == -1 and x[1].min() == 1
    assert data.batch(np.arange(2), False, torch.Generator()).shape == (2, 3, 16, 16)
    assert to_uint8(torch.zeros(3, 5, 4, dtype=torch.uint8)).shape == (5, 4, 3)
    assert to_uint8(np.zeros((5, 4), np.uint8)).shape == (5, 4, 3)
    with pytest.raises(TypeError, match="without a transform"):
        to_uint8(np.zeros((4, 4, 3), np.float32))


def test_relabel_subset_and_subset():
    labels = np.array([0, 5, 3, 5, 1, 3])
    idx, y = relabel_subset(labels, [5, 3])
    assert idx.tolist() == [1, 2, 3, 5] and y.tolist() == [0, 1, 0, 1]
    imgs = _images(6)
    for data in (
        ArrayData(imgs, labels, 16, 16, False),
        ImageData([(a, 0) for a in imgs], labels, 16, 16, False),
    ):
        sub = subset(data, idx, y)
        assert len(sub) == 4 and sub.labels.tolist() == [0, 1, 0, 1]
        got = sub.batch(np.arange(4), False, torch.Generator())
        want = data.batch(idx, False, torch.Generator())
        assert torch.equal(got, want)


def test_array_data_keeps_a_per_example_flip_rule_through_subsets_and_refuses_a_wrong_length():
    images = np.zeros((6, 8, 8, 3), dtype=np.uint8)
    data = ArrayData(images, np.arange(6), 9, 8, np.array([1, 0, 1, 0, 1, 0], dtype=bool))
    part = subset(data, np.array([1, 2]), np.array([0, 1]))
    assert part.flip.tolist() == [False, True]
    assert ArrayData(images, np.arange(6), 9, 8, np.bool_(True)).flip is True
    with pytest.raises(ValueError, match="one bool per example"):
        ArrayData(images, np.arange(6), 9, 8, np.ones(5, dtype=bool))
