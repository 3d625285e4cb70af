"""Notebook 05: transfer. Every candidate, at every seed, gets a fresh zero head and is fine-tuned on each task
(and, beside it, a linear classifier on its frozen features); one row per run in ``tables/transfer_runs.csv``,
written as each run finishes, so a killed run resumes where it stopped.

Fine-tunes are independent jobs: on CPU, ``scale.runtime.transfer_workers`` single-threaded processes run them side by
side (:mod:`expertlib.utils.parallel`), with the same results for any number of workers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from expertlib.datasets.benchmark import Benchmark
from expertlib.datasets.fewshot import split_name
from expertlib.models.candidates import BASE, Candidate, identify
from expertlib.models.resnet import Pooled
from expertlib.pipeline import recipes as R
from expertlib.pipeline.dat import dat_models
from expertlib.pipeline.finetunes import MODES, planned_runs, transfer_jobs
from expertlib.pipeline.tables import (
    RUN_COLUMNS,
    decode_predictions,
    encode_predictions,
    prediction_key,
    read_candidate_table,
    save_predictions,
)
from expertlib.pipeline.workspace import Workspace, cached, check_recipe, record_provenance
from expertlib.select import proxies as P
from expertlib.select.probes import linear_probe_accuracies
from expertlib.select.selection import extract_features
from expertlib.train.evaluation import predict, predicted_classes
from expertlib.train.stacked import finetune_stacked, predicted_classes_stacked, structure
from expertlib.train.training import TrainConfig, TrainData, finetune
from expertlib.utils.distributed import is_primary
from expertlib.utils.jobs import Job, run_sharded
from expertlib.utils.parallel import run_jobs
from expertlib.utils.runtime import atomic_write_csv, atomic_write_json


def finetune_job(net: nn.Module, train_data: TrainData, eval_data: TrainData, cfg: TrainConfig, classes: int,
                 eval_batch: int) -> tuple[float, float, str]:  # fmt: skip
    """One fine-tune (every weight of ``net``, whose head is fresh): (accuracy, seconds, the predicted class of
    every evaluation example, :func:`encode_predictions`). A module-level function of its arguments alone, so a
    worker process can run it."""
    torch.manual_seed(cfg.seed)
    res = finetune(net, train_data, cfg, classes, progress=False)
    pred = predicted_classes(net, eval_data, eval_batch, cfg.device, cfg.compile)
    return float((pred == eval_data.labels).mean()), float(res.seconds), encode_predictions(pred)


def finetunes(ws: Workspace, specs: Sequence[tuple[Candidate, TrainData, TrainData, int, int, float, int]]
              ) -> Iterator[tuple[int, tuple[float, float]]]:  # fmt: skip
    """Run fine-tunes ``(candidate, train, eval, classes, steps, lr, seed)``; yield ``(i, (accuracy, seconds))``
    as each finishes. On CPU they go to ``scale.runtime.transfer_workers`` processes; on a GPU they run in turn."""
    # built as they are needed: a thousand fresh copies of R50x1 would not fit in memory at once
    jobs = ((c.transfer_net(k), tr, ev, R.transfer_config(ws.scale, steps, lr, ws.seed + seed, ws.device), k,
             ws.scale.runtime.eval_batch) for c, tr, ev, k, steps, lr, seed in specs)  # fmt: skip
    yield from run_jobs(finetune_job, jobs, ws.pool_workers())


def choose_hyperparameters(ws: Workspace, base: Candidate, bench: Benchmark, tasks: Sequence[str]) -> dict:
    """Pick (steps, lr) per task by B's accuracy on val200 after training on train800 (as VTAB does)."""
    if len(ws.scale.transfer.steps) == 1 and len(ws.scale.transfer.lrs) == 1:  # nothing to choose between
        return {
            t: {"steps": ws.scale.transfer.steps[0], "lr": ws.scale.transfer.lrs[0], "trials": []}
            for t in tasks
        }
    grid = [(t, s, lr) for t in tasks for s in ws.scale.transfer.steps for lr in ws.scale.transfer.lrs]
    specs = []
    for task, steps, lr in grid:
        splits, k = bench.task_splits(task), bench.task_info(task).num_classes
        specs.append((base, splits["train800"], splits["val200"], k, steps, lr, 0))
    trials: dict[str, list] = {t: [] for t in tasks}
    for i, (acc, *_) in sorted(finetunes(ws, specs)):
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


def frozen_linear(ws: Workspace, cands: Sequence[Candidate], splits: Mapping[str, TrainData]
                  ) -> Iterator[tuple[float, float]]:  # fmt: skip
    """Frozen-feature transfer of each candidate: logistic regression on train800val200 features, accuracy on test,
    and its seconds. On a CPU one candidate at a time in scikit-learn (the committed numbers); on a GPU every
    candidate's features in one pass per split and the probes fitted together there
    (:mod:`expertlib.select.probes`, scikit-learn's optimum), each candidate's seconds an equal share."""
    tr, te, batch = splits["train800val200"], splits["test"], ws.scale.runtime.eval_batch
    t0 = time.perf_counter()
    if not ws.device.startswith("cuda"):
        for cand in cands:
            a = predict(Pooled(cand), tr, batch, ws.device).numpy()
            b = predict(Pooled(cand), te, batch, ws.device).numpy()
            acc = P.linear_probe_accuracy(a, tr.labels, b, te.labels)
            yield acc, time.perf_counter() - t0
            t0 = time.perf_counter()
        return
    a, b = (extract_features(cands, data, batch, ws.device) for data in (tr, te))
    accs = linear_probe_accuracies([a[c.name] for c in cands], tr.labels, [b[c.name] for c in cands], te.labels,
                                   device=ws.device)  # fmt: skip
    share = (time.perf_counter() - t0) / max(1, len(cands))
    yield from ((acc, share) for acc in accs)


def run_transfer(ws: Workspace, bench: Benchmark, cands: Mapping[str, Candidate]) -> pd.DataFrame:
    """All transfer runs on every task, few-shot versions included: hyper-parameters on val200 with B (few-shot
    tasks take their full task's; a one-point grid is taken as it is); the DAT-style models where the scale
    asks for them; then :func:`transfer_jobs`, shared over every torchrun rank (:mod:`expertlib.utils.jobs`:
    one file per job, so a killed run resumes job by job) and merged by rank 0; and a frozen-feature linear
    classifier for every candidate where the scale asks for it."""
    cands = {**cands, **dat_models(ws, bench, cands[BASE])}
    out = ws.path("tables", "transfer_runs.csv")
    hp_path = ws.path("tables", "transfer_hyperparameters.json")
    pred_path = ws.path("tables", "transfer_predictions.npz")
    recipe = ws.recipe("transfer")
    check_recipe(
        [p for p in (out, hp_path) if p.exists()], recipe
    )  # runs of another recipe are never mixed in
    rows = read_candidate_table(out).to_dict("records") if out.exists() else []
    as_table = lambda rs: identify(pd.DataFrame(rs, columns=RUN_COLUMNS), cands)  # noqa: E731 - kind, expert by id
    have = {(r["task"], r["model"], r["mode"], int(r["seed"])) for r in rows}
    hps = json.loads(hp_path.read_text()) if hp_path.exists() else {}
    missing = [t for t in ws.tasks if t not in hps]
    if missing:
        hps.update(
            choose_hyperparameters(ws, cands[BASE], bench, [t for t in missing if t in ws.scale.data.tasks])
        )
        hps.update(few_shot_hyperparameters(hps, missing))
        if is_primary():
            atomic_write_json(hp_path, hps)
    pick_path = ws.path("tables", "selection_picks.csv")
    picks = read_candidate_table(pick_path, ids=list(cands)) if pick_path.exists() else None
    plan = transfer_jobs(ws, bench, cands, hps, picks)
    todo = [
        j
        for j in plan
        if (j.recipe["task"], j.recipe["model"], j.recipe["mode"], j.recipe["seed"]) not in have
    ]
    computed = bool(missing or todo)
    if todo:
        # keyed by the candidates' weights too (each hashed once): a replaced model's results are never reused
        prints = {
            who: candidate_fingerprint(cands[who]) for who in dict.fromkeys(j.recipe["model"] for j in todo)
        }
        jobs = [Job({**j.recipe, "weights": prints[j.recipe["model"]]}, j.cost) for j in todo]
        from tqdm import tqdm

        bar = tqdm(desc="fine-tunes (this process)", disable=not ws.progress)
        stack = ws.scale.runtime.stack_finetunes
        results = run_sharded(jobs, finetune_job, lambda j: _job_args(ws, bench, cands, j),
                              ws.results_dir / "jobs" / "transfer", ws.pool_workers(),
                              on_result=lambda j, r: bar.update(),
                              together=(lambda js: finetune_together(ws, bench, cands, js)) if stack > 1 else None,
                              group=stack_group(bench, cands), group_size=max(1, stack))  # fmt: skip
        bar.close()
        predictions = {}
        for job, (acc, secs, *pred) in zip(jobs, results, strict=True):
            r = job.recipe
            if pred:  # every fine-tune's per-example test predictions, for analyses that need no retraining
                predictions[prediction_key(r["task"], r["model"], r["mode"], r["seed"])] = decode_predictions(
                    pred[0]
                )
            rows.append({"task": r["task"], "group": bench.task_info(r["task"]).group, "model": r["model"],
                         "mode": r["mode"], "seed": r["seed"], "accuracy": acc, "seconds": secs, "steps": r["steps"],
                         "lr": r["lr"]})  # fmt: skip
        if is_primary():
            save_predictions(pred_path, predictions)
            atomic_write_csv(out, as_table(rows))
    if ws.scale.study.linear_probes:
        for task in ws.tasks:
            splits, group = bench.task_splits(task), bench.task_info(task).group
            todo = [n for n, s in planned_runs(ws, cands, task, bench.task_info(task).relates_to)
                    if s == 0 and (task, n, "linear", 0) not in have]  # fmt: skip
            computed = computed or bool(todo)
            for who, (acc, secs) in zip(
                todo, frozen_linear(ws, [cands[n] for n in todo], splits), strict=True
            ):
                rows.append({"task": task, "group": group, "model": who, "mode": "linear", "seed": 0,
                             "accuracy": acc, "seconds": secs, "steps": 0, "lr": 0.0})  # fmt: skip
            if is_primary():
                atomic_write_csv(out, as_table(rows))
    if computed and is_primary():
        record_provenance([p for p in (out, hp_path, pred_path) if p.exists()], recipe)
    return _ordered(as_table(rows))


def _job_args(ws: Workspace, bench: Benchmark, cands: Mapping[str, Candidate], job: Job) -> tuple:
    """What :func:`finetune_job` needs for ``job``: a fresh transfer network and the two splits of its mode."""
    r = job.recipe
    train, evaluate = MODES[r["mode"]]
    k = bench.task_info(r["task"]).num_classes
    cfg = R.transfer_config(ws.scale, r["steps"], r["lr"], ws.seed + r["seed"], ws.device)
    return (cands[r["model"]].transfer_net(k), bench.task(r["task"], train), bench.task(r["task"], evaluate), cfg, k,
            ws.scale.runtime.eval_batch)  # fmt: skip


def stack_group(bench: Benchmark, cands: Mapping[str, Candidate]):
    """Which fine-tunes can train together as one stacked model: the same task, mode, steps and batch (so the same
    data and schedule length), and networks of one structure (B, B+extra, full experts and DAT models share one;
    adapter experts another), each candidate's structure read once."""
    known: dict[tuple[str, int], tuple] = {}

    def key(job: Job) -> tuple:
        r = job.recipe
        k = bench.task_info(r["task"]).num_classes
        if (r["model"], k) not in known:
            known[(r["model"], k)] = structure(cands[r["model"]].transfer_net(k))
        return (r["task"], r["mode"], r["steps"], r["batch"], tuple(r["resolution"]), known[(r["model"], k)])

    return key


def finetune_together(ws: Workspace, bench: Benchmark, cands: Mapping[str, Candidate], jobs: Sequence[Job]
                      ) -> list[tuple[float, float, str]]:  # fmt: skip
    """The fine-tunes of one :func:`stack_group` as one stacked model (:mod:`expertlib.train.stacked`; each
    keeps its own seed, data order, head, learning rate and results): what :func:`finetune_job` gives for
    each, from one pass per step and one evaluation pass. Where launches, not arithmetic, bound a step (small
    models on a GPU)."""
    args = [_job_args(ws, bench, cands, job) for job in jobs]
    nets, cfgs = [a[0] for a in args], [a[3] for a in args]
    _, train_data, eval_data, _, k, eval_batch = args[0]
    torch.manual_seed(cfgs[0].seed)
    res = finetune_stacked(nets, train_data, cfgs, k, progress=False)  # on a GPU it holds the task there once
    preds = predicted_classes_stacked(nets, eval_data, eval_batch, cfgs[0].device)
    return [(float((pred == eval_data.labels).mean()), float(r.seconds), encode_predictions(pred))
            for pred, r in zip(preds, res, strict=True)]  # fmt: skip


def candidate_fingerprint(cand: Candidate) -> str:
    """A hash of the weights a candidate's fine-tunes start from (its transfer network without the head)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(cand.transfer_net(1).state_dict().items()):
        if not name.startswith("head."):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def _ordered(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs in a fixed order (pool workers finish in any order): the same table for any number of workers."""
    if not len(runs):
        return runs
    return runs.sort_values(["mode", "task", "seed", "model"], kind="stable").reset_index(drop=True)


def run_schedule_sweep(ws: Workspace, bench: Benchmark, cands: Mapping[str, Candidate]) -> pd.DataFrame:
    """B vs the task's matching adapter expert as fine-tuning grows longer (two tasks with a matching expert)."""
    if not ws.scale.study.schedule_sweep:
        return pd.DataFrame(columns=["task", "steps", "model", "accuracy", "seconds"])

    def compute() -> pd.DataFrame:
        hps = json.loads(
            ws.require("tables", "transfer_hyperparameters.json", "05_transfer.ipynb").read_text()
        )
        adapter = {c.expert: n for n, c in cands.items() if c.kind == "adapter"}
        related = [t for t in ws.scale.data.tasks if bench.task_info(t).relates_to in adapter][:2]
        grid = [(task, steps, who) for task in related for steps in ws.scale.study.schedule_sweep
                for who in (BASE, adapter[bench.task_info(task).relates_to])]  # fmt: skip
        specs = [(cands[who], bench.task_splits(task)["train800val200"], bench.task_splits(task)["test"],
                  bench.task_info(task).num_classes, steps, hps[task]["lr"], 0) for task, steps, who in grid]  # fmt: skip
        rows = []
        for i, (acc, secs, *_) in sorted(finetunes(ws, specs)):
            task, steps, who = grid[i]
            rows.append({"task": task, "steps": steps, "model": "B" if who == BASE else "matching adapter expert",
                         "accuracy": acc, "seconds": secs})  # fmt: skip
        return pd.DataFrame(rows, columns=["task", "steps", "model", "accuracy", "seconds"])

    return cached(ws.path("tables", "schedule_sweep.csv"), compute, recipe=ws.recipe("schedule_sweep"))
