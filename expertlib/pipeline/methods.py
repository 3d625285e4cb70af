"""What each method of the report yields, from the transfer runs, without selection bias: B, B+extra, each
proxy's pick (a tie judged by the expectation over the tied experts), the random expert's expectation, the oracle
(chosen on other images than it is judged on), and the DAT-style model; per task and method, and per regime as a
gain over B. The estimators every table, figure and hypothesis of the report reads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from expertlib.analysis.plots import METHOD_ORDER
from expertlib.analysis.stats import compare, paired_differences, t_interval
from expertlib.datasets.fewshot import regime, regime_order, split_name
from expertlib.models.candidates import BASE, EXPERT_KINDS, EXTRA
from expertlib.pipeline.analysis import test_halves
from expertlib.pipeline.tables import join_ids, prediction_key, split_ids

METHODS = METHOD_ORDER
"""Every method the report compares, in the one order the tables and the figures share."""
GAIN_METHODS = tuple(m for m in METHODS if m != BASE)
"""The methods whose gain over B the regimes table gives."""


def in_pool(table: pd.DataFrame) -> pd.Series:
    """Which rows are runs of the experts a proxy chooses among (adapter and released experts), by ``kind``."""
    return table.kind.isin(EXPERT_KINDS)


def method_runs(runs: pd.DataFrame, picks: pd.DataFrame, method: str, mode: str = "finetune") -> pd.DataFrame:
    """The (task, seed, model, accuracy) runs a method yields, without selection bias:

    - B, B+extra: their runs; ``knn``, ``domain`` (any proxy column of ``picks``): the picked expert's runs,
      or where several experts tie at the top (``;``-joined ids, :func:`proxy_picks`) the expectation over them
      (their mean at each seed where all ran): a tie is never broken by name;
    - ``dat``: each task's own DAT-style model;
    - ``random``: the expectation over the expert pool (or over the task's ``random_sample`` of ``picks``, where
      the selection step drew one), its mean at each seed where every such expert ran;
    - ``oracle``: chosen on other images than it is judged on, or refused: where the runs hold test half A
      (``finetune_halfA``, :func:`halved_runs`), the expert with the best half-A accuracy at seed 0, judged on
      half B at the other seeds; where ``picks`` has an ``oracle_pool`` and the runs hold its ``finetune_val``
      runs, the pool's expert with the best val200 accuracy (train800 -> val200, seed 0; ties: kNN's order),
      judged on test at every seed. With neither, no runs (:data:`ORACLE_REFUSED` says why): the best of noisy
      accuracies on the very images that chose it is biased upwards, at any seed (the test images are the same)."""
    sub = runs[runs["mode"] == mode]
    cols = ["task", "seed", "model", "accuracy"]
    if method in (BASE, EXTRA):
        return sub[sub.model == method][cols]
    if method == "dat":
        return sub[sub.kind == "dat"][cols]  # a task's runs hold only its own DAT model's
    pool = sub[in_pool(sub)]
    design = picks.set_index("task") if "random_sample" in picks else None
    if method == "random" and design is not None:
        sample = {t: split_ids(s) for t, s in design.random_sample.items()}
        pool = pool[
            np.array([m in sample.get(t, ()) for t, m in zip(pool.task, pool.model, strict=True)], bool)
        ]
    val = runs[runs["mode"] == "finetune_val"]
    halves = runs[runs["mode"] == "finetune_halfA"]
    if method == "oracle" and len(halves):  # chosen on test half A at seed 0, judged on half B (these runs)
        best = _best_at_seed0(halves[in_pool(halves)])
        return pool[(pool.seed > 0) & (pool.model == pool.task.map(best))][cols]
    if method == "oracle" and design is not None and len(val):
        order = {t: split_ids(s) for t, s in design.oracle_pool.items()}
        val = val[val.seed == 0]
        rank = [(-a, order.get(t, []).index(m) if m in order.get(t, []) else 99) for t, m, a in
                zip(val.task, val.model, val.accuracy, strict=True)]  # fmt: skip
        best = val.assign(_r=rank).sort_values(["task", "_r"]).drop_duplicates("task").set_index("task").model
        return sub[sub.model == sub.task.map(best)][cols]
    if method == "random":
        return _expectation(pool, {t: sorted(set(g.model)) for t, g in pool.groupby("task")}, "random")
    if method == "oracle":  # refused: it could only be chosen on the test images it would be judged on
        return pool.iloc[:0][cols]
    sets = {t: split_ids(v) for t, v in picks.set_index("task")[method].dropna().items()}
    return _expectation(sub, sets)


def _best_at_seed0(runs: pd.DataFrame) -> pd.Series:
    """Per task, the model with the best accuracy at seed 0 (ties: the first id): the oracle's choice."""
    first = runs[runs.seed == 0].sort_values(["task", "accuracy", "model"], ascending=[True, False, True])
    return first.drop_duplicates("task").set_index("task").model


def _expectation(runs: pd.DataFrame, sets: dict[str, list[str]], label: str | None = None) -> pd.DataFrame:
    """Per task and seed, the mean accuracy over the task's set of models, at the seeds where every one of them
    ran; named ``label`` (default: the set's ids, ';'-joined)."""
    cols = ["task", "seed", "model", "accuracy"]
    chosen = runs[np.array([m in sets.get(t, ()) for t, m in zip(runs.task, runs.model, strict=True)], bool)]
    per = (
        chosen.groupby(["task", "seed"])
        .agg(accuracy=("accuracy", "mean"), n=("model", "nunique"))
        .reset_index()
    )
    per = per[per.n == per.task.map(lambda t: len(sets[t]))]
    return per.assign(model=per.task.map(lambda t: label or join_ids(sets[t])))[cols]


def proxy_picks(picks: pd.DataFrame, rankings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``picks`` with every proxy's pick (LEEP's and NCE's included) as the set of experts tied at its top score
    (';'-joined ids), and the ties per task and proxy: how many experts share the top score."""
    out = picks.set_index("task").copy()
    ties = []
    for (task, proxy), g in rankings[in_pool(rankings)].dropna(subset=["score"]).groupby(["task", "proxy"]):
        top = sorted(g.model[g.score == g.score.max()])
        ties.append({"task": task, "proxy": proxy, "experts": len(g), "tied_at_top": len(top),
                     "models": join_ids(top)})  # fmt: skip
        if task in out.index:
            out.loc[task, proxy] = join_ids(top)
    return out.reset_index(), pd.DataFrame(
        ties, columns=["task", "proxy", "experts", "tied_at_top", "models"]
    )


def judged_on(runs: pd.DataFrame, halves: pd.DataFrame | None, method: str, mode: str) -> pd.DataFrame:
    """The runs ``method`` and B are compared on: for the fine-tuned oracle, where :func:`halved_runs` gave
    them, the test halves (chosen on half A, judged with B on half B); else ``runs``."""
    return halves if method == "oracle" and mode == "finetune" and halves is not None else runs


def method_rows(runs: pd.DataFrame, picks: pd.DataFrame, mode: str, halves: pd.DataFrame | None = None
                ) -> pd.DataFrame:  # fmt: skip
    """Per task and method (:data:`METHODS`): mean and sd over the seeds of :func:`method_runs`, and B's mean
    at those same seeds and images (``base_same_seeds``: what the method is compared with; the oracle is judged
    at fewer seeds than the others and, given ``halves``, on test half B only)."""
    groups = runs.drop_duplicates("task").set_index("task").group
    rows = []
    for method in METHODS:
        judged = judged_on(runs, halves, method, mode)
        base = method_runs(judged, picks, BASE, mode).set_index(["task", "seed"]).accuracy
        r = method_runs(judged, picks, method, mode)
        for task, g in r.groupby("task", sort=True):
            same = base.reindex(list(zip([task] * len(g), g.seed, strict=True)))
            rows.append({"task": task, "group": groups[task], "metric": mode, "method": method,
                         "model": g.model.iloc[0], "mean": float(g.accuracy.mean()),
                         "sd": float(g.accuracy.std()) if len(g) > 1 else np.nan, "n": len(g),
                         "base_same_seeds": float(same.mean()) if same.notna().all() else np.nan})  # fmt: skip
    return pd.DataFrame(rows, columns=["task", "group", "metric", "method", "model", "mean", "sd", "n",
                                       "base_same_seeds"])  # fmt: skip


def in_regime(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of ``frame`` (a ``task`` column) whose task belongs to regime ``name`` ("1k", "5-shot", ...)."""
    return frame[frame.task.map(regime) == name]


def halved_runs(runs: pd.DataFrame, predictions: dict[str, np.ndarray], labels: dict[str, np.ndarray]
                ) -> pd.DataFrame | None:  # fmt: skip
    """The fine-tunes' accuracies on the two fixed halves of each task's test images (:func:`test_halves`), from
    their stored predictions: half B as mode ``finetune`` (what the oracle and its comparisons are judged on),
    half A as ``finetune_halfA`` (what chooses the oracle). None unless every fine-tune's predictions exist."""
    ft = runs[runs["mode"] == "finetune"]
    keys = [
        prediction_key(t, m, "finetune", int(s)) for t, m, s in zip(ft.task, ft.model, ft.seed, strict=True)
    ]
    if not len(ft) or not all(k in predictions for k in keys):
        return None
    split = {t: test_halves(t, len(y)) for t, y in labels.items()}  # each task's halves, cut once
    out = []
    for half, mode in ((1, "finetune"), (0, "finetune_halfA")):
        acc = []
        for t, k in zip(ft.task, keys, strict=True):
            idx = split[t][half]
            acc.append(float((predictions[k][idx] == labels[t][idx]).mean()))
        out.append(ft.assign(mode=mode, accuracy=acc))
    return pd.concat(out, ignore_index=True)


INTERVAL_SIDE = {"above": "above 0", "below": "below 0", "includes": "includes 0", "no data": ""}


def regime_gains(runs: pd.DataFrame, picks: pd.DataFrame, halves: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per regime (each few-shot one and the full 1k), metric and method: the method's mean accuracy, B's at the
    same tasks and seeds, and their paired difference with its interval (``interval``: which side of 0 it lies
    on, a description; the verdicts, corrected for multiplicity, are :func:`hypothesis_table`'s): how much the
    choice of pre-training matters as training images grow; the oracle on test half B, given ``halves``."""
    rows = []
    for name in regime_order(runs.task.map(regime)):
        pr = in_regime(picks, name)
        for mode in ("finetune", "linear"):
            for method in GAIN_METHODS:
                if method not in pr and method in ("knn", "domain"):
                    continue
                rr = in_regime(judged_on(runs, halves, method, mode), name)
                base, own = method_runs(rr, pr, BASE, mode), method_runs(rr, pr, method, mode)
                c = compare(own, base)
                if not c.tasks:
                    continue
                same = base.merge(own[["task", "seed"]], on=["task", "seed"])  # B where the method was judged
                rows.append({"regime": name, "metric": mode, "method": method,
                             "accuracy": float(own.groupby("task").accuracy.mean().mean()),
                             "base_accuracy": float(same.groupby("task").accuracy.mean().mean()),
                             "minus_base": c.mean, "ci_low": c.ci_low, "ci_high": c.ci_high, "tasks": c.tasks,
                             "seeds": c.seeds, "interval": INTERVAL_SIDE[c.side]})  # fmt: skip
    return pd.DataFrame(rows, columns=["regime", "metric", "method", "accuracy", "base_accuracy", "minus_base",
                                       "ci_low", "ci_high", "tasks", "seeds", "interval"])  # fmt: skip


def base_differences(runs: pd.DataFrame, picks: pd.DataFrame, halves: pd.DataFrame | None = None,
                     mode: str = "finetune") -> pd.DataFrame:  # fmt: skip
    """Each method (:data:`GAIN_METHODS`) minus B, paired at the same seeds and test images (the oracle on test
    half B, given ``halves``), as the claims pair them. Over every task (``level`` "all"): the mean of the per-task
    differences with the claims' bootstrap-t interval over tasks (:func:`expertlib.analysis.stats.compare`,
    the numbers of the claims table). Per group ("group", 3-5 tasks) and per task ("task", the mean over its
    seeds): Student's t interval (:func:`expertlib.analysis.stats.t_interval`), since the bootstrap-t
    degenerates on so few units (a resample of one repeated value has no spread, and at 3 units one in nine
    resamples is one)."""
    groups = runs.drop_duplicates("task").set_index("task").group
    rows = []
    for method in GAIN_METHODS:
        if method not in picks and method in ("knn", "domain"):
            continue
        judged = judged_on(runs, halves, method, mode)
        own, base = method_runs(judged, picks, method, mode), method_runs(judged, picks, BASE, mode)
        diffs = paired_differences(own, base)
        for task, d in diffs.items():
            lo, hi = t_interval(d)
            rows.append({"level": "task", "name": task, "group": groups[task], "method": method,
                         "minus_base": float(d.mean()), "ci_low": lo, "ci_high": hi, "tasks": 1, "seeds": len(d)})  # fmt: skip
        for name in [*dict.fromkeys(groups), "all"]:
            tasks = set(groups.index) if name == "all" else set(groups[groups == name].index)
            c = compare(own[own.task.isin(tasks)], base[base.task.isin(tasks)])
            if c.tasks:
                per_task = np.array([d.mean() for t, d in diffs.items() if t in tasks])
                lo, hi = (c.ci_low, c.ci_high) if name == "all" else t_interval(per_task)
                rows.append({"level": "all" if name == "all" else "group", "name": name, "group": name,
                             "method": method, "minus_base": c.mean, "ci_low": lo, "ci_high": hi,
                             "tasks": c.tasks, "seeds": c.seeds})  # fmt: skip
    return pd.DataFrame(rows, columns=["level", "name", "group", "method", "minus_base", "ci_low", "ci_high", "tasks",
                                       "seeds"])  # fmt: skip


def gain_over_base(runs: pd.DataFrame, picks: pd.DataFrame, name: str, method: str) -> pd.DataFrame:
    """``method``'s accuracy minus B's per (task, seed) in regime ``name``, tasks named by their full task, so
    that regimes pair with each other."""
    rr, pr = in_regime(runs, name), in_regime(picks, name)
    m = method_runs(rr, pr, method).merge(method_runs(rr, pr, BASE), on=["task", "seed"])
    return pd.DataFrame({"task": m.task.map(lambda t: split_name(t)[0]), "seed": m.seed,
                         "accuracy": m.accuracy_x - m.accuracy_y})  # fmt: skip


ORACLE_REFUSED = (
    "oracle refused: neither val200 runs (oracle_on='val200') nor every fine-tune's stored test predictions (to "
    "choose on one half of the test images and judge on the other) exist, and the best expert chosen on the test "
    "images it is judged on is biased upwards"
)
ORACLE_CHOSEN = {
    "val": "oracle (best of kNN's top experts on val200, judged on test)",
    "halves": "oracle (best on test half A at seed 0, judged on half B at the others)",
    "refused": ORACLE_REFUSED,
}


def design_sizes(picks: pd.DataFrame) -> tuple[int, int, int] | None:
    """Where the selection step chose which experts to fine-tune: (experts scored, the random sample's size, the
    oracle pool's size); None where every expert was fine-tuned."""
    if not {"random_sample", "oracle_pool", "experts_scored"} <= set(picks) or not len(picks):
        return None
    size = lambda col: int(picks[col].map(lambda v: len(split_ids(v))).max())  # noqa: E731
    return int(picks.experts_scored.max()), size("random_sample"), size("oracle_pool")


def method_labels(picks: pd.DataFrame, oracle_chosen: str) -> dict[str, str]:
    """The labels of the methods whose definition depends on the run: where the oracle was chosen (a key of
    :data:`ORACLE_CHOSEN`) and, where the selection step chose which experts to fine-tune, how many experts the
    random expectation averages and how many the oracle chooses among (kNN's top ``oracle_pool``, or all)."""
    labels = {"oracle": ORACLE_CHOSEN[oracle_chosen]}
    sizes = design_sizes(picks)
    if sizes is None:
        return labels  # every expert fine-tuned: the exact expectation and an unrestricted oracle
    scored, sample, pool = sizes
    labels["random"] = (f"random expert (exact expectation over all {scored})" if sample >= scored else
                        f"random expert (mean of {sample} of {scored} drawn per task: an estimate)")  # fmt: skip
    among = f"all {scored}" if pool >= scored else f"kNN's top {pool} of {scored}"
    labels["oracle"] = labels["oracle"].replace("kNN's top experts", among)
    return labels
