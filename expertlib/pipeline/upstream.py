"""Notebooks 02 and 03: the generic model B, its compute-matched control B+extra, and the experts.

Also the command line that trains B on one process or under torchrun (DDP)::

    python -m expertlib.pipeline.upstream --scale cpu --out B.safetensors
    torchrun --nproc_per_node 2 -m expertlib.pipeline.upstream --scale cpu --out B.safetensors
"""

from __future__ import annotations

import copy
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from expertlib import proxies as P
from expertlib.adapters import AdapterExperts, ExpertBank, FullExperts
from expertlib.candidates import BASE, EXTRA, Candidate, features_of, from_bank, from_model
from expertlib.datasets.batches import subset
from expertlib.datasets.benchmark import Benchmark
from expertlib.jobs import barrier, finish_distributed, init_distributed
from expertlib.parallel import run_jobs
from expertlib.pipeline import recipes as R
from expertlib.pipeline.data import RELEASED_BANK as RELEASED
from expertlib.pipeline.data import choose_experts, full_experts, released_names
from expertlib.pipeline.workspace import (
    MissingStepError,
    Workspace,
    cached,
    is_main_process,
    record_provenance,
)
from expertlib.resnet import ResNetV2
from expertlib.runtime import atomic_write_csv, seed_everything
from expertlib.training import TrainConfig, TrainData, accuracy, predict, train, train_expert
from expertlib.weights import load_bank, load_expert, load_model, load_released, save_expert


# -- the generic model B ---------------------------------------------------------------------------------------
class NothingToTrainError(RuntimeError):
    """The scale trains nothing upstream (``released``): B and the experts are downloads, converted."""


def require_upstream(ws: Workspace) -> None:
    if not ws.scale.trains_upstream:
        raise NothingToTrainError(
            f"scale {ws.scale.name!r} trains nothing upstream and reads no upstream image: B is BiT-M R50x1's released "
            "weights and the experts are the paper's 48 released experts, converted from their SavedModels "
            "(notebook 04 converts them on first use; by hand: python -m expertlib.convert <folder of SavedModels> "
            f"--out {ws.path('models', RELEASED)} --base <BiT-M-R50x1.npz>). Go on with notebook 04."
        )


def train_generic(ws: Workspace, bench: Benchmark) -> tuple[ResNetV2, dict]:
    """Train B on all upstream data (or load it). Returns the model and its training record."""
    require_upstream(ws)

    def compute() -> tuple[ResNetV2, dict]:
        seed_everything(ws.seed)
        model = ResNetV2(ws.scale.upstream.arch, num_classes=len(bench.classes), zero_head=False)
        if ws.scale.upstream.weights:
            return load_released_generic(ws, model)
        cfg = R.generic_config(ws.scale, ws.seed + R.GENERIC_SEED, ws.device)
        res = train(model, list(model.parameters()), bench.upstream_subset("train"), cfg, len(bench.classes),
                    checkpoint=ws.path("checkpoints", "generic.pt"), metrics_csv=ws.path("tables", "generic_metrics.csv"),
                    progress=ws.progress, desc="generic B")  # fmt: skip
        record = {"steps": res.steps, "seconds": res.seconds, "images_per_second": res.images_per_second,
                  "final_loss": res.final_loss, "resumed_from": res.resumed_from}  # fmt: skip
        return model, record

    return cached((ws.path("models", "generic.safetensors"), ws.path("tables", "generic_training.json")), compute,
                  ("model", "json"), ws.recipe("generic"))  # fmt: skip


def load_released_generic(ws: Workspace, model: ResNetV2) -> tuple[ResNetV2, dict]:
    """B from released weights (BiT-M's ``.npz`` or a timm checkpoint under ``data_root``). Its upstream head is
    kept when it has exactly this benchmark's classes (BiT-M's 21,843 sorted wnids = a full ImageNet-21k tree);
    otherwise B gets a fresh head over this benchmark's classes (B+extra and domain prediction then use it
    after B+extra's training only)."""
    path = Path(ws.scale.upstream.weights)
    path = path if path.is_absolute() else ws.dataset_root / path
    if not path.is_file():
        raise FileNotFoundError(
            f"B's weights {path} not found: download BiT-M-R50x1.npz (the BiT repository's released weights) into "
            f"{ws.data_root}, or set the scale's generic_weights to None to train B from scratch"
        )
    head = load_released(model, path)
    return model, {"steps": 0, "seconds": 0.0, "images_per_second": 0.0, "final_loss": float("nan"),
                   "resumed_from": None, "weights": str(path), "upstream_head_loaded": bool(head)}  # fmt: skip


def train_generic_extra(ws: Workspace, bench: Benchmark, base: ResNetV2) -> ResNetV2:
    """The compute-matched control B+extra: B trained one expert's budget more on all upstream data."""
    require_upstream(ws)

    def compute() -> ResNetV2:
        model = copy.deepcopy(base)
        cfg = R.expert_config(ws.scale, ws.seed + R.EXTRA_SEED, ws.device)
        train(model, list(model.parameters()), bench.upstream_subset("train"), cfg, len(bench.classes),
              progress=ws.progress, desc="B+extra")  # fmt: skip
        return model

    return cached(ws.path("models", "generic_extra.safetensors"), compute, "model", ws.recipe("extra"))


def per_domain_accuracy(model: ResNetV2, ws: Workspace, bench: Benchmark) -> pd.DataFrame:
    """Top-1 over all upstream classes on held-out upstream images, per domain."""
    data = bench.upstream_subset("test")
    pred = predict(model.eval(), data, ws.scale.runtime.eval_batch, ws.device).argmax(-1).numpy()
    dom = bench.domain_of_label[data.labels]
    counts = np.bincount(bench.domain_of_label, minlength=len(bench.domain_names))
    rows = [{"domain": d, "classes": int(counts[i]), "accuracy": float((pred == data.labels)[dom == i].mean())}
            for i, d in enumerate(bench.domain_names) if (dom == i).any()]  # fmt: skip
    return pd.DataFrame(rows)


def generic_upstream_accuracy(
    ws: Workspace, bench: Benchmark, base: ResNetV2, extra: ResNetV2
) -> pd.DataFrame:
    # imported here: matplotlib and seaborn cost 1.5 s (torchrun ranks never plot)
    from expertlib import plots

    frame = pd.concat(
        [per_domain_accuracy(m, ws, bench).assign(model=name) for name, m in ((BASE, base), (EXTRA, extra))]
    )
    plots.save_table(frame, ws.path("tables", "generic_upstream_accuracy"))
    return frame


def load_generic(ws: Workspace) -> tuple[ResNetV2, ResNetV2]:
    require_upstream(ws)
    b = load_model(ws.require("models", "generic.safetensors", "02_generic.ipynb"))
    x = load_model(ws.require("models", "generic_extra.safetensors", "02_generic.ipynb"))
    return b.eval(), x.eval()


# -- experts ----------------------------------------------------------------------------------------------------
def recipe_job(bank: ExpertBank, name: str, data: TrainData, heldout: TrainData, cfg: TrainConfig,
               eval_batch: int) -> tuple[ExpertBank, float, float]:  # fmt: skip
    """Train expert ``name`` of its own ``bank`` under ``cfg``: (the bank, held-out accuracy, seconds). A
    module-level function of its arguments alone, so a worker process can run it."""
    res = train_expert(bank, name, data, cfg, progress=False)
    return bank, accuracy(Candidate(name, bank, name), heldout, eval_batch, cfg.device), res.seconds


def choose_full_recipe(ws: Workspace, bench: Benchmark, base: ResNetV2, name: str, labels: Sequence[int],
                       part: Path) -> pd.DataFrame:  # fmt: skip
    """Train full expert ``name`` under every (steps, lr) of the scale's grid, from the same start, and keep the
    one most accurate on held-out upstream images of its own subset (ties: fewer steps, then the lower lr):
    saved to ``part``. The trials are added to ``tables/full_expert_recipes.csv``. The held-out images also
    serve the specialisation study, so full experts' specialisation is measured on the images that chose them."""
    data, heldout = bench.upstream_subset("train", labels), bench.upstream_subset("test", labels)
    grid = [
        (s, lr)
        for s in ws.scale.expert.full_steps
        for lr in ws.scale.expert.full_lrs or (ws.scale.expert.lr,)
    ]

    def jobs():
        for steps, lr in grid:
            bank = FullExperts(base)
            bank.add_expert(name, num_classes=len(labels), head_rows=labels)
            cfg = R.upstream_config(
                ws.scale, steps, lr, ws.scale.expert.batch, ws.seed + R.EXPERT_SEED, ws.device
            )
            yield bank, name, data, heldout, cfg, ws.scale.runtime.eval_batch

    done = dict(
        run_jobs(recipe_job, jobs(), ws.pool_workers())
    )  # under torchrun: in turn, every rank in step
    trials = pd.DataFrame([{"expert": name, "steps": s, "lr": lr, "heldout_accuracy": done[i][1], "seconds": done[i][2]}
                           for i, (s, lr) in enumerate(grid)])  # fmt: skip
    best = max(range(len(grid)), key=lambda i: (done[i][1], -grid[i][0], -grid[i][1]))
    trials["chosen"] = [i == best for i in range(len(grid))]
    if is_main_process():
        log = ws.path("tables", "full_expert_recipes.csv")
        old = pd.read_csv(log) if log.exists() else pd.DataFrame()
        atomic_write_csv(
            log, pd.concat([old[old.expert != name] if len(old) else old, trials], ignore_index=True)
        )
        save_expert(done[best][0], name, part)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # every rank loads what rank 0 saved
    return trials


def _new_bank(ws: Workspace, base: ResNetV2, kind: str) -> ExpertBank:
    return AdapterExperts(base, ws.scale.expert.adapter) if kind == "adapter" else FullExperts(base)


def _part(ws: Workspace, kind: str, name: str) -> Path:
    """Where a trained expert's own weights wait until the bank is written (resume, and the ranks' shares)."""
    return ws.path("checkpoints", f"{kind}_{name}.safetensors")


def _train_fresh(ws: Workspace, bank: ExpertBank, kind: str, name: str, labels: Sequence[int], data: TrainData,
                 cfg: TrainConfig, progress: bool, save: bool) -> float:  # fmt: skip
    """Add expert ``name`` fresh, train it (resuming its checkpoint), and with ``save`` write its part file:
    the seconds it took. Its random init comes from (seed, name) alone: the same expert whatever ran before it
    (the notebook, the torchrun stage, a resumed run, another rank)."""
    t0 = time.perf_counter()
    torch.manual_seed(ws.seed + R.EXPERT_SEED + zlib.crc32(name.encode()))
    bank.add_expert(name, num_classes=len(labels), head_rows=labels)
    train_expert(
        bank, name, data, cfg, progress=progress, checkpoint=ws.path("checkpoints", f"{kind}_{name}.pt")
    )
    if save:
        save_expert(bank, name, _part(ws, kind, name))
    return time.perf_counter() - t0


def expert_job(ws: Workspace, bench: Benchmark, base: ResNetV2, kind: str, name: str, node: str) -> float:
    """Train one expert alone, on this process, into its part file: the unit the ranks share under torchrun
    with ``expert_sharding`` (the same bits as the expert trained in a single process)."""
    labels = bench.expert_labels(node)
    cfg = replace(R.expert_config(ws.scale, ws.seed + R.EXPERT_SEED, ws.device), data_parallel=False)
    return _train_fresh(ws, _new_bank(ws, base, kind), kind, name, labels, bench.upstream_subset("train", labels),
                        cfg, progress=False, save=True)  # fmt: skip


def _shard_experts(ws: Workspace, bench: Benchmark, base: ResNetV2, kind: str, experts: Mapping[str, str]
                   ) -> dict[str, float]:  # fmt: skip
    """Every rank trains its share of the experts (whole, one process each; a full expert's recipe grid is
    left to the loop); after a barrier every part file exists. Seconds per expert trained here."""
    from expertlib.jobs import Job, rank_and_world, run_sharded

    if rank_and_world()[1] == 1 or not ws.scale.runtime.expert_sharding:
        return {}
    grid = kind == "full" and ws.scale.expert.full_steps
    todo = [n for n in experts if not grid and not _part(ws, kind, n).exists()]
    jobs = [Job({**ws.recipe(kind), "expert": n, "node": experts[n]}, 1.0) for n in todo]
    done = run_sharded(jobs, expert_job, lambda j: (ws, bench, base, kind, j.recipe["expert"], j.recipe["node"]),
                       ws.results_dir / "jobs" / f"{kind}_experts")  # fmt: skip
    return {j.recipe["expert"]: s for j, s in zip(jobs, done, strict=True)}


def train_experts(
    ws: Workspace, bench: Benchmark, base: ResNetV2, kind: str
) -> tuple[ExpertBank, pd.DataFrame]:
    """Train every expert of ``kind`` ('adapter' or 'full') from B on its subset; resumable per expert. Under
    torchrun, every expert in turn with DDP over the ranks, or with ``expert_sharding`` the ranks' shares of
    whole experts at once (:func:`expert_job`)."""
    require_upstream(ws)

    def compute() -> tuple[ExpertBank, pd.DataFrame]:
        experts = choose_experts(ws, bench) if kind == "adapter" else full_experts(ws, bench)
        sharded = _shard_experts(ws, bench, base, kind, experts)
        bank = _new_bank(ws, base, kind)
        rows = []
        for name, node in experts.items():
            labels = bench.expert_labels(node)
            part = _part(ws, kind, name)
            data = bench.upstream_subset("train", labels)
            secs = None
            if kind == "full" and ws.scale.expert.full_steps and not part.exists():
                t0 = time.perf_counter()
                choose_full_recipe(ws, bench, base, name, labels, part)
                load_expert(bank, part, name)
                secs = time.perf_counter() - t0
            elif part.exists():  # trained by a rank's share, or in an earlier, interrupted run
                load_expert(bank, part, name)
                secs = sharded.get(name)
            else:
                cfg = R.expert_config(ws.scale, ws.seed + R.EXPERT_SEED, ws.device)
                secs = _train_fresh(
                    ws, bank, kind, name, labels, data, cfg, ws.progress, save=is_main_process()
                )
            rows.append({"expert": name, "kind": kind, "classes": len(labels), "images": len(data),
                         "trainable_parameters": bank.num_expert_parameters(name), "seconds": secs})  # fmt: skip
        return bank, pd.DataFrame(rows)

    return cached((ws.path("models", f"{kind}_experts.safetensors"), ws.path("tables", f"{kind}_expert_training.csv")),
                  compute, ("bank", "csv"), ws.recipe(kind))  # fmt: skip


def load_experts(ws: Workspace) -> tuple[ExpertBank, ExpertBank]:
    a = load_bank(ws.require("models", "adapter_experts.safetensors", "03_experts.ipynb"))
    f = load_bank(ws.require("models", "full_experts.safetensors", "03_experts.ipynb"))
    return a.eval(), f.eval()


def bit_m(ws: Workspace) -> ResNetV2:
    """B for a scale that trains nothing: BiT-M's released weights with its 21,843-way head (for domain
    prediction), stored once as ``models/generic.safetensors``."""
    from expertlib.hierarchy import bit_m_classes

    def compute() -> ResNetV2:
        model = ResNetV2(ws.scale.upstream.arch, num_classes=len(bit_m_classes()), zero_head=False)
        model, record = load_released_generic(ws, model)
        if not record["upstream_head_loaded"]:
            raise ValueError(
                f"{record['weights']} has no 21,843-way head: the released scale needs BiT-M's (not BiT-S's)"
            )
        return model

    return cached(ws.path("models", "generic.safetensors"), compute, "model", ws.recipe("generic")).eval()


def released_bank(ws: Workspace) -> ExpertBank:
    """The scale's released experts as one bank over B (its ``experts``, else all 48): converted once, by rank 0,
    from the SavedModels under ``data_root/<released_experts>`` into ``models/released_experts.safetensors``
    (every tensor's checksum verified; the file records each expert's source and the architecture)."""
    path = ws.path("models", RELEASED)
    if not path.exists():
        if not ws.scale.data.released_experts:
            raise MissingStepError(
                f"{path} is missing and scale {ws.scale.name!r} names no SavedModel folder"
            )
        if is_main_process():
            from expertlib.convert import convert_bank, sources

            found = sources([ws.dataset_root / ws.scale.data.released_experts])
            wanted = {n: found[n] for n in released_names(ws.scale)}  # check_downloads named any missing
            convert_bank(wanted, path, ws.dataset_root / ws.scale.upstream.weights,
                         log=print if ws.progress else lambda *_: None)  # fmt: skip
            record_provenance([path])
        barrier()
    return load_bank(path).eval()


def candidates(ws: Workspace) -> dict[str, Candidate]:
    """Every network of this scale as a candidate: B, B+extra, ``adapter:<name>``, ``full:<name>``, and the
    paper's released experts as ``released:<name>`` when ``models/released_experts.safetensors`` exists (a bank
    written by ``python -m expertlib.convert``). A scale that trains nothing: B (BiT-M) and the released experts,
    converted on first use."""
    if not ws.scale.trains_upstream:
        return {BASE: from_model(bit_m(ws), BASE),
                **from_bank(released_bank(ws), prefix="released", kind="released")}  # fmt: skip
    base, extra = load_generic(ws)
    adapters, full = load_experts(ws)
    out = {
        BASE: from_model(base, BASE),
        EXTRA: from_model(extra, EXTRA),
        **from_bank(adapters),
        **from_bank(full),
    }
    released = ws.path("models", RELEASED)
    if released.exists():
        out.update(from_bank(load_bank(released).eval(), prefix="released", kind="released"))
    return out


def specialisation(ws: Workspace, bench: Benchmark, cands: Mapping[str, Candidate],
                   experts: Sequence[str]) -> pd.DataFrame:  # fmt: skip
    """Per expert candidate: its, B's and B+extra's kNN and linear-probe accuracy on held-out upstream images of
    its own subset and of the rest. Linear probes train on one half of the held-out images, test on the other."""
    data = bench.upstream_subset("test")
    n = ws.scale.study.specialisation_images
    if n is not None and n < len(data):  # a fixed random sample of the held-out images
        keep = np.sort(np.random.default_rng(0).permutation(len(data))[:n])
        data = subset(data, keep, data.labels[keep])
    y_all = data.labels
    half = np.random.default_rng(0).permutation(len(y_all)) < len(y_all) // 2
    names = [BASE, EXTRA, *experts]
    feats = {n: f.numpy() for n, f in predict(lambda x: features_of([cands[n] for n in names], x), data,
                                                ws.scale.runtime.eval_batch, ws.device,
                                                modules=[cands[n] for n in names]).items()}  # fmt: skip
    nodes = {**choose_experts(ws, bench), **full_experts(ws, bench)}
    rows = []
    for cname in experts:
        c = cands[cname]
        own = np.isin(y_all, bench.expert_labels(nodes[c.expert]))
        for role, key in ((f"{c.kind}_expert", cname), (BASE, BASE), (EXTRA, EXTRA)):
            f = feats[key]
            for region, sel in (("own", own), ("rest", ~own)):
                y = y_all[sel]
                tr, te = sel & half, sel & ~half
                rows.append({
                    "expert": c.expert, "kind": c.kind, "model": role, "region": region,
                    "knn": P.knn_accuracy(f[sel], y, k=ws.scale.selection.knn_k, metric=ws.scale.selection.knn_metric) if sel.sum() > ws.scale.selection.knn_k else np.nan,
                    "linear": P.linear_probe_accuracy(f[tr], y_all[tr], f[te], y_all[te]) if len(np.unique(y_all[tr])) > 1 else np.nan,
                })  # fmt: skip
    return pd.DataFrame(rows)


def write_specialisation(
    ws: Workspace, bench: Benchmark, cands: Mapping[str, Candidate]
) -> tuple[pd.DataFrame, list]:
    """The specialisation table (cached) and its two figures (kNN, linear probe), returned for the notebook."""
    from expertlib import plots

    experts = [n for n, c in cands.items() if c.expert is not None]
    spec = cached(
        ws.results_dir / "expert_specialisation.csv",
        lambda: specialisation(ws, bench, cands, experts),
        recipe=ws.recipe("specialisation"),
    )
    figs = []
    for measure in ("knn", "linear"):
        fig = plots.specialisation_plot(spec[spec.kind == "adapter"], measure)
        plots.save_figure(fig, ws.path("figures", f"specialisation_{measure}"))
        figs.append(fig)
    return spec, figs


# -- command line: train B on one machine or with torchrun ------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Train B (``--stage generic``) or the experts (``--stage experts``) with the scale's recipe; under
    ``torchrun --nproc_per_node N`` the same training runs with DDP (NCCL on GPUs, gloo on CPU), every global
    batch split over the processes."""
    import argparse

    from expertlib.weights import save_model

    ap = argparse.ArgumentParser(
        description="train B (or the experts) with a scale's recipe, on one or more processes"
    )
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--stage", choices=("generic", "experts"), default="generic",
                    help="generic: B to --out; experts: the scale's adapter and full experts into --results-dir")  # fmt: skip
    ap.add_argument("--steps", type=int, default=None, help="override the scale's upstream steps (generic)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument(
        "--lr", type=float, default=None, help="override the scale's upstream learning rate (generic)"
    )
    ap.add_argument("--data-root", default="data")
    ap.add_argument(
        "--results-dir", default="results", help="experts: reads B from and writes experts to <dir>/<scale>"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default=None, help="generic: resume from / write this checkpoint")
    ap.add_argument("--out", help="generic: where rank 0 saves the trained model (.safetensors)")
    ap.add_argument("--shard-experts", action="store_true",
                    help="experts: each rank trains whole experts of the job list instead of DDP per expert")  # fmt: skip
    args = ap.parse_args(argv)
    if args.stage == "generic" and not args.out:
        ap.error("--stage generic needs --out")
    device = init_distributed(args.device)
    from expertlib.pipeline.data import load_benchmark
    from expertlib.presets import get_scale

    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    if args.stage == "experts":
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
        ws = Workspace(
            get_scale(args.scale), Path("."), Path(args.data_root), device, args.seed, progress=False
        )
        bench = load_benchmark(ws)
        torch.manual_seed(args.seed)
        model = ResNetV2(ws.scale.upstream.arch, num_classes=len(bench.classes), zero_head=False)
        cfg = R.generic_config(ws.scale, args.seed, device, args.steps, args.lr, args.batch_size)
        res = train(model, list(model.parameters()), bench.upstream_subset("train"), cfg, len(bench.classes),
                    checkpoint=args.checkpoint, progress=True, desc="generic B")  # fmt: skip
        if rank == 0:
            save_model(model.cpu(), args.out)
            print(f"trained {res.steps} steps on {world} process(es) in {res.seconds:.1f} s "
                  f"({res.images_per_second:.0f} images/s); saved {args.out}")  # fmt: skip
    finish_distributed()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
