"""What the training loop and the evaluators read: a size, labels and reproducible batches.

Two implementations share one set of batched transforms (:mod:`expertlib.datasets.transforms`), so in-memory
arrays and images on disk are augmented identically for the same ``(seed, step)``:

- :class:`ArrayData`: uint8 NHWC arrays in memory (the embedded benchmark);
- :class:`ImageData`: images read one at a time from any map-style dataset (files on disk, torchvision
  datasets), decoded to uint8 and then batched exactly like :class:`ArrayData`.

On a GPU two more share those transforms: :class:`~expertlib.datasets.device.DeviceData` (a task decoded once
into device memory) and :class:`~expertlib.datasets.encoded.EncodedImageData` (a :class:`StagedData`: worker
processes read bytes, the training process decodes on the device).

:func:`relabel_subset` is the one definition of "the examples of some classes, relabelled 0..K-1", which
expert subsets of every benchmark use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from expertlib.datasets.transforms import eval_batch, train_batch


class TrainData(Protocol):
    """What the loop needs from data: a size, labels, and a way to build an augmented batch."""

    labels: np.ndarray

    def __len__(self) -> int: ...

    def batch(
        self, indices: np.ndarray, train: bool, generator: torch.Generator, part: slice | None = None
    ) -> Tensor:
        """The (augmented) examples ``indices[part]``; random draws depend on the whole ``indices``."""
        ...


@runtime_checkable
class StagedData(TrainData, Protocol):
    """Data whose batches are built in two stages: :meth:`stage` where the batches are prepared (a DataLoader
    worker: read bytes, make the batch's random draws from its generator, exactly as :meth:`batch` would), and
    :meth:`finish` in the training process, on the device the batch goes to (decode, resize, crop, flip)."""

    def stage(
        self, indices: np.ndarray, train: bool, generator: torch.Generator, part: slice | None = None
    ) -> Any: ...

    def finish(self, staged: Any, device: str) -> Tensor: ...


def ready(data: TrainData, x: Any, device: str) -> Tensor:
    """A batch of ``data`` (as :meth:`TrainData.batch` or :meth:`StagedData.stage` gave it) ready on ``device``."""
    if isinstance(x, Tensor):
        return x.to(device, non_blocking=True)
    return data.finish(x, device)


def flip_rule(flip: bool | np.ndarray, n: int) -> bool | np.ndarray:
    """A dataset's flip rule: one bool for every example, or one per example (False where a horizontal mirror
    would change the example's label, as for a grating at 45 degrees, which mirrors to 135)."""
    if np.ndim(flip) == 0:
        return bool(flip)
    rule = np.asarray(flip, dtype=bool)
    if rule.shape != (n,):
        raise ValueError(f"a per-example flip rule needs one bool per example ({n}), got shape {rule.shape}")
    return rule


def flips_of(flip: bool | np.ndarray, examples: np.ndarray) -> bool | Tensor:
    """The flip rule for a batch of ``examples``: the dataset's bool, or its per-example bools for these."""
    return flip if isinstance(flip, bool) else torch.from_numpy(flip[np.asarray(examples, dtype=np.int64)])


class ArrayData:
    """In-memory uint8 NHWC images (the embedded benchmark): batched tensor transforms, no worker processes.
    ``flip``: mirror training images at random (one bool), or only the examples marked True (one bool each)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, precrop: int, crop: int, flip: bool | np.ndarray,
                 random_crop: bool = True) -> None:  # fmt: skip
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = np.asarray(labels, dtype=np.int64)
        self.precrop, self.crop, self.random_crop = precrop, crop, random_crop
        self.flip = flip_rule(flip, len(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    def batch(
        self, indices: np.ndarray, train: bool, generator: torch.Generator, part: slice | None = None
    ) -> Tensor:
        if train:
            return train_batch(self.images[torch.from_numpy(indices)], self.precrop, self.crop,
                               flips_of(self.flip, indices), generator, part, random_crop=self.random_crop)  # fmt: skip
        chosen = indices if part is None else indices[part]
        return eval_batch(self.images[torch.from_numpy(chosen)], self.crop)


def to_uint8(image: Image.Image | np.ndarray | Tensor) -> np.ndarray:
    """A PIL image, HWC array or CHW uint8 tensor as an RGB uint8 HWC array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    a = image.numpy() if isinstance(image, Tensor) else np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {a.dtype}: pass the dataset without a transform")
    return a


def resize_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """A uint8 HWC image resized to ``size`` x ``size`` (bilinear, PIL): how images of a batch with mixed sizes
    come to one size."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.uint8)


class ImageData:
    """Images read one at a time from a map-style dataset whose items are ``(image, label)`` with a PIL image
    or a uint8 array (a folder of files, a torchvision dataset without transform).

    A batch decodes its examples; when they all have the same size they are stacked as they are and transformed
    exactly like :class:`ArrayData` (so a benchmark exported to files trains identically); otherwise each is
    first resized (bilinear, PIL) to the precrop (training) or crop (evaluation) size.
    """

    def __init__(
        self,
        dataset: Sequence | torch.utils.data.Dataset,
        labels: Sequence[int] | None,
        precrop: int,
        crop: int,
        flip: bool | np.ndarray,
        read: Callable[[int], Image.Image | np.ndarray] | None = None,
        random_crop: bool = True,
    ) -> None:
        self.dataset = dataset
        self.read = read or (lambda i: dataset[i][0])
        self.labels = np.asarray(
            labels if labels is not None else [dataset[i][1] for i in range(len(dataset))], dtype=np.int64
        )
        self.precrop, self.crop, self.random_crop = precrop, crop, random_crop
        self.flip = flip_rule(flip, len(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def train_size(self) -> int:
        """The size training images of mixed sizes are brought to: precrop, or crop without the random crop
        (then a training image is exactly its evaluation image)."""
        return self.precrop if self.random_crop else self.crop

    def images(self, indices: Sequence[int], size: int) -> Tensor:
        """Decoded uint8 NHWC images of ``indices`` (resized to ``size`` when their sizes differ)."""
        arrays = [to_uint8(self.read(int(i))) for i in indices]
        if len({a.shape for a in arrays}) > 1:
            arrays = [resize_uint8(a, size) for a in arrays]
        return torch.from_numpy(np.stack(arrays))

    def batch(
        self, indices: np.ndarray, train: bool, generator: torch.Generator, part: slice | None = None
    ) -> Tensor:
        chosen = indices if part is None else indices[part]
        if train:
            imgs = self.images(chosen, self.train_size)
            return train_batch(imgs, self.precrop, self.crop, flips_of(self.flip, indices), generator, part,
                               total=len(indices), random_crop=self.random_crop)  # fmt: skip
        return eval_batch(self.images(chosen, self.crop), self.crop)


def relabel_subset(labels: np.ndarray, keep: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the examples whose label is in ``keep``, and their labels renumbered to positions in
    ``keep`` (0..K-1): an expert's subset of upstream data."""
    labels = np.asarray(labels)
    remap = np.full(max(int(labels.max(initial=0)), max(keep, default=0)) + 1, -1, dtype=np.int64)
    remap[np.asarray(list(keep), dtype=np.int64)] = np.arange(len(keep))
    idx = np.flatnonzero(np.isin(labels, list(keep)))
    return idx, remap[labels[idx]]


def subset(data: TrainData, idx: np.ndarray, labels: np.ndarray) -> TrainData:
    """``data`` restricted to positions ``idx`` with new ``labels`` (a class with a ``subset`` method of its own,
    such as :class:`~expertlib.datasets.encoded.EncodedImageData`, keeps its kind)."""
    if hasattr(data, "subset"):
        return data.subset(idx, labels)
    if isinstance(data, ArrayData):
        flip = data.flip if isinstance(data.flip, bool) else data.flip[idx]
        return ArrayData(data.images.numpy()[idx], labels, data.precrop, data.crop, flip, data.random_crop)
    if isinstance(data, ImageData):
        read = data.read
        return ImageData(
            list(range(len(idx))),
            labels,
            data.precrop,
            data.crop,
            data.flip if isinstance(data.flip, bool) else data.flip[idx],
            read=lambda i: read(int(idx[i])),
            random_crop=data.random_crop,
        )
    raise TypeError(f"cannot take a subset of {type(data).__name__}")
