"""The batches of a stack (:mod:`expertlib.train.stacked`) over a task held on the device, built there from
draws made once per stack: what makes a stacked step free of host work, so that it can be replayed as a CUDA
graph."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from expertlib.datasets.device import DeviceData
from expertlib.datasets.transforms import crop_and_flip, crop_draws
from expertlib.train.batching import batch_indices, mix_seed
from expertlib.train.training import TrainConfig, _targets
from expertlib.utils.runtime import to_device


def stack_layout(x: Tensor) -> Tensor:
    """``(batch, K, C, H, W)`` images in the memory order ``torch.stack`` gives K channels_last batches stacked on
    dim 1 (batch, H, W, K, C): the grouped convolutions under vmap then read them as one channels_last batch of
    K x C channels, and every path (fed, held) computes with the same strides, so to the same bits."""
    return x.permute(0, 3, 4, 1, 2).contiguous().permute(0, 3, 4, 1, 2)


class HeldDraws:
    """The batches of K models' streams over one task held on the device (:class:`DeviceData`), every step of
    the stack drawn when it starts: each model's examples, crop offsets and flips (and mixup's weight and pairs),
    exactly as its own :class:`~expertlib.train.batching.StepBatches` stream and
    :func:`~expertlib.train.training.mixup` draw them, copied to the device in one transfer. :meth:`batch`
    then builds one step's K batches on the device with one gather of K x batch images and one crop and flip
    (one resize), from a step counter held there: no host work, no copy and no sync per step (what lets
    :class:`GraphedSteps` replay the step)."""

    def __init__(self, data: DeviceData, cfgs: Sequence[TrainConfig], steps: int, batch: int, num_classes: int,
                 loss: str, label_matrix: Tensor | None, dtype: torch.dtype) -> None:  # fmt: skip
        k, n = len(cfgs), len(data)
        self.data, self.k, self.batch_size, self.dtype = data, k, batch, dtype
        self.num_classes, self.loss, self.lm = num_classes, loss, label_matrix
        self.mix = cfgs[0].mixup_alpha > 0
        ints = np.zeros((6, steps, batch, k), dtype=np.int64)  # examples, oy, ox, flips, labels, mixup pairs
        lam = np.zeros((steps, k))
        for s in range(steps):
            for i, c in enumerate(cfgs):
                gen = torch.Generator().manual_seed(mix_seed(c.seed, "batch", s))
                ints[0, s, :, i] = batch_indices(s, n, batch, c.seed)
                for j, t in enumerate(crop_draws(batch, data.precrop, data.crop, gen), start=1):
                    ints[j, s, :, i] = t.numpy()
                if self.mix:
                    rng = np.random.default_rng(mix_seed(c.seed, "mixup", s))
                    lam[s, i] = rng.beta(c.mixup_alpha, c.mixup_alpha)
                    ints[5, s, :, i] = torch.randperm(batch, generator=gen).numpy()
        ints[4] = data.labels[ints[0]]
        if not isinstance(data.flip, bool):  # per example: the flips a mirror would mislabel are dropped now
            ints[3] &= data.flip[ints[0]]
        data.held(
            data.train_size
        )  # decoded now, on this stream, not inside a warm-up step or a graph's capture
        flat = torch.cat(
            [torch.from_numpy(ints).flatten(), torch.from_numpy(lam).flatten().view(torch.int64)]
        )
        flat = to_device(flat, data.device)  # the one copy
        self.ints = flat[: ints.size].view(ints.shape)
        self.lam = flat[ints.size :].view(torch.float64).view(steps, k)

    def batch(self, counter: Tensor) -> tuple[Tensor, Tensor]:
        """Step ``counter``'s images ``(batch, K, C, crop, crop)`` and targets ``(K, batch)`` (mixed: ``(K, batch,
        classes)``)."""
        d, k, b = self.data, self.k, self.batch_size
        idx, oy, ox, flips, labels, perm = self.ints.index_select(1, counter)[:, 0].unbind(
            0
        )  # each (batch, K)
        images = d.held(d.train_size)[idx.reshape(-1)]
        x = crop_and_flip(images, d.precrop, d.crop, d.flip is not False, oy.reshape(-1), ox.reshape(-1),
                          flips.reshape(-1).bool(), d.random_crop)  # fmt: skip
        x = x.to(self.dtype).view(b, k, *x.shape[1:])
        y = labels.t()
        if not self.mix:
            return stack_layout(x), y
        lam = self.lam.index_select(0, counter).view(k)
        models = torch.arange(k, device=x.device)
        # each model's own mixup (training.mixup): lam * x + (1 - lam) * x[perm], 1 - lam taken in float64
        x = (
            lam.to(x.dtype).view(1, k, 1, 1, 1) * x
            + (1 - lam).to(x.dtype).view(1, k, 1, 1, 1) * x[perm, models]
        )
        t = _targets(y, self.num_classes, self.loss, self.lm)
        t = lam.float().view(k, 1, 1) * t + (1 - lam).float().view(k, 1, 1) * t[models[:, None], perm.t()]
        return stack_layout(x), t
