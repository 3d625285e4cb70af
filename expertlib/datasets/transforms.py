"""BiT-HyperRule preprocessing as pure functions, shared by every loader.

Resolution: (precrop, crop) = (160, 128) for images smaller than 96x96 in area, else (448, 384) in the BiT
paper's text ("bit-paper") or (512, 480) in BiT's released code ("bit-code"; :func:`bit_resolution`). Training:
resize to precrop, random crop, random horizontal flip; evaluation: resize to crop. Pixels go to [-1, 1].
Our 32x32 ``cpu``/``smoke`` scales use the same recipe at (36, 32) (:func:`small_resolution`).

The flip and the crop are switches per task (BiT's Supplementary F turns them off where they change labels:
a mirrored azimuth, a cropped count or position). A task without the random crop trains on exactly its
evaluation image (resized to crop), flipped where flips are on; its random draws are still made, so the
generator's stream (and mixup's pairs after it) is the same whatever the switches.

Two forms: torchvision pipelines for PIL images (folder datasets) and batched tensor functions for the
in-memory embedded benchmark (one generator per batch, so training resumes exactly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from expertlib.utils.runtime import to_device

HYPERRULE_RESOLUTIONS = {"bit-paper": (448, 384), "bit-code": (512, 480)}
"""(precrop, crop) for images of 96x96 px or more: the BiT paper's text (section 3.3: 448/384 for every model but
R152x4) and BiT's released ``bit_hyperrule.py`` (512/480). Smaller images get (160, 128) in both."""


def bit_resolution(height: int, width: int, recipe: str = "bit-code") -> tuple[int, int]:
    """BiT-HyperRule's (precrop, crop) for an original image size, by ``recipe`` ("bit-paper" or "bit-code")."""
    if recipe not in HYPERRULE_RESOLUTIONS:
        raise ValueError(
            f"unknown BiT-HyperRule recipe {recipe!r}; use one of: {', '.join(HYPERRULE_RESOLUTIONS)}"
        )
    return (160, 128) if height * width < 96 * 96 else HYPERRULE_RESOLUTIONS[recipe]


def small_resolution(crop: int = 32) -> tuple[int, int]:
    """The scaled-down rule for small inputs: precrop 12.5% larger than the crop (36 for 32)."""
    return (round(crop * 1.125), crop)


def to_unit_range(x: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1] (BiT's input scaling)."""
    return x.float().div_(127.5).sub_(1.0)


def _nchw(images: Tensor) -> Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return to_unit_range(images.permute(0, 3, 1, 2))


def _resized(images: Tensor, size: int) -> Tensor:
    """uint8 NHWC images as float NCHW in [-1, 1] at ``size`` x ``size`` (bilinear, antialiased)."""
    x = _nchw(images)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def eval_batch(images: Tensor, crop: int) -> Tensor:
    """Batched evaluation transform for uint8 NHWC images: resize to ``crop``, [-1, 1], NCHW."""
    return _resized(images, crop).contiguous(memory_format=torch.channels_last)


def crop_draws(n: int, precrop: int, crop: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """The random part of a training batch of ``n`` examples: crop offsets (y, x) and flips, in that order."""
    span = precrop - crop + 1
    oy = torch.randint(0, span, (n,), generator=generator)
    ox = torch.randint(0, span, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return oy, ox, flips


def train_batch(
    images: Tensor,
    precrop: int,
    crop: int,
    flip: bool | Tensor,
    generator: torch.Generator,
    keep: slice | None = None,
    total: int | None = None,
    random_crop: bool = True,
) -> Tensor:
    """Batched training transform: resize to precrop, one random crop per image, optional flip; without
    ``random_crop``, the evaluation transform (resize to crop) and the optional flip.

    The random draws are made for the whole global batch (crops too, when unused: the same stream either way);
    ``keep`` then selects the examples to transform, so a process that handles one share of a global batch gets
    exactly the crops a single process would. When ``images`` already holds only that share, pass ``total``
    (the global batch size) with ``keep``. ``flip``: for the whole batch, or one bool per example of the global
    batch (False where a mirror would change the example's label: its flip is drawn, then dropped)."""
    n_all = total if total is not None else images.shape[0]
    oy, ox, flips = crop_draws(n_all, precrop, crop, generator)
    if keep is not None:
        oy, ox, flips = oy[keep], ox[keep], flips[keep]
        flip = flip[keep] if isinstance(flip, Tensor) else flip
        if total is None:
            images = images[keep]
    return crop_and_flip(images, precrop, crop, flip, oy, ox, flips, random_crop)


def crop_and_flip(images: Tensor, precrop: int, crop: int, flip: bool | Tensor, oy: Tensor, ox: Tensor,
                  flips: Tensor, random_crop: bool = True) -> Tensor:  # fmt: skip
    """The deterministic part of :func:`train_batch`: uint8 NHWC images to [-1, 1], resized to ``precrop`` when
    they are not that size, cropped at offsets ``(oy, ox)`` and, with ``flip``, mirrored where ``flips``; without
    ``random_crop``, resized to ``crop`` instead (the evaluation image; the offsets are drawn but unused). The
    draws are made on a CPU generator and applied where the images are (a GPU's too: pass them there, without a
    sync, through :func:`expertlib.utils.runtime.to_device`; any batch size, e.g. K models' batches at once).
    ``flip`` may be one bool per example (aligned with ``flips``): only those examples may be mirrored."""
    x = _resized(images, precrop if random_crop else crop)
    n, dev = x.shape[0], x.device
    if oy.device != dev:  # the draws of a batch decoded on the GPU: one pinned, non-blocking copy
        oy, ox, flips = to_device(torch.stack([oy, ox, flips.long()]), dev).unbind(0)
    flips = flips.bool()
    if isinstance(flip, Tensor):  # per example: a mirror keeps these examples' labels, not the others'
        flips, flip = flips & flip.to(dev).bool(), True
    if random_crop:
        span = torch.arange(crop, device=dev)
        rows = (oy[:, None] + span[None]).view(n, 1, crop, 1).expand(n, x.shape[1], crop, precrop)
        x = x.gather(2, rows)
        cols = (ox[:, None] + span[None]).view(n, 1, 1, crop).expand(n, x.shape[1], crop, crop)
        x = x.gather(3, cols)
    if flip:
        x = torch.where(flips.view(n, 1, 1, 1), x.flip(-1), x)
    return x.contiguous(memory_format=torch.channels_last)
