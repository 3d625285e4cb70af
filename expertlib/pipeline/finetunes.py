"""The fine-tunes a scale runs, as a job list: which candidates at which seeds on each task (every candidate,
or where the selection step chose, only the proxies' picks, the random sample and the oracle pool), in which
mode (``finetune``: train800val200 -> test; ``finetune_val``: train800 -> val200, to choose the oracle), at which
resolution, each with its GPU cost. The transfer step runs exactly this list and the compute plan prices it."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from expertlib.datasets.benchmark import Benchmark
from expertlib.models.candidates import Candidate
from expertlib.pipeline.pricing import gpu_rates, gpu_seconds
from expertlib.pipeline.tables import split_ids
from expertlib.pipeline.workspace import Workspace
from expertlib.select.proxies import PICKED_BY
from expertlib.utils.jobs import Job


def planned_runs(ws: Workspace, cands: Mapping[str, Candidate], task: str, relates_to: str | None = None,
                 pick: Mapping | None = None) -> list[tuple[str, int]]:  # fmt: skip
    """(candidate, seed) fine-tunes of ``task``: every candidate at every seed, except full experts, which only
    the adapter-vs-full comparison uses: they run on the tasks their subtree relates to (``relates_to``), and
    DAT-style models, each made for one task. Where the selection step chose which experts to
    fine-tune (``pick``, its row of ``selection_picks.csv``, has ``random_sample``), the experts are only the
    proxies' picks, the random sample and the oracle pool. The picks of every proxy, the random expert's
    expectation and the oracle are all read from these runs, so every method is compared at the same seeds."""
    names = [n for n, c in cands.items()
             if (c.kind != "full" or c.expert == relates_to) and (c.kind != "dat" or c.task == task)]  # fmt: skip
    seeds = {n: ws.scale.study.seeds for n in names}
    if pick is not None and "random_sample" in pick:
        picked = {m for p in PICKED_BY if p in pick for m in split_ids(pick[p])}  # a tie: all of it
        design = {*split_ids(pick["random_sample"]), *split_ids(pick["oracle_pool"])}
        names = [n for n in names if cands[n].expert is None or n in picked | design]
        fewer = ws.scale.study.unpicked_seeds
        if fewer is not None:  # experts no proxy picked: fewer seeds (a documented, priced option)
            seeds.update({n: min(fewer, seeds[n]) for n in names if n in design - picked})
    return [(n, s) for s in range(ws.scale.study.seeds) for n in names if s < seeds[n]]


def oracle_runs(ws: Workspace, pick: Mapping | None) -> list[tuple[str, int]]:
    """The fine-tunes that choose the oracle without its judge's images (``oracle_on="val200"``): each expert of
    the task's oracle pool trained on train800 and tested on val200, at seed 0."""
    if ws.scale.study.oracle_on != "val200" or pick is None or "oracle_pool" not in pick:
        return []
    return [(n, 0) for n in split_ids(pick["oracle_pool"])]


MODES = {"finetune": ("train800val200", "test"), "finetune_val": ("train800", "val200")}


def transfer_jobs(ws: Workspace, bench: Benchmark, cands: Mapping[str, Candidate], hps: Mapping[str, dict],
                  picks: pd.DataFrame | None) -> list[Job]:  # fmt: skip
    r"""Every fine-tune the transfer step runs, as :class:`~expertlib.utils.jobs.Job`\s whose recipe says what
    sets its result (task, candidate, mode, seed, steps, lr, batch, resolution; :func:`run_transfer` adds the
    candidate's weights' fingerprint) and whose cost is its GPU seconds, evaluation included. The plan prices
    exactly these."""
    by_task = picks.set_index("task").to_dict("index") if picks is not None and len(picks) else {}
    rates = gpu_rates()
    jobs = []
    for task in ws.tasks:
        info, pick = bench.task_info(task), by_task.get(task)
        resolution = task_resolution(bench, task, ws.scale)
        runs = [(n, s, "finetune") for n, s in planned_runs(ws, cands, task, info.relates_to, pick)]
        runs += [(n, s, "finetune_val") for n, s in oracle_runs(ws, pick)]
        sizes = {m: len(bench.task_labels(task, MODES[m][1])) for m in {m for _, _, m in runs}}
        for who, seed, mode in runs:
            recipe = {"task": task, "model": who, "mode": mode, "seed": seed, "steps": hps[task]["steps"],
                      "lr": hps[task]["lr"], "batch": ws.scale.transfer.batch, "resolution": list(resolution)}  # fmt: skip
            train_images = hps[task]["steps"] * ws.scale.transfer.batch
            cost = gpu_seconds(train_images, resolution[1], rates) + gpu_seconds(
                sizes[mode], resolution[1], rates, "inference"
            )  # GPU seconds, from the measured rates: what balances the ranks' shares
            jobs.append(Job(recipe, cost))
    return jobs


def task_resolution(bench: Benchmark, task: str, scale) -> tuple[int, int]:
    """(precrop, crop) a task trains at: BiT-HyperRule's per task on disk (the scale's recipe of it), else the
    scale's."""
    return (
        tuple(bench.resolution_of(task, scale.transfer.hyperrule))
        if hasattr(bench, "resolution_of")
        else (scale.data.precrop, scale.data.crop)
    )
