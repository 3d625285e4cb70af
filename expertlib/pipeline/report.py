"""Notebook 06: the report. Every figure, the VTAB-style table, the claims table and ``summary.json``, from
the tables of notebooks 02-05 under ``results/<scale>/`` alone; it imports no step.

What each method yields comes from :mod:`expertlib.pipeline.methods`; the analysis plan's hypotheses are tested
by :mod:`expertlib.pipeline.hypotheses` (paired differences over tasks, :mod:`expertlib.analysis.stats`, with
Holm's correction over the paper's claims and q-values over the rest); ``summary.json`` is written by
:mod:`expertlib.pipeline.summary`.
"""

from __future__ import annotations

import json

import pandas as pd

from expertlib.analysis import plots, proxy_plots
from expertlib.analysis.stats import compare
from expertlib.datasets.benchmark import Benchmark
from expertlib.datasets.fewshot import FULL_REGIME, regime, regime_order
from expertlib.models.candidates import BASE
from expertlib.pipeline.hypotheses import every_expert_seconds, hypothesis_table
from expertlib.pipeline.inputs import write_data_summary
from expertlib.pipeline.methods import (
    base_differences,
    halved_runs,
    in_regime,
    judged_on,
    method_labels,
    method_rows,
    method_runs,
    proxy_picks,
    regime_gains,
)
from expertlib.pipeline.quality import measured_seconds, proxy_agreement, quality_tables
from expertlib.pipeline.summary import summary_json, write_summary
from expertlib.pipeline.tables import load_predictions, read_candidate_table
from expertlib.pipeline.workspace import Workspace, record_provenance
from expertlib.select.proxies import PICKED_BY
from expertlib.utils.distributed import is_primary

ORACLE_NOTE = {
    "halves": "Fine-tune every expert (oracle): the cost of fine-tuning each expert once; what it yields is the "
    "expert best on test half A at seed 0, judged on half B at the other seeds. Where experts differ by less than "
    "seed-to-seed noise, that choice is mostly noise, so the oracle can fall below a cheap proxy's pick.",
    "val": "Fine-tune every expert (oracle): the cost of fine-tuning each of the pool once; what it yields is the "
    "expert best on val200, judged on test: a choice on 200 images can miss the best on test.",
    "refused": "Fine-tune every expert (oracle): not shown; with neither val200 runs nor stored test predictions it "
    "could only be chosen on the test images it would be judged on, which flatters it.",
}
"""Why the oracle sits where it does on the cost figure, by where it was chosen."""


def vtab_table(methods: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """The VTAB-style table: per method, mean fine-tuned accuracy per group and over all tasks, and its
    difference from B at the same tasks, seeds and images (``minus_base``; ``seeds``: how many it is judged at);
    ``labels`` (:func:`~expertlib.pipeline.methods.method_labels`): the definitions this run's methods used."""
    ft = methods[methods.metric == "finetune"]
    vtab = ft.pivot_table(index="method", columns="group", values="mean", aggfunc="mean")
    vtab["mean"] = ft.groupby("method")["mean"].mean()
    vtab["minus_base"] = (ft["mean"] - ft.base_same_seeds).groupby(ft.method).mean()
    vtab["seeds"] = ft.groupby("method").n.min()
    vtab = vtab.reindex([m for m in plots.METHOD_ORDER if m in vtab.index]).reset_index()
    vtab.insert(
        1,
        "label",
        vtab.method.map({**plots.METHOD_LABELS, **(labels or {})}),
    )
    return vtab


def build_report(ws: Workspace, bench: Benchmark) -> dict:
    """Every figure, the VTAB-style table, the claims table and ``summary.json`` from the runs on disk."""
    all_runs = read_candidate_table(ws.require("tables", "transfer_runs.csv", "05_transfer.ipynb"))
    all_rankings = read_candidate_table(ws.require("tables", "selection_rankings.csv", "04_selection.ipynb"))
    all_picks = read_candidate_table(ws.require("tables", "selection_picks.csv", "04_selection.ipynb"),
                                     ids=set(all_rankings.model))  # fmt: skip
    changed: list = []  # the tables this report changed: their provenance names this commit of the report code
    # the scores from past transfers join the proxies (each task's from the other tasks' runs alone), and every
    # proxy's ranking is judged against the fine-tuned accuracies and their noise ceiling
    quality_of = quality_tables(
        all_rankings, all_runs, measured=measured_seconds(ws.path("tables", "hybrid_weights.csv"))
    )
    all_rankings = quality_of["rankings"]

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
    all_points, all_quality = quality_of["points"], quality_of["per_task"]
    table(all_quality, "selection_quality_per_task")
    table(quality_of["summary"], "selection_quality")
    table(quality_of["weights"], "hybrid_weights")
    keep(proxy_plots.ceiling_fractions(quality_of["summary"]), "selection_quality")

    regimes = regime_order(all_runs.task.map(regime))
    on_val = bool((all_runs["mode"] == "finetune_val").any())  # the oracle chosen on val200
    # the oracle on disjoint halves of the test images (where val200 chose it, as at the released scale, it is not);
    # the test labels are read only where predictions were stored
    predictions = {} if on_val else load_predictions(ws.path("tables", "transfer_predictions.npz"))
    labels = {t: bench.task_labels(t, "test") for t in set(all_runs.task)} if predictions else {}
    halves = halved_runs(all_runs, predictions, labels) if predictions else None
    # the oracle is never chosen on the test images it is judged on: without val200 runs or halves, it is refused
    oracle_chosen = "val" if on_val else "halves" if halves is not None else "refused"
    legend = method_labels(all_picks, oracle_chosen)  # the tables and figures name the definitions used
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
        table(vtab_table(per_regime[name], legend), f"vtab_table{suffix}")
    table(pd.concat(per_regime.values(), ignore_index=True), "methods_per_task")
    methods = per_regime[FULL_REGIME].drop(columns="regime")
    # the headline: each method minus B, per task and per group, with the claims' intervals
    full_halves = None if halves is None else in_regime(halves, FULL_REGIME)
    differences = base_differences(runs, picks, full_halves)
    table(differences, "minus_base")
    keep(plots.minus_base_plot(differences, f"Each method minus B, full fine-tuning ({ws.scale.name} scale, "
                                            f"{FULL_REGIME} regime)", legend), "minus_base")  # fmt: skip
    ft = methods[methods.metric == "finetune"]
    vtab = vtab_table(methods, legend)
    if ws.scale.data.source in (
        "imagenet21k+vtab",
        "vtab",
    ):  # VTAB-1k itself: our table beside the published numbers
        from expertlib.analysis.published import beside_published, split_caveat

        infos = {task: bench.task_info(task) for task in ws.scale.data.tasks}
        caveat = split_caveat({task: (i.vtab_splits, i.tfds_counts_match) for task, i in infos.items()})
        both = beside_published(vtab, ws.scale.name, caveat)
        table(both, "vtab_vs_published", floatfmt=".1f")
        keep(plots.published_comparison(both, f"VTAB-1k: ours ({ws.scale.name} scale) beside published models"),
             "vtab_vs_published")  # fmt: skip

    points, quality = in_regime(all_points, FULL_REGIME), in_regime(all_quality, FULL_REGIME)
    ft_runs = runs[runs["mode"] == "finetune"]
    means = in_regime(all_means, FULL_REGIME)
    for proxy in ("knn", "domain"):
        keep(proxy_plots.proxy_scatter(points, proxy, plots.task_order(ft)), f"proxy_{proxy}_vs_accuracy")

    # cost per task vs what each method yields: its accuracy (mean over seeds, as in the claims) and its paired
    # difference from B with the claims' interval
    def yields(m: str) -> dict:
        judged = judged_on(runs, full_halves, m, "finetune")
        own = method_runs(judged, picks, m)
        c = compare(own, method_runs(judged, picks, BASE))
        return {"accuracy": float(own.groupby("task").accuracy.mean().mean()), "minus_base": c.mean,
                "ci_low": c.ci_low, "ci_high": c.ci_high}  # fmt: skip

    cost_rows = [{"method": f"{proxy} selection", "seconds": float(picks[f"{proxy}_seconds"].mean()), **yields(proxy)}
                 for proxy in PICKED_BY]  # fmt: skip
    cost_rows.append({"method": "fine-tune all (oracle)", "seconds": float(every_expert_seconds(ft_runs, picks).mean()),
                      **yields("oracle")})  # fmt: skip
    if "dat_seconds" in picks:  # measured in the selection step (04), not by a benchmark
        cost_rows.append(
            {"method": "DAT-style re-training", "seconds": float(picks.dat_seconds.mean()), **yields("dat")}
        )
    cost = pd.DataFrame(cost_rows)  # accuracy nan where DAT was timed, not trained
    table(cost, "selection_cost")
    keep(plots.cost_plot(cost.dropna(), ORACLE_NOTE[oracle_chosen]), "selection_cost")

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
    table(proxy_agreement(quality_of["summary"]), "proxy_agreement")
    gains = regime_gains(all_runs, all_picks, halves)
    if len(regimes) > 1:
        table(gains, "regimes")
        full = (
            f"{FULL_REGIME}\n(VTAB-1k)"
            if ws.scale.data.source in ("imagenet21k+vtab", "vtab")
            else f"{FULL_REGIME}\n(1,000 images)"
        )
        keep(plots.regime_gains(gains, legend, full), "regimes")
    base_acc = ft[ft.method == BASE].set_index("task")["mean"].to_dict()
    write_data_summary(ws, bench, base_acc)
    summary = summary_json(ws, bench, methods, picks, means, cost, record, adapter_log, full_log, gains)
    # where every task's 'oracle' entry was chosen and judged
    summary["oracle_chosen"] = legend["oracle"]
    if "random" in legend:  # the selection step sampled the experts to fine-tune: the baselines' definitions
        summary["definitions"] = legend
    summary["hypotheses"] = {r.id: {"estimate": r.estimate, "ci": [r.ci_low, r.ci_high], "p": r.p,
                                    "p_adjusted": r.p_adjusted, "verdict": r.verdict} for r in claim_table.itertuples()}  # fmt: skip
    write_summary(ws.results_dir / "summary.json", summary)
    if changed and is_primary():
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
