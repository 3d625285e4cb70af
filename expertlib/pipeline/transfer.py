"""Notebook 05: transfer. Every candidate, at every seed, gets a fresh zero head and is fine-tuned on each task
(and, beside it, a linear classifier on its frozen features); one row per run in ``tables/transfer_runs.csv``,
written as each run finishes, so a killed run resumes where it stopped.

Fine-tunes are independent jobs: on CPU, ``scale.transfer_workers`` single-threaded processes run them side by
side (:mod:`expertlib.parallel`), with the same results for any number of workers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from expertlib import proxies as P
from expertlib.candidates import BASE, Candidate
from expertlib.datasets.benchmark import Benchmark
from expertlib.datasets.fewshot import split_name
from expertlib.parallel import run_jobs
from expertlib.pipeline import recipes as R
from expertlib.pipeline.selection import dat_models
from expertlib.pipeline.workspace import Workspace, cached, record_provenance
from expertlib.runtime import atomic_write_csv, atomic_write_json
from expertlib.training import TrainConfig, TrainData, accuracy, finetune, predict


def finetune_job(net: nn.Module, train_data: TrainData, eval_data: TrainData, cfg: TrainConfig, classes: int,
                 eval_batch: int) -> tuple[float, float]:  # fmt: skip
    """One fine-tune (every weight of ``net``, whose head is fresh) and its accuracy: (accuracy, seconds). A
    module-level function of its arguments alone, so a worker process can run it."""
    torch.manual_seed(cfg.seed)
    res = finetune(net, train_data, cfg, classes, progress=False)
    return accuracy(net, eval_data, eval_batch, cfg.device), res.seconds


def finetunes(ws: Workspace, specs: Sequence[tuple[Candidate, TrainData, TrainData, int, int, float, int]]
              ) -> Iterator[tuple[int, tuple[float, float]]]:  # fmt: skip
    """Run fine-tunes ``(candidate, train, eval, classes, steps, lr, seed)``; yield ``(i, (accuracy, seconds))``
    as each finishes. On CPU they go to ``scale.transfer_workers`` processes; on a GPU they run in turn."""
    # built as they are needed: a thousand fresh copies of R50x1 would not fit in memory at once
    jobs = ((c.transfer_net(k), tr, ev, R.transfer_config(ws.scale, steps, lr, ws.seed + seed, ws.device), k,
             ws.scale.eval_batch) for c, tr, ev, k, steps, lr, seed in specs)  # fmt: skip
    yield from run_jobs(finetune_job, jobs, ws.pool_workers())


def choose_hyperparameters(ws: Workspace, base: Candidate, bench: Benchmark, tasks: Sequence[str]) -> dict:
    """Pick (steps, lr) per task by B's accuracy on val200 after training on train800 (as VTAB does)."""
    grid = [(t, s, lr) for t in tasks for s in ws.scale.transfer_steps for lr in ws.scale.transfer_lrs]
    specs = []
    for task, steps, lr in grid:
        splits, k = bench.task_splits(task), bench.task_info(task).num_classes
        specs.append((base, splits["train800"], splits["val200"], k, steps, lr, 0))
    trials: dict[str, list] = {t: [] for t in tasks}
    for i, (acc, _) in sorted(finetunes(ws, specs)):
        task, steps, lr = grid[i]
        trials[task].append({"steps": steps, "lr": lr, "val_accuracy": acc})
    out = {}
    for task, ts in trials.items():
        best = max(ts, key=lambda t: (t["val_accuracy"], -t["steps"], -t["lr"]))
        out[task] = {"steps": best["steps"], "lr": best["lr"], "trials": ts}
    return out


def few_shot_hyperparameters(hps: Mapping[str, dict], tasks: Sequence[str]) -> dict:
    """The few-shot versions among ``tasks`` take the (steps, lr) chosen for their full task: a handful of
    images per class leaves no validation split worth choosing on, so one rule per task serves every regime
    (as BiT-HyperRule serves its few-shot runs). Recorded with ``"same_as"`` naming the full task."""
    out = {}
    for task in tasks:
        base, shots = split_name(task)
        if shots is not None:
            out[task] = {"steps": hps[base]["steps"], "lr": hps[base]["lr"], "same_as": base}
    return out


def frozen_linear(ws: Workspace, cand: Candidate, splits: Mapping[str, TrainData]) -> float:
    """Frozen-feature transfer: logistic regression on train800val200 features, accuracy on test."""
    tr = predict(cand.features, splits["train800val200"], ws.scale.eval_batch, ws.device).numpy()
    te = predict(cand.features, splits["test"], ws.scale.eval_batch, ws.device).numpy()
    return P.linear_probe_accuracy(tr, splits["train800val200"].labels, te, splits["test"].labels)


def planned_runs(
    ws: Workspace, cands: Mapping[str, Candidate], task: str, relates_to: str | None = None
) -> list[tuple[str, int]]:
    """(candidate, seed) fine-tunes of ``task``: every candidate at every seed, except full experts, which only
    the adapter-vs-full comparison uses: they run on the tasks their subtree relates to (``relates_to``), and
    DAT-style models, each made for one task (``dat:<task>``). The picks of every proxy, the random expert's
    expectation and the oracle (chosen at seed 0, judged at the other seeds) are all read from these runs, so
    every method is compared at the same seeds."""
    names = [n for n, c in cands.items()
             if (c.kind != "full" or n == f"full:{relates_to}") and (not n.startswith("dat:") or n == f"dat:{task}")]  # fmt: skip
    return [(n, s) for s in range(ws.scale.seeds) for n in names]


def run_transfer(ws: Workspace, bench: Benchmark, cands: Mapping[str, Candidate]) -> pd.DataFrame:
    """All transfer runs (resumable per run) on every task, few-shot versions included: hyper-parameters on
    val200 with B (few-shot tasks take their full task's); the DAT-style models where the scale asks for them;
    then :func:`planned_runs` and a frozen-feature linear classifier for every candidate."""
    cands = {**cands, **dat_models(ws, bench, cands[BASE])}
    out = ws.path("tables", "transfer_runs.csv")
    rows = pd.read_csv(out).to_dict("records") if out.exists() else []
    have = {(r["task"], r["model"], r["mode"], int(r["seed"])) for r in rows}
    hp_path = ws.path("tables", "transfer_hyperparameters.json")
    hps = json.loads(hp_path.read_text()) if hp_path.exists() else {}
    missing = [t for t in ws.tasks if t not in hps]
    if missing:
        hps.update(
            choose_hyperparameters(ws, cands[BASE], bench, [t for t in missing if t in ws.scale.tasks])
        )
        hps.update(few_shot_hyperparameters(hps, missing))
        atomic_write_json(hp_path, hps)
    todo = [(task, who, seed) for task in ws.tasks
            for who, seed in planned_runs(ws, cands, task, bench.task_info(task).relates_to)
            if (task, who, "finetune", seed) not in have]  # fmt: skip
    specs, computed = [], bool(missing or todo)
    for task, who, seed in todo:
        splits, k = bench.task_splits(task), bench.task_info(task).num_classes
        specs.append((cands[who], splits["train800val200"], splits["test"], k, hps[task]["steps"], hps[task]["lr"],
                      seed))  # fmt: skip
    from tqdm import tqdm

    for i, (acc, secs) in tqdm(
        finetunes(ws, specs), desc="fine-tunes", total=len(specs), disable=not ws.progress
    ):
        task, who, seed = todo[i]
        rows.append({"task": task, "group": bench.task_info(task).group, "model": who, "mode": "finetune",
                     "seed": seed, "accuracy": acc, "seconds": secs, "steps": hps[task]["steps"],
                     "lr": hps[task]["lr"]})  # fmt: skip
        atomic_write_csv(out, pd.DataFrame(rows))
    for task in ws.tasks:
        splits, group = bench.task_splits(task), bench.task_info(task).group
        for who in [n for n, s in planned_runs(ws, cands, task, bench.task_info(task).relates_to) if s == 0]:
            if (task, who, "linear", 0) in have:
                continue
            cand = cands[who]
            t0, computed = time.perf_counter(), True
            acc = frozen_linear(ws, cand, splits)
            rows.append({"task": task, "group": group, "model": who, "mode": "linear", "seed": 0,
                         "accuracy": acc, "seconds": time.perf_counter() - t0, "steps": 0, "lr": 0.0})  # fmt: skip
        atomic_write_csv(out, pd.DataFrame(rows))
    if computed:
        record_provenance([out, hp_path])
    return _ordered(pd.DataFrame(rows))


def _ordered(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs in a fixed order (pool workers finish in any order): the same table for any number of workers."""
    if not len(runs):
        return runs
    return runs.sort_values(["mode", "task", "seed", "model"], kind="stable").reset_index(drop=True)


def run_schedule_sweep(ws: Workspace, bench: Benchmark, cands: Mapping[str, Candidate]) -> pd.DataFrame:
    """B vs the task's matching adapter expert as fine-tuning grows longer (two tasks with a matching expert)."""
    if not ws.scale.schedule_sweep:
        return pd.DataFrame(columns=["task", "steps", "model", "accuracy", "seconds"])

    def compute() -> pd.DataFrame:
        hps = json.loads(
            ws.require("tables", "transfer_hyperparameters.json", "05_transfer.ipynb").read_text()
        )
        related = [t for t in ws.scale.tasks if f"adapter:{bench.task_info(t).relates_to}" in cands][:2]
        grid = [(task, steps, who) for task in related for steps in ws.scale.schedule_sweep
                for who in (BASE, f"adapter:{bench.task_info(task).relates_to}")]  # fmt: skip
        specs = [(cands[who], bench.task_splits(task)["train800val200"], bench.task_splits(task)["test"],
                  bench.task_info(task).num_classes, steps, hps[task]["lr"], 0) for task, steps, who in grid]  # fmt: skip
        rows = []
        for i, (acc, secs) in sorted(finetunes(ws, specs)):
            task, steps, who = grid[i]
            rows.append({"task": task, "steps": steps, "model": "B" if who == BASE else "matching adapter expert",
                         "accuracy": acc, "seconds": secs})  # fmt: skip
        return pd.DataFrame(rows, columns=["task", "steps", "model", "accuracy", "seconds"])

    return cached(ws.path("tables", "schedule_sweep.csv"), compute)
