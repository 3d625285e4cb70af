"""Image files streamed as bytes and decoded where the model runs: the upstream (ImageNet-21k) data path.

On a GPU, decoding JPEGs with PIL in worker processes is the bottleneck of upstream training (issue #32 reported
16 processes decoding and augmenting about 4,300 ImageNet-sized images/s on an H200 machine, and nvJPEG several
times that; this repository has not measured it yet: benchmarks/gpu_throughput.py will). So the work is
split (:class:`~expertlib.datasets.batches.StagedData`): DataLoader workers only read each file's bytes (and
its EXIF orientation) and make the batch's random draws; the training process decodes the whole batch with
``torchvision.io.decode_jpeg(list, device=...)`` (nvJPEG on CUDA), resizes the batch's images of other sizes in
one batched resize (:func:`resize_batch`) and crops and flips the batch there with the same draws
(:func:`expertlib.datasets.transforms.train_batch`), in a thread of its own, one batch ahead
(:func:`expertlib.train.batching.finished_ahead`, which hands a batch over only once its stream's work is
complete).

On a CPU nothing changes: :class:`EncodedImageData` is an :class:`~expertlib.datasets.batches.ImageData` whose
``batch`` decodes with PIL (:func:`~expertlib.datasets.folders.read_image`) in the workers, as before. The
staged path runs on a CPU too (torchvision's CPU decoder, same code), which is how the tests check it against
PIL: the two decoders differ by JPEG rounding (IDCT, chroma upsampling), a few levels of 255.

Files that are not JPEGs, and JPEGs the device's decoder refuses (CMYK on nvJPEG, corrupt streams), fall back
to PIL for that image alone (the refused ones are found by halving the batch), so the result never depends on which
decoder could read a file.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from expertlib.datasets.batches import ImageData, flips_of, to_uint8
from expertlib.datasets.folders import CorruptImageError, read_image
from expertlib.datasets.transforms import crop_draws, eval_batch, train_batch
from expertlib.utils.runtime import to_device

JPEG_MAGIC = b"\xff\xd8\xff"
EXIF_ORIENTATION = 0x0112
RESIZE_CHUNK_BYTES = 256 << 20
"""Most bytes of float32 canvas one batched resize holds (:func:`resize_batch`): a batch of ImageNet-sized images
(128 of 500 x 375) is one chunk; an outsized image gets a chunk of its own."""

# torchvision 0.29 deprecates its decoders for TorchCodec's (the same nvJPEG underneath). Silenced once, here, for
# that message alone: a filter changed inside the decode thread (warnings.catch_warnings) would change every
# thread's filters while it ran.
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision are deprecated",
    category=DeprecationWarning,
)  # fmt: skip


class EncodedBatch(NamedTuple):
    """A staged batch: its images' file bytes (one tensor, so a worker hands over one shared-memory block, not
    one per image) and EXIF orientations, and how to finish it."""

    data: Tensor  # the files' bytes, one after another (1-D uint8)
    lengths: list[int]  # each file's length in ``data``
    orientations: list[int]  # EXIF orientation (1: as stored)
    names: list[str]  # the files, for errors
    train: bool
    generator_state: Tensor  # the batch generator's state before its crop draws
    total: int  # examples in the global batch (the draws are made for all of them)
    part: slice | None
    flips_allowed: Tensor | None = (
        None  # a per-example flip rule's bools for the global batch (else the data's)
    )

    def blobs(self) -> list[Tensor]:
        """Each file's bytes (views of ``data``)."""
        return list(torch.split(self.data, self.lengths))


class _View(Sequence):
    """``items[idx[i]]``: a subset's paths without a copy of the parent's (14 M paths upstream)."""

    def __init__(self, items: Sequence, idx: np.ndarray) -> None:
        self.items, self.idx = items, np.asarray(idx)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i):  # type: ignore[override]
        return self.items[int(self.idx[i])]


def read_bytes(path: str | os.PathLike) -> Tensor:
    """A file's bytes as a 1-D uint8 tensor (what ``decode_jpeg`` takes)."""
    with open(path, "rb") as f:
        buf = bytearray(os.fstat(f.fileno()).st_size)
        f.readinto(buf)
    return torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.zeros(0, dtype=torch.uint8)


def exif_orientation(blob: Tensor) -> int:
    """The EXIF orientation tag of a JPEG's bytes (1 when absent): read from the header, nothing decoded."""
    try:
        with Image.open(io.BytesIO(blob.numpy().tobytes())) as im:
            return int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # an unreadable header is the decoder's to report, with the file's name
        return 1


def orient(image: Tensor, orientation: int) -> Tensor:
    """A CHW image turned upright from its EXIF ``orientation``, as PIL's ``ImageOps.exif_transpose`` does."""
    h, w = -2, -1
    if orientation == 2:
        return image.flip(w)
    if orientation == 3:
        return image.flip(h, w)
    if orientation == 4:
        return image.flip(h)
    if orientation == 5:
        return image.transpose(h, w)
    if orientation == 6:
        return torch.rot90(image, -1, (h, w))
    if orientation == 7:
        return image.transpose(h, w).flip(h, w)
    if orientation == 8:
        return torch.rot90(image, 1, (h, w))
    return image


def _pil(blob: Tensor, name: str) -> Tensor:
    """One image decoded by PIL (every format, modes converted, EXIF applied), as a CHW uint8 tensor."""
    try:
        image = read_image(io.BytesIO(blob.numpy().tobytes()))
    except CorruptImageError as e:
        raise CorruptImageError(f"{name}: {e}") from e
    return torch.from_numpy(np.array(to_uint8(image))).permute(2, 0, 1)


def decode_images(blobs: Sequence[Tensor], orientations: Sequence[int], device: str,
                  names: Sequence[str] | None = None) -> list[Tensor]:  # fmt: skip
    """Decode a batch of encoded images to RGB CHW uint8 tensors on ``device``, upright: the JPEGs in one call
    of ``torchvision.io.decode_jpeg`` (nvJPEG on CUDA), the rest, and only the JPEGs that decoder refuses, by PIL.

    On CUDA, call it where the result is handed on only after the current stream's work is complete
    (:func:`expertlib.train.batching.finished_ahead` does): torchvision allocates the decoded images from the
    caller's stream but writes them on its decoder's own stream, so memory freed on the caller's stream while
    its kernels still read it could be written by the next batch's decode."""
    out: list[Tensor | None] = [None] * len(blobs)
    jpegs = [i for i, b in enumerate(blobs) if bytes(b[:3].tolist()) == JPEG_MAGIC]
    for i, img in zip(jpegs, _decode_jpegs([blobs[i] for i in jpegs], device), strict=True):
        out[i] = None if img is None else orient(img, orientations[i])
    for i, img in enumerate(out):
        if img is None:
            out[i] = to_device(_pil(blobs[i], names[i] if names else f"image {i} of the batch"), device)
    return out  # type: ignore[return-value]


def _decode_jpegs(blobs: list[Tensor], device: str) -> list[Tensor | None]:
    """``decode_jpeg`` over the batch in one call. An image the decoder refuses fails the whole call, so the batch
    is split in halves and each half retried: the refused images (None) are found in about log2(n) calls each, and
    every other image is still decoded in a batch."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not blobs:
        return []
    try:
        return list(decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        if len(blobs) == 1:
            return [None]
        half = len(blobs) // 2
        return _decode_jpegs(blobs[:half], device) + _decode_jpegs(blobs[half:], device)


def _filter_weights(lengths: Tensor, longest: int, size: int) -> Tensor:
    """``(n, size, longest)``: row ``j`` of image ``i`` weighs the input pixels that output pixel ``j`` averages when
    a side of ``lengths[i]`` pixels is resized to ``size``. PIL's (and torch's antialiased) bilinear filter: a
    triangle centred on the output pixel's centre, widened by the scale when shrinking, cut at the image's edge
    and normalised; pixels past ``lengths[i]`` (the canvas's padding) weigh nothing."""
    scale = (lengths.double() / size).view(-1, 1, 1)
    centre = (torch.arange(size, device=lengths.device, dtype=torch.float64).view(1, -1, 1) + 0.5) * scale
    x = torch.arange(longest, device=lengths.device, dtype=torch.float64).view(1, 1, -1) + 0.5
    w = (1 - (x - centre).abs() / scale.clamp(min=1.0)).clamp(min=0.0)
    w = w * (x < lengths.view(-1, 1, 1))
    return (w / w.sum(-1, keepdim=True)).float()


def resize_batch(images: Sequence[Tensor], size: int) -> Tensor:
    """CHW uint8 images of any sizes, each resized to ``size`` x ``size`` where they are (bilinear with antialiasing,
    PIL's filter when shrinking, rounded back to uint8), as one
    ``(n, 3, size, size)`` uint8 batch: the images are laid on one zero canvas and resized together by two batched
    matrix products with per-image filter weights (:func:`_filter_weights`), a few kernels for the batch instead of
    several per image. The canvas is cut in chunks of at most :data:`RESIZE_CHUNK_BYTES`."""
    device = images[0].device
    heights = torch.tensor([im.shape[-2] for im in images])
    widths = torch.tensor([im.shape[-1] for im in images])
    out, start = [], 0
    while start < len(images):
        stop = start + 1  # grow the chunk while its canvas fits
        while (stop < len(images) and (stop + 1 - start) * 3 * 4 * int(heights[start:stop + 1].max())
               * int(widths[start:stop + 1].max()) <= RESIZE_CHUNK_BYTES):  # fmt: skip
            stop += 1
        hs, ws = heights[start:stop], widths[start:stop]
        canvas = images[start].new_zeros((stop - start, 3, int(hs.max()), int(ws.max())))
        for i, im in enumerate(images[start:stop]):
            canvas[i, :, : im.shape[-2], : im.shape[-1]] = im
        rows = _filter_weights(to_device(hs, device), canvas.shape[-2], size)
        cols = _filter_weights(to_device(ws, device), canvas.shape[-1], size)
        x = rows[:, None] @ canvas.float() @ cols[:, None].transpose(-1, -2)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
        start = stop
    return torch.cat(out)


def uniform_batch(images: Sequence[Tensor], size: int) -> Tensor:
    """Decoded CHW images as one uint8 NHWC batch, the way :meth:`ImageData.images` batches them: stacked as
    they are when all share a size, else each resized to ``size`` first (in one batched resize)."""
    if len({tuple(i.shape) for i in images}) > 1:
        return resize_batch(images, size).permute(0, 2, 3, 1)
    return torch.stack(list(images)).permute(0, 2, 3, 1)


class EncodedImageData(ImageData):
    """Image files by path: :meth:`batch` decodes with PIL (the CPU path, in workers); :meth:`stage` and
    :meth:`finish` split the same batch into bytes read in a worker and a decode on the training device."""

    def __init__(self, paths: Sequence[str | os.PathLike], labels: Sequence[int] | np.ndarray, precrop: int,
                 crop: int, flip: bool | np.ndarray, random_crop: bool = True) -> None:  # fmt: skip
        super().__init__(paths, labels, precrop, crop, flip, read=lambda i: read_image(paths[i]),
                         random_crop=random_crop)  # fmt: skip
        self.paths = paths

    def subset(self, idx: np.ndarray, labels: np.ndarray) -> EncodedImageData:
        """The examples at positions ``idx`` relabelled ``labels`` (an expert's share of upstream data)."""
        flip = self.flip if isinstance(self.flip, bool) else self.flip[idx]
        return EncodedImageData(
            _View(self.paths, idx), labels, self.precrop, self.crop, flip, self.random_crop
        )

    def stage(self, indices: np.ndarray, train: bool, generator: torch.Generator,
              part: slice | None = None) -> EncodedBatch:  # fmt: skip
        """In a worker: the files' bytes and orientations, and the generator advanced past the batch's crop
        draws (so what follows, mixup, draws what it draws after :meth:`batch`)."""
        chosen = indices if part is None else indices[part]
        state = generator.get_state()
        if train:
            crop_draws(len(indices), self.precrop, self.crop, generator)
        blobs = [read_bytes(self.paths[int(i)]) for i in chosen]
        orientations = [exif_orientation(b) if bytes(b[:3].tolist()) == JPEG_MAGIC else 1 for b in blobs]
        names = [str(self.paths[int(i)]) for i in chosen]
        data = torch.cat(blobs) if blobs else torch.zeros(0, dtype=torch.uint8)
        allowed = None if isinstance(self.flip, bool) or not train else flips_of(self.flip, indices)
        return EncodedBatch(
            data, [len(b) for b in blobs], orientations, names, train, state, len(indices), part, allowed
        )

    def finish(self, staged: EncodedBatch, device: str) -> Tensor:
        """In the training process: decode on ``device``, bring to one size, crop and flip with the draws."""
        size = self.train_size if staged.train else self.crop
        images = uniform_batch(decode_images(staged.blobs(), staged.orientations, device, staged.names), size)
        if not staged.train:
            return eval_batch(images, self.crop)
        gen = torch.Generator()
        gen.set_state(staged.generator_state)
        keep = staged.part
        flip = self.flip if staged.flips_allowed is None else staged.flips_allowed
        return train_batch(images, self.precrop, self.crop, flip, gen, keep,
                           total=staged.total if keep is not None else None, random_crop=self.random_crop)  # fmt: skip
