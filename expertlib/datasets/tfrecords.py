"""VTAB-1k tasks from TFDS TFRecord shards, read without TensorFlow, through TFDS split expressions.

VTAB users usually have the tasks as TensorFlow Datasets shards already. Copy (or link) a dataset's TFDS
folder (``~/tensorflow_datasets/<dataset>/[<config>/]<version>/``) to ``<data_root>/vtab/<task>/``; the shards
are the files named ``<dataset>-<split>.tfrecord-NNNNN-of-MMMMM`` (TFDS split names: ``train``,
``validation``, ``test``). Each record is a ``tf.train.Example``: the encoded image under ``image`` and the
features a task's label comes from (:func:`label_of`, rules kept as data in ``expertlib/data/vtab1k.json``).

A split's examples are in TFDS's order: shard by shard, record by record. A TFDS split expression
(``train[:800]``, ``train[45000:45200]``, ``test[50%:]``, ``train[-10:]``, ``a+b``) selects from that order
exactly as ``tfds`` does (:func:`resolve`; percent boundaries rounded as TFDS's default "closest" rounding),
so a task read through task_adaptation's expressions gets VTAB-1k's own examples. Records are located by a
scan of the record headers and read one at a time, so a large split costs no memory. The ``tfrecord``
package parses the protos.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from expertlib.datasets.folders import CorruptImageError, DatasetNotFoundError

IDENTITY = {"kind": "identity", "feature": "label"}


# -- TFDS split expressions -------------------------------------------------------------------------------------
class SplitExpressionError(ValueError):
    """A TFDS split expression that is malformed, names an absent split or runs past a split's end."""


@dataclass(frozen=True)
class Slice:
    """Examples ``start`` (included) to ``stop`` (excluded) of TFDS split ``split``."""

    split: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


_PART = re.compile(
    r"^(?P<split>[\w-]+)(\[(?P<start>-?\d+)?(?P<start_pct>%)?:(?P<stop>-?\d+)?(?P<stop_pct>%)?\])?$"
)


def percent_boundary(percent: int, n: int) -> int:
    """A ``percent`` slice boundary of an ``n``-example split as TFDS rounds it by default ("closest"):
    ``int(round(percent * n / 100))`` with Python's round (half to even)."""
    return int(round(percent * n / 100.0))


def resolve(expression: str, counts: Mapping[str, int]) -> list[Slice]:
    """The absolute slices TFDS reads for ``expression`` given each split's example count (``counts``).

    As ``tfds``: a missing boundary is the split's start or end, a negative one counts from the end, a
    boundary past the split's size is an error; percent boundaries may not exceed 100. Two things TFDS would
    accept are refused here as almost certainly mistakes: a slice that selects nothing, and a slice mixing a
    percent and an absolute boundary (TFDS versions read it differently)."""
    slices = []
    for part in re.split(r"\s*\+\s*", expression.strip()):
        m = _PART.match(part)
        if not m:
            raise SplitExpressionError(
                f"split expression {expression!r}: cannot read {part!r}; expected <split>, <split>[a:b] or "
                "<split>[a%:b%] joined by '+', e.g. 'train[:800]+validation[:200]'"
            )
        split = m["split"]
        if split not in counts:
            raise SplitExpressionError(
                f"split expression {expression!r} reads split {split!r}, which is not here; splits: "
                f"{', '.join(f'{k} ({v} examples)' for k, v in counts.items()) or 'none'}"
            )
        n = counts[split]
        given = [(m[b], m[f"{b}_pct"]) for b in ("start", "stop") if m[b] is not None]
        if len({pct for _, pct in given}) > 1:
            raise SplitExpressionError(
                f"split expression {expression!r}: {part!r} mixes a percent and an absolute boundary; use one unit"
            )
        bounds = []
        for name, default in (("start", 0), ("stop", n)):
            value = m[name]
            if value is None:
                bounds.append(default)
                continue
            v = int(value)
            if m[f"{name}_pct"]:
                if abs(v) > 100:
                    raise SplitExpressionError(
                        f"split expression {expression!r}: percent boundary {v}% is outside [-100%, 100%]"
                    )
                v = percent_boundary(v, n)
            if abs(v) > n:
                raise SplitExpressionError(
                    f"split expression {expression!r}: {part!r} asks for example {v} but split {split!r} holds "
                    f"{n}; are these the TFDS version's full shards?"
                )
            bounds.append(n + v if v < 0 else v)
        start, stop = bounds
        if stop <= start:
            raise SplitExpressionError(
                f"split expression {expression!r}: {part!r} selects no example of the {n} in split {split!r}"
            )
        slices.append(Slice(split, start, stop))
    return slices


# -- shards ------------------------------------------------------------------------------------------------------
def shard_files(folder: Path, dataset: str) -> dict[str, list[Path]]:
    """Every split's TFRecord shards of TFDS dataset ``dataset`` (the name before ``-<split>.tfrecord``) in
    ``folder``, in shard order. A split whose ``NNNNN-of-MMMMM`` shards are not all there is refused."""
    pattern = re.compile(rf"^{re.escape(dataset)}-(?P<split>[\w]+)\.tfrecord(-(?P<i>\d+)-of-(?P<n>\d+))?$")
    found: dict[str, list[tuple[int, int | None, Path]]] = {}
    for p in sorted(folder.glob(f"{dataset}-*.tfrecord*")):
        m = pattern.match(p.name)
        if m:
            found.setdefault(m["split"], []).append((int(m["i"] or 0), int(m["n"]) if m["n"] else None, p))
    out = {}
    for split, files in found.items():
        totals = {n for _, n, _ in files}
        if len(totals) != 1 or (None in totals and len(files) > 1):
            raise DatasetNotFoundError(
                f"{folder}: the {split!r} shards of {dataset} disagree on their number "
                f"({', '.join(p.name for _, _, p in files)}); keep one TFDS version's shards per folder"
            )
        total = totals.pop() or 1
        have = sorted(i for i, _, _ in files)
        if have != list(range(total)):
            missing = sorted(set(range(total)) - set(have))
            raise DatasetNotFoundError(
                f"{folder}: split {split!r} of {dataset} has {len(have)} of its {total} shards "
                f"(missing {', '.join(f'{i:05d}' for i in missing[:5])}{'...' if len(missing) > 5 else ''}); "
                "copy the TFDS folder completely"
            )
        out[split] = [p for _, _, p in sorted(files, key=lambda f: f[0])]
    return out


def _offsets(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(offset, length) of every record's data in a TFRecord file, from its headers."""
    offsets, lengths, pos = [], [], 0
    size = path.stat().st_size
    with path.open("rb") as fh:
        while pos < size:
            header = fh.read(12)
            if len(header) < 12:
                raise CorruptImageError(
                    f"{path}: truncated record header at byte {pos}; is the file complete?"
                )
            (length,) = struct.unpack("<Q", header[:8])
            offsets.append(pos + 12)
            lengths.append(length)
            pos += 12 + length + 4
            fh.seek(pos)
    if pos != size:
        raise CorruptImageError(
            f"{path}: the last record runs past the end of the file; is the file complete?"
        )
    return np.asarray(offsets, dtype=np.int64), np.asarray(lengths, dtype=np.int64)


class TFDSShards:
    """A TFDS dataset's shards in one folder: each split's example count, and any split expression read."""

    def __init__(self, folder: str | Path, dataset: str) -> None:
        self.folder, self.dataset = Path(folder), dataset
        self.files = shard_files(self.folder, dataset)
        if not self.files:
            raise DatasetNotFoundError(
                f"no TFRecord shards of TFDS dataset {dataset!r} in {self.folder} (files named "
                f"{dataset}-<split>.tfrecord-NNNNN-of-MMMMM, split train, validation or test)"
            )
        self._index: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def index(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(file number in ``files[split]``, offset, length) of every record of ``split``, in TFDS order."""
        if split not in self._index:
            parts = [
                (np.full(len(o), k), o, n) for k, f in enumerate(self.files[split]) for o, n in [_offsets(f)]
            ]
            self._index[split] = tuple(np.concatenate(a) for a in zip(*parts, strict=True))
        return self._index[split]

    def counts(self) -> dict[str, int]:
        """Each split's number of examples (a scan of the record headers)."""
        return {s: len(self.index(s)[0]) for s in self.files}

    def read(self, expression: str, label: Mapping = IDENTITY, image_scale: int = 1,
             transform: Callable | None = None) -> TFRecordSplit:  # fmt: skip
        """The examples ``expression`` selects, in its order, as (image, label) items."""
        slices = resolve(expression, self.counts())
        files, file_no, offsets, lengths = [], [], [], []
        for s in slices:
            base = len(files)
            files.extend(self.files[s.split])
            k, o, n = self.index(s.split)
            file_no.append(k[s.start : s.stop] + base)
            offsets.append(o[s.start : s.stop])
            lengths.append(n[s.start : s.stop])
        return TFRecordSplit(files, np.concatenate(file_no), np.concatenate(offsets), np.concatenate(lengths),
                             label, image_scale, transform, expression)  # fmt: skip


# -- labels ------------------------------------------------------------------------------------------------------
def _values(feature, key: str, i: int, where: Path) -> list:
    if key not in feature:
        raise KeyError(f"record {i} of {where} has no feature {key!r}; it has {sorted(feature)}")
    f = feature[key]
    kind = f.WhichOneof("kind")
    return list(getattr(f, kind).value) if kind else []


def label_of(feature, rule: Mapping, i: int = 0, where: Path = Path("?")) -> int:
    """A task's label from a record's features, by a rule of ``expertlib/data/vtab1k.json`` (see its 'about')."""
    kind = rule.get("kind", "identity")
    values = _values(feature, rule["feature"], i, where)
    if kind == "identity":
        return int(values[0])
    if kind == "bin":  # task_adaptation: floor(float32(v) / (num_original / num_classes))
        factor = np.float32(rule["num_original"] / rule["num_classes"])
        return int(np.floor(np.float32(values[0]) / factor))
    if kind == "count":
        return len(values) + int(rule.get("offset", 0))
    if kind == "closest":  # the largest i with thresholds[i] < the smallest coordinate (float32, as TF)
        coords = np.asarray(values, dtype=np.float32).reshape(-1, rule["width"])[:, rule["axis"]]
        if "where" in rule:
            keep = np.asarray(_values(feature, rule["where"]["feature"], i, where)) < rule["where"]["below"]
            coords = coords[keep]
        if "append" in rule:
            coords = np.append(coords, np.float32(rule["append"]))
        if not len(coords):
            raise ValueError(f"record {i} of {where}: no {rule['feature']} to take the closest of")
        below = int((np.asarray(rule["thresholds"], dtype=np.float32) < coords.min()).sum())
        if below == 0:
            raise ValueError(
                f"record {i} of {where}: {coords.min()} is below every threshold {rule['thresholds']}"
            )
        return below - 1
    raise ValueError(f"unknown label rule kind {kind!r}; known: identity, bin, count, closest")


# -- a split read from shards --------------------------------------------------------------------------------
class TFRecordSplit(Dataset):
    """Records of TFRecord shards (file, offset, length) as a dataset of (PIL image, label) items; labels by
    ``label`` (a rule of :func:`label_of`), image values multiplied by ``image_scale`` (dSprites stores 0/1)."""

    def __init__(self, files: list[Path], file_no: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
                 label: Mapping = IDENTITY, image_scale: int = 1, transform: Callable | None = None,
                 expression: str = "") -> None:  # fmt: skip
        self.files, self.file_no, self.offsets, self.lengths = list(files), file_no, offsets, lengths
        self.label, self.image_scale, self.transform, self.expression = (
            dict(label),
            image_scale,
            transform,
            expression,
        )
        self._labels: list[int] | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def _where(self, i: int) -> Path:
        return self.files[int(self.file_no[i])]

    def _example(self, i: int):
        from tfrecord import example_pb2

        with self._where(i).open("rb") as fh:
            fh.seek(int(self.offsets[i]))
            ex = example_pb2.Example()
            ex.ParseFromString(fh.read(int(self.lengths[i])))
        return ex.features.feature

    def _label(self, feature, i: int) -> int:
        return label_of(feature, self.label, i, self._where(i))

    def values(self, key: str) -> list[list]:
        """Every record's values of feature ``key`` (e.g. an example id), without decoding images."""
        return [_values(self._example(i), key, i, self._where(i)) for i in range(len(self))]

    @property
    def targets(self) -> list[int]:
        if self._labels is None:
            self._labels = [self._label(self._example(i), i) for i in range(len(self))]
        return self._labels

    def __getitem__(self, i: int):
        feature = self._example(i)
        try:
            with Image.open(io.BytesIO(feature["image"].bytes_list.value[0])) as im:
                if self.image_scale != 1:
                    im = im.point(lambda v: min(255, v * self.image_scale))
                img = im.convert("RGB")
        except (OSError, SyntaxError, ValueError, IndexError) as e:
            raise CorruptImageError(f"record {i} of {self._where(i)}: cannot decode its image ({e})") from e
        return (self.transform(img) if self.transform else img), self._label(feature, i)
