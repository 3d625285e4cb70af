"""``summary.json``: per task, what each method yields and what each proxy picked; the selection costs; the
regimes' gains; the models; the data; and the provenance of the report and of the tables it read. Rewritten only
when its results change, so a rerun leaves it (and its provenance) as the run that produced them wrote it."""

from __future__ import annotations

import json
from pathlib import Path

from expertlib.models.candidates import BASE, EXTRA
from expertlib.pipeline.tables import split_ids
from expertlib.pipeline.workspace import Workspace, provenance
from expertlib.select.proxies import PICKED_BY
from expertlib.utils.runtime import atomic_write_json


def summary_json(ws, bench, methods, picks, means, cost, record, adapter_log, full_log, gains) -> dict:
    """The run's results as ``summary.json`` holds them (the caller adds the oracle's definition and the
    hypotheses)."""
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
        | {
            "report_code_commit": stamp["git_commit"],
            "inputs": _input_commits(ws),
            "analysis_plan_commit": plan_commit(),
        },  # fmt: skip
    }


def plan_commit() -> str | None:
    """The latest commit of the analysis plan this report tests: the last commit whose message starts with
    "Analysis plan:" and that changed docs/analysis_plan.md (None outside a git checkout). Beside the inputs'
    commits, it shows the plan was fixed before the results it judges."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%H", "--grep=^Analysis plan:", "--",
                              "docs/analysis_plan.md"], capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return out or None


def _input_commits(ws: Workspace) -> dict[str, str | None]:
    """The commit recorded in provenance.json for each table the report reads."""
    book = ws.path("tables", "provenance.json")
    known = json.loads(book.read_text()) if book.exists() else {}
    return {n: known.get(n, {}).get("git_commit") for n in ("transfer_runs.csv", "selection_rankings.csv",
                                                             "selection_picks.csv")}  # fmt: skip


def write_summary(path, summary: dict) -> bool:
    """Write ``summary.json`` unless the file already holds the same results (provenance aside): its
    provenance then stays that of the run that produced them, and a rerun leaves the file unchanged."""
    path = Path(path)
    if path.exists():
        old = json.loads(path.read_text())
        strip = lambda d: {k: v for k, v in d.items() if k not in ("provenance", "run_seconds")}  # noqa: E731
        if json.dumps(strip(old), sort_keys=True, default=str) == json.dumps(
            strip(summary), sort_keys=True, default=str
        ):
            return False
        # the notebooks' wall times (expertlib.run.reproduce) stay until the next timed run
        if "run_seconds" in old:
            summary = {**summary, "run_seconds": old["run_seconds"]}
    atomic_write_json(path, summary)
    return True
