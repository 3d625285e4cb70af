"""The paper's pipeline as resumable steps; the notebooks call these, one section each.

Every step writes under ``results/<scale>/`` (models, tables, checkpoints) and skips work whose output
already exists, so a notebook can be re-run and a killed run resumes. Long trainings checkpoint through
:func:`expertlib.training.train`.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from expertlib import proxies as P
from expertlib.adapters import AdapterExperts, ExpertBank, FullExperts
from expertlib.datasets.embedded import EmbeddedBenchmark, build
from expertlib.hierarchy import ExpertRule
from expertlib.presets import Scale, get_scale
from expertlib.resnet import ResNetV2
from expertlib.runtime import atomic_write_csv, atomic_write_json, machine_description, resolve_device, seed_everything
from expertlib.schedules import Schedule, scaled_hyperrule, upstream_schedule
from expertlib.training import ArrayData, TrainConfig, accuracy, finetune, predict, train, train_expert
from expertlib.weights import load_bank, load_model, save_bank, save_model

BASE, EXTRA = "base", "base+extra"


class MissingStepError(FileNotFoundError):
    """A notebook's input is missing: says which notebook to run first."""


@dataclass
class Workspace:
    """Where a scale's results live, and the run's settings."""

    scale: Scale
    results_dir: Path
    data_root: Path
    device: str = "cpu"
    seed: int = 0
    progress: bool = True

    @classmethod
    def create(
        cls,
        scale: str,
        results_dir: str | os.PathLike = "results",
        data_root: str | os.PathLike = "data",
        device: str = "auto",
        seed: int = 0,
        progress: bool = True,
    ) -> Workspace:
        ws = cls(get_scale(scale), Path(results_dir) / scale, Path(data_root), resolve_device(device), seed, progress)
        for sub in ("models", "tables", "figures", "checkpoints"):
            (ws.results_dir / sub).mkdir(parents=True, exist_ok=True)
        seed_everything(seed)
        return ws

    def path(self, kind: str, name: str) -> Path:
        return self.results_dir / kind / name

    def require(self, kind: str, name: str, notebook: str) -> Path:
        p = self.path(kind, name)
        if not p.exists():
            raise MissingStepError(f"{p} is missing: run notebook {notebook} at scale={self.scale.name!r} first")
        return p


# -- data --------------------------------------------------------------------------------------------------------
def load_benchmark(ws: Workspace) -> EmbeddedBenchmark:
    """The embedded benchmark for this scale, cached under ``data_root/embedded``."""
    if ws.scale.embedded is None:
        raise NotImplementedError(
            f"scale {ws.scale.name!r} reads ImageNet-21k and VTAB from {ws.data_root}; see print_plan(ws) and "
            "expertlib.datasets.folders / expertlib.datasets.vtab"
        )
    return build(ws.scale.embedded, cache_dir=ws.data_root / "embedded", progress=ws.progress)


def upstream_data(ws: Workspace, bench: EmbeddedBenchmark, split: str, train: bool = True) -> ArrayData:
    s = bench.upstream[split]
    return ArrayData(s.images, s.labels, ws.scale.precrop, ws.scale.crop, flip=train)


def task_splits(ws: Workspace, bench: EmbeddedBenchmark, task: str) -> dict[str, ArrayData]:
    td = bench.tasks[task]
    mk = lambda s: ArrayData(s.images, s.labels, ws.scale.precrop, ws.scale.crop, td.info.flip)  # noqa: E731
    return {"train800": mk(td.train), "val200": mk(td.val), "train800val200": mk(td.train_val), "test": mk(td.test)}


# -- the generic model B ---------------------------------------------------------------------------------------
def _upstream_cfg(ws: Workspace, steps: int, lr: float, seed: int) -> TrainConfig:
    sc = ws.scale
    sched = upstream_schedule(steps, lr) if sc.upstream_schedule == "bit" else Schedule(steps, max(1, steps // 20), lr, kind="cosine")
    return TrainConfig(sched, batch_size=sc.upstream_batch, loss=sc.upstream_loss, seed=seed, device=ws.device,
                       checkpoint_every=max(50, steps // 10))  # fmt: skip


def train_generic(ws: Workspace, bench: EmbeddedBenchmark) -> tuple[ResNetV2, dict]:
    """Train B on all upstream data (or load it). Returns the model and its training record."""
    out, rec = ws.path("models", "generic.safetensors"), ws.path("tables", "generic_training.json")
    if out.exists() and rec.exists():
        return load_model(out), json.loads(rec.read_text())
    seed_everything(ws.seed)
    model = ResNetV2(ws.scale.arch, num_classes=len(bench.classes), zero_head=False)
    cfg = _upstream_cfg(ws, ws.scale.upstream_steps, ws.scale.upstream_lr, ws.seed)
    res = train(model, list(model.parameters()), upstream_data(ws, bench, "train"), cfg, len(bench.classes),
                checkpoint=ws.path("checkpoints", "generic.pt"), metrics_csv=ws.path("tables", "generic_metrics.csv"),
                progress=ws.progress, desc="generic B")  # fmt: skip
    record = {"steps": res.steps, "seconds": res.seconds, "images_per_second": res.images_per_second,
              "final_loss": res.final_loss, "resumed_from": res.resumed_from}  # fmt: skip
    save_model(model.cpu(), out)
    atomic_write_json(rec, record)
    return model, record


def train_generic_extra(ws: Workspace, bench: EmbeddedBenchmark, base: ResNetV2) -> ResNetV2:
    """The compute-matched control B+extra: B trained ``expert_steps`` more steps on all upstream data."""
    out = ws.path("models", "generic_extra.safetensors")
    if out.exists():
        return load_model(out)
    import copy

    model = copy.deepcopy(base)
    cfg = TrainConfig(scaled_hyperrule(ws.scale.expert_steps, ws.scale.expert_lr), batch_size=ws.scale.expert_batch,
                      loss=ws.scale.upstream_loss, seed=ws.seed + 1, device=ws.device)  # fmt: skip
    train(model, list(model.parameters()), upstream_data(ws, bench, "train"), cfg, len(bench.classes),
          progress=ws.progress, desc="B+extra")  # fmt: skip
    save_model(model.cpu(), out)
    return model


def per_domain_accuracy(model: ResNetV2, ws: Workspace, bench: EmbeddedBenchmark) -> pd.DataFrame:
    """B's top-1 on held-out upstream images, per domain (chance = 1 / classes in the domain... of all 107)."""
    data = upstream_data(ws, bench, "test", train=False)
    pred = predict(model.eval(), data, ws.scale.eval_batch, ws.device).argmax(-1).numpy()
    dom = bench.domain_of_label[data.labels]
    rows = [{"domain": d.name, "classes": len(d.classes), "accuracy": float((pred == data.labels)[dom == i].mean())}
            for i, d in enumerate(bench.domains)]  # fmt: skip
    return pd.DataFrame(rows)


# -- experts ----------------------------------------------------------------------------------------------------
def choose_experts(ws: Workspace, bench: EmbeddedBenchmark) -> list[str]:
    """The expert subtrees: the scale's list, or those the hierarchy's rule picks from the data."""
    if ws.scale.experts is not None:
        return [bench.hierarchy.resolve(e) for e in ws.scale.experts]
    rule: ExpertRule = ws.scale.expert_rule
    return bench.hierarchy.select_experts(bench.class_counts(), rule)


def expert_labels(bench: EmbeddedBenchmark, experts: list[str]) -> dict[str, list[int]]:
    """Upstream label indices under each expert's subtree."""
    return {e: [bench.classes.index(c) for c in bench.hierarchy.expert_classes(e, bench.classes)] for e in experts}


def expert_subset(ws: Workspace, bench: EmbeddedBenchmark, labels: list[int], split: str, train: bool) -> ArrayData:
    s = bench.upstream[split]
    keep = np.isin(s.labels, labels)
    remap = {c: i for i, c in enumerate(labels)}
    y = np.array([remap[v] for v in s.labels[keep]], dtype=np.int64)
    return ArrayData(s.images[keep], y, ws.scale.precrop, ws.scale.crop, flip=train)


def train_experts(ws: Workspace, bench: EmbeddedBenchmark, base: ResNetV2, kind: str) -> tuple[ExpertBank, pd.DataFrame]:
    """Train every expert of ``kind`` ('adapter' or 'full') from B on its subset; resumable per expert."""
    out = ws.path("models", f"{kind}_experts.safetensors")
    log = ws.path("tables", f"{kind}_expert_training.csv")
    if out.exists() and log.exists():
        return load_bank(out), pd.read_csv(log)
    names = choose_experts(ws, bench) if kind == "adapter" else list(ws.scale.full_experts)
    labels = expert_labels(bench, names)
    bank: ExpertBank = AdapterExperts(base, ws.scale.adapter) if kind == "adapter" else FullExperts(base)
    rows = []
    for name in names:
        part = ws.path("checkpoints", f"{kind}_{name}.safetensors")
        bank.add_expert(name, num_classes=len(labels[name]), head_rows=labels[name])
        data = expert_subset(ws, bench, labels[name], "train", train=True)
        cfg = TrainConfig(scaled_hyperrule(ws.scale.expert_steps, ws.scale.expert_lr), batch_size=ws.scale.expert_batch,
                          loss=ws.scale.upstream_loss, seed=ws.seed + 7, device=ws.device)  # fmt: skip
        t0 = time.perf_counter()
        if part.exists():
            from expertlib.weights import _open, _load_into

            tensors, _ = _open(part, "expertlib.expert")
            _load_into(bank.experts[name], tensors, str(part), head=True)
            secs = None
        else:
            train_expert(bank, name, data, cfg, progress=ws.progress)
            from expertlib.weights import save_expert

            save_expert(bank, name, part)
            secs = time.perf_counter() - t0
        rows.append({"expert": name, "kind": kind, "classes": len(labels[name]), "images": len(data),
                     "trainable_parameters": bank.num_expert_parameters(name), "seconds": secs})  # fmt: skip
    save_bank(bank, out)
    frame = pd.DataFrame(rows)
    atomic_write_csv(log, frame)
    return bank, frame


def specialisation(ws: Workspace, bench: EmbeddedBenchmark, base: ResNetV2, banks: dict[str, ExpertBank],
                   extra: ResNetV2 | None = None) -> pd.DataFrame:  # fmt: skip
    """Per expert: its and B's (and B+extra's) kNN and linear-probe accuracy on held-out upstream images of
    its own subset and of the rest. Linear probes train on one half of the held-out images, test on the other."""
    test = bench.upstream["test"]
    data = upstream_data(ws, bench, "test", train=False)
    rng = np.random.default_rng(0)
    half = rng.permutation(len(test)) < len(test) // 2
    rows = []
    feats_cache: dict[tuple[str, str], np.ndarray] = {}

    def feats(kind: str, model_fn) -> np.ndarray:
        if kind not in feats_cache:
            feats_cache[kind] = predict(model_fn, data, ws.scale.eval_batch, ws.device).numpy()
        return feats_cache[kind]

    refs = {BASE: lambda x: base.features(x)}
    if extra is not None:
        refs[EXTRA] = lambda x: extra.features(x)
    for kind, bank in banks.items():
        bank.eval()
        for name in bank.expert_names:
            labels = [bench.classes.index(c) for c in bench.hierarchy.expert_classes(name, bench.classes)]
            own = np.isin(test.labels, labels)
            models = {f"{kind}_expert": (f"{kind}:{name}", lambda x, b=bank, n=name: b.features(x, n))}
            models.update({r: (r, fn) for r, fn in refs.items()})
            for role, (key, fn) in models.items():
                f = feats(key, fn)
                for region, sel in (("own", own), ("rest", ~own)):
                    y = test.labels[sel]
                    tr, te = sel & half, sel & ~half
                    rows.append({
                        "expert": name, "kind": kind, "model": role, "region": region,
                        "knn": P.knn_accuracy(f[sel], y, k=ws.scale.knn_k, metric=ws.scale.knn_metric) if sel.sum() > ws.scale.knn_k else np.nan,
                        "linear": P.linear_probe_accuracy(f[tr], test.labels[tr], f[te], test.labels[te]) if len(np.unique(test.labels[tr])) > 1 else np.nan,
                    })  # fmt: skip
    return pd.DataFrame(rows)


# -- transfer ---------------------------------------------------------------------------------------------------
def transfer_cfg(ws: Workspace, steps: int, lr: float, seed: int) -> TrainConfig:
    sched = scaled_hyperrule(steps, lr) if steps != 500 else Schedule(500, 100, lr, (200, 300, 400))
    return TrainConfig(sched, batch_size=ws.scale.transfer_batch, seed=seed, device=ws.device)


def finetune_and_test(ws: Workspace, net: torch.nn.Module, train_data: ArrayData, eval_data: ArrayData, classes: int,
                      steps: int, lr: float, seed: int) -> tuple[float, float]:  # fmt: skip
    """Fine-tune every weight of ``net`` (fresh zero head) and return (eval accuracy, seconds)."""
    torch.manual_seed(seed)
    res = finetune(net, train_data, transfer_cfg(ws, steps, lr, seed), classes, progress=False)
    return accuracy(net, eval_data, ws.scale.eval_batch, ws.device), res.seconds


def make_net(models: dict[str, object], who: str, classes: int) -> torch.nn.Module:
    """A fresh transfer network for ``who``: 'base', 'base+extra', 'adapter:<name>' or 'full:<name>'."""
    if who in (BASE, EXTRA):
        import copy

        net = copy.deepcopy(models[who])
        net.reset_head(classes)
        return net
    kind, name = who.split(":", 1)
    return models[kind].transfer_model(name, classes)


def choose_hyperparameters(ws: Workspace, models: dict, splits: dict[str, ArrayData], classes: int) -> dict:
    """Pick (steps, lr) for a task by B's accuracy on val200 after training on train800 (as VTAB does)."""
    trials = []
    for steps in ws.scale.transfer_steps:
        for lr in ws.scale.transfer_lrs:
            acc, _ = finetune_and_test(ws, make_net(models, BASE, classes), splits["train800"], splits["val200"],
                                       classes, steps, lr, ws.seed)  # fmt: skip
            trials.append({"steps": steps, "lr": lr, "val_accuracy": acc})
    best = max(trials, key=lambda t: (t["val_accuracy"], -t["steps"], -t["lr"]))
    return {"steps": best["steps"], "lr": best["lr"], "trials": trials}


def frozen_linear(ws: Workspace, feature_fn, splits: dict[str, ArrayData]) -> float:
    """Frozen-feature transfer: logistic regression on train800val200 features, accuracy on test."""
    tr = predict(feature_fn, splits["train800val200"], ws.scale.eval_batch, ws.device).numpy()
    te = predict(feature_fn, splits["test"], ws.scale.eval_batch, ws.device).numpy()
    return P.linear_probe_accuracy(tr, splits["train800val200"].labels, te, splits["test"].labels)


def random_choice(candidates: list[str], seed: int, task: str) -> str:
    return random.Random(f"{seed}/{task}").choice(sorted(candidates))


# -- provenance and plans ---------------------------------------------------------------------------------------
def provenance() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "expertlib", "notebooks"],
                                    capture_output=True, text=True).stdout.strip())  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", None
    return {"git_commit": commit, "uncommitted_changes": dirty, "machine": machine_description(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}  # fmt: skip


def plan(scale: Scale) -> dict:
    """What a scale trains, and a rough compute estimate (images seen) before anything starts."""
    experts = len(scale.experts) if scale.experts is not None else (scale.expert_rule.max_experts or 0)
    tasks = len(scale.tasks)
    finetunes = tasks * (2 * scale.seeds + experts * scale.oracle_seeds + 2 * (scale.seeds - 1)
                         + len(scale.transfer_steps) * len(scale.transfer_lrs))  # fmt: skip
    images = {
        "generic": scale.upstream_steps * scale.upstream_batch,
        "experts": (experts + len(scale.full_experts) + 1) * scale.expert_steps * scale.expert_batch,
        "transfer": finetunes * max(scale.transfer_steps) * scale.transfer_batch,
    }
    return {"scale": scale.name, "arch": scale.arch, "data": scale.data, "tasks": tasks, "experts": experts,
            "full_experts": len(scale.full_experts), "fine_tunes": finetunes, "training_images": images,
            "total_training_images": sum(images.values())}  # fmt: skip


def print_plan(ws: Workspace) -> dict:
    p = plan(ws.scale)
    print(f"scale {p['scale']}: {p['arch']} on {p['data']}; {p['experts']} adapter experts, {p['full_experts']} full; "
          f"{p['tasks']} tasks, {p['fine_tunes']} fine-tunes; {p['total_training_images'] / 1e6:.1f}M training images")  # fmt: skip
    return p
