"""How well each proxy ranks the experts, against what the seeds let anyone know (the report's and notebook 04's
selection-quality tables and figure).

Per task and proxy (:func:`selection_quality`): Kendall tau-b and weighted tau of the scores against the
experts' mean fine-tuned accuracy over all seeds, beside the split-half noise ceiling of each
(:func:`expertlib.analysis.stats.noise_ceiling`); the pick's regret in accuracy points (a tie judged by its
expectation); whether the best expert is in the top 3; tau after a third of the experts are dropped
(:func:`expertlib.select.selection.drop_third_taus`, the same draws for every proxy of a task); the
selection's seconds. Per regime and proxy (:func:`quality_summary`): their means over tasks with bootstrap-t
95% intervals over tasks (the analysis plan's interval), each tau as a fraction of its mean ceiling, the
seconds beside kNN's.

The scores built from past transfers (:mod:`expertlib.select.prior`) join the proxies here
(:func:`with_past_transfers`), from the runs of the other tasks of the same regime alone.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from expertlib.analysis.stats import bootstrap_t_interval, noise_ceiling
from expertlib.datasets.fewshot import regime, regime_order, split_name
from expertlib.pipeline.methods import in_pool
from expertlib.pipeline.tables import read_candidate_table
from expertlib.pipeline.workspace import Workspace
from expertlib.select.prior import (
    HYBRID_PROXY,
    PRIOR_PROXIES,
    PastTransfers,
    past_transfer_rankings,
    task_accuracies,
)
from expertlib.select.proxies import ALL_PROXIES, PAPER_PROXY
from expertlib.select.selection import (
    drop_third_taus,
    kendall_tau,
    recall_at_k,
    regret,
    top_k_relative_accuracy,
    weighted_tau,
)

DROP_DRAWS = 50
"""Random drops of a third of the experts per task (the same for every proxy of the task)."""
PROXY_ORDER = (*ALL_PROXIES, *PRIOR_PROXIES)
"""Every score the selection-quality tables rank, in their order."""
Rescore = Callable[[str, str, list], pd.Series]


def _base_task(task: str) -> str:
    return split_name(task)[0]


def with_past_transfers(
    rankings: pd.DataFrame, runs: pd.DataFrame, measured: Mapping[str, float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, Rescore]:
    """``rankings`` with the :data:`~expertlib.select.prior.PRIOR_PROXIES` rows of the pool's experts on every
    task (each from the other tasks of its regime alone, never from any version of itself); the nested
    hybrid's weight per task; and how to recompute those scores on part of the pool (for the drop-a-third
    stability). ``measured``: the prior's seconds per task from an earlier report (:func:`measured_seconds`)."""
    pool_rank, pool_runs = rankings[in_pool(rankings)], runs[in_pool(runs)]
    rows, weights = past_transfer_rankings(pool_rank, pool_runs, same_task=_base_task, comparable=regime,
                                           measured=measured)  # fmt: skip
    if len(rows):
        kinds = pool_rank.drop_duplicates("model").set_index("model")
        rows.insert(2, "kind", rows.model.map(kinds.kind))
        rows.insert(3, "expert", rows.model.map(kinds.expert))
    own = pool_rank[pool_rank.proxy == HYBRID_PROXY]
    scores = {t: g.set_index("model").score for t, g in own.groupby("task")}
    engine = PastTransfers(task_accuracies(pool_runs), scores)

    def rescore(task: str, proxy: str, kept: list) -> pd.Series:
        past = [t for t in scores if regime(t) == regime(task) and _base_task(t) != _base_task(task)]
        out, _ = engine.scores(task, past, kept, nested=proxy == "hybrid_nested")
        return out[proxy]

    return pd.concat([rankings, rows], ignore_index=True), weights, rescore


def selection_quality(points: pd.DataFrame, runs: pd.DataFrame, rescore: Rescore | None = None,
                      draws: int = DROP_DRAWS) -> pd.DataFrame:  # fmt: skip
    """Per task and proxy (``points``: task, proxy, model, score, seconds, accuracy, the experts of the pool): rank
    agreement of the scores with the experts' mean fine-tuned accuracy over all seeds beside its noise ceilings,
    the pick's regret in points, recall@3 of the best expert, tau with a third of the experts dropped (mean and
    sd over ``draws``), and the selection's seconds on the task. ``rescore(task, proxy, kept)``: the scores of a
    proxy built from the pool (:data:`~expertlib.select.prior.PRIOR_PROXIES`) recomputed on the kept
    experts."""
    ft = runs[(runs["mode"] == "finetune") & in_pool(runs)].rename(columns={"model": "candidate"})
    ceilings = {t: (noise_ceiling(g), noise_ceiling(g, "weighted")) for t, g in ft.groupby("task")}
    rows = []
    for (task, proxy), g in points.dropna(subset=["score"]).groupby(["task", "proxy"]):
        if len(g) < 3:
            continue
        s, acc = g.set_index("model").score, g.set_index("model").accuracy
        tied = g[
            g.score == g.score.max()
        ]  # the expectation over experts tied at the top, not the first by name
        redo = (
            (lambda kept, t=task, p=proxy: rescore(t, p, kept))
            if rescore and proxy in PRIOR_PROXIES
            else None
        )
        dropped = drop_third_taus(s, acc, draws, zlib.crc32(task.encode()), redo)
        ceiling, weighted_ceiling = ceilings.get(task, (np.nan, np.nan))
        rows.append({"task": task, "regime": regime(task), "proxy": proxy, "experts": len(g),
                     "kendall_tau": kendall_tau(g.score, g.accuracy), "noise_ceiling_tau": ceiling,
                     "weighted_tau": weighted_tau(g.score, g.accuracy), "noise_ceiling_weighted_tau": weighted_ceiling,
                     "regret_points": 100 * regret(tied.accuracy.mean(), g.accuracy),
                     "recall_at_3": recall_at_k(g.score, g.accuracy, 3),
                     "top1_relative": top_k_relative_accuracy(g.score, g.accuracy, 1),
                     "top3_relative": top_k_relative_accuracy(g.score, g.accuracy, 3),
                     "tau_drop_third": float(np.nanmean(dropped)) if not np.isnan(dropped).all() else np.nan,
                     "tau_drop_third_sd": float(np.nanstd(dropped)) if not np.isnan(dropped).all() else np.nan,
                     "seconds": float(g.seconds.sum()) if "seconds" in g else np.nan})  # fmt: skip
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)


QUALITY_COLUMNS = ["task", "regime", "proxy", "experts", "kendall_tau", "noise_ceiling_tau", "weighted_tau",
                   "noise_ceiling_weighted_tau", "regret_points", "recall_at_3", "top1_relative", "top3_relative",
                   "tau_drop_third", "tau_drop_third_sd", "seconds"]  # fmt: skip
# the per-task measures whose mean over tasks gets a bootstrap-t 95% interval in quality_summary, and their ranges
INTERVAL_MEASURES: dict[str, tuple[float, float]] = {"kendall_tau": (-1, 1), "weighted_tau": (-1, 1),
                                                     "regret_points": (0, 100), "recall_at_3": (0, 1),
                                                     "tau_drop_third": (-2, 2)}  # fmt: skip


def _mean_ci(values: pd.Series, bounds: tuple[float, float]) -> tuple[float, float, float]:
    v = values.dropna().to_numpy(float)
    lo, hi = bootstrap_t_interval(v, bounds=bounds) if len(v) > 1 else (np.nan, np.nan)
    return (float(v.mean()) if len(v) else np.nan), lo, hi


def quality_summary(quality: pd.DataFrame) -> pd.DataFrame:
    """Per regime (fewest images first) and proxy: the mean over tasks of every measure of
    :func:`selection_quality` with its bootstrap-t 95% interval over tasks (``<measure>_low``/``_high``); the mean
    noise ceilings; tau and weighted tau as fractions of their mean ceiling (intervals scaled by the same
    ceiling); the selection's mean seconds per task and their ratio to kNN's in the same regime."""
    rows = []
    order = {p: i for i, p in enumerate(PROXY_ORDER)}
    for reg in regime_order(quality.regime):
        q = quality[quality.regime == reg]
        knn_seconds = q[q.proxy == PAPER_PROXY].seconds.mean()
        for proxy in sorted(q.proxy.unique(), key=lambda p: (order.get(p, len(order)), p)):
            g = q[q.proxy == proxy]
            row = {"regime": reg, "proxy": proxy, "tasks": int(g.kendall_tau.notna().sum())}
            for m, bounds in INTERVAL_MEASURES.items():
                row[m], row[f"{m}_low"], row[f"{m}_high"] = _mean_ci(g[m], bounds)
            for tau, ceiling, name in (
                ("kendall_tau", "noise_ceiling_tau", "fraction_of_ceiling"),
                ("weighted_tau", "noise_ceiling_weighted_tau", "weighted_fraction_of_ceiling"),
            ):
                c = float(g[ceiling].mean())
                row[ceiling] = c
                for suffix in ("", "_low", "_high"):
                    row[name + suffix] = row[tau + suffix] / c if c > 0 else np.nan  # fmt: skip
            row["tau_drop_third_sd"] = float(g.tau_drop_third_sd.mean())
            row["seconds_per_task"] = float(g.seconds.mean())
            row["seconds_over_knn"] = row["seconds_per_task"] / knn_seconds if knn_seconds > 0 else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


AGREEMENT_COLUMNS = {"kendall_tau_low": "ci_low", "kendall_tau_high": "ci_high",
                     "fraction_of_ceiling_low": "fraction_ci_low", "fraction_of_ceiling_high": "fraction_ci_high"}  # fmt: skip


def proxy_agreement(summary: pd.DataFrame) -> pd.DataFrame:
    """The rank-agreement columns of :func:`quality_summary`, named as the report's ``proxy_agreement`` table
    has them: per regime and proxy, mean tau with its interval, the mean ceiling, tau as a fraction of it."""
    out = summary.rename(columns=AGREEMENT_COLUMNS)
    return out[["regime", "proxy", "tasks", "kendall_tau", "ci_low", "ci_high", "noise_ceiling_tau",
                "fraction_of_ceiling", "fraction_ci_low", "fraction_ci_high"]]  # fmt: skip


def measured_seconds(weights_table: Path) -> dict[str, float] | None:
    """The prior's seconds per task as a report recorded them (``hybrid_weights.csv``), or None. The prior takes
    about a millisecond per task; it is timed once, and a rerun on the same runs reuses the time, so the
    report's tables stay byte-identical."""
    if not weights_table.exists():
        return None
    known = pd.read_csv(weights_table)
    return dict(zip(known.task, known.prior_seconds, strict=True)) if "prior_seconds" in known else None


def quality_tables(
    rankings: pd.DataFrame,
    runs: pd.DataFrame,
    draws: int = DROP_DRAWS,
    measured: Mapping[str, float] | None = None,
) -> dict[str, pd.DataFrame]:
    """From the selection's rankings and the transfer runs alone: the rankings with the past-transfer scores
    (``rankings``), the nested hybrid's weights (``weights``), the per-task selection quality (``per_task``) and
    its summary per regime and proxy (``summary``); ``measured``: as :func:`with_past_transfers`."""
    rankings, weights, rescore = with_past_transfers(rankings, runs, measured)
    ft = runs[runs["mode"] == "finetune"]
    means = ft[in_pool(ft)].groupby(["task", "model"]).accuracy.mean().rename("accuracy").reset_index()
    points = rankings.merge(means, on=["task", "model"])
    per_task = selection_quality(points, runs, rescore, draws)
    return {"rankings": rankings, "weights": weights, "points": points, "per_task": per_task,
            "summary": quality_summary(per_task)}  # fmt: skip


def workspace_quality(ws: Workspace) -> dict[str, pd.DataFrame] | None:
    """:func:`quality_tables` from a workspace's selection rankings and transfer runs; None until notebook 05
    has fine-tuned the experts (the ceiling and the agreement need their accuracies)."""
    rank_path, run_path = ws.path("tables", "selection_rankings.csv"), ws.path("tables", "transfer_runs.csv")
    if not (rank_path.exists() and run_path.exists()):
        return None
    return quality_tables(read_candidate_table(rank_path), read_candidate_table(run_path),
                          measured=measured_seconds(ws.path("tables", "hybrid_weights.csv")))  # fmt: skip


def _fraction(g: pd.DataFrame, proxy: str) -> str:
    return (f"{proxy} {g.fraction_of_ceiling[proxy]:.0%} [{g.fraction_of_ceiling_low[proxy]:.0%}, "
            f"{g.fraction_of_ceiling_high[proxy]:.0%}]")  # fmt: skip


def quality_sentence(summary: pd.DataFrame) -> str:
    """Per regime: the best proxy's tau as a fraction of the noise ceiling with its interval, beside kNN's and the
    hybrid's (the numbers notebook 04 and the report state)."""
    parts = []
    for reg, g in summary.groupby("regime", sort=False):
        g = g.set_index("proxy")
        best = g.fraction_of_ceiling.idxmax()
        others = [p for p in (PAPER_PROXY, "hybrid") if p in g.index and p != best]
        parts.append(f"at {reg}, {_fraction(g, best)} of the ceiling ({g.noise_ceiling_tau[best]:.2f})"
                     + (f"; {', '.join(_fraction(g, p) for p in others)}" if others else ""))  # fmt: skip
    if not parts:
        return "No proxy could be judged: too few experts fine-tuned."
    return (
        "Kendall tau as a fraction of the noise ceiling, mean over tasks [95% interval]: best proxy "
        + "; ".join(parts)
        + "."
    )
