"""A fine-tune's data held on the device: a VTAB-1k task decoded once, augmented there as tensor ops.

A VTAB-1k fine-tune sees its 1,000 training images hundreds of times (BiT-HyperRule: 500 to 20,000 steps of
512), so decoding each image once per job instead of once per step moves the whole input pipeline off the
CPU. :class:`DeviceData` decodes the images (PIL, in the training process, as
:class:`~expertlib.datasets.batches.ImageData` decodes them) into one uint8 tensor on the device, then builds
every batch there with the CPU path's own functions (:func:`expertlib.datasets.transforms.train_batch`,
``eval_batch``) and the CPU path's random draws: the draws are made on the batch's CPU generator and moved,
so one seed gives one run on any device, and on a CPU the batches equal the CPU path's bit for bit. (Mixup,
:func:`expertlib.train.training.mixup`, already works on whatever device the batch is on.)

What is held is what the CPU path batches: the images as they are when all share one size (a resize to
precrop, if any, then runs per batch on the device, as it runs per batch on the CPU), else each resized by
PIL to the size its use needs (precrop to train, crop to evaluate). Evaluation images are decoded the same
way, in chunks of ``chunk``, on their first use. Memory: one uint8 copy per size used; a 1,000-image task at
512 px is 0.8 GB.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from expertlib.datasets.batches import ArrayData, ImageData, TrainData, flips_of, resize_uint8, to_uint8
from expertlib.datasets.transforms import crop_and_flip, crop_draws, eval_batch
from expertlib.utils.runtime import to_device

DEVICE_DATA_LIMIT = 20_000
"""Most examples :func:`on_device` holds on a GPU (a VTAB-1k task has 1,000; its test sets up to ~22,000 at
their own size, about 1.6 GB at 160 px)."""


class DeviceData:
    """``source``'s examples decoded once into uint8 NHWC tensors on ``device`` and batched there."""

    def __init__(self, source: ArrayData | ImageData, device: str, chunk: int = 256) -> None:
        if not isinstance(source, (ArrayData, ImageData)):
            raise TypeError(f"DeviceData holds ArrayData or ImageData, not {type(source).__name__}")
        self.source, self.device, self.chunk = source, str(device), chunk
        self.labels = source.labels
        self.precrop, self.crop, self.flip = source.precrop, source.crop, source.flip
        self.random_crop = source.random_crop
        self._held: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def held(self, size: int) -> Tensor:
        """Every example as the CPU path would batch it for ``size`` (precrop or crop), on the device: decoded
        on the first call, kept after."""
        if size not in self._held:
            images, uniform = _decode(self.source, size, self.device, self.chunk)
            for s in (self.precrop, self.crop) if uniform else (size,):
                self._held[s] = images  # images of one size are held once for both uses
        return self._held[size]

    def batch(self, indices: np.ndarray, train: bool, generator: torch.Generator,
              part: slice | None = None) -> Tensor:  # fmt: skip
        """The batch ``train_batch`` / ``eval_batch`` make of these examples, built on the device: the indices and
        the random draws (made on ``generator`` for the whole batch, as on the CPU path) travel in one pinned,
        non-blocking copy, so building a batch never waits for the GPU. Without the random crop, a training image
        is its evaluation image (held at crop), flipped where the draws say."""
        chosen = indices if part is None else indices[part]
        if not train:
            return eval_batch(self.held(self.crop)[self._index(chosen)], self.crop)
        held = self.held(self.train_size)
        oy, ox, flips = crop_draws(len(indices), self.precrop, self.crop, generator)
        keep = slice(None) if part is None else part
        flips = flips[keep]
        if not isinstance(self.flip, bool):  # per example: the flips a mirror would mislabel are dropped
            flips = flips & flips_of(self.flip, chosen)
        packed = torch.stack([torch.from_numpy(np.asarray(chosen, dtype=np.int64)), oy[keep], ox[keep],
                              flips.long()])  # fmt: skip
        idx, oy, ox, flips = to_device(packed, self.device)
        return crop_and_flip(held[idx], self.precrop, self.crop, self.flip is not False, oy, ox, flips.bool(),
                             self.random_crop)  # fmt: skip

    @property
    def train_size(self) -> int:
        """The size training images are held at: the precrop, or the crop where the task has no random crop."""
        return self.precrop if self.random_crop else self.crop

    def _index(self, chosen: np.ndarray) -> Tensor | slice:
        """Examples ``chosen`` of a held tensor: a slice for a run of consecutive ones (an evaluation batch: nothing
        to copy), else the indices copied without a sync."""
        chosen = np.asarray(chosen, dtype=np.int64)
        if len(chosen) and (np.diff(chosen) == 1).all():
            return slice(int(chosen[0]), int(chosen[-1]) + 1)
        return to_device(torch.from_numpy(chosen), self.device)


def _decode(source: ArrayData | ImageData, size: int, device: str, chunk: int) -> tuple[Tensor, bool]:
    """All of ``source``'s images as one uint8 NHWC tensor on ``device``, and whether they share one size (then
    they are as stored; else each is resized to ``size``, as a batch of mixed sizes is)."""
    if isinstance(source, ArrayData):
        return source.images.to(device), True
    parts: list[Tensor] = []
    shape, mixed = None, False
    for a in range(0, len(source), chunk):
        arrays = [to_uint8(source.read(i)) for i in range(a, min(len(source), a + chunk))]
        shape = shape or arrays[0].shape
        if not mixed and any(x.shape != shape for x in arrays):
            mixed = True  # the chunks held so far were of one size: bring them to ``size`` too
            parts = [torch.from_numpy(np.stack([resize_uint8(x, size) for x in p.cpu().numpy()])).to(device)
                     for p in parts]  # fmt: skip
        if mixed:
            arrays = [resize_uint8(x, size) for x in arrays]
        parts.append(torch.from_numpy(np.stack(arrays)).to(device))
    if not parts:
        return torch.zeros((0, size, size, 3), dtype=torch.uint8, device=device), True
    return torch.cat(parts), not mixed


def on_device(data: TrainData, device: str) -> TrainData:
    """``data`` held on ``device`` (:class:`DeviceData`) when that is a GPU and ``data`` is a task's worth of
    in-memory arrays or decodable images; else ``data`` itself (on a CPU the batches are built as before)."""
    if (
        str(device).startswith("cuda")
        and isinstance(data, (ArrayData, ImageData))
        and len(data) <= DEVICE_DATA_LIMIT
    ):
        return DeviceData(data, device)
    return data
