"""Notebook 04: every proxy scores every candidate on every task; each proxy picks one; the costs.

Besides the proxies' own seconds, this step times the competing approach's per-task cost: a DAT-style
re-training (Ngiam et al. 2018) of B on upstream data re-weighted by B's predictions on the task, for one
expert's budget. The scale's ``dat_timing_steps`` sets how many of those steps are run; the rest are
extrapolated from the measured time per step, and the table says which. Where the scale asks for DAT's
accuracy too, :func:`dat_models` trains the whole budget per task (notebook 05 fine-tunes the results).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from expertlib.candidates import BASE, EXPERT_KINDS, Candidate, from_model, identify
from expertlib.datasets.batches import subset
from expertlib.datasets.benchmark import Benchmark
from expertlib.parallel import run_jobs
from expertlib.pipeline import recipes as R
from expertlib.pipeline.data import choose_experts
from expertlib.pipeline.workspace import (
    Workspace,
    check_recipe,
    is_main_process,
    read_candidate_table,
    record_provenance,
)
from expertlib.resnet import Pooled
from expertlib.runtime import atomic_write_csv
from expertlib.selection import (
    ALL_PROXIES,
    PICKED_BY,
    dat_sample,
    dat_weights,
    extract_features,
    forward_flops,
    head_logits,
    join_ids,
    rank_experts,
    split_ids,
    tied_best,
)
from expertlib.training import TrainConfig, TrainData, train
from expertlib.weights import load_model, save_model


def random_choice(candidates: list[str], seed: int, task: str) -> str:
    return random.Random(f"{seed}/{task}").choice(sorted(candidates))


def dat_data(ws: Workspace, bench: Benchmark, upstream_logits: np.ndarray, steps: int) -> TrainData:
    """DAT's training set for ``steps`` batches: upstream images drawn with replacement in proportion to their
    class's weight, B's predicted probability of the class on the task's images over its upstream prior."""
    probs = torch.softmax(torch.from_numpy(upstream_logits), -1).numpy()
    labels = bench.upstream_labels("train")
    prior = np.bincount(labels, minlength=len(bench.classes)).astype(float)
    idx = dat_sample(
        labels, dat_weights(probs, prior), steps * ws.scale.expert.batch, seed=ws.seed + R.DAT_SEED
    )
    return subset(bench.upstream_subset("train"), idx, labels[idx])


def time_dat(
    ws: Workspace, bench: Benchmark, base: Candidate, upstream_logits: np.ndarray
) -> tuple[float, int]:
    """Seconds of DAT-style re-training for one expert's budget (measured for ``dat_steps`` steps and scaled
    to ``expert_steps``), and the number of steps measured."""
    steps = R.dat_steps(ws.scale)
    t0 = time.perf_counter()
    data = dat_data(ws, bench, upstream_logits, steps)
    model = copy.deepcopy(base.bank.base)
    cfg = R.expert_config(ws.scale, ws.seed + R.DAT_SEED, ws.device)
    train(model, list(model.parameters()), data, cfg, len(bench.classes), progress=False, stop_after=steps)
    return (time.perf_counter() - t0) * ws.scale.expert.steps / steps, steps


def dat_job(model: nn.Module, data: TrainData, cfg: TrainConfig, classes: int) -> tuple[nn.Module, float]:
    """One DAT-style re-training (every weight of B, B's loss): (the model, seconds). A module-level function
    of its arguments alone, so a worker process can run it."""
    res = train(model, list(model.parameters()), data, cfg, classes, progress=False)
    return model, res.seconds


def dat_models(ws: Workspace, bench: Benchmark, base: Candidate) -> dict[str, Candidate]:
    """Per task (few-shot versions included), the DAT-style baseline as candidate ``dat:<task>``: B re-trained for one expert's budget on
    upstream images re-weighted by B's predictions on that task's training images (``dat_data``), to be
    fine-tuned like every other candidate. Resumable per task (``models/dat_<task>.safetensors``); training
    seconds in ``tables/dat_training.csv``. None unless the scale asks for DAT's accuracy (``dat_accuracy``):
    at the paper's budget one such model costs as much as an expert, per task."""
    if not ws.scale.study.dat_accuracy:
        return {}
    path = lambda t: ws.path("models", f"dat_{t}.safetensors")  # noqa: E731
    log_path = ws.path("tables", "dat_training.csv")
    log = pd.read_csv(log_path).to_dict("records") if log_path.exists() else []
    todo = [t for t in ws.tasks if not path(t).exists()]

    def jobs():  # built as the pool asks: each holds one task's re-weighted upstream sample
        for task in todo:
            data = bench.task(task, "train800val200")
            logits = head_logits(
                [base], extract_features([base], data, ws.scale.runtime.eval_batch, ws.device)
            )[BASE]
            steps = ws.scale.expert.steps
            cfg = R.expert_config(ws.scale, ws.seed + R.DAT_SEED, ws.device)
            yield copy.deepcopy(base.bank.base), dat_data(ws, bench, logits, steps), cfg, len(bench.classes)

    for i, (model, seconds) in run_jobs(dat_job, jobs(), ws.pool_workers()):
        if is_main_process():
            save_model(model, path(todo[i]))
            log.append({"task": todo[i], "steps": ws.scale.expert.steps, "seconds": seconds})
            atomic_write_csv(log_path, pd.DataFrame(log))
    if todo:
        record_provenance([log_path, *(path(t) for t in todo)])
    return {f"dat:{t}": from_model(load_model(path(t)), f"dat:{t}", "dat", t) for t in ws.tasks}


def run_selection(ws: Workspace, bench: Benchmark, base: Candidate,
                  experts: Mapping[str, Candidate]) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Score B and every expert candidate (by id) on every task (few-shot versions included) with
    every proxy; pick per proxy. Timed per task; the DAT-style cost is measured beside it. Resumable per task:
    both tables are rewritten after each one."""
    rank_path, pick_path = (
        ws.path("tables", "selection_rankings.csv"),
        ws.path("tables", "selection_picks.csv"),
    )
    done = rank_path.exists() and pick_path.exists()
    recipe = ws.recipe("selection")
    if done:  # the tasks scored under another recipe are never mixed with these
        check_recipe([rank_path, pick_path], recipe)
    picks = read_candidate_table(pick_path, ids=[base.name, *experts]).to_dict("records") if done else []
    finished = {p["task"] for p in picks}
    # a task killed between its two writes has rankings but no picks: its rankings are dropped and redone
    rankings = [(r := read_candidate_table(rank_path))[r.task.isin(finished)]] if done else []
    todo = [t for t in ws.tasks if t not in finished]
    names = list(experts)
    cands = [base, *experts.values()]
    ids = {c.name: c for c in cands}
    labels = upstream_label_sets(ws, bench, experts) if todo else {}
    prior = bench.class_prior() if todo else None
    shape = (1, 3, ws.scale.data.crop, ws.scale.data.crop)
    per_image = {c.name: float(forward_flops(Pooled(c.eval()), shape)) for c in cands} if todo else {}
    for task in todo:
        data = bench.task(task, "train800val200")
        t0 = time.perf_counter()
        feats = extract_features(cands, data, ws.scale.runtime.eval_batch, ws.device)
        per_candidate = (time.perf_counter() - t0) / len(cands)
        logits = head_logits(cands, feats)
        table = rank_experts(
            feats, data.labels, ALL_PROXIES, head_logits=logits, expert_labels=labels, upstream_prior=prior,
            val_split=len(bench.task(task, "train800")), knn_k=ws.scale.selection.knn_k, knn_metric=ws.scale.selection.knn_metric,
            extraction_seconds={e: per_candidate for e in feats},
            extraction_flops={e: per_image[e] * len(data) for e in feats},
        )  # fmt: skip
        table = identify(table, ids)
        table.insert(0, "task", task)
        rankings.append(table)
        info = bench.task_info(task)
        row = {"task": task, "group": info.group, "relates_to": info.relates_to or "none"}
        for proxy in PICKED_BY:
            row[proxy] = join_ids(tied_best(table, proxy, names))  # a tie is kept whole
            row[f"{proxy}_seconds"] = float(
                table[(table.proxy == proxy) & table.model.isin(names)].seconds.sum()
            )
        row["random"] = random_choice(names, ws.seed, task)
        row.update(fine_tune_design(ws.scale, table, names, ws.seed, task))
        if ws.scale.trains_upstream:
            row["dat_seconds"], row["dat_steps_timed"] = time_dat(ws, bench, base, logits[BASE])
        picks.append(row)
        if is_main_process():  # under torchrun every rank computes, rank 0 writes
            atomic_write_csv(rank_path, pd.concat(rankings, ignore_index=True))
            atomic_write_csv(pick_path, pd.DataFrame(picks))
    if todo and is_main_process():
        record_provenance([rank_path, pick_path], recipe)
    return pd.concat(rankings, ignore_index=True), pd.DataFrame(picks)


def selection_sentence(ws: Workspace, picks: pd.DataFrame, experts: Mapping[str, Candidate]) -> str:
    """What notebook 04 says about the selection, from the run."""
    full = picks[picks.task.isin(ws.scale.data.tasks)]
    kinds = sorted({c.kind for c in experts.values()})
    text = (f"{len(experts)} {' and '.join(kinds)} experts scored on {len(full)} tasks"
            + (f" and their {len(picks) - len(full)} few-shot versions" if len(picks) > len(full) else "") + ".")  # fmt: skip
    own = {
        c.expert: n for n, c in experts.items() if c.kind == "adapter"
    }  # a task relates to an adapter subtree
    related = full[full.relates_to.isin(list(own))]
    if len(related):
        match = related.relates_to.map(own)
        hits = lambda col: sum(m in split_ids(p) for p, m in zip(related[col], match, strict=True))  # noqa: E731
        text += (f" Of the {len(related)} tasks with a matching upstream subtree, kNN picked it (alone or tied) on "
                 f"{hits('knn')} and domain prediction on {hits('domain')}.")  # fmt: skip
    text += f" kNN selection took {full.knn_seconds.mean():.1f} s per task"
    if "dat_seconds" in full:
        measured = (full.dat_steps_timed >= ws.scale.expert.steps).all()
        text += (f"; DAT-style re-training {full.dat_seconds.mean():.1f} s per task ("
                 + ("measured" if measured else f"{int(full.dat_steps_timed.iloc[0])} of {ws.scale.expert.steps} steps "
                    "measured, the rest extrapolated") + ")")  # fmt: skip
    if "oracle_pool" in full:
        text += (f". Notebook 05 fine-tunes B, each proxy's pick, {ws.scale.study.random_experts} experts drawn at random per "
                 f"task and kNN's top {ws.scale.study.oracle_pool} (the oracle's pool)")  # fmt: skip
    return text + "."


def fine_tune_design(scale, table: pd.DataFrame, names: list[str], seed: int, task: str) -> dict:
    """Which experts the transfer step fine-tunes besides B and the proxies' picks, when the scale does not
    fine-tune them all: ``random_sample`` (``random_experts`` drawn at random, fixed by seed and task: the random
    expert's expectation is their mean) and ``oracle_pool`` (kNN's top ``oracle_pool``: the oracle is the best
    of them on val200). Model names joined by ';', and how many experts were scored."""
    if not (scale.study.random_experts or scale.study.oracle_pool):
        return {}
    ranked = table[(table.proxy == "knn") & table.model.isin(names)].sort_values(
        ["score", "model"], ascending=[False, True]
    )
    sample = sorted(
        random.Random(f"{seed}/{task}/sample").sample(
            sorted(names), min(scale.study.random_experts, len(names))
        )
    )
    return {"random_sample": join_ids(sample), "oracle_pool": join_ids(ranked.model.head(scale.study.oracle_pool)),
            "experts_scored": len(names)}  # fmt: skip


def selection_candidates(cands: Mapping[str, Candidate]) -> tuple[Candidate, dict[str, Candidate]]:
    """B, and the experts to choose from (by id): the adapter experts and any released experts."""
    return cands[BASE], {n: c for n, c in cands.items() if c.kind in EXPERT_KINDS}


def upstream_label_sets(
    ws: Workspace, bench: Benchmark, experts: Mapping[str, Candidate]
) -> dict[str, list[int]]:
    """Each expert's upstream label indices, for domain prediction: an adapter expert's by its subtree, a
    released expert's by its explicit WordNet id, where the benchmark's hierarchy holds that subtree (ImageNet-21k
    does; the embedded benchmark has no WordNet ids, so there released experts go unscored by it)."""
    from expertlib.hierarchy import released_expert_ids

    nodes, ids = choose_experts(ws, bench) if ws.scale.trains_upstream else {}, released_expert_ids()
    out = {}
    for name, c in experts.items():
        node = (nodes if c.kind == "adapter" else ids).get(c.expert or "")
        if node is not None and node in bench.hierarchy:
            out[name] = bench.expert_labels(node)
    return out
