"""Choosing an expert from past transfers: what the experts' fine-tunes on other tasks say about a new one.

Some experts transfer well to most tasks and some to few; with five images per class a proxy sees little,
while a record of past fine-tunes sees a lot. Three scores, each for one task from other tasks' runs only:

- ``prior``: each expert's mean normalised rank (0 the worst, 1 the best of the experts that ran there) of its
  fine-tuned accuracy (mean over seeds) over the other tasks (:func:`transfer_prior`);
- ``hybrid``: ``HYBRID_WEIGHT`` x the prior's normalised ranks + the rest x those of a proxy scored on the task's
  own images (``HYBRID_PROXY``, kNN averaged over resampled support sets) (:func:`hybrid_scores`);
- ``hybrid_nested``: the same with the weight chosen from ``WEIGHT_GRID`` by leave-one-task-out among the other
  tasks alone (:func:`nested_weight`), never on the task being scored.

Strictly leave-one-task-out: a task's own runs never reach its scores, nor do those of any version of it (its
few-shot versions share its images: ``same_task``), and only tasks of the same kind (``comparable``: the
regime, in the pipeline) count as past. The weights and choices are fixed in docs/analysis_plan.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from expertlib.analysis.stats import tau_b_rows

PRIOR_PROXIES = ("prior", "hybrid", "hybrid_nested")
"""The scores built from past transfers, by name (beside the registry's
:data:`expertlib.select.proxies.PROXIES`)."""
HYBRID_PROXY = "knn_resampled"
"""The proxy on the task's own images that the hybrid combines with the prior."""
HYBRID_WEIGHT = 0.5
"""The prior's share of the hybrid, fixed before any run (docs/analysis_plan.md): equal weight."""
WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The prior's shares the nested hybrid chooses among (ties: the one nearest ``HYBRID_WEIGHT``, then smaller)."""
PRIOR_COLUMNS = ("task", "model", "accuracy")
"""What a past-transfer table needs (``transfer_runs.csv`` has them; its ``mode`` column, where present,
selects the full fine-tunes, ``mode == "finetune"``)."""


def task_accuracies(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task and model, the mean fine-tuned accuracy over seeds (rows with ``mode == "finetune"`` where the
    table has a mode)."""
    ft = runs[runs["mode"] == "finetune"] if "mode" in runs else runs
    return ft.groupby(["task", "model"], as_index=False).accuracy.mean()


def _ranks01(x: np.ndarray) -> np.ndarray:
    """Per row (the last axis), average ranks of the non-nan values scaled to [0, 1]; a row with one value gives
    it 0.5; nan stays nan. By pairwise comparisons: the pools ranked here are small."""
    v = np.asarray(x, dtype=float)
    ok = ~np.isnan(v)
    below = (v[..., None, :] < v[..., :, None]).sum(-1)  # nan compares false: never counted
    same = (v[..., None, :] == v[..., :, None]).sum(-1)
    m = ok.sum(-1, keepdims=True)
    ranks = (below + (same - 1) / 2) / np.maximum(m - 1, 1)
    return np.where(ok, np.where(m > 1, ranks, 0.5), np.nan)


def normalised_ranks(values: pd.Series) -> pd.Series:
    """Average ranks scaled to [0, 1] (1 = the largest value); one value, or all tied, gives 0.5 each; nan stays
    nan and is not ranked."""
    return pd.Series(_ranks01(values.to_numpy(float)), index=values.index)


def wide_accuracies(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracies as a task x model table (nan: the model did not run there)."""
    if "task" not in accuracy:
        return accuracy
    return accuracy.pivot_table(index="task", columns="model", values="accuracy", aggfunc="mean")


def _mean_rows(ranks: np.ndarray) -> np.ndarray:
    counts = (~np.isnan(ranks)).sum(0)
    return np.where(counts > 0, np.nansum(ranks, 0) / np.maximum(counts, 1), np.nan)


def _hybrid(prior: np.ndarray, score: np.ndarray, weight: float) -> np.ndarray:
    return weight * np.nan_to_num(_ranks01(prior), nan=0.5) + (1 - weight) * np.nan_to_num(
        _ranks01(score), nan=0.5
    )


def _nested(acc: np.ndarray, score: np.ndarray, grid: Sequence[float]) -> float:
    """The weight of ``grid`` whose hybrid ranks the past tasks best (mean tau-b over the rows of ``acc``, each
    row's prior from the other rows); ties: nearest ``HYBRID_WEIGHT``, then smaller."""
    ranks = _ranks01(acc)
    mine = ~np.isnan(ranks)
    n = mine.sum(0)[None] - mine
    others = np.where(
        n > 0, (np.nansum(ranks, 0)[None] - np.where(mine, ranks, 0.0)) / np.maximum(n, 1), np.nan
    )
    mean = {}
    for w in grid:
        taus = tau_b_rows(_hybrid(others, score, w), acc)
        mean[w] = float(np.nanmean(taus)) if (~np.isnan(taus)).any() else -np.inf
    return min(grid, key=lambda w: (-mean[w], abs(w - HYBRID_WEIGHT), w))


class PastTransfers:
    """The past runs (a task x model table of mean accuracies) and the hybrid's proxy scores per task, held as
    arrays, so that many tasks, and many subsets of the candidates, are scored quickly."""

    def __init__(self, accuracy: pd.DataFrame, scores: Mapping[str, pd.Series]):
        wide = wide_accuracies(accuracy)
        self.tasks = sorted(set(wide.index) | set(scores))
        self.models = sorted(set(wide.columns).union(*(set(v.index) for v in scores.values())))
        self.acc = wide.reindex(index=self.tasks, columns=self.models).to_numpy(float)
        self.score = np.array([scores[t].reindex(self.models).to_numpy(float) if t in scores else
                               np.full(len(self.models), np.nan) for t in self.tasks]).reshape(self.acc.shape)  # fmt: skip
        self.row, self.col = ({k: i for i, k in enumerate(v)} for v in (self.tasks, self.models))
        self.scored = set(scores)

    def prior(self, past: Sequence[str], models: Sequence[str]) -> np.ndarray:
        """Each of ``models``' mean normalised rank over ``past`` (nan: no run there)."""
        rows, cols = [self.row[t] for t in past], [self.col[m] for m in models]
        return _mean_rows(_ranks01(self.acc[np.ix_(rows, cols)]).reshape(len(rows), len(cols)))

    def nested_weight(
        self, past: Sequence[str], models: Sequence[str], grid: Sequence[float] = WEIGHT_GRID
    ) -> float:
        """The prior's share chosen by leave-one-task-out among the ``past`` tasks with proxy scores."""
        rows, cols = [self.row[t] for t in past if t in self.scored], [self.col[m] for m in models]
        return _nested(self.acc[np.ix_(rows, cols)], self.score[np.ix_(rows, cols)], grid)

    def scores(self, task: str, past: Sequence[str], models: Sequence[str], weight: float = HYBRID_WEIGHT,
               nested: bool = True) -> tuple[dict[str, pd.Series], float]:  # fmt: skip
        """The prior, hybrid and (``nested``) nested hybrid of ``models`` on ``task`` from the ``past`` tasks
        (``task`` itself never among them), and the nested hybrid's weight (nan if not asked for)."""
        past = [t for t in past if t != task]
        prior = self.prior(past, models)
        own = self.score[self.row[task], [self.col[m] for m in models]]
        out = {"prior": prior, "hybrid": _hybrid(prior, own, weight)}
        chosen = self.nested_weight(past, models) if nested else float("nan")
        if nested:
            out["hybrid_nested"] = _hybrid(prior, own, chosen)
        return {k: pd.Series(v, index=list(models)) for k, v in out.items()}, chosen


def transfer_prior(accuracy: pd.DataFrame, tasks: Sequence[str], models: Sequence[str]) -> pd.Series:
    """Each of ``models``' mean normalised rank over ``tasks`` (``accuracy``: task, model, accuracy, or the task x
    model table), each task ranking only those of ``models`` that ran on it; nan for a model with no run there."""
    wide = wide_accuracies(accuracy).reindex(index=list(tasks), columns=list(models))
    return pd.Series(_mean_rows(_ranks01(wide.to_numpy(float)).reshape(wide.shape)), index=list(models))


def hybrid_scores(prior: pd.Series, score: pd.Series, weight: float = HYBRID_WEIGHT) -> pd.Series:
    """``weight`` x the prior's normalised ranks + (1 - ``weight``) x the score's, over the candidates of
    ``score``; a candidate the prior knows nothing of counts as its middle (0.5)."""
    return pd.Series(_hybrid(prior.reindex(score.index).to_numpy(float), score.to_numpy(float), weight),
                     index=score.index)  # fmt: skip


def nested_weight(accuracy: pd.DataFrame, scores: Mapping[str, pd.Series], past: Sequence[str],
                  models: Sequence[str], grid: Sequence[float] = WEIGHT_GRID) -> float:  # fmt: skip
    """The prior's share that ranks the ``past`` tasks best: for each weight, the mean Kendall tau-b over the
    past tasks of the hybrid on each (its prior from the other past tasks, its proxy ``scores[task]``) against
    the models' accuracy there. The evaluated task is not among ``past``, so nothing of it chooses."""
    return PastTransfers(accuracy, scores).nested_weight(past, models, grid)


def past_transfer_rankings(rankings: pd.DataFrame, runs: pd.DataFrame, proxy: str = HYBRID_PROXY,
                           weight: float = HYBRID_WEIGHT, same_task: Callable[[str], str] = str,
                           comparable: Callable[[str], str] = lambda _t: "",
                           measured: Mapping[str, float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """For every task of ``rankings`` (task, model, proxy, score, seconds, flops; the candidates to rank): the
    :data:`PRIOR_PROXIES` rows, each from the ``runs`` of the other tasks alone: those ``comparable`` to it and
    not the ``same_task``. Seconds and FLOPs: the proxy's own plus the prior's share. Also, per task, the nested
    hybrid's chosen weight and the prior's seconds: measured, or taken from ``measured`` (task -> seconds, as an
    earlier call returned them), so that a report rerun on the same runs writes the same tables."""
    own = rankings[rankings.proxy == proxy]
    scores = {t: g.set_index("model").score for t, g in own.groupby("task")}
    engine = PastTransfers(task_accuracies(runs), scores)
    rows, weights = [], []
    for task, g in own.groupby("task", sort=True):
        models = sorted(g.model)
        past = [t for t in scores if comparable(t) == comparable(task) and same_task(t) != same_task(task)]
        t0 = time.perf_counter()
        out, chosen = engine.scores(task, past, models, weight)
        seconds = measured[task] if measured is not None and task in measured else time.perf_counter() - t0
        share = seconds / len(models)
        base = g.set_index("model")
        for name, s in out.items():
            extra = base.seconds if name != "prior" else 0.0
            rows += [{"task": task, "model": m, "proxy": name, "score": float(s[m]), "score_variance": np.nan,
                      "seconds": share + (float(extra[m]) if name != "prior" else 0.0),
                      "flops": float(base.flops[m]) if name != "prior" else float(len(past) * len(models))}
                     for m in models]  # fmt: skip
        weights.append(
            {"task": task, "past_tasks": len(past), "nested_weight": chosen, "prior_seconds": seconds}
        )
    return pd.DataFrame(rows), pd.DataFrame(weights)


def read_prior_table(source: str | Path | pd.DataFrame, models: Sequence[str], exclude_task: str | None = None,
                     aliases: Mapping[str, str] | None = None) -> pd.DataFrame:  # fmt: skip
    """A user's past-transfer table (the columns of ``transfer_runs.csv``: task, model, accuracy at least) as
    per-task mean accuracies of ``models``, refused with the reason and the fix when it cannot score them: a
    column missing, models it names that are not being ranked, ranked models it has no runs of,
    ``exclude_task`` (the task being ranked, left out so its own runs never reach its prior) not in it, or no
    task with runs of two or more of the models. ``aliases``: other names of the ranked models (the names of B
    in each expert bank, ranked once as ``B``), read as the name they stand for."""
    table = source if isinstance(source, pd.DataFrame) else pd.read_csv(source)
    where = "the prior table" if isinstance(source, pd.DataFrame) else f"prior table {source}"
    missing = [c for c in PRIOR_COLUMNS if c not in table]
    if missing:
        raise ValueError(f"{where} lacks the columns {missing}; it needs {list(PRIOR_COLUMNS)} (as "
                         "tables/transfer_runs.csv has them)")  # fmt: skip
    acc = pd.to_numeric(table.accuracy, errors="coerce")
    if acc.isna().any() or table.task.isna().any() or table.model.isna().any():
        bad = int(acc.isna().sum() + table.task.isna().sum() + table.model.isna().sum())
        raise ValueError(
            f"{where} has {bad} empty or non-numeric cells in task, model or accuracy: fill or drop them"
        )
    table = table.assign(accuracy=acc, task=table.task.astype(str), model=table.model.astype(str))
    if aliases:
        table = table.assign(model=table.model.map(lambda m: aliases.get(m, m)))
    if "mode" in table and (table["mode"] == "finetune").any():
        table = table[table["mode"] == "finetune"]
    unknown = sorted(set(table.model) - set(models))
    if unknown:
        raise ValueError(f"{where} names models that are not being ranked: {', '.join(unknown)} (ranked: "
                         f"{', '.join(models)}); rank them too, rename them as the ranking names them, or drop "
                         "their rows")  # fmt: skip
    if exclude_task is not None:
        if exclude_task not in set(table.task):
            raise ValueError(f"{where} has no task {exclude_task!r} to leave out; its tasks: "
                             f"{', '.join(sorted(set(table.task)))}")  # fmt: skip
        table = table[table.task != exclude_task]
    unseen = sorted(set(models) - set(table.model))
    if unseen:
        raise ValueError(f"{where} has no past runs of {', '.join(unseen)}: the prior cannot score them; add their "
                         "runs or leave those models out")  # fmt: skip
    acc = task_accuracies(table.drop(columns="mode", errors="ignore"))
    if not (acc.groupby("task").model.nunique() >= 2).any():
        raise ValueError(f"{where} has no task with runs of two or more of the ranked models: no overlap to "
                         "rank them by")  # fmt: skip
    return acc
