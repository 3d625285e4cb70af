"""Notebook 04, the selection step: every proxy scores every candidate on every task; each proxy picks one;
the costs. (The library's :mod:`expertlib.select.selection` is where candidates meet proxies; this is the
notebook's step over a workspace.)

Besides the proxies' own seconds, this step times the competing approach's per-task cost: a DAT-style
re-training (:mod:`expertlib.pipeline.dat`) for one expert's budget. The scale's ``dat_timing_steps`` sets how
many of those steps are run; the rest are extrapolated from the measured time per step, and the table says
which.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

import pandas as pd

from expertlib.datasets.benchmark import Benchmark
from expertlib.models.candidates import BASE, EXPERT_KINDS, Candidate, identify
from expertlib.models.resnet import Pooled
from expertlib.pipeline.dat import time_dat
from expertlib.pipeline.experts import choose_experts
from expertlib.pipeline.tables import join_ids, read_candidate_table, split_ids
from expertlib.pipeline.workspace import Workspace, check_recipe, record_provenance
from expertlib.select.proxies import ALL_PROXIES, PICKED_BY
from expertlib.select.selection import extract_features, forward_flops, head_logits, rank_experts, tied_best
from expertlib.utils.distributed import is_primary
from expertlib.utils.runtime import atomic_write_csv


def random_choice(candidates: list[str], seed: int, task: str) -> str:
    return random.Random(f"{seed}/{task}").choice(sorted(candidates))


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
    old = read_candidate_table(rank_path) if done else pd.DataFrame(columns=["task", "proxy"])
    # a task killed between its two writes has rankings but no picks, and one scored before a proxy joined the
    # registry lacks that proxy: both are dropped and redone
    scored = {t for t, g in old.groupby("task") if set(ALL_PROXIES) <= set(g.proxy)}
    picks = [p for p in picks if p["task"] in scored]
    finished = {p["task"] for p in picks}
    rankings = [old[old.task.isin(finished)]] if done else []
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
        workers = (
            ws.scale.runtime.data_workers if ws.device.startswith("cuda") else 0
        )  # a CPU reads in-process
        feats = extract_features(cands, data, ws.scale.runtime.eval_batch, ws.device, workers=workers)
        per_candidate = (time.perf_counter() - t0) / len(cands)
        logits = head_logits(cands, feats)
        table = rank_experts(
            feats, data.labels, ALL_PROXIES, head_logits=logits, expert_labels=labels, upstream_prior=prior,
            val_split=len(bench.task(task, "train800")), knn_k=ws.scale.selection.knn_k, knn_metric=ws.scale.selection.knn_metric,
            domain_activation=ws.scale.domain_activation, device=ws.device,
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
        if is_primary():  # under torchrun every rank computes, rank 0 writes
            atomic_write_csv(rank_path, pd.concat(rankings, ignore_index=True))
            atomic_write_csv(pick_path, pd.DataFrame(picks))
    if todo and is_primary():
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
    from expertlib.datasets.hierarchy import released_expert_ids

    nodes, ids = choose_experts(ws, bench) if ws.scale.trains_upstream else {}, released_expert_ids()
    out = {}
    for name, c in experts.items():
        node = (nodes if c.kind == "adapter" else ids).get(c.expert or "")
        if node is not None and node in bench.hierarchy:
            out[name] = bench.expert_labels(node)
    return out
