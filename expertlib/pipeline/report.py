"""Notebook 06: the report. Every figure, the VTAB-style table, the claims table and ``summary.json``, from
the tables of notebooks 02-05 under ``results/<scale>/`` alone.

:func:`method_rows` turns transfer runs into one accuracy per (task, method); :func:`claims` compares
methods by paired differences over tasks and seeds with bootstrap CIs (:mod:`expertlib.stats`).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from expertlib import plots
from expertlib.candidates import BASE, EXTRA, picked
from expertlib.datasets.benchmark import Benchmark
from expertlib.pipeline.data import write_data_summary
from expertlib.pipeline.workspace import Workspace, provenance
from expertlib.runtime import atomic_write_json
from expertlib.selection import kendall_tau, regret, top_k_relative_accuracy, weighted_tau
from expertlib.stats import Comparison, compare


def _claim_verdict(c: Comparison) -> str:
    """'reproduced' when the CI of the paired difference lies above zero, 'contradicted' when below, else
    'not shown' (the CI includes zero)."""
    return {
        "better": "reproduced",
        "worse": "contradicted",
        "no difference shown": "not shown (CI includes 0)",
    }.get(c.verdict, c.verdict)


def method_rows(runs: pd.DataFrame, picks: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Per task and method: mean and sd over seeds of the model that method yields."""
    sub = runs[runs["mode"] == mode]
    rows = []
    for task, t in sub.groupby("task"):
        group = t.group.iloc[0]
        pk = picks.set_index("task").loc[task]
        stats = t.groupby("model").accuracy.agg(["mean", "std", "count"])
        seed0 = t[t.seed == 0].set_index("model").accuracy
        adapters = seed0[[m for m in seed0.index if m.startswith("adapter:")]]

        def add(
            method: str, model: str | None, mean: float, sd: float, n: int, task=task, group=group
        ) -> None:
            rows.append({"task": task, "group": group, "metric": mode, "method": method, "model": model,
                         "mean": float(mean), "sd": float(sd) if n > 1 else np.nan, "n": int(n)})  # fmt: skip

        for method, model in (
            (BASE, BASE),
            (EXTRA, EXTRA),
            ("knn", picked(set(t.model), pk["knn"])),
            ("domain", picked(set(t.model), pk["domain"])),
        ):
            if model in stats.index:
                s = stats.loc[model]
                add(method, model, s["mean"], s["std"], s["count"])
        if len(adapters):
            best = adapters.idxmax()
            s = stats.loc[best]
            add("oracle", best, s["mean"], s["std"], s["count"])
            add("random", None, adapters.mean(), adapters.std(), len(adapters))
    return pd.DataFrame(rows)


def method_runs(runs: pd.DataFrame, picks: pd.DataFrame, method: str, mode: str = "finetune") -> pd.DataFrame:
    """The (task, seed, accuracy) runs a method yields: B, B+extra, a proxy's pick, or ``random`` (the
    expectation over all adapter experts: their mean at each seed where every one of them ran)."""
    sub = runs[runs["mode"] == mode]
    if method in (BASE, EXTRA):
        return sub[sub.model == method][["task", "seed", "accuracy"]]
    if method == "random":
        adapters = sub[sub.model.str.startswith("adapter:")]
        per = (
            adapters.groupby(["task", "seed"])
            .agg(accuracy=("accuracy", "mean"), n=("model", "nunique"))
            .reset_index()
        )
        full = per.groupby("task").n.transform("max")
        return per[per.n == full][["task", "seed", "accuracy"]]
    names = set(sub.model)
    want = {task: picked(names, pick) for task, pick in picks.set_index("task")[method].items()}
    chosen = sub[sub.model == sub.task.map(want)]
    return chosen[["task", "seed", "accuracy"]]


def build_report(ws: Workspace, bench: Benchmark) -> dict:
    """Every figure, the VTAB-style table, the claims table and ``summary.json`` from the runs on disk."""
    runs = pd.read_csv(ws.require("tables", "transfer_runs.csv", "05_transfer.ipynb"))
    picks = pd.read_csv(ws.require("tables", "selection_picks.csv", "04_selection.ipynb"))
    rankings = pd.read_csv(ws.require("tables", "selection_rankings.csv", "04_selection.ipynb"))
    spec = pd.read_csv(ws.require("", "expert_specialisation.csv", "03_experts.ipynb"))
    record = json.loads(ws.require("tables", "generic_training.json", "02_generic.ipynb").read_text())
    adapter_log = pd.read_csv(ws.path("tables", "adapter_expert_training.csv"))
    full_log = pd.read_csv(ws.path("tables", "full_expert_training.csv"))
    figures: dict = {}  # name -> matplotlib figure, saved as PNG and SVG and returned for inline display

    def keep(fig, name: str) -> None:
        plots.save_figure(fig, ws.path("figures", name))
        figures[name] = fig

    methods = pd.concat(
        [method_rows(runs, picks, "finetune"), method_rows(runs, picks, "linear")], ignore_index=True
    )
    plots.save_table(methods, ws.path("tables", "methods_per_task"))
    for metric, title in (
        ("finetune", "full fine-tuning"),
        ("linear", "frozen features + linear classifier"),
    ):
        keep(
            plots.transfer_bars(methods, metric, f"Transfer by {title} ({ws.scale.name} scale)"),
            f"transfer_{metric}",
        )

    ft = methods[methods.metric == "finetune"]
    vtab = ft.pivot_table(index="method", columns="group", values="mean", aggfunc="mean")
    vtab["mean"] = ft.groupby("method")["mean"].mean()
    vtab = vtab.reindex([m for m in plots.METHOD_ORDER if m in vtab.index]).reset_index()
    vtab.insert(1, "label", vtab.method.map(plots.METHOD_LABELS))
    plots.save_table(vtab, ws.path("tables", "vtab_table"))
    if ws.scale.data == "imagenet21k+vtab":  # VTAB-1k itself: our table beside the published numbers
        from expertlib.published import beside_published

        both = beside_published(vtab, ws.scale.name)
        plots.save_table(both, ws.path("tables", "vtab_vs_published"), floatfmt=".1f")
        keep(plots.published_comparison(both, f"VTAB-1k: ours ({ws.scale.name} scale) beside published models"),
             "vtab_vs_published")  # fmt: skip

    # proxy score vs fine-tuned accuracy (seed 0 of the oracle sweep)
    seed0 = runs[
        (runs["mode"] == "finetune") & (runs.seed == 0) & runs.model.str.startswith("adapter:")
    ].copy()
    seed0["expert"] = seed0.model.str.split(":", n=1).str[1]
    points = rankings.merge(seed0[["task", "expert", "accuracy"]], on=["task", "expert"])
    quality = []
    for (task, proxy), g in points.groupby(["task", "proxy"]):
        if len(g) < 3:
            continue
        chosen = g.sort_values(["score", "expert"], ascending=[False, True]).iloc[0]
        quality.append({"task": task, "proxy": proxy, "kendall_tau": kendall_tau(g.score, g.accuracy),
                        "weighted_tau": weighted_tau(g.score, g.accuracy), "regret": regret(chosen.accuracy, g.accuracy),
                        "top1_relative": top_k_relative_accuracy(g.score, g.accuracy, 1),
                        "top3_relative": top_k_relative_accuracy(g.score, g.accuracy, 3)})  # fmt: skip
    quality = pd.DataFrame(quality)
    plots.save_table(quality, ws.path("tables", "selection_quality"))
    for proxy in ("knn", "domain"):
        keep(plots.proxy_scatter(points, proxy), f"proxy_{proxy}_vs_accuracy")

    # cost per task vs accuracy of what each method yields
    sweep_secs = seed0.groupby("task").seconds.sum()
    cost_rows = []
    for proxy in ("knn", "domain", "linear", "logme", "hscore"):
        acc = seed0.merge(
            picks[["task", proxy]].rename(columns={proxy: "expert"}), on=["task", "expert"]
        ).accuracy.mean()
        cost_rows.append(
            {
                "method": f"{proxy} selection",
                "seconds": float(picks[f"{proxy}_seconds"].mean()),
                "accuracy": float(acc),
            }
        )
    oracle_acc = seed0.groupby("task").accuracy.max().mean()
    cost_rows.append(
        {
            "method": "fine-tune all (oracle)",
            "seconds": float(sweep_secs.mean()),
            "accuracy": float(oracle_acc),
        }
    )
    if "dat_seconds" in picks:  # measured in the selection step (04), not by a benchmark
        cost_rows.append({"method": "DAT-style re-training", "seconds": float(picks.dat_seconds.mean()),
                          "accuracy": np.nan})  # fmt: skip
    cost = pd.DataFrame(cost_rows)
    plots.save_table(cost, ws.path("tables", "selection_cost"))
    keep(plots.cost_plot(cost.dropna()), "selection_cost")

    # adapter vs full experts on their related tasks
    related = {t: bench.task_info(t).relates_to for t in ws.scale.tasks}
    avf = []
    for kind, log in (("adapter", adapter_log), ("full", full_log)):
        for r in log.itertuples():
            tasks = [t for t, rel in related.items() if rel == r.expert]
            acc = runs[
                (runs["mode"] == "finetune")
                & (runs.seed == 0)
                & (runs.model == f"{kind}:{r.expert}")
                & runs.task.isin(tasks)
            ]
            if len(acc):
                avf.append({"expert": r.expert, "kind": kind, "parameters": int(r.trainable_parameters),
                            "accuracy": float(acc.accuracy.mean()), "tasks": ",".join(tasks)})  # fmt: skip
    avf = pd.DataFrame(avf)
    if len(avf):
        plots.save_table(avf, ws.path("tables", "adapter_vs_full"))
        keep(plots.adapter_vs_full(avf), "adapter_vs_full")
    sweep_path = ws.path("tables", "schedule_sweep.csv")
    if sweep_path.exists():
        sweep = pd.read_csv(sweep_path)
        if len(sweep):
            keep(plots.schedule_plot(sweep), "schedule_sweep")

    claim_table = claims(runs, picks, spec, quality, cost, avf)
    plots.save_table(claim_table, ws.path("tables", "claims"))
    base_acc = ft[ft.method == BASE].set_index("task")["mean"].to_dict()
    write_data_summary(ws, bench, base_acc)
    summary = _summary_json(ws, bench, methods, picks, seed0, cost, record, adapter_log, full_log)
    write_summary(ws.results_dir / "summary.json", summary)
    return {
        "vtab_table": vtab,
        "claims": claim_table,
        "methods": methods,
        "quality": quality,
        "cost": cost,
        "figures": figures,
    }


def claims(runs: pd.DataFrame, picks: pd.DataFrame, spec: pd.DataFrame, quality: pd.DataFrame, cost: pd.DataFrame,
           avf: pd.DataFrame) -> pd.DataFrame:  # fmt: skip
    """Each claim of the paper with our evidence and a verdict. Transfer claims are paired comparisons over
    tasks and seeds with a bootstrap 95% CI (:mod:`expertlib.stats`); the verdict follows from the CI."""
    rows = []
    own = spec[(spec.region == "own") & (spec.kind == "adapter")].pivot_table(
        index="expert", columns="model", values="knn"
    )
    if "adapter_expert" in own:
        gain = own["adapter_expert"] - own[BASE]
        ctrl = own[EXTRA] - own[BASE] if EXTRA in own else gain * 0
        rows.append({"claim": "Experts specialise: each beats B on held-out images of its own upstream subset (kNN)",
                     "evidence": f"{int((gain > 0).sum())}/{len(gain)} adapter experts better; mean gain {gain.mean():+.3f} "
                                 f"(B+extra: {ctrl.mean():+.3f})",
                     "verdict": "reproduced" if gain.mean() > max(0.01, ctrl.mean()) else "not reproduced"})  # fmt: skip
    for a, b, text in (("knn", BASE, "The kNN-selected expert transfers better than the generic model B"),
                       ("knn", EXTRA, "... and better than the compute-matched control B+extra"),
                       ("knn", "random", "kNN selection beats picking an expert at random (its expectation)"),
                       ("domain", BASE, "The domain-prediction pick transfers better than B")):  # fmt: skip
        if a in picks or a in (BASE, EXTRA):
            c = compare(method_runs(runs, picks, a), method_runs(runs, picks, b))
            if c.tasks:
                rows.append({"claim": text, "evidence": c.evidence(), "verdict": _claim_verdict(c)})
    ft = runs[(runs["mode"] == "finetune") & runs.model.str.startswith("adapter:")]
    if len(ft):
        n = ft.model.nunique()
        rows.append({"claim": "Some expert (the oracle) transfers better than B",
                     "evidence": f"the best of {n} adapter experts by test accuracy at one seed: the maximum of {n} noisy "
                                 "accuracies, biased upwards; no unbiased oracle (chosen on val200 or another seed) was run",
                     "verdict": "not evidence (selection bias)"})  # fmt: skip
    sel = cost.set_index("method").seconds
    if "knn selection" in sel and "fine-tune all (oracle)" in sel:
        ratio = sel["fine-tune all (oracle)"] / sel["knn selection"]
        rows.append({"claim": "Selection is 2-3 orders of magnitude cheaper than fine-tuning every expert",
                     "evidence": f"fine-tune all / kNN selection = {ratio:.0f}x in wall time per task",
                     "verdict": "reproduced" if ratio >= 100 else "not reproduced (ratio below 100x)"})  # fmt: skip
    if len(quality):
        q = quality.groupby("proxy")[["kendall_tau", "regret"]].mean()
        best = q.regret.idxmin()
        rows.append({"claim": "kNN is a good proxy among those tried (lowest regret)",
                     "evidence": "; ".join(f"{p}: tau {r.kendall_tau:+.2f}, regret {r.regret:.3f}" for p, r in q.iterrows()),
                     "verdict": "reproduced" if q.regret["knn"] <= q.regret.min() + 1e-12
                     else f"not reproduced ({best} has lower regret)"})  # fmt: skip
    if len(avf) and {"adapter", "full"} <= set(avf.kind):
        m = avf.pivot_table(index="expert", columns="kind", values=["accuracy", "parameters"]).dropna()
        if len(m):
            d = (m["accuracy"]["adapter"] - m["accuracy"]["full"]).mean()
            p = (m["parameters"]["adapter"] / m["parameters"]["full"]).mean()
            rows.append({"claim": "Adapter experts transfer about as well as full experts at a fraction of the parameters",
                         "evidence": f"adapter - full accuracy {d:+.3f} on related tasks; parameters {p:.1%} of a full expert",
                         "verdict": "reproduced" if d > -0.02 else "not reproduced"})  # fmt: skip
    return pd.DataFrame(rows, columns=["claim", "evidence", "verdict"])


def _summary_json(ws, bench, methods, picks, seed0, cost, record, adapter_log, full_log) -> dict:
    tasks = {}
    ft = methods[methods.metric == "finetune"]
    lin = methods[methods.metric == "linear"]
    for task in ws.scale.tasks:
        t = ft[ft.task == task].set_index("method")
        pk = picks.set_index("task").loc[task]
        acc0 = seed0[seed0.task == task].set_index("expert").accuracy
        get = lambda m: float(t.loc[m, "mean"]) if m in t.index else None  # noqa: E731, B023
        tasks[task] = {
            "group": bench.task_info(task).group,
            "relates_to": bench.task_info(task).relates_to,
            "baseline_accuracy": get(BASE),
            "baseline_extra_accuracy": get(EXTRA),
            "selected": {
                p: {"expert": pk[p], "accuracy_seed0": float(acc0.get(pk[p], np.nan))}
                for p in ("knn", "domain", "linear", "logme", "hscore")
            },
            "knn_pick_accuracy_mean": get("knn"),
            "domain_pick_accuracy_mean": get("domain"),
            "oracle": {"expert": str(acc0.idxmax()) if len(acc0) else None, "accuracy": get("oracle")},
            "random_expert_mean": get("random"),
            "frozen_linear": {
                m: float(v) for m, v in lin[lin.task == task].set_index("method")["mean"].items()
            },
        }
    return {
        "scale": ws.scale.name,
        "tasks": tasks,
        "selection_cost_seconds_per_task": {r.method: r.seconds for r in cost.itertuples()},
        "model": {
            "arch": ws.scale.arch,
            "generic_training": record,
            "adapter_expert_parameters": adapter_log.trainable_parameters.tolist(),
            "full_expert_parameters": full_log.trainable_parameters.tolist(),
        },  # fmt: skip
        "data": {**bench.describe(), "tasks": len(ws.scale.tasks)},
        "provenance": provenance(),
    }


def write_summary(path, summary: dict) -> bool:
    """Write ``summary.json`` unless the file already holds the same results (provenance aside): its
    provenance then stays that of the run that produced them, and a rerun leaves the file unchanged."""
    from pathlib import Path

    path = Path(path)
    if path.exists():
        old = json.loads(path.read_text())
        strip = lambda d: {k: v for k, v in d.items() if k != "provenance"}  # noqa: E731
        if json.dumps(strip(old), sort_keys=True, default=str) == json.dumps(
            strip(summary), sort_keys=True, default=str
        ):
            return False
    atomic_write_json(path, summary)
    return True
