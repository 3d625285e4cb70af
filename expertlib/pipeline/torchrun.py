"""The pipeline's command line, for one process or many under ``torchrun``: the one place of its entry points.

Each command runs a notebook's long stage with the very functions the notebook calls, so its outputs are the
notebook's (and the notebook then reuses them)::

    python -m expertlib.pipeline.torchrun generic --scale cpu --out B.safetensors
    torchrun --nproc_per_node 2 -m expertlib.pipeline.torchrun generic --scale cpu --out B.safetensors
    torchrun --nproc_per_node 8 -m expertlib.pipeline.torchrun experts --scale paper --data-root /data
    torchrun --nproc_per_node 8 -m expertlib.pipeline.torchrun transfer --scale released --data-root /data
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        -m expertlib.pipeline.torchrun transfer --scale released --data-root /data

``generic`` and ``experts`` train with DDP (NCCL on GPUs, gloo on CPU), every global batch split over the
processes (``--shard-experts``: each rank trains whole experts instead); ``transfer`` shares the fine-tunes'
job list over the ranks (:mod:`expertlib.utils.jobs`), rank 0 writing the tables.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from expertlib.utils.distributed import finish_distributed, init_distributed, rank_and_world


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m expertlib.pipeline.torchrun",
                                 description="run a pipeline stage on one or more processes (torchrun)")  # fmt: skip
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-root", default="data")
    common.add_argument("--device", default="auto")
    common.add_argument("--seed", type=int, default=0)
    gen = sub.add_parser(
        "generic", parents=[common], help="train B with the scale's recipe (notebook 02's trainer)"
    )
    gen.add_argument("--scale", default="cpu")
    gen.add_argument("--out", required=True, help="where rank 0 saves the trained model (.safetensors)")
    gen.add_argument("--checkpoint", default=None, help="resume from / write this checkpoint")
    gen.add_argument("--steps", type=int, default=None, help="override the scale's upstream_steps")
    gen.add_argument("--batch-size", type=int, default=None, help="override the scale's upstream_batch")
    gen.add_argument("--lr", type=float, default=None, help="override the scale's upstream_lr")
    exp = sub.add_parser("experts", parents=[common],
                         help="train the scale's adapter and full experts (notebook 03) into --results-dir")  # fmt: skip
    exp.add_argument("--scale", default="cpu")
    exp.add_argument(
        "--results-dir", default="results", help="reads B from and writes experts to <dir>/<scale>"
    )
    exp.add_argument("--shard-experts", action="store_true",
                     help="each rank trains whole experts of the job list instead of DDP per expert")  # fmt: skip
    tr = sub.add_parser(
        "transfer", parents=[common], help="run notebook 05's fine-tunes, shared over the ranks"
    )
    tr.add_argument("--scale", default="released")
    tr.add_argument("--results-dir", default="results")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from expertlib.pipeline.inputs import load_benchmark
    from expertlib.pipeline.workspace import Workspace

    # a job list needs only barriers (gloo on any device, ranks may share a GPU); DDP needs NCCL on GPUs
    device = init_distributed(args.device, backend="gloo" if args.command == "transfer" else None)
    rank, world = rank_and_world()
    if args.command == "generic":
        from expertlib.models.weights import save_model
        from expertlib.pipeline.upstream import fit_generic
        from expertlib.run.presets import get_scale

        overrides = {k: v for k, v in (("upstream_steps", args.steps), ("upstream_batch", args.batch_size),
                                       ("upstream_lr", args.lr)) if v is not None}  # fmt: skip
        ws = Workspace(get_scale(args.scale, **overrides), Path("."), Path(args.data_root), device, args.seed,
                       progress=rank == 0)  # fmt: skip
        model, record = fit_generic(ws, load_benchmark(ws), checkpoint=args.checkpoint)
        if rank == 0:
            save_model(model.cpu(), args.out)
            print(f"trained {record['steps']} steps on {world} process(es) in {record['seconds']:.1f} s "
                  f"({record['images_per_second']:.0f} images/s); saved {args.out}")  # fmt: skip
    elif args.command == "experts":
        from expertlib.models.weights import load_model
        from expertlib.pipeline.upstream import train_experts

        ws = Workspace.create(
            args.scale, args.results_dir, args.data_root, device, args.seed, progress=rank == 0
        )
        if args.shard_experts:
            ws = replace(ws, scale=ws.scale.override(expert_sharding=True))
        bench = load_benchmark(ws)
        base = load_model(ws.require("models", "generic.safetensors", "02_generic.ipynb"))
        for kind in ("adapter", "full"):  # every rank trains; only rank 0 writes (see workspace.cached)
            _, log = train_experts(ws, bench, base, kind)
            if rank == 0:
                print(f"{kind} experts on {world} process(es):\n{log.to_string(index=False)}")
    else:
        from expertlib.pipeline.models import candidates
        from expertlib.pipeline.transfer import run_transfer

        ws = Workspace.create(
            args.scale, args.results_dir, args.data_root, device, args.seed, progress=rank == 0
        )
        bench = load_benchmark(ws)
        ws.require("tables", "selection_picks.csv", "04_selection.ipynb")
        runs = run_transfer(ws, bench, candidates(ws))
        if rank == 0:
            print(f"{(runs['mode'] != 'linear').sum()} fine-tunes on {world} process(es): "
                  f"{ws.path('tables', 'transfer_runs.csv')}")  # fmt: skip
    finish_distributed()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
