"""VTAB-1k tasks from TFDS TFRecord shards, read without TensorFlow.

VTAB users usually have the tasks as TensorFlow Datasets shards already. Copy (or link) a dataset's TFDS
folder (``~/tensorflow_datasets/<dataset>/<version>/``) to ``<data_root>/vtab/<task>/``; the shards are the
files named ``<dataset>-<split>.tfrecord-NNNNN-of-MMMMM`` with split ``train``, ``validation`` (or ``val``)
and ``test``. Each record is a ``tf.train.Example`` with the encoded image under ``image`` and the task's
label feature (:data:`LABELS`: VTAB's binning of dSprites and smallNORB factors included).

Examples keep the shards' order (shard by shard, record by record), which is TFDS's order, so train800 and
val200 are VTAB-1k's own ``train[:800]`` and ``validation[:200]``. Records are located by a scan of the
record headers and read one at a time, so a large test split costs no memory. The ``tfrecord`` package
parses the protos.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from expertlib.datasets.folders import CorruptImageError, DatasetNotFoundError

# task -> (feature holding the label, VTAB's label from it)
LABELS: dict[str, tuple[str, Callable[[int], int]]] = {
    "dsprites_location": ("label_x_position", lambda v: v // 2),  # 32 positions -> 16 bins
    "dsprites_orientation": ("label_orientation", lambda v: v * 16 // 40),  # 40 angles -> 16 bins
    "smallnorb_azimuth": ("label_azimuth", lambda v: v),
    "smallnorb_elevation": ("label_elevation", lambda v: v),
}
DERIVED = ("clevr_count", "clevr_distance", "kitti_distance")  # labels computed from object lists
SPLIT_NAMES = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}


def shards(folder: Path, split: str) -> list[Path]:
    """The TFRecord shards of ``split`` ('train', 'val' or 'test') in ``folder``, in shard order."""
    found = []
    for name in SPLIT_NAMES[split]:
        pattern = re.compile(rf".*-{name}\.tfrecord(-\d+-of-\d+)?$")
        found = sorted(p for p in folder.glob("*.tfrecord*") if pattern.match(p.name))
        if found:
            break
    return found


def _offsets(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of every record's data in a TFRecord file, from its headers."""
    out, pos = [], 0
    size = path.stat().st_size
    with path.open("rb") as fh:
        while pos < size:
            header = fh.read(12)
            if len(header) < 12:
                raise CorruptImageError(
                    f"{path}: truncated record header at byte {pos}; is the file complete?"
                )
            (length,) = struct.unpack("<Q", header[:8])
            out.append((pos + 12, length))
            pos += 12 + length + 4
            fh.seek(pos)
    if pos != size:
        raise CorruptImageError(
            f"{path}: the last record runs past the end of the file; is the file complete?"
        )
    return out


class TFRecordSplit(Dataset):
    """One split of a task from its TFRecord shards: items are (PIL image, VTAB label)."""

    def __init__(self, files: list[Path], task: str, transform: Callable | None = None) -> None:
        if task in DERIVED:
            raise DatasetNotFoundError(
                f"VTAB task {task!r} derives its label from object annotations, which expertlib does not read from "
                f"TFRecords: put its images in folders, <data_root>/vtab/{task}/{{train,val,test}}/<label>/"
            )
        self.files, self.transform = files, transform
        self.label_key, self.to_label = LABELS.get(task, ("label", lambda v: v))
        self.index = [(f, off, n) for f in files for off, n in _offsets(f)]
        self._labels: list[int] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def _example(self, i: int):
        from tfrecord import example_pb2

        path, offset, length = self.index[i]
        with path.open("rb") as fh:
            fh.seek(offset)
            ex = example_pb2.Example()
            ex.ParseFromString(fh.read(length))
        return ex.features.feature

    def _label(self, feature, i: int) -> int:
        if self.label_key not in feature:
            raise KeyError(
                f"record {i} of {self.index[i][0]} has no feature {self.label_key!r}; it has {sorted(feature)}"
            )
        return int(self.to_label(int(feature[self.label_key].int64_list.value[0])))

    @property
    def targets(self) -> list[int]:
        if self._labels is None:
            self._labels = [self._label(self._example(i), i) for i in range(len(self))]
        return self._labels

    def __getitem__(self, i: int):
        feature = self._example(i)
        try:
            with Image.open(io.BytesIO(feature["image"].bytes_list.value[0])) as im:
                img = im.convert("RGB")
        except (OSError, SyntaxError, ValueError, IndexError) as e:
            raise CorruptImageError(f"record {i} of {self.index[i][0]}: cannot decode its image ({e})") from e
        return (self.transform(img) if self.transform else img), self._label(feature, i)
