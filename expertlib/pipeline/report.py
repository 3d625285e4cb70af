"""Notebook 06: the report. Every figure, the VTAB-style table, the claims table and ``summary.json``, from
the tables of notebooks 02-05 under ``results/<scale>/`` alone.

:func:`method_rows` turns transfer runs into one accuracy per (task, method); :func:`hypothesis_table` tests
every hypothesis of the analysis plan (:mod:`expertlib.pipeline.analysis`) by paired differences over tasks
(:mod:`expertlib.stats`), with Holm's correction over the paper's claims and q-values over the rest.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from expertlib import plots
from expertlib.candidates import BASE, EXPERT_KINDS, EXTRA
from expertlib.datasets.benchmark import Benchmark
from expertlib.datasets.fewshot import FULL_REGIME, regime, regime_order, split_name
from expertlib.pipeline.analysis import Hypothesis, plan, verdict
from expertlib.pipeline.data import write_data_summary
from expertlib.pipeline.workspace import (
    Workspace,
    is_main_process,
    provenance,
    read_candidate_table,
    record_provenance,
)
from expertlib.runtime import atomic_write_json
from expertlib.selection import (
    PICKED_BY,
    join_ids,
    kendall_tau,
    regret,
    split_ids,
    top_k_relative_accuracy,
    weighted_tau,
)
from expertlib.stats import (
    Comparison,
    bh_q,
    bootstrap_t_interval,
    compare,
    compare_per_task,
    holm,
    noise_ceiling,
)

METHODS = (BASE, EXTRA, "knn", "domain", "oracle", "random", "dat")


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
    - ``oracle``: the expert with the best test accuracy at seed 0, judged at the other seeds only (the maximum
      of noisy accuracies is biased upwards on the seed that chose it, not on independent seeds); where
      ``picks`` has an ``oracle_pool`` and the runs hold its ``finetune_val`` runs, the pool's expert with the
      best val200 accuracy (train800 -> val200, seed 0; ties: kNN's order), judged on test at every seed, on
      images that never chose it."""
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
    if method == "oracle":
        return pool[(pool.seed > 0) & (pool.model == pool.task.map(_best_at_seed0(pool)))][cols]
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


PROXIES = ("knn", "domain", "linear", "logme", "hscore", "leep", "nce")


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


def selection_quality(points: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per task and proxy: rank agreement of proxy scores with the experts' mean fine-tuned accuracy over all
    seeds (``points``: task, proxy, model, score, accuracy), beside the noise ceiling on that same target
    (:func:`expertlib.stats.noise_ceiling`): how much of the ranking the seeds let anyone know."""
    ft = runs[(runs["mode"] == "finetune") & in_pool(runs)]
    ceiling = {t: noise_ceiling(g.rename(columns={"model": "candidate"})) for t, g in ft.groupby("task")}
    quality = []
    for (task, proxy), g in points.groupby(["task", "proxy"]):
        if len(g) < 3:
            continue
        tied = g[
            g.score == g.score.max()
        ]  # the expectation over experts tied at the top, not the first by name
        quality.append({"task": task, "proxy": proxy, "kendall_tau": kendall_tau(g.score, g.accuracy),
                        "noise_ceiling_tau": ceiling.get(task, np.nan),
                        "weighted_tau": weighted_tau(g.score, g.accuracy), "regret": regret(tied.accuracy.mean(), g.accuracy),
                        "top1_relative": top_k_relative_accuracy(g.score, g.accuracy, 1),
                        "top3_relative": top_k_relative_accuracy(g.score, g.accuracy, 3)})  # fmt: skip
    return pd.DataFrame(quality, columns=["task", "proxy", "kendall_tau", "noise_ceiling_tau", "weighted_tau",
                                          "regret", "top1_relative", "top3_relative"])  # fmt: skip


def in_regime(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of ``frame`` (a ``task`` column) whose task belongs to regime ``name`` ("1k", "5-shot", ...)."""
    return frame[frame.task.map(regime) == name]


ORACLE_CHOSEN = {
    "val": "oracle (best of kNN's top experts on val200, judged on test)",
    "halves": "oracle (best on test half A at seed 0, judged on half B at the others)",
    "test": plots.METHOD_LABELS["oracle"],
}


def vtab_table(methods: pd.DataFrame, oracle_chosen: str = "test") -> pd.DataFrame:
    """The VTAB-style table: per method, mean fine-tuned accuracy per group and over all tasks, and its
    difference from B at the same tasks, seeds and images (``minus_base``; ``seeds``: how many it is judged at);
    the oracle's label says where it was chosen (``oracle_chosen``: a key of :data:`ORACLE_CHOSEN`)."""
    ft = methods[methods.metric == "finetune"]
    vtab = ft.pivot_table(index="method", columns="group", values="mean", aggfunc="mean")
    vtab["mean"] = ft.groupby("method")["mean"].mean()
    vtab["minus_base"] = (ft["mean"] - ft.base_same_seeds).groupby(ft.method).mean()
    vtab["seeds"] = ft.groupby("method").n.min()
    vtab = vtab.reindex([m for m in plots.METHOD_ORDER if m in vtab.index]).reset_index()
    vtab.insert(
        1,
        "label",
        vtab.method.map({**plots.METHOD_LABELS, "oracle": ORACLE_CHOSEN[oracle_chosen]}),
    )
    return vtab


GAIN_METHODS = (EXTRA, "knn", "domain", "random", "oracle", "dat")


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
                             "seeds": c.seeds, "interval": INTERVAL_SIDE[c.verdict]})  # fmt: skip
    return pd.DataFrame(rows, columns=["regime", "metric", "method", "accuracy", "base_accuracy", "minus_base",
                                       "ci_low", "ci_high", "tasks", "seeds", "interval"])  # fmt: skip


INTERVAL_SIDE = {"better": "above 0", "worse": "below 0", "no difference shown": "includes 0", "no data": ""}


def gain_over_base(runs: pd.DataFrame, picks: pd.DataFrame, name: str, method: str) -> pd.DataFrame:
    """``method``'s accuracy minus B's per (task, seed) in regime ``name``, tasks named by their full task, so
    that regimes pair with each other."""
    rr, pr = in_regime(runs, name), in_regime(picks, name)
    m = method_runs(rr, pr, method).merge(method_runs(rr, pr, BASE), on=["task", "seed"])
    return pd.DataFrame({"task": m.task.map(lambda t: split_name(t)[0]), "seed": m.seed,
                         "accuracy": m.accuracy_x - m.accuracy_y})  # fmt: skip


def build_report(ws: Workspace, bench: Benchmark) -> dict:
    """Every figure, the VTAB-style table, the claims table and ``summary.json`` from the runs on disk."""
    all_runs = read_candidate_table(ws.require("tables", "transfer_runs.csv", "05_transfer.ipynb"))
    all_rankings = read_candidate_table(ws.require("tables", "selection_rankings.csv", "04_selection.ipynb"))
    all_picks = read_candidate_table(ws.require("tables", "selection_picks.csv", "04_selection.ipynb"),
                                     ids=set(all_rankings.model))  # fmt: skip
    changed: list = []  # the tables this report changed: their provenance names this commit of the report code

    def table(frame: pd.DataFrame, name: str, **kw) -> None:
        stem = ws.path("tables", name)
        before = {
            p: p.read_bytes() for p in (stem.with_suffix(".csv"), stem.with_suffix(".md")) if p.exists()
        }
        changed.extend(p for p in plots.save_table(frame, stem, **kw) if before.get(p) != p.read_bytes())

    # every proxy's pick as the experts tied at its top score (ties are resolved by expectation, not by name)
    all_picks, ties = proxy_picks(all_picks, all_rankings)
    table(ties, "selection_ties")
    # the paper's regime (VTAB-1k) makes the main tables; few-shot regimes get the same tables beside them
    runs, picks = in_regime(all_runs, FULL_REGIME), in_regime(all_picks, FULL_REGIME)
    if ws.scale.trains_upstream:
        spec = pd.read_csv(ws.require("", "expert_specialisation.csv", "03_experts.ipynb"))
        record = json.loads(ws.require("tables", "generic_training.json", "02_generic.ipynb").read_text())
        adapter_log = pd.read_csv(ws.path("tables", "adapter_expert_training.csv"))
        full_log = pd.read_csv(ws.path("tables", "full_expert_training.csv"))
    else:  # nothing trained upstream: B and the experts are the released downloads
        spec, record = None, {"weights": ws.scale.upstream.weights, "steps": 0}
        adapter_log = full_log = pd.DataFrame(columns=["expert", "trainable_parameters"])
    figures: dict = {}  # name -> matplotlib figure, saved as PNG and SVG and returned for inline display

    def keep(fig, name: str) -> None:
        plots.save_figure(fig, ws.path("figures", name))
        figures[name] = fig

    # proxy score vs fine-tuned accuracy (each expert's mean over all seeds), in every regime
    all_ft = all_runs[all_runs["mode"] == "finetune"]
    all_means = all_ft.groupby(["task", "model"]).accuracy.mean().rename("accuracy").reset_index()
    pool = set(all_ft[in_pool(all_ft)].model)
    all_points = all_rankings.merge(all_means[all_means.model.isin(pool)], on=["task", "model"])
    all_quality = selection_quality(all_points, all_runs)
    all_quality.insert(1, "regime", all_quality.task.map(regime))
    table(all_quality, "selection_quality")

    regimes = regime_order(all_runs.task.map(regime))
    on_val = bool((all_runs["mode"] == "finetune_val").any())  # the oracle chosen on val200
    # the oracle on disjoint halves of the test images (where val200 chose it, as at the released scale, it is not);
    # the test labels are read only where predictions were stored
    from expertlib.pipeline.transfer import load_predictions

    predictions = {} if on_val else load_predictions(ws.path("tables", "transfer_predictions.npz"))
    labels = {t: bench.task(t, "test").labels for t in set(all_runs.task)} if predictions else {}
    halves = halved_runs(all_runs, predictions, labels) if predictions else None
    oracle_chosen = "val" if on_val else "halves" if halves is not None else "test"
    legend = {"oracle": ORACLE_CHOSEN[oracle_chosen]}  # the figures' legend says where the oracle was chosen
    per_regime = {}  # regime -> its methods table (per task and method)
    for name in regimes:
        rr, pr = in_regime(all_runs, name), in_regime(all_picks, name)
        hr = None if halves is None else in_regime(halves, name)
        per_regime[name] = pd.concat(
            [method_rows(rr, pr, "finetune", hr), method_rows(rr, pr, "linear")], ignore_index=True
        ).assign(regime=name)
        suffix, label = ("", "") if name == FULL_REGIME else ("_" + name.replace("-", ""), f", {name}")
        for metric, title in (
            ("finetune", "full fine-tuning"),
            ("linear", "frozen features + linear classifier"),
        ):
            if not (per_regime[name].metric == metric).any():  # linear probes off at this scale
                continue
            keep(
                plots.transfer_bars(
                    per_regime[name], metric, f"Transfer by {title} ({ws.scale.name} scale{label})", legend
                ),
                f"transfer_{metric}{suffix}",
            )
        table(vtab_table(per_regime[name], oracle_chosen), f"vtab_table{suffix}")
    table(pd.concat(per_regime.values(), ignore_index=True), "methods_per_task")
    methods = per_regime[FULL_REGIME].drop(columns="regime")
    ft = methods[methods.metric == "finetune"]
    vtab = vtab_table(methods, oracle_chosen)
    if ws.scale.data.source in (
        "imagenet21k+vtab",
        "vtab",
    ):  # VTAB-1k itself: our table beside the published numbers
        from expertlib.published import beside_published

        both = beside_published(vtab, ws.scale.name)
        table(both, "vtab_vs_published", floatfmt=".1f")
        keep(plots.published_comparison(both, f"VTAB-1k: ours ({ws.scale.name} scale) beside published models"),
             "vtab_vs_published")  # fmt: skip

    points, quality = in_regime(all_points, FULL_REGIME), in_regime(all_quality, FULL_REGIME)
    ft_runs = runs[runs["mode"] == "finetune"]
    means = in_regime(all_means, FULL_REGIME)
    for proxy in ("knn", "domain"):
        keep(plots.proxy_scatter(points, proxy), f"proxy_{proxy}_vs_accuracy")

    # cost per task vs accuracy of what each method yields (accuracy: mean over seeds, as in the claims)
    full_halves = None if halves is None else in_regime(halves, FULL_REGIME)
    per_task = lambda m: (  # noqa: E731
        method_runs(judged_on(runs, full_halves, m, "finetune"), picks, m)
        .groupby("task")
        .accuracy.mean()
        .mean()
    )
    cost_rows = [{"method": f"{proxy} selection", "seconds": float(picks[f"{proxy}_seconds"].mean()),
                  "accuracy": float(per_task(proxy))}
                 for proxy in PICKED_BY]  # fmt: skip
    cost_rows.append({"method": "fine-tune all (oracle)", "seconds": float(every_expert_seconds(ft_runs, picks).mean()),
                      "accuracy": float(per_task("oracle"))})  # fmt: skip
    if "dat_seconds" in picks:  # measured in the selection step (04), not by a benchmark
        cost_rows.append({"method": "DAT-style re-training", "seconds": float(picks.dat_seconds.mean()),
                          "accuracy": float(per_task("dat"))})  # nan where DAT was timed, not trained  # fmt: skip
    cost = pd.DataFrame(cost_rows)
    table(cost, "selection_cost")
    keep(plots.cost_plot(cost.dropna()), "selection_cost")

    # adapter vs full experts on their related tasks
    related = {t: bench.task_info(t).relates_to for t in ws.scale.data.tasks}
    avf = []
    for kind, log in (("adapter", adapter_log), ("full", full_log)):
        for r in log.itertuples():
            tasks = [t for t, rel in related.items() if rel == r.expert]
            acc = ft_runs[(ft_runs.kind == kind) & (ft_runs.expert == r.expert) & ft_runs.task.isin(tasks)]
            if len(acc):
                avf.append({"expert": r.expert, "kind": kind, "parameters": int(r.trainable_parameters),
                            "accuracy": float(acc.accuracy.mean()), "tasks": ",".join(tasks)})  # fmt: skip
    avf = pd.DataFrame(avf)
    if len(avf):
        table(avf, "adapter_vs_full")
        keep(plots.adapter_vs_full(avf), "adapter_vs_full")
    sweep_path = ws.path("tables", "schedule_sweep.csv")
    if sweep_path.exists():
        sweep = pd.read_csv(sweep_path)
        if len(sweep):
            keep(plots.schedule_plot(sweep), "schedule_sweep")

    # the analysis plan's hypotheses, tested as planned (docs/analysis_plan.md)
    claim_table = hypothesis_table(all_runs, all_picks, all_quality, spec, avf, on_val, halves)
    table(claim_table, "claims")
    table(proxy_agreement(all_quality), "proxy_agreement")
    gains = regime_gains(all_runs, all_picks, halves)
    if len(regimes) > 1:
        table(gains, "regimes")
        keep(plots.regime_gains(gains, legend), "regimes")
    base_acc = ft[ft.method == BASE].set_index("task")["mean"].to_dict()
    write_data_summary(ws, bench, base_acc)
    summary = _summary_json(ws, bench, methods, picks, means, cost, record, adapter_log, full_log, gains)
    # where every task's 'oracle' entry was chosen and judged
    summary["oracle_chosen"] = ORACLE_CHOSEN[oracle_chosen]
    summary["hypotheses"] = {r.id: {"estimate": r.estimate, "ci": [r.ci_low, r.ci_high], "p": r.p,
                                    "p_adjusted": r.p_adjusted, "verdict": r.verdict} for r in claim_table.itertuples()}  # fmt: skip
    write_summary(ws.results_dir / "summary.json", summary)
    if changed and is_main_process():
        record_provenance(changed)
    return {
        "vtab_table": vtab,
        "claims": claim_table,
        "methods": methods,
        "quality": quality,
        "cost": cost,
        "regimes": gains,
        "figures": figures,
    }


def every_expert_seconds(runs: pd.DataFrame, picks: pd.DataFrame) -> pd.Series:
    """Per task, the wall time of fine-tuning every expert once (seed 0): measured where every expert was
    fine-tuned, else (``experts_scored`` in ``picks``) the mean fine-tune of those that were, times the number
    of experts."""
    ft = runs[(runs["mode"] == "finetune") & (runs.seed == 0)]
    by_task = ft[in_pool(ft)].groupby("task").seconds
    if "experts_scored" not in picks:
        return by_task.sum()
    return by_task.mean() * picks.set_index("task").experts_scored.reindex(by_task.mean().index)


def cost_ratios(runs: pd.DataFrame, picks: pd.DataFrame) -> pd.Series:
    """Per task, log10 of the wall time of fine-tuning every expert once (seed 0) over the kNN selection's."""
    if "knn_seconds" not in picks or "seconds" not in runs:
        return pd.Series(dtype=float)
    every = every_expert_seconds(runs[runs["mode"] == "finetune"], picks)
    return np.log10(every / picks.set_index("task").knn_seconds).dropna()


def _available(runs: pd.DataFrame, picks: pd.DataFrame, method: str) -> bool:
    if method in PROXIES:
        return method in picks
    if method == "dat":
        return bool((runs.kind == "dat").any())
    if method in (BASE, EXTRA):
        return bool((runs.model == method).any())
    return True  # random, oracle: from the expert pool


def _evaluate(h: Hypothesis, runs: pd.DataFrame, picks: pd.DataFrame, quality: pd.DataFrame,
              spec: pd.DataFrame | None, avf: pd.DataFrame) -> Comparison | None:  # fmt: skip
    """The paired comparison ``h`` asks for, or None where this scale's runs cannot answer it."""
    test = dict(null=h.margin, alternative=h.alternative)
    if h.id == "P7":  # experts on their own upstream subsets, one kNN measurement each
        own = (spec[(spec.region == "own") & (spec.kind == "adapter")].pivot_table(index="expert", columns="model",
                                                                                   values="knn")
               if spec is not None else pd.DataFrame())  # fmt: skip
        if "adapter_expert" not in own:
            return None
        return compare_per_task((own["adapter_expert"] - own[BASE]).to_numpy(), **test)
    if h.id == "P8":  # adapter vs full on the tasks each full expert relates to
        both = avf.groupby("expert").kind.nunique() == 2 if len(avf) else pd.Series(dtype=bool)
        pairs = [
            (r.expert, r.tasks) for r in avf.itertuples() if r.kind == "full" and both.get(r.expert, False)
        ]
        if not pairs:
            return None
        ft = in_regime(runs, FULL_REGIME)
        ft = ft[ft["mode"] == "finetune"]
        take = lambda kind: pd.concat([ft[(ft.kind == kind) & (ft.expert == e) & ft.task.isin(t.split(","))]  # noqa: E731
                                       for e, t in pairs])  # fmt: skip
        return compare(take("adapter"), take("full"), **test)
    if h.id == "P9":
        logs = cost_ratios(in_regime(runs, FULL_REGIME), in_regime(picks, FULL_REGIME))
        return compare_per_task(logs.to_numpy(), **test) if len(logs) else None
    if h.regime.endswith(" vs 1k"):
        few = h.regime.removesuffix(" vs 1k")
        if few not in set(runs.task.map(regime)):
            return None
        if h.a.startswith("tau@"):  # kNN's Kendall tau per task, at 1k minus at the few-shot regime
            q = quality[quality.proxy == "knn"].assign(base=lambda d: d.task.map(lambda t: split_name(t)[0]))
            full, other = (q[q.regime == r].set_index("base").kendall_tau for r in (FULL_REGIME, few))
            d = (full - other).dropna()
            return compare_per_task(d.to_numpy(), **test) if len(d) else None
        if not _available(runs, picks, h.a):
            return None
        return compare(
            gain_over_base(runs, picks, few, h.a), gain_over_base(runs, picks, FULL_REGIME, h.a), **test
        )
    rr, pr = in_regime(runs, h.regime), in_regime(picks, h.regime)
    if not len(rr) or not (_available(rr, pr, h.a) and _available(rr, pr, h.b)):
        return None
    c = compare(method_runs(rr, pr, h.a), method_runs(rr, pr, h.b), **test)
    return c if c.tasks else None


def halved_runs(runs: pd.DataFrame, predictions: dict[str, np.ndarray], labels: dict[str, np.ndarray]
                ) -> pd.DataFrame | None:  # fmt: skip
    """The fine-tunes' accuracies on the two fixed halves of each task's test images (:func:`test_halves`), from
    their stored predictions: half B as mode ``finetune`` (what the oracle and its comparisons are judged on),
    half A as ``finetune_halfA`` (what chooses the oracle). None unless every fine-tune's predictions exist."""
    from expertlib.pipeline.analysis import test_halves
    from expertlib.pipeline.transfer import prediction_key

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


def hypothesis_table(runs: pd.DataFrame, picks: pd.DataFrame, quality: pd.DataFrame, spec: pd.DataFrame | None,
                     avf: pd.DataFrame, oracle_on_val: bool = False, halves: pd.DataFrame | None = None
                     ) -> pd.DataFrame:  # fmt: skip
    """Every hypothesis of the analysis plan (for this run's few-shot regimes), tested as planned: estimate, the
    bootstrap-t interval, the sign-flip p, Holm-adjusted p (confirmatory) or BH q-value (exploratory), verdict.
    A hypothesis this scale cannot test is listed as such and left out of the corrections. ``halves``
    (:func:`halved_runs`): where given, every hypothesis about the oracle is judged on test half B, the oracle
    chosen on half A."""
    shots = sorted({int(r.split("-")[0]) for r in runs.task.map(regime) if r != FULL_REGIME})
    rows = []
    for h in plan(tuple(shots)):
        oracle = "oracle" in (h.a, h.b)
        c = _evaluate(h, halves if oracle and halves is not None else runs, picks, quality, spec, avf)
        note = ""
        if oracle and halves is not None:
            note = " Judged on test half B at seeds 1+, the oracle chosen on half A at seed 0."
        elif oracle and not oracle_on_val:
            note = " The oracle was chosen on the test images it is judged on (seed 0's), at other seeds."
        if h.id == "P9":
            note = (
                " Wall times at this scale's fine-tuning budget; at the paper's budget see "
                "results/benchmarks/selection_cost_paper*.csv."
            )
        rows.append({"id": h.id, "family": h.family, "claim": h.claim, "regime": h.regime,
                     "comparison": f"{h.a} - {h.b}", "measure": h.measure, "null": h.margin,
                     "alternative": h.alternative, "post_hoc": h.post_hoc,
                     "estimate": c.mean if c else np.nan, "ci_low": c.ci_low if c else np.nan,
                     "ci_high": c.ci_high if c else np.nan, "tasks": c.tasks if c else 0,
                     "seeds": c.seeds if c else 0, "p": c.p if c else np.nan,
                     "evidence": (c.evidence("experts" if h.id == "P7" else "tasks") + ("." + note if note else "")) if c else
                     "not testable at this scale (no runs of these methods)"})  # fmt: skip
    table = pd.DataFrame(rows)
    conf = (table.family == "confirmatory").to_numpy()
    table["p_adjusted"] = np.where(
        conf, holm(np.where(conf, table.p, np.nan)), bh_q(np.where(conf, np.nan, table.p))
    )
    table["adjustment"] = np.where(conf, "Holm", "BH q-value")
    table["verdict"] = [verdict(r.p, r.p_adjusted, r.ci_low, r.ci_high, r.null, r.alternative)
                        for r in table.itertuples()]  # fmt: skip
    return table[["id", "family", "claim", "regime", "comparison", "estimate", "ci_low", "ci_high", "p",
                  "p_adjusted", "adjustment", "verdict", "tasks", "seeds", "null", "alternative", "post_hoc",
                  "measure", "evidence"]]  # fmt: skip


def proxy_agreement(quality: pd.DataFrame) -> pd.DataFrame:
    """Per regime and proxy: mean Kendall tau over tasks with its bootstrap-t interval, the mean noise ceiling
    on the same target, and tau as a fraction of the ceiling (the interval scaled by the same ceiling)."""
    rows = []
    for (reg, proxy), g in quality.groupby(["regime", "proxy"], sort=False):
        taus = g.kendall_tau.dropna().to_numpy()
        ceiling = float(g.noise_ceiling_tau.mean())
        lo, hi = bootstrap_t_interval(taus) if len(taus) > 1 else (np.nan, np.nan)
        rows.append({"regime": reg, "proxy": proxy, "tasks": len(taus), "kendall_tau": taus.mean(), "ci_low": lo,
                     "ci_high": hi, "noise_ceiling_tau": ceiling,
                     "fraction_of_ceiling": taus.mean() / ceiling if ceiling > 0 else np.nan,
                     "fraction_ci_low": lo / ceiling if ceiling > 0 else np.nan,
                     "fraction_ci_high": hi / ceiling if ceiling > 0 else np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def _summary_json(ws, bench, methods, picks, means, cost, record, adapter_log, full_log, gains) -> dict:
    tasks = {}
    ft = methods[methods.metric == "finetune"]
    lin = methods[methods.metric == "linear"]
    for task in ws.scale.data.tasks:
        t = ft[ft.task == task].set_index("method")
        pk = picks.set_index("task").loc[task]
        acc = means[means.task == task].set_index("model").accuracy
        get = lambda m: float(t.loc[m, "mean"]) if m in t.index else None  # noqa: E731, B023
        tasks[task] = {
            "group": bench.task_info(task).group,
            "relates_to": bench.task_info(task).relates_to,
            "baseline_accuracy": get(BASE),
            "baseline_extra_accuracy": get(EXTRA),
            "selected": {
                p: {
                    "model": pk[p],
                    "accuracy_mean": float(acc.reindex(split_ids(pk[p])).mean()),
                }  # a tie: its mean
                for p in PICKED_BY
            },
            "knn_pick_accuracy_mean": get("knn"),
            "domain_pick_accuracy_mean": get("domain"),
            "oracle": {
                "model": str(t.loc["oracle", "model"]) if "oracle" in t.index else None,
                "accuracy_other_seeds": get("oracle"),
            },
            "random_expert_mean": get("random"),
            "dat_accuracy_mean": get("dat"),
            "frozen_linear": {
                m: float(v) for m, v in lin[lin.task == task].set_index("method")["mean"].items()
            },
        }
    return {
        "scale": ws.scale.name,
        "tasks": tasks,
        "selection_cost_seconds_per_task": {r.method: r.seconds for r in cost.itertuples()},
        # per regime (few-shot and 1k) and metric: each method's mean accuracy and its difference from B
        "regimes": {
            name: {
                metric: {
                    r.method: {
                        "accuracy": r.accuracy,
                        "minus_base": r.minus_base,
                        "ci": [r.ci_low, r.ci_high],
                    }
                    for r in g.itertuples()
                }
                for metric, g in by_regime.groupby("metric")
            }
            for name, by_regime in gains.groupby("regime", sort=False)
        },
        "model": {
            "arch": ws.scale.upstream.arch,
            "generic_training": record,
            "adapter_expert_parameters": adapter_log.trainable_parameters.tolist(),
            "full_expert_parameters": full_log.trainable_parameters.tolist(),
        },  # fmt: skip
        "data": {**bench.describe(), "tasks": len(ws.scale.data.tasks)},
        # this report's code (the commit it ran at) and the commits that computed the tables it read
        "provenance": (stamp := provenance())
        | {"report_code_commit": stamp["git_commit"], "inputs": _input_commits(ws)},
    }


def _input_commits(ws: Workspace) -> dict[str, str | None]:
    """The commit recorded in provenance.json for each table the report reads."""
    book = ws.path("tables", "provenance.json")
    known = json.loads(book.read_text()) if book.exists() else {}
    return {n: known.get(n, {}).get("git_commit") for n in ("transfer_runs.csv", "selection_rankings.csv",
                                                             "selection_picks.csv")}  # fmt: skip


def write_summary(path, summary: dict) -> bool:
    """Write ``summary.json`` unless the file already holds the same results (provenance aside): its
    provenance then stays that of the run that produced them, and a rerun leaves the file unchanged."""
    from pathlib import Path

    path = Path(path)
    if path.exists():
        old = json.loads(path.read_text())
        strip = lambda d: {k: v for k, v in d.items() if k not in ("provenance", "run_seconds")}  # noqa: E731
        if json.dumps(strip(old), sort_keys=True, default=str) == json.dumps(
            strip(summary), sort_keys=True, default=str
        ):
            return False
        # the notebooks' wall times (expertlib.reproduce) stay until the next timed run
        if "run_seconds" in old:
            summary = {**summary, "run_seconds": old["run_seconds"]}
    atomic_write_json(path, summary)
    return True
