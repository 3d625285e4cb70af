"""Notebook 05: transfer. Every candidate gets a fresh zero head and is fine-tuned on each task (and, beside
it, a linear classifier on its frozen features); one row per run in ``tables/transfer_runs.csv``, written
after every run, so a killed run resumes where it stopped."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import pandas as pd
import torch

from expertlib import proxies as P
from expertlib.candidates import BASE, EXTRA, Candidate, picked
from expertlib.datasets.benchmark import Benchmark
from expertlib.pipeline import recipes as R
from expertlib.pipeline.workspace import Workspace, cached
from expertlib.runtime import atomic_write_csv, atomic_write_json
from expertlib.training import TrainData, accuracy, finetune, predict


def finetune_and_test(ws: Workspace, cand: Candidate, train_data: TrainData, eval_data: TrainData, classes: int,
                      steps: int, lr: float, seed: int) -> tuple[float, float]:  # fmt: skip
    """Fine-tune every weight of ``cand``'s transfer network (fresh zero head); (eval accuracy, seconds)."""
    net = cand.transfer_net(classes)
    torch.manual_seed(seed)
    res = finetune(
        net, train_data, R.transfer_config(ws.scale, steps, lr, seed, ws.device), classes, progress=False
    )
    return accuracy(net, eval_data, ws.scale.eval_batch, ws.device), res.seconds


def choose_hyperparameters(
    ws: Workspace, base: Candidate, splits: Mapping[str, TrainData], classes: int
) -> dict:
    """Pick (steps, lr) for a task by B's accuracy on val200 after training on train800 (as VTAB does)."""
    trials = []
    for steps in ws.scale.transfer_steps:
        for lr in ws.scale.transfer_lrs:
            acc, _ = finetune_and_test(
                ws, base, splits["train800"], splits["val200"], classes, steps, lr, ws.seed
            )
            trials.append({"steps": steps, "lr": lr, "val_accuracy": acc})
    best = max(trials, key=lambda t: (t["val_accuracy"], -t["steps"], -t["lr"]))
    return {"steps": best["steps"], "lr": best["lr"], "trials": trials}


def frozen_linear(ws: Workspace, cand: Candidate, splits: Mapping[str, TrainData]) -> float:
    """Frozen-feature transfer: logistic regression on train800val200 features, accuracy on test."""
    tr = predict(cand.features, splits["train800val200"], ws.scale.eval_batch, ws.device).numpy()
    te = predict(cand.features, splits["test"], ws.scale.eval_batch, ws.device).numpy()
    return P.linear_probe_accuracy(tr, splits["train800val200"].labels, te, splits["test"].labels)


def planned_runs(
    ws: Workspace, cands: Mapping[str, Candidate], pick: Mapping[str, str]
) -> list[tuple[str, int]]:
    """(candidate, seed) fine-tunes of one task: B and B+extra over seeds, every adapter and released expert
    (oracle sweep), the kNN and domain picks over seeds, every full expert once."""
    sweep = [n for n, c in cands.items() if c.kind in ("adapter", "released")]
    runs = [(BASE, s) for s in range(ws.scale.seeds)] + [(EXTRA, s) for s in range(ws.scale.seeds)]
    runs += [(n, s) for n in sweep for s in range(ws.scale.oracle_seeds)]
    for proxy in ("knn", "domain"):
        runs += [(picked(cands, pick[proxy]), s) for s in range(ws.scale.seeds)]
    runs += [(n, 0) for n, c in cands.items() if c.kind == "full"]
    return list(dict.fromkeys(runs))


def run_transfer(ws: Workspace, bench: Benchmark, cands: Mapping[str, Candidate]) -> pd.DataFrame:
    """All transfer runs (resumable per run): hyper-parameters on val200 with B; then :func:`planned_runs`
    and a frozen-feature linear classifier for every candidate."""
    out = ws.path("tables", "transfer_runs.csv")
    picks = pd.read_csv(ws.require("tables", "selection_picks.csv", "04_selection.ipynb")).set_index("task")
    rows = pd.read_csv(out).to_dict("records") if out.exists() else []
    have = {(r["task"], r["model"], r["mode"], int(r["seed"])) for r in rows}
    hp_path = ws.path("tables", "transfer_hyperparameters.json")
    hps = json.loads(hp_path.read_text()) if hp_path.exists() else {}
    from tqdm import tqdm

    for task in tqdm(ws.scale.tasks, desc="tasks", disable=not ws.progress):
        info = bench.task_info(task)
        splits, k = bench.task_splits(task), info.num_classes
        if task not in hps:
            hps[task] = choose_hyperparameters(ws, cands[BASE], splits, k)
            atomic_write_json(hp_path, hps)
        steps, lr = hps[task]["steps"], hps[task]["lr"]
        for who, seed in planned_runs(ws, cands, picks.loc[task]):
            if (task, who, "finetune", seed) in have:
                continue
            acc, secs = finetune_and_test(ws, cands[who], splits["train800val200"], splits["test"], k, steps, lr,
                                          ws.seed + seed)  # fmt: skip
            rows.append({"task": task, "group": info.group, "model": who, "mode": "finetune", "seed": seed,
                         "accuracy": acc, "seconds": secs, "steps": steps, "lr": lr})  # fmt: skip
            have.add((task, who, "finetune", seed))
            atomic_write_csv(out, pd.DataFrame(rows))
        for who, cand in cands.items():
            if (task, who, "linear", 0) in have:
                continue
            t0 = time.perf_counter()
            acc = frozen_linear(ws, cand, splits)
            rows.append({"task": task, "group": info.group, "model": who, "mode": "linear", "seed": 0,
                         "accuracy": acc, "seconds": time.perf_counter() - t0, "steps": 0, "lr": 0.0})  # fmt: skip
            have.add((task, who, "linear", 0))
        atomic_write_csv(out, pd.DataFrame(rows))
    return pd.DataFrame(rows)


def run_schedule_sweep(ws: Workspace, bench: Benchmark, cands: Mapping[str, Candidate]) -> pd.DataFrame:
    """B vs the task's matching adapter expert as fine-tuning grows longer (two tasks with a matching expert)."""
    if not ws.scale.schedule_sweep:
        return pd.DataFrame(columns=["task", "steps", "model", "accuracy", "seconds"])

    def compute() -> pd.DataFrame:
        hps = json.loads(
            ws.require("tables", "transfer_hyperparameters.json", "05_transfer.ipynb").read_text()
        )
        related = [t for t in ws.scale.tasks if f"adapter:{bench.task_info(t).relates_to}" in cands][:2]
        rows = []
        for task in related:
            splits = bench.task_splits(task)
            k = bench.task_info(task).num_classes
            for steps in ws.scale.schedule_sweep:
                for who in (BASE, f"adapter:{bench.task_info(task).relates_to}"):
                    acc, secs = finetune_and_test(ws, cands[who], splits["train800val200"], splits["test"], k, steps,
                                                  hps[task]["lr"], ws.seed)  # fmt: skip
                    rows.append({"task": task, "steps": steps, "model": "B" if who == BASE else "matching adapter expert",
                                 "accuracy": acc, "seconds": secs})  # fmt: skip
        return pd.DataFrame(rows, columns=["task", "steps", "model", "accuracy", "seconds"])

    return cached(ws.path("tables", "schedule_sweep.csv"), compute)
