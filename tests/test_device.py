"""A fine-tune's data held on the device (expertlib.datasets.device), checked on a CPU: the same code path as on a
GPU, with device="cpu". The batches equal the CPU path's bit for bit (the same transforms and the same draws),
so crops, flips and mixup follow the CPU path's distribution; one seed gives one run; images are decoded once."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from expertlib.datasets.batches import ArrayData, ImageData
from expertlib.datasets.device import DeviceData, on_device
from expertlib.models.resnet import create_model
from expertlib.train.batching import StepBatches
from expertlib.train.schedules import scaled_hyperrule
from expertlib.train.training import TrainConfig, train


def _images(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


class Counting:
    """A map-style dataset of PIL images that counts its reads."""

    def __init__(self, arrays):
        self.arrays, self.reads = arrays, 0

    def __len__(self):
        return len(self.arrays)

    def __getitem__(self, i):
        self.reads += 1
        return Image.fromarray(self.arrays[i]), 0


def _sources(flip=True, random_crop=True):
    """The CPU path's kinds of task: in-memory arrays (resized per batch, 32 -> 36), files of one size (stacked
    as they are) and files of mixed sizes (each resized to the precrop by PIL)."""
    uniform = _images(12, 32)
    mixed = [_images(1, 20 + 3 * (i % 3), seed=i)[0] for i in range(12)]
    labels = np.arange(12) % 3
    return {
        "arrays": ArrayData(uniform, labels, 36, 32, flip, random_crop),
        "files, one size": ImageData(Counting(list(uniform)), labels, 36, 32, flip, random_crop=random_crop),
        "files, mixed sizes": ImageData(Counting(mixed), labels, 36, 32, flip, random_crop=random_crop),
    }


@pytest.mark.parametrize("random_crop", [True, False])
@pytest.mark.parametrize("kind", list(_sources()))
def test_held_batches_equal_the_cpu_paths_for_the_same_draws(kind, random_crop):
    source = _sources(random_crop=random_crop)[kind]
    held = DeviceData(source, "cpu")
    for step in range(5):
        idx = np.random.default_rng(step).permutation(12)[
            :8
        ]  # every batch mixes sizes where there are several
        for part in (None, slice(2, 6)):
            a = source.batch(idx, True, torch.Generator().manual_seed(step), part)
            b = held.batch(idx, True, torch.Generator().manual_seed(step), part)
            assert torch.equal(a, b)
        assert torch.equal(
            source.batch(idx, False, torch.Generator()), held.batch(idx, False, torch.Generator())
        )


@pytest.mark.parametrize("kind", list(_sources()))
def test_without_the_random_crop_every_path_trains_on_the_evaluation_image(kind):
    """A crop-disabled task (flips off too) trains on exactly its evaluation images, on the CPU path and held on
    the device, a share of a global batch included; a subset keeps the switch."""
    from expertlib.datasets.batches import subset

    source = _sources(flip=False, random_crop=False)[kind]
    idx = np.array([5, 0, 7, 3, 11, 2, 9, 4])
    want = source.batch(idx, False, torch.Generator())
    for data in (source, DeviceData(source, "cpu"), subset(source, np.arange(12), source.labels)):
        assert torch.equal(data.batch(idx, True, torch.Generator().manual_seed(1)), want)
        assert torch.equal(data.batch(idx, True, torch.Generator().manual_seed(1), slice(2, 6)), want[2:6])


def test_images_are_decoded_once_per_size_used():
    source = _sources()["files, mixed sizes"]
    held = DeviceData(source, "cpu", chunk=5)  # chunks of 5: the first holds one size until the second mixes
    for step in range(20):
        held.batch(np.arange(step % 4, 12, 2), True, torch.Generator().manual_seed(step))
    assert source.dataset.reads == 12
    held.batch(np.arange(12), False, torch.Generator())
    held.batch(np.arange(12), False, torch.Generator())
    assert source.dataset.reads == 24  # evaluation's size (the crop) decoded once more, then held
    uniform = _sources()["files, one size"]
    held = DeviceData(uniform, "cpu")
    held.batch(np.arange(12), True, torch.Generator())
    held.batch(np.arange(12), False, torch.Generator())
    assert uniform.dataset.reads == 12  # one size: held once for both uses


def test_crops_and_flips_over_many_draws_follow_the_cpu_paths_distribution():
    """Images whose pixels hold their own coordinates: every held batch's crop offsets and flips are read back
    and compared with the CPU path's (the same sequence) and with the distribution they should have (uniform
    offsets, fair flips)."""
    precrop, crop = 20, 16
    yy, xx = np.meshgrid(np.arange(precrop), np.arange(precrop), indexing="ij")
    coords = np.stack([yy * 10, xx * 10, np.zeros_like(yy)], -1).astype(np.uint8)
    source = ArrayData(np.repeat(coords[None], 16, 0), np.zeros(16), precrop, crop, True)
    held = DeviceData(source, "cpu")

    def read_back(
        x,
    ):  # [-1, 1] back to coordinates: top-left row and column, and whether the row runs backwards
        px = torch.round((x + 1) * 127.5 / 10).long()
        oy, first, last = px[:, 0, 0, 0], px[:, 1, 0, 0], px[:, 1, 0, -1]
        flipped = first > last
        return oy, torch.where(flipped, last, first), flipped

    draws = {"cpu": [], "held": []}
    steps = {
        "held": StepBatches(held, 16, seed=7, start=0, end=100),
        "cpu": StepBatches(source, 16, 7, 0, 100),
    }
    for step in range(100):
        for path, items in steps.items():
            draws[path].append(read_back(items[step][1]))
    oy, ox, flips = (torch.cat(t).numpy() for t in zip(*draws["held"], strict=True))
    for got, want in zip(zip(*draws["held"], strict=True), zip(*draws["cpu"], strict=True), strict=True):
        assert torch.equal(torch.cat(got), torch.cat(want))
    span = precrop - crop + 1
    for offsets in (oy, ox):
        assert offsets.min() == 0 and offsets.max() == span - 1
        assert stats.chisquare(np.bincount(offsets, minlength=span)).pvalue > 1e-3
    assert stats.binomtest(int(flips.sum()), len(flips)).pvalue > 1e-3


def _finetune(data, seed=0, mixup=0.2):
    torch.manual_seed(0)
    m = create_model("tiny", num_classes=3)
    cfg = TrainConfig(scaled_hyperrule(4, 0.05), batch_size=8, seed=seed, mixup_alpha=mixup)
    train(m, list(m.parameters()), data, cfg, 3, progress=False)
    return [p.detach().clone() for p in m.parameters()]


def test_training_on_held_data_with_mixup_is_the_cpu_paths_and_one_seed_gives_one_run():
    source = _sources()["files, mixed sizes"]
    on_cpu = _finetune(source)
    held = _finetune(DeviceData(source, "cpu"))
    again = _finetune(DeviceData(source, "cpu"))
    other = _finetune(DeviceData(source, "cpu"), seed=1)
    assert all(torch.equal(a, b) for a, b in zip(on_cpu, held, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(held, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(held, other, strict=True))


def test_on_device_holds_a_task_on_a_gpu_only():
    source = _sources()["arrays"]
    assert on_device(source, "cpu") is source
    with pytest.raises(TypeError, match="holds ArrayData or ImageData"):
        DeviceData(object(), "cpu")
