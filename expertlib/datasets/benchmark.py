"""The one view of a benchmark the pipeline has: upstream data with its label hierarchy, and downstream tasks.

A :class:`Benchmark` gives

- upstream ``train`` / ``test`` data with integer labels into :attr:`classes` (ids in :attr:`hierarchy`),
  optionally restricted to some classes and relabelled (an expert's subset);
- the candidate expert subtrees (through the hierarchy and :meth:`class_counts`);
- downstream tasks (:meth:`task_info`) with VTAB-1k's splits ``train800``, ``val200``, ``train800val200``
  and ``test``, class counts and VTAB group;
- small samples for figures and a data summary table.

Implementations: :class:`expertlib.datasets.embedded.EmbeddedBenchmark` (in memory) and
:class:`expertlib.datasets.ondisk.FolderBenchmark` (ImageNet-21k + VTAB-1k folder layouts). The smoke, cpu and
paper scales run the same pipeline code over either.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from expertlib.datasets.batches import TrainData, relabel_subset, subset
from expertlib.datasets.hierarchy import LabelHierarchy

TASK_SPLITS = ("train800", "val200", "train800val200", "test")
UPSTREAM_SPLITS = ("train", "test")


@dataclass(frozen=True)
class TaskInfo:
    """A downstream task: its VTAB group, classes, the upstream subtree it draws on (if known), and which of
    BiT's training augmentations keep its labels: ``flip`` (a random horizontal flip; off where a mirror changes
    the label: an x position, an azimuth, an orientation) and ``crop`` (the random crop; off where the label is a
    count, a distance or a position, which a crop can cut or move; then a training image is its evaluation
    image, flipped where ``flip`` allows). ``vtab_splits``: its train800 / val200 / test are VTAB-1k's own
    (task_adaptation's TFDS split expressions read from TFDS shards; False for every other source, whose
    results stand beside published VTAB numbers only as "splits not VTAB's"). ``tfds_counts_match``: for
    shards, whether their split sizes are those of the TFDS version VTAB-1k read (None: not from shards)."""

    name: str
    group: str  # natural / specialized / structured
    classes: tuple[str, ...]
    relates_to: str | None = None
    flip: bool = True
    description: str = ""
    crop: bool = True
    vtab_splits: bool = False
    tfds_counts_match: bool | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class UnknownSplitError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class Benchmark(ABC):
    """Upstream data + label hierarchy + downstream tasks, at one input resolution ``(precrop, crop)``."""

    name: str = "benchmark"
    classes: list[str]
    hierarchy: LabelHierarchy
    resolution: tuple[int, int] = (36, 32)

    # -- upstream -------------------------------------------------------------------------------------------
    @abstractmethod
    def upstream_data(self, split: str) -> TrainData:
        """All upstream examples of ``split`` ('train' or 'test'), labels index :attr:`classes`."""

    def upstream_labels(self, split: str) -> np.ndarray:
        return self.upstream_data(split).labels

    def upstream_subset(self, split: str, classes: Sequence[int] | None = None) -> TrainData:
        """Upstream ``split``; with ``classes`` (label indices), only their examples, relabelled 0..K-1."""
        _check(split, UPSTREAM_SPLITS)
        data = self.upstream_data(split)
        if classes is None:
            return data
        idx, labels = relabel_subset(data.labels, classes)
        return subset(data, idx, labels)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.upstream_labels("train"), minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts, strict=True)}

    def class_prior(self) -> np.ndarray | None:
        """How often each upstream class occurs in training (domain prediction's prior); None: unknown, uniform."""
        return np.bincount(self.upstream_labels("train"), minlength=len(self.classes)).astype(float)

    def expert_labels(self, node: str) -> list[int]:
        """Label indices of the classes under ``node``'s subtree (an expert's upstream classes)."""
        pos = {c: i for i, c in enumerate(self.classes)}
        return [pos[c] for c in self.hierarchy.expert_classes(node, self.classes)]

    @property
    @abstractmethod
    def domain_names(self) -> list[str]:
        """Coarse groups of upstream classes for per-domain reports (e.g. the root's children)."""

    @property
    @abstractmethod
    def domain_of_label(self) -> np.ndarray:
        """Index into :attr:`domain_names` for every upstream label."""

    # -- downstream -----------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def task_names(self) -> list[str]: ...

    @abstractmethod
    def task_info(self, task: str) -> TaskInfo: ...

    @abstractmethod
    def task(self, task: str, split: str) -> TrainData:
        """A split of a task: one of ``train800``, ``val200``, ``train800val200``, ``test``."""

    def task_labels(self, task: str, split: str) -> np.ndarray:
        """The labels of a task's split: what sizes, chance levels and test-set scoring need (a benchmark that
        renders its images answers without them)."""
        return self.task(task, split).labels

    def task_splits(self, task: str) -> dict[str, TrainData]:
        return {s: self.task(task, s) for s in TASK_SPLITS}

    # -- figures and tables ---------------------------------------------------------------------------------
    @abstractmethod
    def samples(self, per_row: int = 12) -> dict[str, np.ndarray]:
        """A few uint8 NHWC images per upstream domain and per task, for a figure."""

    @abstractmethod
    def summary(self, accuracy: dict[str, float] | None = None) -> pd.DataFrame:
        """Per domain and per task: classes, sizes, chance (and B's fine-tuned accuracy when given)."""

    def describe(self) -> dict:
        return {
            "benchmark": self.name,
            "upstream_classes": len(self.classes),
            "upstream_train": len(self.upstream_labels("train")),
            "upstream_test": len(self.upstream_labels("test")),
            "domains": len(self.domain_names),
            "tasks": len(self.task_names),
        }


def _check(split: str, known: Sequence[str]) -> None:
    if split not in known:
        raise UnknownSplitError(f"unknown split {split!r}; use one of: {', '.join(known)}")


def check_task_split(split: str) -> None:
    _check(split, TASK_SPLITS)


def check_upstream_split(split: str) -> None:
    _check(split, UPSTREAM_SPLITS)
