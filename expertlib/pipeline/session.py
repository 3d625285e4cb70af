"""Every notebook's first step: check its parameters, open the workspace, load the benchmark and print the
compute plan, so a run says what it will cost before it starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pandas as pd

from expertlib.datasets.benchmark import Benchmark
from expertlib.pipeline.compute_plan import (
    CHEAPER_RECIPE,
    other_hyperrule,
    plan_frame,
    plan_table,
    scale_candidates,
)
from expertlib.pipeline.experts import choose_experts, released_names
from expertlib.pipeline.inputs import load_benchmark
from expertlib.pipeline.workspace import Workspace
from expertlib.run.parameters import validate_values
from expertlib.utils.runtime import work_at_repository_root


def start(
    scale: str, results_dir: str, data_root: str, seed: int = 0, device: str = "auto", progress: bool = True
) -> tuple[Workspace, Benchmark]:
    """Every notebook's first step: check its parameters, move to the repository root (a kernel JupyterLab
    starts in ``notebooks/`` then reads and writes the same ``results/`` and ``data/`` as ``python -m
    expertlib.reproduce``; outside a checkout the working directory stays), open the workspace, load the
    benchmark (at the paper scale a missing folder is named here with the layout it expects) and print the
    plan."""
    validate_values(
        scale=scale, results_dir=results_dir, data_root=data_root, seed=seed, device=device, progress=progress
    )
    work_at_repository_root()
    ws = Workspace.create(scale, results_dir, data_root, device, seed, progress)
    bench = load_benchmark(ws)
    print_plan(ws, bench)
    return ws, bench


def runs_on_cpu(ws: Workspace) -> bool:
    """Whether this run's cost is CPU time: on a CPU, a scale made for one (its description names no GPU: the
    laptop and test scales). The GPU scales print their GPU-hours wherever they run."""
    return ws.device == "cpu" and "GPU" not in ws.scale.description


def print_plan(ws: Workspace, bench: Benchmark | None = None) -> dict:
    """Print what the scale trains and fine-tunes and what it costs: the CPU time its description states, for a
    CPU scale run on a CPU (:func:`runs_on_cpu`), else its GPU-hours per stage (:func:`plan_frame`)."""
    if bench is None:
        return {}
    table = plan_frame(ws, bench, write=False)
    total = table.iloc[-1]
    experts = len(choose_experts(ws, bench)) if ws.scale.trains_upstream else len(released_names(ws.scale))
    kind = "adapter experts" if ws.scale.trains_upstream else "released experts"
    per_stage = ", ".join(f"{r.stage} at {r.resolution} px {r.gpu_hours:,.1f}" for r in table.iloc[:-1].itertuples()
                          if r.gpu_hours >= 0.05)  # fmt: skip
    what = (f"scale {ws.scale.name}: {ws.scale.upstream.arch} on {ws.scale.data.source}; {experts} {kind}, "
            f"{len(ws.scale.expert.full)} full; {len(ws.scale.data.tasks)} tasks, {total.jobs:,} fine-tunes ({total.picks})")  # fmt: skip
    if runs_on_cpu(ws):
        print(
            f"{what}; CPU time: {ws.scale.description.split(': ', 1)[-1].split(';')[0]} (GPU-hours: tables/plan.csv)"
        )
    else:
        print(f"{what}; GPU-hours ({total.rates}): {per_stage or 'under 0.05 each'}; total {total.gpu_hours:,.2f}, "
              f"{total.hours_1gpu:,.2f} h on 1 GPU, {total.hours_8gpu:,.2f} h on 8")  # fmt: skip
    if ws.scale.data.task_resolution == "hyperrule" and ws.scale.transfer.batch == 512:
        alt = replace(
            ws, scale=ws.scale.override(**CHEAPER_RECIPE)
        )  # the one option a user may reach for first
        cheaper = plan_frame(alt, bench, write=False).iloc[-1]
        print(f"fine-tuning at BiT-HyperRule as published (batch 512, lr 0.003); BiT's cheaper recipe (batch 128, "
              f"lr 0.001, reported equivalent on CIFAR-10/100 only) would cost {cheaper.gpu_hours:,.2f} GPU-hours "
              f"in all (tables/plan_options.csv prices every option)")  # fmt: skip
    if ws.scale.data.task_resolution == "hyperrule":  # the two BiT-HyperRules, priced side by side
        name, change, _ = other_hyperrule(ws.scale.transfer.hyperrule)
        other = plan_frame(replace(ws, scale=ws.scale.override(**change)), bench, write=False).iloc[-1]
        source = {"bit-paper": "the BiT paper's text", "bit-code": "BiT's released code"}
        print(f"fine-tuning with BiT-HyperRule {ws.scale.transfer.hyperrule!r} ({source[ws.scale.transfer.hyperrule]}); "
              f"{name!r} ({source[name]}) would cost {other.gpu_hours:,.2f} GPU-hours in all (docs/choices.md)")  # fmt: skip
    return {"plan": table, "experts": experts, "fine_tunes": int(total.jobs)}


def hyperrule_recipes(ws: Workspace, bench: Benchmark, candidates: Mapping | None = None,
                      rates: dict | None = None) -> pd.DataFrame:  # fmt: skip
    """Both BiT-HyperRules side by side for this scale (notebook 01 prints it): where each comes from, the
    resolution of a task with images of 96x96 px or more, the schedule at the scale's fine-tuning length, and
    the plan's fine-tuning and total GPU-hours under each (an upper bound before selection, as the plan is;
    ``candidates``: the plan's, by default the scale's)."""
    from expertlib.datasets.transforms import bit_resolution
    from expertlib.train.schedules import HYPERRULE_SOURCES, HYPERRULES, scaled_hyperrule

    sc, rows = ws.scale, []
    cands = candidates or scale_candidates(ws, list(choose_experts(ws, bench)) if sc.trains_upstream else None)  # fmt: skip
    steps, fixed = max(sc.transfer.steps), f"{sc.data.precrop}/{sc.data.crop} (fixed at this scale)"
    for recipe in HYPERRULES:
        table = plan_table(replace(ws, scale=sc.override(hyperrule=recipe)), bench, cands, None, rates)
        fine = table.stage.str.startswith(("fine-tunes", "evaluation", "oracle choice", "hyper-parameter"))
        s = scaled_hyperrule(steps, sc.transfer.lrs[0], recipe)
        rows.append({"hyperrule": recipe, "this scale's": recipe == sc.transfer.hyperrule, "source": HYPERRULE_SOURCES[recipe],
                     "resolution (96x96 px or more)": "{}/{}".format(*bit_resolution(96, 96, recipe))
                     if sc.data.task_resolution == "hyperrule" else fixed,
                     "schedule": f"{steps} steps, warm-up {s.warmup_steps}, x0.1 past {'/'.join(map(str, s.boundaries))}",
                     "fine-tuning GPU-hours": float(table[fine].gpu_hours.sum()), "total GPU-hours": float(table.iloc[-1].gpu_hours)})  # fmt: skip
    return pd.DataFrame(rows)
