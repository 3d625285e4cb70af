"""Learning-rate schedules as pure functions: BiT-HyperRule and its scaled-down variant, upstream schedules.

BiT-HyperRule (Kolesnikov et al. 2020, ``bit_hyperrule.py``): by training-set size n,
n < 20k: 500 steps (warm-up 100, x0.1 after 200/300/400); n < 500k: 10k steps (500; 3k/6k/9k); else 20k
(500; 6k/12k/18k). A decay applies once the step is strictly past its boundary; SGD momentum 0.9, batch 512,
base lr 0.003, mixup alpha 0.1 only when n >= 20k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """Linear warm-up then either step decays (x``decay`` past each boundary) or a cosine to zero."""

    total_steps: int
    warmup_steps: int
    base_lr: float
    boundaries: tuple[int, ...] = ()
    decay: float = 0.1
    kind: str = "step"  # "step" or "cosine"

    def __post_init__(self) -> None:
        if self.total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"warmup_steps must lie in [0, total_steps], got {self.warmup_steps}")
        if self.kind not in ("step", "cosine"):
            raise ValueError(f"unknown schedule kind {self.kind!r}; use 'step' or 'cosine'")
        if list(self.boundaries) != sorted(self.boundaries):
            raise ValueError(f"boundaries must be increasing, got {self.boundaries}")


def learning_rate(schedule: Schedule, step: int) -> float:
    """The learning rate at ``step`` (0-based). Warm-up is linear from 0, as in BiT."""
    if step < schedule.warmup_steps:
        return schedule.base_lr * step / schedule.warmup_steps
    if schedule.kind == "cosine":
        span = max(1, schedule.total_steps - schedule.warmup_steps)
        t = min(1.0, (step - schedule.warmup_steps) / span)
        return schedule.base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
    passed = sum(1 for b in schedule.boundaries if b < step)
    return schedule.base_lr * schedule.decay**passed


def bit_hyperrule(dataset_size: int, base_lr: float = 0.003) -> Schedule:
    """BiT-HyperRule's schedule for a training set of ``dataset_size`` examples."""
    if dataset_size < 20_000:  # 500 steps, warm-up 100, decays past 200/300/400: the small-data shape
        return scaled_hyperrule(500, base_lr)
    if dataset_size < 500_000:
        return Schedule(10_000, 500, base_lr, (3_000, 6_000, 9_000))
    return Schedule(20_000, 500, base_lr, (6_000, 12_000, 18_000))


def bit_mixup_alpha(dataset_size: int) -> float:
    """Mixup only for training sets of 20k examples or more."""
    return 0.1 if dataset_size >= 20_000 else 0.0


def scaled_hyperrule(total_steps: int, base_lr: float) -> Schedule:
    """BiT-HyperRule's small-data shape (warm-up 20%, decays past 40/60/80%) at another length.

    The ``cpu`` and ``smoke`` scales fine-tune for fewer steps than 500; the schedule keeps its proportions.
    """
    return Schedule(
        total_steps,
        round(0.2 * total_steps),
        base_lr,
        tuple(round(f * total_steps) for f in (0.4, 0.6, 0.8)),
    )


def upstream_schedule(total_steps: int, base_lr: float, warmup_fraction: float = 0.05) -> Schedule:
    """BiT's upstream shape: warm-up, then x0.1 at 30/90, 60/90 and 80/90 of training."""
    return Schedule(
        total_steps,
        round(warmup_fraction * total_steps),
        base_lr,
        tuple(round(f * total_steps) for f in (30 / 90, 60 / 90, 80 / 90)),
    )
