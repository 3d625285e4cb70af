"""The batches every training and evaluation reads, deterministic from ``(seed, step)``.

Global training batch ``s`` draws its examples from a per-epoch permutation (:func:`batch_indices`) and its
augmentation from a generator seeded by ``(seed, s)`` (:class:`StepBatches`): a pure function of the step, so
any number of worker processes, a resume at any step and every rank's share give exactly the batches of one
uninterrupted process. Evaluation reads consecutive batches (:class:`EvalBatches`). :func:`batches` iterates
either in this process or through torch's DataLoader; :func:`finished_ahead` finishes staged batches (images
decoded on the GPU) one step ahead.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from expertlib.datasets.batches import StagedData, TrainData


def mix_seed(seed: int, *keys: int | str) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, (seed, *keys))).encode()).digest()[:7], "little")


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> np.ndarray:
    """The examples of global batch ``step``: consecutive slices of per-epoch permutations."""
    pos = np.arange(step * batch_size, (step + 1) * batch_size)
    epochs = pos // n
    out = np.empty(batch_size, dtype=np.int64)
    for e in np.unique(epochs):
        perm = np.random.default_rng(mix_seed(seed, "epoch", int(e))).permutation(n)
        sel = epochs == e
        out[sel] = perm[pos[sel] % n]
    return out


class StepBatches(Dataset):
    """Global training batch ``start + i`` (this process's share of it) as item ``i``: its examples from
    :func:`batch_indices` and its augmentation from a generator seeded by ``(seed, step)``. A pure function of
    the step, so any number of worker processes, and a resume at any step (mid-epoch included), give exactly
    the same batches. Items: (step, images, labels, the generator's state after the draws); with ``staged``
    (:class:`~expertlib.datasets.batches.StagedData`), the images are the staged batch that
    :func:`~expertlib.datasets.batches.ready` finishes on the device."""

    def __init__(self, data: TrainData, batch_size: int, seed: int, start: int, end: int, rank: int = 0,
                 world: int = 1, staged: bool = False) -> None:  # fmt: skip
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.start, self.end, self.rank, self.world = start, end, rank, world
        self.build = data.stage if staged else data.batch

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __getitem__(self, i: int) -> tuple[int, Tensor, Tensor, Tensor]:
        step = self.start + i
        gen = torch.Generator().manual_seed(mix_seed(self.seed, "batch", step))
        idx = batch_indices(step, len(self.data), self.batch_size, self.seed)
        part = slice(self.rank * len(idx) // self.world, (self.rank + 1) * len(idx) // self.world)
        x = self.build(idx, train=True, generator=gen, part=part)
        return step, x, torch.from_numpy(self.data.labels[idx[part]]), gen.get_state()


class EvalBatches(Dataset):
    """Consecutive evaluation batches of ``data`` (no augmentation), as items for :func:`batches` (staged: see
    :class:`StepBatches`)."""

    def __init__(self, data: TrainData, batch_size: int, staged: bool = False) -> None:
        self.data, self.batch_size = data, batch_size
        self.build = data.stage if staged else data.batch

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def __getitem__(self, i: int):
        idx = np.arange(i * self.batch_size, min(len(self.data), (i + 1) * self.batch_size))
        return self.build(idx, train=False, generator=torch.Generator())


def staged_on(data: TrainData, device: str) -> bool:
    """Whether ``data``'s batches are staged (bytes in workers, decoded on the device): on a GPU, for data that
    can (:class:`~expertlib.datasets.batches.StagedData`); on a CPU the workers decode, as before."""
    return device.startswith("cuda") and isinstance(data, StagedData)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # workers decode and augment; the training process keeps the cores for compute


def batches(items: Dataset, workers: int, pin: bool, prefetch: int = 4) -> Iterable:
    """Iterate a dataset of ready-made batches in order: in this process, or through torch's DataLoader with
    ``workers`` processes (pinned memory for a GPU)."""
    if workers <= 0:
        return (items[i] for i in range(len(items)))
    return DataLoader(items, batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin,
                      prefetch_factor=prefetch, worker_init_fn=_one_thread)  # fmt: skip


def finished_ahead(items: Iterable, finish: Callable, device: str, depth: int = 2) -> Iterator:
    """``finish(item)`` for every item, in order, computed ``depth`` items ahead in a background thread: the
    decode of a staged batch on the device (:class:`~expertlib.datasets.batches.StagedData`) overlaps the step
    before it. On CUDA the thread works on a stream of its own, and each result is handed over through an event
    (and recorded on the consuming stream, so its memory is not reused while a step still reads it).

    A result is handed over only once its stream's work is complete (the thread waits on the event; the training
    thread never does). Why: ``torchvision.io.decode_jpeg`` allocates the decoded images from this stream but
    writes them on its decoder's own stream. When ``finish`` returns, those images are freed back to this stream
    while kernels that read them (resize, crop) may still be queued, and the next batch's decode could be given
    the same blocks and overwrite them from the decoder's stream, which waits for nothing of this one: corrupted
    training images, silently. Waiting here orders every read of batch k before batch k+1's decode."""
    side = torch.cuda.Stream(device) if device.startswith("cuda") else None

    def work(item):
        if side is None:
            return finish(item), None
        with torch.cuda.stream(side):
            out = finish(item)
            done = torch.cuda.Event()
            done.record(side)
        done.synchronize()  # this thread alone waits (an event's wait is no sync of the training stream)
        return out, done

    source = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="finish") as pool:
        pending = deque(pool.submit(work, item) for item in islice(source, depth))
        while pending:
            out, done = pending.popleft().result()
            for item in islice(source, 1):
                pending.append(pool.submit(work, item))
            if done is not None:
                here = torch.cuda.current_stream(device)
                here.wait_event(done)
                for t in out if isinstance(out, tuple) else (out,):
                    if isinstance(t, Tensor) and t.is_cuda:
                        t.record_stream(here)
            yield out
