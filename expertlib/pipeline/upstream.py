"""Notebooks 02 and 03: the generic model B, its compute-matched control B+extra, the experts, and the study of
how the experts specialise. B is trained by :func:`fit_generic` alone, from the notebook and from the torchrun
command line (:mod:`expertlib.pipeline.torchrun`) alike."""

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

from expertlib.datasets.batches import subset
from expertlib.datasets.benchmark import Benchmark
from expertlib.models.adapters import AdapterExperts, ExpertBank, FullExperts
from expertlib.models.candidates import BASE, EXTRA, Candidate, features_of
from expertlib.models.resnet import ResNetV2
from expertlib.models.weights import load_expert, save_expert
from expertlib.pipeline import recipes as R
from expertlib.pipeline.experts import choose_experts, full_experts
from expertlib.pipeline.models import load_released_generic, require_upstream
from expertlib.pipeline.workspace import Workspace, cached
from expertlib.select import proxies as P
from expertlib.train.evaluation import accuracy, predict
from expertlib.train.training import TrainConfig, TrainData, train, train_expert
from expertlib.utils.distributed import barrier, is_primary, rank_and_world
from expertlib.utils.jobs import Job, run_sharded
from expertlib.utils.parallel import run_jobs
from expertlib.utils.runtime import atomic_write_csv, seed_everything

# -- the generic model B ---------------------------------------------------------------------------------------


def fit_generic(ws: Workspace, bench: Benchmark, checkpoint: str | Path | None = None,
                metrics_csv: str | Path | None = None) -> tuple[ResNetV2, dict]:  # fmt: skip
    """B with the scale's recipe: loaded from released weights, or trained on all upstream data from an init
    seeded by the workspace's seed (resuming ``checkpoint``). The one trainer of B: the notebook caches what it
    returns; the torchrun command line saves it. Returns the model and its training record."""
    seed_everything(ws.seed)
    model = ResNetV2(ws.scale.upstream.arch, num_classes=len(bench.classes), zero_head=False)
    if ws.scale.upstream.weights:
        return load_released_generic(ws, model)
    cfg = R.generic_config(ws.scale, ws.seed + R.GENERIC_SEED, ws.device)
    res = train(model, list(model.parameters()), bench.upstream_subset("train"), cfg, len(bench.classes),
                checkpoint=checkpoint, metrics_csv=metrics_csv, progress=ws.progress, desc="generic B")  # fmt: skip
    record = {"steps": res.steps, "seconds": res.seconds, "images_per_second": res.images_per_second,
              "final_loss": res.final_loss, "resumed_from": res.resumed_from}  # fmt: skip
    return model, record


def train_generic(ws: Workspace, bench: Benchmark) -> tuple[ResNetV2, dict]:
    """B for notebook 02, trained once (:func:`fit_generic`, checkpointed) and cached with its record."""
    require_upstream(ws)
    return cached((ws.path("models", "generic.safetensors"), ws.path("tables", "generic_training.json")),
                  lambda: fit_generic(ws, bench, ws.path("checkpoints", "generic.pt"),
                                      ws.path("tables", "generic_metrics.csv")),
                  ("model", "json"), ws.recipe("generic"))  # fmt: skip


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
    from expertlib.analysis import plots

    frame = pd.concat(
        [per_domain_accuracy(m, ws, bench).assign(model=name) for name, m in ((BASE, base), (EXTRA, extra))]
    )
    plots.save_table(frame, ws.path("tables", "generic_upstream_accuracy"))
    return frame


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
    if is_primary():
        log = ws.path("tables", "full_expert_recipes.csv")
        old = pd.read_csv(log) if log.exists() else pd.DataFrame()
        atomic_write_csv(
            log, pd.concat([old[old.expert != name] if len(old) else old, trials], ignore_index=True)
        )
        save_expert(done[best][0], name, part)
    barrier()  # every rank loads what rank 0 saved
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
                secs = _train_fresh(ws, bank, kind, name, labels, data, cfg, ws.progress, save=is_primary())
            rows.append({"expert": name, "kind": kind, "classes": len(labels), "images": len(data),
                         "trainable_parameters": bank.num_expert_parameters(name), "seconds": secs})  # fmt: skip
        return bank, pd.DataFrame(rows)

    return cached((ws.path("models", f"{kind}_experts.safetensors"), ws.path("tables", f"{kind}_expert_training.csv")),
                  compute, ("bank", "csv"), ws.recipe(kind))  # fmt: skip


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
    from expertlib.analysis import plots

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
