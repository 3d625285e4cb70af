"""Notebook 04: every proxy scores every candidate on every task; each proxy picks one; the costs.

Besides the proxies' own seconds, this step times the competing approach's per-task cost: a DAT-style
re-training (Ngiam et al. 2018) of B on upstream data re-weighted by B's predictions on the task, for one
expert's budget. The scale's ``dat_timing_steps`` sets how many of those steps are run; the rest are
extrapolated from the measured time per step, and the table says which.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from expertlib.candidates import BASE, Candidate, from_bank
from expertlib.datasets.batches import subset
from expertlib.datasets.benchmark import Benchmark
from expertlib.pipeline import recipes as R
from expertlib.pipeline.data import choose_experts
from expertlib.pipeline.workspace import Workspace, cached
from expertlib.selection import (
    ALL_PROXIES,
    dat_sample,
    dat_weights,
    extract_features,
    forward_flops,
    head_logits,
    pick,
    rank_experts,
)
from expertlib.training import train

PICKED_BY = ("knn", "domain", "linear", "logme", "hscore")


def random_choice(candidates: list[str], seed: int, task: str) -> str:
    return random.Random(f"{seed}/{task}").choice(sorted(candidates))


def time_dat(
    ws: Workspace, bench: Benchmark, base: Candidate, upstream_logits: np.ndarray
) -> tuple[float, int]:
    """Seconds of DAT-style re-training for one expert's budget (measured for ``dat_steps`` steps and scaled
    to ``expert_steps``), and the number of steps measured."""
    probs = torch.softmax(torch.from_numpy(upstream_logits), -1).numpy()
    labels = bench.upstream_labels("train")
    prior = np.bincount(labels, minlength=len(bench.classes)).astype(float)
    steps = R.dat_steps(ws.scale)
    t0 = time.perf_counter()
    idx = dat_sample(
        labels, dat_weights(probs, prior), steps * ws.scale.expert_batch, seed=ws.seed + R.DAT_SEED
    )
    data = subset(bench.upstream_subset("train"), idx, labels[idx])
    model = copy.deepcopy(base.bank.base)
    cfg = R.expert_config(ws.scale, ws.seed + R.DAT_SEED, ws.device)
    train(model, list(model.parameters()), data, cfg, len(bench.classes), progress=False, stop_after=steps)
    return (time.perf_counter() - t0) * ws.scale.expert_steps / steps, steps


def run_selection(ws: Workspace, bench: Benchmark, base: Candidate,
                  experts: Mapping[str, Candidate]) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Score B and every expert candidate (named by expert) on every task with every proxy; pick per proxy.
    Timed per task; the DAT-style cost is measured beside it."""

    def compute() -> tuple[pd.DataFrame, pd.DataFrame]:
        names = list(experts)
        cands = [base, *experts.values()]
        labels = {
            n: bench.expert_labels(node) for n, node in choose_experts(ws, bench).items() if n in experts
        }
        prior = np.bincount(bench.upstream_labels("train"), minlength=len(bench.classes)).astype(float)
        shape = (1, 3, ws.scale.crop, ws.scale.crop)
        per_image = {c.name: float(forward_flops(c.eval().features, shape)) for c in cands}
        rankings, picks = [], []
        for task in ws.scale.tasks:
            data = bench.task(task, "train800val200")
            t0 = time.perf_counter()
            feats = extract_features(cands, data, ws.scale.eval_batch, ws.device)
            per_candidate = (time.perf_counter() - t0) / len(cands)
            logits = head_logits(cands, feats)
            table = rank_experts(
                feats, data.labels, ALL_PROXIES, head_logits=logits, expert_labels=labels, upstream_prior=prior,
                val_split=len(bench.task(task, "train800")), knn_k=ws.scale.knn_k, knn_metric=ws.scale.knn_metric,
                extraction_seconds={e: per_candidate for e in feats},
                extraction_flops={e: per_image[e] * len(data) for e in feats},
            )  # fmt: skip
            table.insert(0, "task", task)
            rankings.append(table)
            info = bench.task_info(task)
            row = {"task": task, "group": info.group, "relates_to": info.relates_to or "none"}
            for proxy in PICKED_BY:
                row[proxy] = pick(table, proxy, names)
                row[f"{proxy}_seconds"] = float(
                    table[(table.proxy == proxy) & table.expert.isin(names)].seconds.sum()
                )
            row["random"] = random_choice(names, ws.seed, task)
            row["dat_seconds"], row["dat_steps_timed"] = time_dat(ws, bench, base, logits[BASE])
            picks.append(row)
        return pd.concat(rankings, ignore_index=True), pd.DataFrame(picks)

    return cached(
        (ws.path("tables", "selection_rankings.csv"), ws.path("tables", "selection_picks.csv")), compute
    )


def selection_candidates(cands: Mapping[str, Candidate]) -> tuple[Candidate, dict[str, Candidate]]:
    """B, and the experts to choose from: the adapter experts named by expert (as the selection tables name
    them) and any released experts as ``released:<name>``."""
    adapters = next(c.bank for c in cands.values() if c.kind == "adapter")
    released = {n: c for n, c in cands.items() if c.kind == "released"}
    return cands[BASE], {**from_bank(adapters, prefix=""), **released}


def _upstream_labels(
    ws: Workspace, bench: Benchmark, experts: Mapping[str, Candidate]
) -> dict[str, list[int]]:
    """Each expert's upstream label indices (for domain prediction): adapter experts by their subtree, released
    experts by the subtree their name (a WordNet lemma) resolves to, when the hierarchy has it."""
    nodes = choose_experts(ws, bench)
    out = {}
    for name, c in experts.items():
        node = nodes.get(name) if c.kind == "adapter" else _resolve(bench, c.expert)
        if node is not None:
            out[name] = bench.expert_labels(node)
    return out


def _resolve(bench: Benchmark, lemma: str) -> str | None:
    try:
        return bench.hierarchy.resolve(lemma, bench.class_counts())
    except (KeyError, ValueError):
        return None
