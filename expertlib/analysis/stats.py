"""Paired comparisons of methods over few tasks and seeds: the statistics behind every claim's verdict.

A claim "method A transfers better than method B" is judged on paired differences: for each task, the
difference of A and B at the same seeds, averaged over those seeds; the effect is the mean of these over
tasks. Tasks are the unit: the test is an exact sign-flip test over tasks (:func:`sign_flip_p`), the
interval a studentised bootstrap over tasks (:func:`bootstrap_t_interval`), chosen because a simulation of
this design (:func:`interval_coverage`) shows it keeps its coverage at 12 tasks where the percentile
bootstrap does not. Families of claims are corrected with :func:`holm` (family-wise) or :func:`bh_q` (false
discovery rate). Rank correlations against noisy accuracies get a noise ceiling on the same target
(:func:`noise_ceiling`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two methods over tasks (accuracy differences, A minus B) against ``null``."""

    mean: float  # mean over tasks of the per-task mean difference over paired seeds
    ci_low: float  # the bootstrap-t interval (INTERVAL) at the comparison's level
    ci_high: float
    tasks: int
    seeds: int  # paired seeds per task (the smallest count over tasks)
    wins: int  # tasks where A is better
    losses: int
    p: float  # exact sign-flip test against null, in the direction of ``alternative``
    null: float = 0.0
    alternative: str = "two-sided"

    @property
    def side(self) -> str:
        """Where the interval lies against ``null`` (:func:`interval_side`): a description, not a verdict."""
        return interval_side(self.ci_low, self.ci_high, self.null)

    def evidence(self, unit: str = "tasks") -> str:
        """The difference, its interval and test in one line; ``unit``: what was paired (tasks, experts)."""
        over = f"{self.tasks} {unit}" + (
            f" x {self.seeds} seeds" if self.seeds > 1 or unit == "tasks" else ""
        )
        null = "" if self.null == 0 else f" (against {self.null:+.3f})"
        return (f"{self.mean:+.3f} [{self.ci_low:+.3f}, {self.ci_high:+.3f}] over {over}; better on {self.wins}, "
                f"worse on {self.losses}; sign-flip p={self.p:.4f}{null}")  # fmt: skip


def paired_differences(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per task, A's accuracy minus B's at every seed both have. ``a`` and ``b``: columns task, seed, accuracy."""
    merged = a[["task", "seed", "accuracy"]].merge(b[["task", "seed", "accuracy"]], on=["task", "seed"])
    return {
        t: (g.accuracy_x - g.accuracy_y).to_numpy(float)
        for t, g in merged.sort_values(["task", "seed"]).groupby("task", sort=True)
    }


def task_means(diffs: dict[str, np.ndarray]) -> np.ndarray:
    """Per task, the mean paired difference over its seeds: the unit every interval and test below resamples."""
    return np.array([d.mean() for d in diffs.values()], dtype=float)


def t_interval(per_task: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student's t interval of the mean over tasks."""
    n = len(per_task)
    if n < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, n - 1) * per_task.std(ddof=1) / np.sqrt(n)
    return float(per_task.mean() - half), float(per_task.mean() + half)


def bootstrap_t_interval(per_task: np.ndarray, level: float = 0.95, resamples: int = 9_999, seed: int = 0,
                         bounds: tuple[float, float] | None = None) -> tuple[float, float]:  # fmt: skip
    """Studentised bootstrap interval of the mean over tasks: tasks resampled with replacement, each resample's
    t statistic against the sample mean; the t table replaced by those statistics' quantiles. Its coverage at
    12 tasks is the best of the candidates this project checked (:func:`interval_coverage`).

    A resample whose tasks all have one value has no spread, so no t statistic: it is left out (a measure with
    few values, such as recall@3, draws such resamples often, and counting them as near-infinite t's put the
    interval's ends at 1e11). ``bounds``: the measure's range (recall in [0, 1], tau in [-1, 1]), the interval
    kept inside it."""
    n = len(per_task)
    if n < 2:
        return float("nan"), float("nan")
    mean, se = per_task.mean(), per_task.std(ddof=1) / np.sqrt(n)
    if se == 0:
        return float(mean), float(mean)
    boot = per_task[np.random.default_rng(seed).integers(0, n, size=(resamples, n))]
    spread = boot.std(1, ddof=1)
    kept = spread > 1e-12 * per_task.std(ddof=1)
    t = (boot.mean(1)[kept] - mean) / (spread[kept] / np.sqrt(n))
    alpha = (1 - level) / 2
    lo, hi = float(mean - np.quantile(t, 1 - alpha) * se), float(mean - np.quantile(t, alpha) * se)
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return lo, hi


def percentile_interval(per_task: np.ndarray, level: float = 0.95, resamples: int = 9_999,
                        seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """Percentile bootstrap interval of the mean over tasks (too narrow at 12 tasks: kept for comparison)."""
    if len(per_task) < 2:
        return float("nan"), float("nan")
    boot = per_task[np.random.default_rng(seed).integers(0, len(per_task), size=(resamples, len(per_task)))]
    alpha = (1 - level) / 2
    return float(np.quantile(boot.mean(1), alpha)), float(np.quantile(boot.mean(1), 1 - alpha))


INTERVALS: dict[str, Callable[..., tuple[float, float]]] = {
    "bootstrap-t": bootstrap_t_interval, "t": lambda d, level=0.95, **_: t_interval(d, level),
    "percentile": percentile_interval,
}  # fmt: skip
INTERVAL = "bootstrap-t"  # chosen by coverage simulation (tests/test_stats.py, docs/analysis_plan.md)


def sign_flip_p(per_task: np.ndarray, null: float = 0.0, alternative: str = "two-sided") -> float:
    """Exact sign-flip (paired permutation) test of the mean over tasks against ``null``: under the null each
    task's difference is as likely negated, so all 2^n sign patterns are equally likely (n <= 20; beyond, 2^20
    random patterns with a fixed seed). ``alternative``: "two-sided", "greater" or "less"."""
    d = np.asarray(per_task, dtype=float) - null
    n = len(d)
    if n == 0:
        return float("nan")
    if n <= 20:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    else:
        signs = np.random.default_rng(0).choice([-1, 1], size=(2**20, n))
    flipped = (signs * d).mean(1)
    observed, tol = d.mean(), 1e-12 * max(1.0, np.abs(d).max())
    if alternative == "greater":
        return float(np.mean(flipped >= observed - tol))
    if alternative == "less":
        return float(np.mean(flipped <= observed + tol))
    return float(np.mean(np.abs(flipped) >= abs(observed) - tol))


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); nan stays nan and is not counted."""
    p = np.asarray(p, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


def bh_q(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg q-values (false-discovery rate); nan stays nan and is not counted."""
    p = np.asarray(p, dtype=float)
    out = np.full(len(p), np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def interval_coverage(method: str, tasks: int = 12, seeds: int = 5, ratio: float = 1.0, shape: str = "normal",
                      sims: int = 2000, level: float = 0.95, seed: int = 0, resamples: int = 999) -> float:  # fmt: skip
    """How often ``method``'s nominal ``level`` interval covers the true mean difference in this design:
    ``tasks`` tasks whose true effects vary with spread ``ratio`` times the seed noise (``shape``: "normal",
    or "skewed", gamma-distributed with skewness 1.4, as the right-skewed gains of a few matched tasks are),
    each measured at ``seeds`` seeds with unit noise. The true mean is 0."""
    rng = np.random.default_rng(seed)
    if shape == "normal":
        effects = rng.standard_normal((sims, tasks))
    elif shape == "skewed":
        effects = (rng.gamma(2.0, 1.0, (sims, tasks)) - 2.0) / np.sqrt(2.0)
    else:
        raise ValueError(f"unknown shape {shape!r}; use 'normal' or 'skewed'")
    per_task = (ratio * effects[:, :, None] + rng.standard_normal((sims, tasks, seeds))).mean(2)
    fn = INTERVALS[method]
    hits = [
        lo <= 0.0 <= hi
        for lo, hi in (fn(d, level, resamples=resamples, seed=i) for i, d in enumerate(per_task))
    ]
    return float(np.mean(hits))


def interval_side(ci_low: float, ci_high: float, null: float = 0.0) -> str:
    """Where an interval lies against ``null``: "above", "below", "includes" it, or "no data". A description of
    one interval, uncorrected: the analysis plan's verdicts are :func:`expertlib.pipeline.analysis.verdict`."""
    if np.isnan(ci_low) or np.isnan(ci_high):
        return "no data"
    if ci_low > null:
        return "above"
    if ci_high < null:
        return "below"
    return "includes"


def compare(a: pd.DataFrame, b: pd.DataFrame, level: float = 0.95, null: float = 0.0,
            alternative: str = "two-sided", seed: int = 0) -> Comparison:  # fmt: skip
    """A paired comparison of method A's runs with method B's (columns task, seed, accuracy)."""
    diffs = paired_differences(a, b)
    seeds = min((len(d) for d in diffs.values()), default=0)
    return compare_per_task(task_means(diffs), level, null, alternative, seed, seeds)


def compare_per_task(per_task: np.ndarray, level: float = 0.95, null: float = 0.0, alternative: str = "two-sided",
                     seed: int = 0, seeds: int = 1) -> Comparison:  # fmt: skip
    """The same from per-task (or per-expert) differences already averaged over seeds."""
    per_task = np.asarray(per_task, dtype=float)
    lo, hi = INTERVALS[INTERVAL](per_task, level, seed=seed)
    return Comparison(float(per_task.mean()) if len(per_task) else float("nan"), lo, hi, len(per_task), seeds,
                      int((per_task > null).sum()), int((per_task < null).sum()),
                      sign_flip_p(per_task, null, alternative), null, alternative)  # fmt: skip


def tau_b_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row of ``x`` with the same row of ``y`` (the last axis), over the columns where
    both are known, by pairwise signs (scipy's tau-b, without its per-call cost: for many small rankings);
    nan where either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    i, j = np.triu_indices(x.shape[-1], 1)
    known = ~(np.isnan(x[..., i]) | np.isnan(x[..., j]) | np.isnan(y[..., i]) | np.isnan(y[..., j]))
    sx = np.where(known, np.sign(x[..., i] - x[..., j]), 0.0)
    sy = np.where(known, np.sign(y[..., i] - y[..., j]), 0.0)
    denominator = np.sqrt(np.abs(sx).sum(-1) * np.abs(sy).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (sx * sy).sum(-1) / denominator, np.nan)


CEILING_STATISTICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "kendall": lambda x, y: float(stats.kendalltau(x, y, variant="b").statistic),
    "weighted": lambda x, y: float(stats.weightedtau(x, y).statistic),
}
"""The rank statistics a noise ceiling can be taken for: Kendall tau-b, and scipy's weighted tau."""


def noise_ceiling(accuracy: pd.DataFrame, statistic: str = "kendall") -> float:
    """How well any ranking of candidates on one task can agree (Kendall tau) with their mean accuracy over all
    seeds, the target the proxies are scored against: Kendall tau between the candidates' means over the even-
    and over the odd-numbered seeds, turned into Pearson's r by Greiner's relation (r = sin(pi tau / 2)),
    stepped up to the reliability of the full set of seeds by Spearman-Brown (2r / (1 + r)), whose square root
    is the correlation of the true ranking with the noisy target, turned back into tau.
    ``accuracy``: columns candidate, seed, accuracy; nan with fewer than two seeds or candidates; 0 when the
    halves do not agree at all. ``statistic="weighted"``: the same steps for weighted tau, which Greiner's
    relation describes only approximately (a simulation of this design, docs/analysis_plan.md, finds both
    ceilings 0.01-0.09 below the agreement of the true ranking with the target, so fractions of it lean high)."""
    seeds = sorted(accuracy.seed.unique())
    if len(seeds) < 2:
        return float("nan")
    halves = [seeds[0::2], seeds[1::2]]
    means = [accuracy[accuracy.seed.isin(h)].groupby("candidate").accuracy.mean() for h in halves]
    x, y = means[0].align(means[1], join="inner")
    if len(x) < 2:
        return float("nan")
    tau = CEILING_STATISTICS[statistic](x.to_numpy(), y.to_numpy())
    r = np.sin(np.pi * tau / 2)
    if not r > 0:
        return 0.0
    reliability = 2 * r / (1 + r)
    return float(2 / np.pi * np.arcsin(np.sqrt(reliability)))
