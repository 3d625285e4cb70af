"""Learning-rate schedules as pure functions: BiT-HyperRule in its two published forms and its scaled-down
variant, upstream schedules.

BiT-HyperRule's length by training-set size n (both forms): n < 20k: 500 steps; n < 500k: 10k; else 20k. SGD
momentum 0.9, batch 512, base lr 0.003, mixup alpha 0.1 only when n >= 20k. Its shape comes in two recipes:

- ``"bit-code"``: BiT's released ``bit_hyperrule.py``: warm-up 100 of 500 steps, then x0.1 after 200/300/400;
  10k steps: warm-up 500, decays at 3k/6k/9k; 20k: warm-up 500, decays at 6k/12k/18k;
- ``"bit-paper"``: the BiT paper's text (Kolesnikov et al., ECCV 2020, section 3.3): x0.1 at 30%, 60% and 90% of
  the steps; no warm-up is stated, and none is used (docs/choices.md).

A decay applies once the step is strictly past its boundary. The scaled-down scales fine-tune for fewer steps
than 500 (``small_steps``); the shapes keep their proportions, and larger regimes keep theirs to it (x20, x40).
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


HYPERRULES = ("bit-paper", "bit-code")
"""BiT-HyperRule's two forms: the BiT paper's text and BiT's released code."""
HYPERRULE_SOURCES = {
    "bit-paper": "the BiT paper's text (section 3.3): 448/384 for images of 96x96 px or more, x0.1 at 30/60/90% of "
    "the steps, no warm-up stated",
    "bit-code": "BiT's released bit_hyperrule.py: 512/480 for images of 96x96 px or more, warm-up over 100 of 500 "
    "steps, x0.1 past 200/300/400",
}
PAPER_DECAYS = (0.3, 0.6, 0.9)  # the BiT paper, section 3.3: x0.1 at 30%, 60% and 90% of the steps
CODE_SMALL = (
    0.2,
    (0.4, 0.6, 0.8),
)  # bit_hyperrule.py under 20k examples: warm-up 100, decays 200/300/400 of 500
CODE_LARGE = {
    10_000: 500,
    20_000: 500,
}  # bit_hyperrule.py's warm-up for 10k and 20k steps (decays at 30/60/90%)


def _check(recipe: str) -> None:
    if recipe not in HYPERRULES:
        raise ValueError(f"unknown BiT-HyperRule recipe {recipe!r}; use one of: {', '.join(HYPERRULES)}")


def finetune_steps(dataset_size: int, small_steps: int = 500) -> int:
    """BiT-HyperRule's length for a training set of ``dataset_size`` examples: 500 steps under 20k, 10k under
    500k, else 20k; ``small_steps`` stands for the 500 (a scaled-down length) and the others keep their ratio."""
    return small_steps * (1 if dataset_size < 20_000 else 20 if dataset_size < 500_000 else 40)


def bit_hyperrule(dataset_size: int, base_lr: float = 0.003, recipe: str = "bit-code",
                  small_steps: int = 500) -> Schedule:  # fmt: skip
    """BiT-HyperRule's schedule for a training set of ``dataset_size`` examples, in ``recipe``'s form, at
    :func:`finetune_steps`'s length."""
    _check(recipe)
    total = finetune_steps(dataset_size, small_steps)
    if dataset_size < 20_000 or recipe == "bit-paper":
        return scaled_hyperrule(total, base_lr, recipe)
    warmup = CODE_LARGE[finetune_steps(dataset_size)] / finetune_steps(dataset_size)
    return Schedule(total, round(warmup * total), base_lr, tuple(round(f * total) for f in PAPER_DECAYS))


def bit_mixup_alpha(dataset_size: int) -> float:
    """Mixup only for training sets of 20k examples or more."""
    return 0.1 if dataset_size >= 20_000 else 0.0


def scaled_hyperrule(total_steps: int, base_lr: float, recipe: str = "bit-code") -> Schedule:
    """BiT-HyperRule's shape for a task under 20k examples at another length than 500: ``"bit-code"`` warms up
    over 20% and decays past 40/60/80%; ``"bit-paper"`` decays past 30/60/90% without warm-up (its shape at
    every size). The ``cpu`` and ``smoke`` scales fine-tune for fewer steps; the schedule keeps its proportions.
    """
    _check(recipe)
    warmup, decays = (0.0, PAPER_DECAYS) if recipe == "bit-paper" else CODE_SMALL
    return Schedule(
        total_steps, round(warmup * total_steps), base_lr, tuple(round(f * total_steps) for f in decays)
    )


def upstream_schedule(total_steps: int, base_lr: float, warmup_fraction: float = 0.05) -> Schedule:
    """BiT's upstream shape: warm-up, then x0.1 at 30/90, 60/90 and 80/90 of training."""
    return Schedule(
        total_steps,
        round(warmup_fraction * total_steps),
        base_lr,
        tuple(round(f * total_steps) for f in (30 / 90, 60 / 90, 80 / 90)),
    )
