"""Every notebook's first step: check its parameters, open the workspace, load the benchmark and print the
compute plan, so a run says what it will cost before it starts."""

from __future__ import annotations

from dataclasses import replace

from expertlib.datasets.benchmark import Benchmark
from expertlib.parameters import validate_values
from expertlib.pipeline.compute_plan import CHEAPER_RECIPE, plan_frame
from expertlib.pipeline.experts import choose_experts, released_names
from expertlib.pipeline.inputs import load_benchmark
from expertlib.pipeline.workspace import Workspace
from expertlib.runtime import work_at_repository_root


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


def print_plan(ws: Workspace, bench: Benchmark | None = None) -> dict:
    """Print what the scale trains and fine-tunes and its GPU-hours per stage (:func:`plan_frame`)."""
    if bench is None:
        return {}
    table = plan_frame(ws, bench, write=False)
    total = table.iloc[-1]
    experts = len(choose_experts(ws, bench)) if ws.scale.trains_upstream else len(released_names(ws.scale))
    kind = "adapter experts" if ws.scale.trains_upstream else "released experts"
    per_stage = ", ".join(f"{r.stage} at {r.resolution} px {r.gpu_hours:,.1f}" for r in table.iloc[:-1].itertuples()
                          if r.gpu_hours >= 0.05)  # fmt: skip
    print(f"scale {ws.scale.name}: {ws.scale.upstream.arch} on {ws.scale.data.source}; {experts} {kind}, {len(ws.scale.expert.full)} full; "
          f"{len(ws.scale.data.tasks)} tasks, {total.jobs:,} fine-tunes ({total.picks}); GPU-hours ({total.rates}): "
          f"{per_stage or 'under 0.05 each'}; total {total.gpu_hours:,.2f}, {total.hours_1gpu:,.2f} h on 1 GPU, "
          f"{total.hours_8gpu:,.2f} h on 8")  # fmt: skip
    if ws.scale.data.task_resolution == "hyperrule" and ws.scale.transfer.batch == 512:
        alt = replace(
            ws, scale=ws.scale.override(**CHEAPER_RECIPE)
        )  # the one option a user may reach for first
        cheaper = plan_frame(alt, bench, write=False).iloc[-1]
        print(f"fine-tuning at BiT-HyperRule as published (batch 512, lr 0.003); BiT's cheaper recipe (batch 128, "
              f"lr 0.001, reported equivalent on CIFAR-10/100 only) would cost {cheaper.gpu_hours:,.2f} GPU-hours "
              f"in all (tables/plan_options.csv prices every option)")  # fmt: skip
    return {"plan": table, "experts": experts, "fine_tunes": int(total.jobs)}
