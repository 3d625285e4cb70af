import pytest
import torch

from expertlib.datasets.transforms import (
    bit_resolution,
    eval_batch,
    small_resolution,
    train_batch,
)


def test_resolution_rule():
    assert bit_resolution(32, 32) == (160, 128)
    assert bit_resolution(95, 96) == (160, 128)
    assert bit_resolution(96, 96) == (512, 480)
    assert small_resolution(32) == (36, 32)


def test_batch_transforms_are_deterministic_per_generator():
    imgs = torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8)
    a = train_batch(imgs, 36, 32, True, torch.Generator().manual_seed(5))
    b = train_batch(imgs, 36, 32, True, torch.Generator().manual_seed(5))
    c = train_batch(imgs, 36, 32, True, torch.Generator().manual_seed(6))
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    e = eval_batch(imgs, 32)
    assert torch.allclose(e[0], imgs[0].permute(2, 0, 1).float() / 127.5 - 1)


def test_flip_off_keeps_orientation():
    imgs = torch.zeros(16, 32, 32, 3, dtype=torch.uint8)
    imgs[:, :, :8] = 255  # bright left edge
    out = train_batch(imgs, 32, 32, False, torch.Generator().manual_seed(0))
    assert (out[:, :, :, :4].mean(dim=(1, 2, 3)) > 0.9).all()


def _asymmetric(n: int = 8, size: int = 32) -> torch.Tensor:
    """Images whose every pixel differs from its mirror image (a left-to-right ramp plus noise)."""
    ramp = torch.linspace(0, 200, size).round().to(torch.uint8)
    noise = torch.randint(
        0, 40, (n, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    return ramp.view(1, 1, size, 1) + noise


def test_without_the_random_crop_a_training_image_is_its_evaluation_image():
    """A crop-disabled task (BiT's Supplementary F: counts, distances, positions) trains on exactly the evaluation
    resize, here from 40 px images to 32 (precrop 36 unused), flipped where flips are on and never otherwise."""
    imgs = _asymmetric(size=40)
    evaluation = eval_batch(imgs, 32)
    plain = train_batch(imgs, 36, 32, False, torch.Generator().manual_seed(3), random_crop=False)
    assert torch.equal(plain, evaluation) and plain.is_contiguous(memory_format=torch.channels_last)
    flipped = train_batch(imgs, 36, 32, True, torch.Generator().manual_seed(3), random_crop=False)
    mirrored = [torch.equal(f, e.flip(-1)) for f, e in zip(flipped, evaluation, strict=True)]
    kept = [torch.equal(f, e) for f, e in zip(flipped, evaluation, strict=True)]
    assert all(m != k for m, k in zip(mirrored, kept, strict=True)) and any(mirrored) and any(kept)


def test_the_switches_leave_the_random_draws_as_they_are():
    """Flip and crop switched off still draw the crops and flips, so the generator's stream (and mixup's pairs,
    drawn after them) is the same whatever a task's switches."""
    imgs = _asymmetric()
    states = []
    for flip in (True, False):
        for random_crop in (True, False):
            g = torch.Generator().manual_seed(9)
            train_batch(imgs, 36, 32, flip, g, random_crop=random_crop)
            states.append(g.get_state())
    assert all(torch.equal(s, states[0]) for s in states)


def test_a_flip_disabled_task_never_yields_a_mirrored_image_over_many_draws():
    """Over 200 batches of 8 (1,600 draws, about 800 of them flips where flips are on), with and without the
    random crop: no training image is ever mirrored when flips are off (the ramp's left edge stays dark)."""
    imgs = _asymmetric(size=32)
    g = torch.Generator().manual_seed(0)
    for random_crop in (True, False):
        left, right = [], []
        for _ in range(200):
            x = train_batch(imgs, 36, 32, False, g, random_crop=random_crop)
            left.append(x[..., :4].mean(dim=(1, 2, 3)))
            right.append(x[..., -4:].mean(dim=(1, 2, 3)))
        assert (torch.cat(left) < torch.cat(right)).all()
    flips = [train_batch(imgs, 36, 32, True, g, random_crop=False) for _ in range(20)]
    assert any((x[..., :4].mean(dim=(1, 2, 3)) > x[..., -4:].mean(dim=(1, 2, 3))).any() for x in flips)


def test_bit_resolution_by_recipe():
    """The BiT paper's text (section 3.3): 448/384 for images of 96x96 px or more, BiT's released code 512/480;
    below 96x96 in area both use 160/128; 480 px costs 1.56x the pixels of 384."""
    assert bit_resolution(96, 96, "bit-paper") == (448, 384) and bit_resolution(500, 375, "bit-code") == (
        512,
        480,
    )
    assert bit_resolution(95, 96, "bit-paper") == bit_resolution(95, 96, "bit-code") == (160, 128)
    assert round((480 / 384) ** 2, 2) == 1.56
    with pytest.raises(ValueError, match="unknown BiT-HyperRule recipe 'bit-papers'"):
        bit_resolution(200, 200, "bit-papers")


def test_a_per_example_flip_rule_mirrors_only_the_examples_it_allows():
    """One bool per example (the upstream gratings at 45 and 135 degrees, which a mirror swaps, say False): over
    many draws the marked examples are mirrored about half the time and the others never, on the whole batch
    and on one rank's share of it, with the generator's stream unchanged."""
    imgs = _asymmetric()
    allowed = torch.tensor([True, False] * 4)
    g, plain = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    mirrored = torch.zeros(8)
    for _ in range(100):
        x = train_batch(imgs, 36, 32, allowed, g)
        train_batch(imgs, 36, 32, True, plain)
        mirrored += (x[..., :4].mean(dim=(1, 2, 3)) > x[..., -4:].mean(dim=(1, 2, 3))).float()
    assert (mirrored[~allowed] == 0).all() and (mirrored[allowed] > 30).all()
    assert torch.equal(g.get_state(), plain.get_state())
    share = train_batch(imgs, 36, 32, allowed, torch.Generator().manual_seed(4), keep=slice(4, 8))
    whole = train_batch(imgs, 36, 32, allowed, torch.Generator().manual_seed(4))
    assert torch.equal(share, whole[4:8])
