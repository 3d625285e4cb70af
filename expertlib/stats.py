"""Paired comparisons of methods over few tasks and seeds: the statistics behind every claim's verdict.

A claim "method A transfers better than method B" is judged on paired differences: for each task, the
difference of A and B at the same seeds, averaged over those seeds; the effect is the mean of these over
tasks. Its uncertainty is a hierarchical bootstrap (resample tasks, then seeds within each resampled task),
and a sign test and a Wilcoxon signed-rank test over tasks are reported beside it. The verdict follows from
the confidence interval alone: "better" when it lies above zero, "worse" when below, else "no difference
shown". Rank correlations against noisy accuracies get a noise ceiling: the same statistic between two
disjoint halves of the seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two methods over tasks (accuracy differences, A minus B)."""

    mean: float  # mean over tasks of the per-task mean difference over paired seeds
    ci_low: float
    ci_high: float
    tasks: int
    seeds: int  # paired seeds per task (the smallest count over tasks)
    wins: int  # tasks where A is better
    losses: int
    sign_p: float  # two-sided sign test over tasks (ties dropped)
    wilcoxon_p: float  # two-sided Wilcoxon signed-rank test over tasks (nan with fewer than 2 non-zero)
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)

    def evidence(self, unit: str = "tasks") -> str:
        """The difference, its CI and tests in one line; ``unit``: what was paired (tasks, experts)."""
        over = f"{self.tasks} {unit}" + (
            f" x {self.seeds} seeds" if self.seeds > 1 or unit == "tasks" else ""
        )
        return (f"{self.mean:+.3f} [{self.ci_low:+.3f}, {self.ci_high:+.3f}] over {over}; better on {self.wins}, "
                f"worse on {self.losses}; sign p={self.sign_p:.3f}, Wilcoxon p={self.wilcoxon_p:.3f}")  # fmt: skip


def paired_differences(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per task, A's accuracy minus B's at every seed both have. ``a`` and ``b``: columns task, seed, accuracy."""
    merged = a[["task", "seed", "accuracy"]].merge(b[["task", "seed", "accuracy"]], on=["task", "seed"])
    return {
        t: (g.accuracy_x - g.accuracy_y).to_numpy(float)
        for t, g in merged.sort_values(["task", "seed"]).groupby("task", sort=True)
    }


def bootstrap_ci(diffs: dict[str, np.ndarray], level: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """Percentile interval of the mean over tasks of per-task mean differences: tasks resampled with
    replacement, then seeds with replacement within each resampled task."""
    tasks = list(diffs.values())
    if not tasks:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    pick_tasks = rng.integers(0, len(tasks), size=(resamples, len(tasks)))
    means = np.zeros(resamples)
    for j in range(len(tasks)):
        chosen = pick_tasks[:, j]
        total = np.zeros(resamples)
        for t, d in enumerate(tasks):
            rows = np.flatnonzero(chosen == t)
            if len(rows):
                draws = d[rng.integers(0, len(d), size=(len(rows), len(d)))].mean(axis=1)
                total[rows] = draws
        means += total
    means /= len(tasks)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def verdict(ci_low: float, ci_high: float) -> str:
    if np.isnan(ci_low) or np.isnan(ci_high):
        return "no data"
    if ci_low > 0:
        return "better"
    if ci_high < 0:
        return "worse"
    return "no difference shown"


def compare(
    a: pd.DataFrame, b: pd.DataFrame, level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> Comparison:
    """A paired comparison of method A's runs with method B's (columns task, seed, accuracy)."""
    diffs = paired_differences(a, b)
    per_task = np.array([d.mean() for d in diffs.values()])
    lo, hi = bootstrap_ci(diffs, level, resamples, seed)
    wins, losses = int((per_task > 0).sum()), int((per_task < 0).sum())
    sign_p = float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else float("nan")
    nonzero = per_task[per_task != 0]
    wil_p = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) >= 2 else float("nan")
    return Comparison(float(per_task.mean()) if len(per_task) else float("nan"), lo, hi, len(diffs),
                      min((len(d) for d in diffs.values()), default=0), wins, losses, sign_p, wil_p,
                      verdict(lo, hi))  # fmt: skip


def noise_ceiling(
    accuracy: pd.DataFrame, statistic: Callable[[Sequence[float], Sequence[float]], float]
) -> float:
    """How well a ranking of candidates on one task can agree with itself: ``statistic`` (e.g. Kendall tau)
    between the candidates' mean accuracy over the even-numbered and over the odd-numbered seeds.
    ``accuracy``: columns candidate, seed, accuracy; nan with fewer than two seeds."""
    seeds = sorted(accuracy.seed.unique())
    if len(seeds) < 2:
        return float("nan")
    halves = [seeds[0::2], seeds[1::2]]
    means = [accuracy[accuracy.seed.isin(h)].groupby("candidate").accuracy.mean() for h in halves]
    a, b = means[0].align(means[1], join="inner")
    return float(statistic(a.to_numpy(), b.to_numpy())) if len(a) > 1 else float("nan")
