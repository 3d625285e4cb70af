"""A fine-tune's data held on the device: a VTAB-1k task decoded once, augmented there as tensor ops.

A VTAB-1k fine-tune sees its 1,000 training images hundreds of times (BiT-HyperRule: 500 to 20,000 steps of
512), so decoding each image once per job instead of once per step moves the whole input pipeline off the
CPU. :class:`DeviceData` decodes the images (PIL, in the training process, as
:class:`~expertlib.datasets.batches.ImageData` decodes them) into one uint8 tensor on the device, then builds
every batch there with the CPU path's own functions (:func:`expertlib.transforms.train_batch`,
``eval_batch``) and the CPU path's random draws: the draws are made on the batch's CPU generator and moved,
so one seed gives one run on any device, and on a CPU the batches equal the CPU path's bit for bit. (Mixup,
:func:`expertlib.training.mixup`, already works on whatever device the batch is on.)

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

from expertlib.datasets.batches import ArrayData, ImageData, TrainData, resize_uint8, to_uint8
from expertlib.transforms import eval_batch, train_batch

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
        if train:  # without the random crop, a training image is its evaluation image (held at crop)
            size = self.precrop if self.random_crop else self.crop
            images = self.held(size)[torch.as_tensor(indices, device=self.device)]
            return train_batch(images, self.precrop, self.crop, self.flip, generator, part,
                               random_crop=self.random_crop)  # fmt: skip
        chosen = indices if part is None else indices[part]
        return eval_batch(self.held(self.crop)[torch.as_tensor(chosen, device=self.device)], self.crop)


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
