"""Streaming upstream images as bytes, decoded where the model runs (expertlib.datasets.encoded), checked on a CPU:
the workers read bytes only, and the training process decodes with torchvision.io.decode_jpeg on device="cpu"
(the GPU's code path, nvJPEG aside) and crops with the PIL path's draws; the result agrees with the PIL path
within a JPEG decoder's and a resampler's rounding."""

import numpy as np
import pytest
import torch
from PIL import Image

from expertlib.datasets.batches import ImageData, StagedData, ready, subset
from expertlib.datasets.encoded import (
    EncodedBatch,
    EncodedImageData,
    decode_images,
    exif_orientation,
    read_bytes,
)
from expertlib.datasets.folders import CorruptImageError, read_image
from expertlib.train.batching import EvalBatches, StepBatches, batches, staged_on


def _photo(h, w, seed):
    """A smooth image (JPEG's kind of content: noise would make every decoder differ most)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    a = rng.uniform(40, 215, 3) * (
        0.5 + 0.5 * np.sin(6 * yy + rng.uniform(0, 3))[..., None] * np.cos(4 * xx)[..., None]
    )
    return np.clip(a, 0, 255).astype(np.uint8)


def _save(path, array, fmt="JPEG", orientation=None, mode="RGB"):
    im = Image.fromarray(array).convert(mode)
    kwargs = {"quality": 90} if fmt == "JPEG" else {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    im.save(path, format=fmt, **kwargs)
    return path


@pytest.fixture
def files(tmp_path):
    """JPEGs of several sizes, a grey one, one stored sideways (EXIF 6), and a PNG."""
    paths = [_save(tmp_path / f"{i}.jpg", _photo(30 + 4 * (i % 4), 40 - 3 * (i % 3), i)) for i in range(10)]
    paths.append(_save(tmp_path / "grey.jpg", _photo(36, 36, 20), mode="L"))
    paths.append(_save(tmp_path / "sideways.jpg", _photo(30, 44, 21), orientation=6))
    paths.append(_save(tmp_path / "still.png", _photo(33, 37, 22), fmt="PNG"))
    return paths


def _data(paths):
    return EncodedImageData(paths, np.arange(len(paths)) % 3, 28, 24, True)


def test_workers_read_bytes_and_the_device_decode_matches_pil_within_jpeg_tolerance(files):
    data = _data(files)
    assert isinstance(data, StagedData) and not staged_on(data, "cpu")  # a CPU trains on the PIL path
    staged = batches(StepBatches(data, 8, seed=3, start=0, end=4, staged=True), workers=1, pin=False)
    plain = StepBatches(data, 8, seed=3, start=0, end=4)
    for i, (step, x, y, state) in enumerate(staged):
        assert isinstance(x, EncodedBatch) and x.data.dtype == torch.uint8  # bytes, not pixels
        assert [bytes(b.numpy()) for b in x.blobs()] == [open(n, "rb").read() for n in x.names]
        want = plain[i]
        assert step == want[0] and torch.equal(y, want[2])
        assert torch.equal(state, want[3])  # the generator ends where batch() leaves it: mixup draws alike
        got = ready(data, x, "cpu")
        assert got.shape == want[1].shape and got.is_contiguous(memory_format=torch.channels_last)
        diff = (got - want[1]).abs() * 127.5  # in levels of 255
        assert diff.mean() < 1.0 and diff.max() <= 8, (diff.mean(), diff.max())
    plain = EvalBatches(data, 5)
    for i, x in enumerate(batches(EvalBatches(data, 5, staged=True), 1, False)):
        assert (ready(data, x, "cpu") - plain[i]).abs().mul(127.5).mean() < 2.0


def test_a_share_of_a_staged_global_batch_is_that_share_of_the_whole(files):
    data = _data(files)
    idx = np.arange(8)
    whole = data.finish(data.stage(idx, True, torch.Generator().manual_seed(1)), "cpu")
    part = data.finish(data.stage(idx, True, torch.Generator().manual_seed(1), slice(4, 8)), "cpu")
    assert torch.equal(part, whole[4:])


def test_without_the_random_crop_the_staged_path_trains_on_the_evaluation_image(files):
    """A crop-disabled task (flips off) staged and finished on the device trains on exactly the images its
    evaluation finishes (mixed sizes brought to the crop, not the precrop); a subset keeps the switch."""
    data = EncodedImageData(files, np.arange(len(files)) % 3, 28, 24, False, random_crop=False)
    idx = np.arange(8)
    want = data.finish(data.stage(idx, False, torch.Generator()), "cpu")
    assert torch.equal(data.finish(data.stage(idx, True, torch.Generator().manual_seed(2)), "cpu"), want)
    sub = subset(data, idx, np.zeros(8))
    assert not sub.random_crop and torch.equal(
        sub.finish(sub.stage(idx, True, torch.Generator()), "cpu"), want
    )


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pil_applies_it(tmp_path, orientation):
    path = _save(tmp_path / "o.jpg", _photo(20, 32, orientation), orientation=orientation)
    blob = read_bytes(path)
    assert exif_orientation(blob) == orientation
    (got,) = decode_images([blob], [orientation], "cpu")
    want = torch.from_numpy(np.array(read_image(path))).permute(2, 0, 1)
    assert got.shape == want.shape
    assert (got.float() - want.float()).abs().mean() < 1.5


def test_files_that_are_not_jpegs_decode_by_pil_and_a_corrupt_one_is_named(tmp_path, files):
    png = files[-1]
    (got,) = decode_images([read_bytes(png)], [1], "cpu")
    assert torch.equal(got, torch.from_numpy(np.array(read_image(png))).permute(2, 0, 1))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"\x00" * 64)
    with pytest.raises(CorruptImageError, match="bad.jpg"):
        _data([bad]).finish(_data([bad]).stage(np.arange(1), False, torch.Generator()), "cpu")


def test_a_subset_stays_encoded_and_batches_as_the_images_it_holds(files):
    data = _data(files)
    idx = np.array([11, 2, 5])
    sub = subset(data, idx, np.array([0, 1, 0]))
    assert isinstance(sub, EncodedImageData) and [sub.paths[i] for i in range(3)] == [files[i] for i in idx]
    reference = ImageData([(read_image(files[i]), 0) for i in idx], [0, 1, 0], 28, 24, True)
    for train in (True, False):
        got = sub.batch(np.arange(3), train, torch.Generator().manual_seed(0))
        assert torch.equal(got, reference.batch(np.arange(3), train, torch.Generator().manual_seed(0)))


def test_training_and_evaluation_on_the_staged_path_decode_ahead_and_agree_with_pil(files, monkeypatch):
    """train() and predict() as they run on a GPU (staged batches, bytes from a worker, decoded one batch ahead
    in a background thread), here on a CPU: they agree with the PIL path within the decoders' rounding."""
    import expertlib.train.evaluation as E
    import expertlib.train.training as T
    from expertlib.models.resnet import create_model
    from expertlib.train.schedules import scaled_hyperrule

    data, finished = _data(files), []
    finish = data.finish
    data.finish = lambda x, device: finished.append(x.train) or finish(x, device)
    weights, logits = [], []
    for staged in (False, True):
        for module in (T, E):  # the training loop and the evaluation loop each ask
            monkeypatch.setattr(
                module, "staged_on", lambda d, device, s=staged: s and isinstance(d, StagedData)
            )
        torch.manual_seed(0)
        m = create_model("tiny", num_classes=3)
        cfg = T.TrainConfig(scaled_hyperrule(3, 0.05), batch_size=4, seed=1, workers=1, mixup_alpha=0.2)
        T.train(m, list(m.parameters()), data, cfg, 3, progress=False)
        weights.append([p.detach().clone() for p in m.parameters()])
        logits.append(E.predict(m.eval(), data, 4, "cpu", workers=1))
    assert finished.count(True) == 3 and finished.count(False) == 4  # 3 steps, 4 evaluation batches, staged
    assert all(torch.allclose(a, b, atol=2e-3) for a, b in zip(*weights, strict=True))
    assert torch.allclose(*logits, atol=2e-2) and logits[0].shape == (len(files), 3)


def test_only_the_images_the_decoder_refuses_fall_back_and_the_rest_decode_in_batches(files, monkeypatch):
    """A JPEG the device's decoder refuses fails its whole decode call; the batch is halved until the refused one
    stands alone, so only it goes to PIL (here: the sideways one, refused by a stand-in for nvJPEG)."""
    import torchvision.io as tio

    from expertlib.datasets import encoded as E

    blobs = [read_bytes(p) for p in files[:12]]
    refused, calls, real = blobs[11], [], tio.decode_jpeg

    def picky(batch, **kwargs):
        calls.append(len(batch))
        if any(b is refused for b in batch):
            raise RuntimeError("Error while decoding JPEG images: unsupported")
        return real(batch, **kwargs)

    monkeypatch.setattr(tio, "decode_jpeg", picky)
    pil_calls, real_pil = [], E._pil
    monkeypatch.setattr(E, "_pil", lambda blob, name: pil_calls.append(name) or real_pil(blob, name))
    names = [str(p) for p in files[:12]]
    out = decode_images(blobs, [exif_orientation(b) for b in blobs], "cpu", names)
    assert pil_calls == [names[11]]  # the refused image alone
    assert (
        calls[0] == 12 and len(calls) <= 2 * 4 + 1 and max(calls[1:]) >= 6
    )  # halving: the others in batches
    for p, img in zip(files[:12], out, strict=True):
        want = torch.from_numpy(np.array(read_image(p))).permute(2, 0, 1)
        assert img.shape == want.shape and (img.float() - want.float()).abs().mean() < 2.0


def test_one_batched_resize_equals_torchs_antialiased_resize_of_each_image():
    import torch.nn.functional as F

    from expertlib.datasets.encoded import resize_batch

    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in
              ((30, 40), (37, 33), (20, 20), (64, 90), (12, 50))]  # fmt: skip
    for size in (24, 48):  # shrinking and enlarging, in one call
        out = resize_batch(images, size)
        for im, got in zip(images, out, strict=True):
            ref = F.interpolate(im[None].float(), size=(size, size), mode="bilinear", align_corners=False,
                                antialias=True).round().clamp(0, 255).to(torch.uint8)[0]  # fmt: skip
            diff = (got.int() - ref.int()).abs()
            assert (
                diff.max() <= 1 and (diff > 0).float().mean() < 0.01
            )  # the same filter, summed in another order
