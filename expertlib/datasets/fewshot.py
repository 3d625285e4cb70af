"""Few-shot versions of a benchmark's tasks: the regime where pre-training matters most.

VTAB-1k gives each task 1,000 training images. With ``k`` images per class the representation a model brings
has to do more of the work, so differences between pre-trainings (B, the experts, DAT) grow. A few-shot task
``<task>@<k>shot`` keeps its task's classes and its whole test split and draws, per class, ``k`` training
images from the task's train800val200 in VTAB's proportions: ``k - v`` from train800 and ``v = max(1,
round(k / 5))`` from val200, so ``train800`` / ``val200`` / ``train800val200`` keep their meaning (and their
order: train800's part first) for every step that reads them.

The draw is a fixed per-class order of the images, seeded by the task's name alone, so the subsets are nested
(a 5-shot task's images are among its 25-shot images) and the same in every run, at every seed: seeds vary
the training, while every method sees the same images, which keeps comparisons paired. A class with fewer
images than asked gives all it has.

:class:`FewShotBenchmark` wraps any :class:`~expertlib.datasets.benchmark.Benchmark` and adds these tasks to
it; everything else it passes through.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from expertlib.datasets.batches import TrainData, subset
from expertlib.datasets.benchmark import Benchmark, TaskInfo, check_task_split

_NAME = re.compile(r"^(?P<task>.+)@(?P<k>\d+)shot$")
FULL_REGIME = "1k"  # VTAB-1k: the task's 1,000 training images


def few_shot_name(task: str, shots: int) -> str:
    """The name of ``task`` with ``shots`` training images per class."""
    return f"{task}@{shots}shot"


def split_name(name: str) -> tuple[str, int | None]:
    """``(task, shots)`` of a task name; ``shots`` is None for the task itself (all its training images)."""
    m = _NAME.match(name)
    return (m["task"], int(m["k"])) if m else (name, None)


def regime(name: str) -> str:
    """The regime a task name belongs to: ``"1k"`` or ``"<k>-shot"``."""
    shots = split_name(name)[1]
    return FULL_REGIME if shots is None else f"{shots}-shot"


def regime_order(regimes: Sequence[str]) -> list[str]:
    """Regimes from fewest training images to the full 1k."""
    return sorted(set(regimes), key=lambda r: float("inf") if r == FULL_REGIME else int(r.split("-")[0]))


def per_class_split(shots: int) -> tuple[int, int]:
    """Training images per class taken from train800 and from val200 for ``shots`` per class."""
    if shots < 2:
        raise ValueError(
            f"few-shot tasks need at least 2 images per class (one for train800, one for val200), got {shots}"
        )
    val = max(1, round(shots / 5))
    return shots - val, val


def few_shot_positions(labels: np.ndarray, per_class: int, key: str) -> np.ndarray:
    """Positions of the first ``per_class`` examples of each class in a fixed order seeded by ``key``: sorted
    by class; nested in ``per_class``."""
    labels = np.asarray(labels)
    order = np.random.default_rng(zlib.crc32(key.encode())).permutation(len(labels))
    out = [order[labels[order] == c][:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


def tasks_with_few_shot(tasks: Sequence[str], shots: Sequence[int]) -> tuple[str, ...]:
    """``tasks`` followed by their few-shot versions, fewest shots first."""
    for k in shots:
        per_class_split(k)
    return (*tasks, *(few_shot_name(t, k) for k in sorted(shots) for t in tasks))


class FewShotBenchmark(Benchmark):
    """``inner`` with a ``<task>@<k>shot`` version of each of its tasks for every ``k`` in ``shots``."""

    def __init__(self, inner: Benchmark, shots: Sequence[int]) -> None:
        self.inner, self.shots = inner, tuple(sorted(shots))
        self.name = inner.name
        self._task_names = list(tasks_with_few_shot(inner.task_names, self.shots))  # checks every k

    # resolution is read by the inner benchmark's data, so it lives there
    @property
    def resolution(self) -> tuple[int, int]:  # type: ignore[override]
        return self.inner.resolution

    @resolution.setter
    def resolution(self, value: tuple[int, int]) -> None:
        self.inner.resolution = value

    @property
    def classes(self) -> list[str]:  # type: ignore[override]
        return self.inner.classes

    @property
    def hierarchy(self):  # type: ignore[override]
        return self.inner.hierarchy

    def upstream_data(self, split: str) -> TrainData:
        return self.inner.upstream_data(split)

    def upstream_labels(self, split: str) -> np.ndarray:
        return self.inner.upstream_labels(split)

    @property
    def domain_names(self) -> list[str]:
        return self.inner.domain_names

    @property
    def domain_of_label(self) -> np.ndarray:
        return self.inner.domain_of_label

    @property
    def task_names(self) -> list[str]:
        return list(self._task_names)

    def task_info(self, task: str) -> TaskInfo:
        base, shots = self._known(task)
        info = self.inner.task_info(base)
        return info if shots is None else replace(info, name=task)

    def task(self, task: str, split: str) -> TrainData:
        check_task_split(split)
        base, shots = self._known(task)
        if shots is None or split == "test":
            return self.inner.task(base, split)
        both = self.inner.task(base, "train800val200")
        idx = self._positions(base, shots, split, both.labels)
        return subset(both, idx, both.labels[idx])

    def task_labels(self, task: str, split: str) -> np.ndarray:
        check_task_split(split)
        base, shots = self._known(task)
        if shots is None or split == "test":
            return self.inner.task_labels(base, split)
        both = self.inner.task_labels(base, "train800val200")
        return both[self._positions(base, shots, split, both)]

    def _positions(self, base: str, shots: int, split: str, labels: np.ndarray) -> np.ndarray:
        """Where ``split`` of ``base``'s few-shot task lies in ``base``'s train800val200 (``labels``)."""
        train_n, val_n = per_class_split(shots)
        n800 = len(self.inner.task_labels(base, "train800"))
        key = f"{base}/few-shot"
        parts = {
            "train800": few_shot_positions(labels[:n800], train_n, key + "/train800"),
            "val200": n800 + few_shot_positions(labels[n800:], val_n, key + "/val200"),
        }
        return parts.get(split, np.concatenate([parts["train800"], parts["val200"]]))

    def samples(self, per_row: int = 12) -> dict[str, np.ndarray]:
        return self.inner.samples(per_row)

    def summary(self, accuracy: dict[str, float] | None = None) -> pd.DataFrame:
        return self.inner.summary(accuracy)

    def describe(self) -> dict:
        return {**self.inner.describe(), "few_shot": list(self.shots)}

    def _known(self, task: str) -> tuple[str, int | None]:
        base, shots = split_name(task)
        if base not in self.inner.task_names or (shots is not None and shots not in self.shots):
            raise KeyError(
                f"unknown task {task!r}; this benchmark has {', '.join(self.task_names)} (few-shot versions "
                f"come from the scale's few_shot setting: {list(self.shots)})"
            )
        return base, shots
