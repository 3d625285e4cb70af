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
from expertlib.runtime import (
    atomic_write_csv,
    atomic_write_json,
    machine_description,
    resolve_device,
    seed_everything,
)
from expertlib.schedules import Schedule, scaled_hyperrule, upstream_schedule
from expertlib.training import ArrayData, TrainConfig, accuracy, finetune, predict, train, train_expert
from expertlib.weights import load_bank, load_expert, load_model, save_bank, save_expert, save_model

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
        ws = cls(
            get_scale(scale),
            Path(results_dir) / scale,
            Path(data_root),
            resolve_device(device),
            seed,
            progress,
        )
        for sub in ("models", "tables", "figures", "checkpoints"):
            (ws.results_dir / sub).mkdir(parents=True, exist_ok=True)
        seed_everything(seed)
        return ws

    def path(self, kind: str, name: str) -> Path:
        return self.results_dir / kind / name

    def require(self, kind: str, name: str, notebook: str) -> Path:
        p = self.path(kind, name)
        if not p.exists():
            raise MissingStepError(
                f"{p} is missing: run notebook {notebook} at scale={self.scale.name!r} first"
            )
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
    return {
        "train800": mk(td.train),
        "val200": mk(td.val),
        "train800val200": mk(td.train_val),
        "test": mk(td.test),
    }


# -- the generic model B ---------------------------------------------------------------------------------------
def _upstream_cfg(ws: Workspace, steps: int, lr: float, seed: int, batch: int) -> TrainConfig:
    """Upstream-style training (B, B+extra, experts): BiT's step schedule or a cosine, per the scale."""
    sc = ws.scale
    sched = (
        upstream_schedule(steps, lr)
        if sc.upstream_schedule == "bit"
        else Schedule(steps, max(1, steps // 20), lr, kind="cosine")
    )
    return TrainConfig(sched, batch_size=batch, loss=sc.upstream_loss, seed=seed, device=ws.device,
                       checkpoint_every=max(50, steps // 10))  # fmt: skip


def train_generic(ws: Workspace, bench: EmbeddedBenchmark) -> tuple[ResNetV2, dict]:
    """Train B on all upstream data (or load it). Returns the model and its training record."""
    out, rec = ws.path("models", "generic.safetensors"), ws.path("tables", "generic_training.json")
    if out.exists() and rec.exists():
        return load_model(out), json.loads(rec.read_text())
    seed_everything(ws.seed)
    model = ResNetV2(ws.scale.arch, num_classes=len(bench.classes), zero_head=False)
    cfg = _upstream_cfg(ws, ws.scale.upstream_steps, ws.scale.upstream_lr, ws.seed, ws.scale.upstream_batch)
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
    cfg = _upstream_cfg(ws, ws.scale.expert_steps, ws.scale.expert_lr, ws.seed + 1, ws.scale.expert_batch)
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
    return {
        e: [bench.classes.index(c) for c in bench.hierarchy.expert_classes(e, bench.classes)] for e in experts
    }


def expert_subset(
    ws: Workspace, bench: EmbeddedBenchmark, labels: list[int], split: str, train: bool
) -> ArrayData:
    s = bench.upstream[split]
    keep = np.isin(s.labels, labels)
    remap = {c: i for i, c in enumerate(labels)}
    y = np.array([remap[v] for v in s.labels[keep]], dtype=np.int64)
    return ArrayData(s.images[keep], y, ws.scale.precrop, ws.scale.crop, flip=train)


def train_experts(
    ws: Workspace, bench: EmbeddedBenchmark, base: ResNetV2, kind: str
) -> tuple[ExpertBank, pd.DataFrame]:
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
        data = expert_subset(ws, bench, labels[name], "train", train=True)
        secs = None
        if part.exists():  # trained in an earlier, interrupted run
            load_expert(bank, part, name)
        else:
            bank.add_expert(name, num_classes=len(labels[name]), head_rows=labels[name])
            cfg = _upstream_cfg(
                ws, ws.scale.expert_steps, ws.scale.expert_lr, ws.seed + 7, ws.scale.expert_batch
            )
            t0 = time.perf_counter()
            train_expert(bank, name, data, cfg, progress=ws.progress)
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
    feats_cache: dict[str, np.ndarray] = {}

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
    return TrainConfig(
        scaled_hyperrule(steps, lr), batch_size=ws.scale.transfer_batch, seed=seed, device=ws.device
    )


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
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
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


# -- notebook-level steps ----------------------------------------------------------------------------------------
def write_data_summary(
    ws: Workspace, bench: EmbeddedBenchmark, accuracy: dict[str, float] | None = None
) -> pd.DataFrame:
    """``results/<scale>/data_summary.csv``: domains and tasks (and, once known, B's fine-tuned accuracy)."""
    from expertlib.datasets.embedded import data_summary

    frame = data_summary(bench, accuracy)
    atomic_write_csv(ws.results_dir / "data_summary.csv", frame)
    return frame


def sample_figure(ws: Workspace, bench: EmbeddedBenchmark):
    from expertlib import plots

    rows = {}
    train = bench.upstream["train"]
    dom = bench.domain_of_label[train.labels]
    for i, d in enumerate(bench.domains):
        idx = np.flatnonzero(dom == i)
        rows[f"up: {d.name}"] = train.images[idx[np.linspace(0, len(idx) - 1, 12).astype(int)]]
    for t, td in bench.tasks.items():
        rows[f"task: {t}"] = td.train.images[:12]
    fig = plots.sample_grid(rows)
    plots.save_figure(fig, ws.path("figures", "samples"))
    return fig


def load_generic(ws: Workspace) -> tuple[ResNetV2, ResNetV2]:
    b = load_model(ws.require("models", "generic.safetensors", "02_generic.ipynb"))
    x = load_model(ws.require("models", "generic_extra.safetensors", "02_generic.ipynb"))
    return b.eval(), x.eval()


def load_experts(ws: Workspace) -> tuple[ExpertBank, ExpertBank]:
    a = load_bank(ws.require("models", "adapter_experts.safetensors", "03_experts.ipynb"))
    f = load_bank(ws.require("models", "full_experts.safetensors", "03_experts.ipynb"))
    return a.eval(), f.eval()


def generic_upstream_accuracy(
    ws: Workspace, bench: EmbeddedBenchmark, base: ResNetV2, extra: ResNetV2
) -> pd.DataFrame:
    from expertlib import plots

    frame = pd.concat(
        [per_domain_accuracy(m, ws, bench).assign(model=name) for name, m in ((BASE, base), (EXTRA, extra))]
    )
    plots.save_table(frame, ws.path("tables", "generic_upstream_accuracy"))
    return frame


def write_specialisation(ws: Workspace, bench: EmbeddedBenchmark, base: ResNetV2, banks: dict[str, ExpertBank],
                         extra: ResNetV2) -> pd.DataFrame:  # fmt: skip
    from expertlib import plots

    out = ws.results_dir / "expert_specialisation.csv"
    if out.exists():
        spec = pd.read_csv(out)
    else:
        spec = specialisation(ws, bench, base, banks, extra)
        atomic_write_csv(out, spec)
    plots.save_figure(
        plots.specialisation_plot(spec[spec.kind == "adapter"], "knn"),
        ws.path("figures", "specialisation_knn"),
    )
    plots.save_figure(
        plots.specialisation_plot(spec[spec.kind == "adapter"], "linear"),
        ws.path("figures", "specialisation_linear"),
    )
    return spec


def run_selection(
    ws: Workspace, bench: EmbeddedBenchmark, base: ResNetV2, bank: ExpertBank
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every adapter expert on every task with every proxy; pick per proxy. Timed per task."""
    from expertlib.selection import ALL_PROXIES, extract_features, forward_flops, pick, rank_experts

    out_r, out_p = ws.path("tables", "selection_rankings.csv"), ws.path("tables", "selection_picks.csv")
    if out_r.exists() and out_p.exists():
        return pd.read_csv(out_r), pd.read_csv(out_p)
    experts = bank.expert_names
    labels = expert_labels(bench, experts)
    prior = np.bincount(bench.upstream["train"].labels, minlength=len(bench.classes)).astype(float)
    shape = (1, 3, ws.scale.crop, ws.scale.crop)
    per_image = {e: float(forward_flops(_FeatureOf(bank, e).eval(), shape)) for e in [None, *experts]}
    rankings, picks = [], []
    for task in ws.scale.tasks:
        data = task_splits(ws, bench, task)["train800val200"]
        t0 = time.perf_counter()
        feats, logits = extract_features(
            bank, [None, *experts], data, ws.scale.eval_batch, ws.device, with_logits=True
        )
        per_expert = (time.perf_counter() - t0) / (len(experts) + 1)
        table = rank_experts(
            feats, data.labels, ALL_PROXIES, upstream_logits=logits, expert_labels=labels, upstream_prior=prior,
            val_split=len(bench.tasks[task].train), knn_k=ws.scale.knn_k, knn_metric=ws.scale.knn_metric,
            extraction_seconds={e: per_expert for e in feats},
            extraction_flops={e: per_image[e] * len(data) for e in feats},
        )  # fmt: skip
        table.insert(0, "task", task)
        rankings.append(table)
        row = {
            "task": task,
            "group": bench.tasks[task].info.group,
            "relates_to": bench.tasks[task].info.relates_to or "none",
        }
        for proxy in ("knn", "domain", "linear", "logme", "hscore"):
            row[proxy] = pick(table, proxy, experts)
            row[f"{proxy}_seconds"] = float(
                table[(table.proxy == proxy) & table.expert.isin(experts)].seconds.sum()
            )
        row["random"] = random_choice(experts, ws.seed, task)
        picks.append(row)
    rankings_df, picks_df = pd.concat(rankings, ignore_index=True), pd.DataFrame(picks)
    atomic_write_csv(out_r, rankings_df)
    atomic_write_csv(out_p, picks_df)
    return rankings_df, picks_df


class _FeatureOf(torch.nn.Module):
    def __init__(self, bank: ExpertBank, expert: str | None) -> None:
        super().__init__()
        self.bank, self.expert = bank, expert

    def forward(self, x):
        return self.bank.features(x, self.expert)


def run_transfer(ws: Workspace, bench: EmbeddedBenchmark, base: ResNetV2, extra: ResNetV2,
                 adapters: ExpertBank, full: ExpertBank) -> pd.DataFrame:  # fmt: skip
    """All transfer runs (resumable per run): hyper-parameters on val200 with B; B and B+extra over seeds;
    every adapter expert (oracle sweep); extra seeds for the kNN and domain picks; full experts; frozen-feature
    linear classifiers for every model. One row per run in ``tables/transfer_runs.csv``."""
    out = ws.path("tables", "transfer_runs.csv")
    done = pd.read_csv(out) if out.exists() else pd.DataFrame()
    picks = pd.read_csv(ws.require("tables", "selection_picks.csv", "04_selection.ipynb"))
    models = {BASE: base, EXTRA: extra, "adapter": adapters, "full": full}
    rows = done.to_dict("records")
    have = {(r["task"], r["model"], r["mode"], int(r["seed"])) for r in rows}
    hp_path = ws.path("tables", "transfer_hyperparameters.json")
    hps = json.loads(hp_path.read_text()) if hp_path.exists() else {}
    from tqdm.auto import tqdm

    for task in tqdm(ws.scale.tasks, desc="tasks", disable=not ws.progress):
        info = bench.tasks[task].info
        splits = task_splits(ws, bench, task)
        k = info.num_classes
        if task not in hps:
            hps[task] = choose_hyperparameters(ws, models, splits, k)
            atomic_write_json(hp_path, hps)
        steps, lr = hps[task]["steps"], hps[task]["lr"]
        pk = picks.set_index("task").loc[task]
        plan_runs = [(BASE, s) for s in range(ws.scale.seeds)] + [(EXTRA, s) for s in range(ws.scale.seeds)]
        plan_runs += [
            (f"adapter:{e}", s) for e in adapters.expert_names for s in range(ws.scale.oracle_seeds)
        ]
        for proxy in ("knn", "domain"):
            plan_runs += [(f"adapter:{pk[proxy]}", s) for s in range(ws.scale.seeds)]
        plan_runs += [(f"full:{e}", 0) for e in full.expert_names]
        for who, seed in dict.fromkeys(plan_runs):
            if (task, who, "finetune", seed) in have:
                continue
            acc, secs = finetune_and_test(
                ws,
                make_net(models, who, k),
                splits["train800val200"],
                splits["test"],
                k,
                steps,
                lr,
                ws.seed + seed,
            )
            rows.append({"task": task, "group": info.group, "model": who, "mode": "finetune", "seed": seed,
                         "accuracy": acc, "seconds": secs, "steps": steps, "lr": lr})  # fmt: skip
            have.add((task, who, "finetune", seed))
            atomic_write_csv(out, pd.DataFrame(rows))
        linear_models = (
            [BASE, EXTRA]
            + [f"adapter:{e}" for e in adapters.expert_names]
            + [f"full:{e}" for e in full.expert_names]
        )
        for who in linear_models:
            if (task, who, "linear", 0) in have:
                continue
            fn = _feature_fn(models, who)
            t0 = time.perf_counter()
            acc = frozen_linear(ws, fn, splits)
            rows.append({"task": task, "group": info.group, "model": who, "mode": "linear", "seed": 0,
                         "accuracy": acc, "seconds": time.perf_counter() - t0, "steps": 0, "lr": 0.0})  # fmt: skip
            have.add((task, who, "linear", 0))
        atomic_write_csv(out, pd.DataFrame(rows))
    return pd.DataFrame(rows)


def _feature_fn(models: dict, who: str):
    if who in (BASE, EXTRA):
        return models[who].features
    kind, name = who.split(":", 1)
    return lambda x: models[kind].features(x, name)


def run_schedule_sweep(
    ws: Workspace, bench: EmbeddedBenchmark, base: ResNetV2, adapters: ExpertBank
) -> pd.DataFrame:
    """B vs the task's matching adapter expert as fine-tuning grows longer (two tasks with a matching expert)."""
    out = ws.path("tables", "schedule_sweep.csv")
    if out.exists() or not ws.scale.schedule_sweep:
        return pd.read_csv(out) if out.exists() else pd.DataFrame()
    hps = json.loads(ws.require("tables", "transfer_hyperparameters.json", "05_transfer.ipynb").read_text())
    related = [t for t in ws.scale.tasks if bench.tasks[t].info.relates_to in adapters.expert_names][:2]
    models = {BASE: base, "adapter": adapters}
    rows = []
    for task in related:
        splits = task_splits(ws, bench, task)
        k = bench.tasks[task].info.num_classes
        for steps in ws.scale.schedule_sweep:
            for who in (BASE, f"adapter:{bench.tasks[task].info.relates_to}"):
                acc, secs = finetune_and_test(ws, make_net(models, who, k), splits["train800val200"], splits["test"],
                                              k, steps, hps[task]["lr"], ws.seed)  # fmt: skip
                rows.append({"task": task, "steps": steps, "model": "B" if who == BASE else "matching adapter expert",
                             "accuracy": acc, "seconds": secs})  # fmt: skip
    frame = pd.DataFrame(rows, columns=["task", "steps", "model", "accuracy", "seconds"])
    atomic_write_csv(out, frame)
    return frame


# -- the report --------------------------------------------------------------------------------------------------
def _method_rows(runs: pd.DataFrame, picks: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Per task and method: mean and sd over seeds of the model that method yields."""
    sub = runs[runs["mode"] == mode]
    rows = []
    for task, t in sub.groupby("task"):
        group = t.group.iloc[0]
        pk = picks.set_index("task").loc[task]
        stats = t.groupby("model").accuracy.agg(["mean", "std", "count"])
        seed0 = t[t.seed == 0].set_index("model").accuracy
        adapters = seed0[[m for m in seed0.index if m.startswith("adapter:")]]

        def add(
            method: str, model: str | None, mean: float, sd: float, n: int, task=task, group=group
        ) -> None:
            rows.append({"task": task, "group": group, "metric": mode, "method": method, "model": model,
                         "mean": float(mean), "sd": float(sd) if n > 1 else np.nan, "n": int(n)})  # fmt: skip

        for method, model in (
            (BASE, BASE),
            (EXTRA, EXTRA),
            ("knn", f"adapter:{pk['knn']}"),
            ("domain", f"adapter:{pk['domain']}"),
        ):
            if model in stats.index:
                s = stats.loc[model]
                add(method, model, s["mean"], s["std"], s["count"])
        if len(adapters):
            best = adapters.idxmax()
            s = stats.loc[best]
            add("oracle", best, s["mean"], s["std"], s["count"])
            add("random", None, adapters.mean(), adapters.std(), len(adapters))
    return pd.DataFrame(rows)


def _verdict(diffs: np.ndarray, spreads: np.ndarray) -> str:
    """Reproduced when the mean effect is positive and larger than the mean seed spread; not reproduced when
    it is negative beyond it; inconclusive within it."""
    if len(diffs) == 0 or np.all(np.isnan(diffs)):
        return "inconclusive (no data)"
    m, s = float(np.nanmean(diffs)), float(np.nanmean(spreads)) if np.any(~np.isnan(spreads)) else 0.0
    if m > s:
        return "reproduced"
    if m < -s:
        return "not reproduced"
    return "inconclusive (within seed spread)"


def build_report(ws: Workspace, bench: EmbeddedBenchmark) -> dict:
    """Every figure, the VTAB-style table, the claims table and ``summary.json`` from the runs on disk."""
    from expertlib import plots

    runs = pd.read_csv(ws.require("tables", "transfer_runs.csv", "05_transfer.ipynb"))
    picks = pd.read_csv(ws.require("tables", "selection_picks.csv", "04_selection.ipynb"))
    rankings = pd.read_csv(ws.require("tables", "selection_rankings.csv", "04_selection.ipynb"))
    spec = pd.read_csv(ws.require("", "expert_specialisation.csv", "03_experts.ipynb"))
    record = json.loads(ws.require("tables", "generic_training.json", "02_generic.ipynb").read_text())
    adapter_log = pd.read_csv(ws.path("tables", "adapter_expert_training.csv"))
    full_log = pd.read_csv(ws.path("tables", "full_expert_training.csv"))
    figures = []

    methods = pd.concat(
        [_method_rows(runs, picks, "finetune"), _method_rows(runs, picks, "linear")], ignore_index=True
    )
    plots.save_table(methods, ws.path("tables", "methods_per_task"))
    for metric, title in (
        ("finetune", "full fine-tuning"),
        ("linear", "frozen features + linear classifier"),
    ):
        figures += plots.save_figure(plots.transfer_bars(methods, metric, f"Transfer by {title} ({ws.scale.name} scale)"),
                                     ws.path("figures", f"transfer_{metric}"))[:1]  # fmt: skip

    ft = methods[methods.metric == "finetune"]
    vtab = ft.pivot_table(index="method", columns="group", values="mean", aggfunc="mean")
    vtab["mean"] = ft.groupby("method")["mean"].mean()
    vtab = vtab.reindex([m for m in plots.METHOD_ORDER if m in vtab.index]).reset_index()
    vtab.insert(1, "label", vtab.method.map(plots.METHOD_LABELS))
    plots.save_table(vtab, ws.path("tables", "vtab_table"))

    # proxy score vs fine-tuned accuracy (seed 0 of the oracle sweep)
    seed0 = runs[
        (runs["mode"] == "finetune") & (runs.seed == 0) & runs.model.str.startswith("adapter:")
    ].copy()
    seed0["expert"] = seed0.model.str.split(":", n=1).str[1]
    points = rankings.merge(seed0[["task", "expert", "accuracy"]], on=["task", "expert"])
    quality = []
    from expertlib.selection import kendall_tau, regret, top_k_relative_accuracy, weighted_tau

    for (task, proxy), g in points.groupby(["task", "proxy"]):
        if len(g) < 3:
            continue
        chosen = g.sort_values(["score", "expert"], ascending=[False, True]).iloc[0]
        quality.append({"task": task, "proxy": proxy, "kendall_tau": kendall_tau(g.score, g.accuracy),
                        "weighted_tau": weighted_tau(g.score, g.accuracy), "regret": regret(chosen.accuracy, g.accuracy),
                        "top1_relative": top_k_relative_accuracy(g.score, g.accuracy, 1),
                        "top3_relative": top_k_relative_accuracy(g.score, g.accuracy, 3)})  # fmt: skip
    quality = pd.DataFrame(quality)
    plots.save_table(quality, ws.path("tables", "selection_quality"))
    for proxy in ("knn", "domain"):
        figures += plots.save_figure(
            plots.proxy_scatter(points, proxy), ws.path("figures", f"proxy_{proxy}_vs_accuracy")
        )[:1]

    # cost per task vs accuracy of what each method yields
    sweep_secs = seed0.groupby("task").seconds.sum()
    cost_rows = []
    for proxy in ("knn", "domain", "linear", "logme", "hscore"):
        acc = seed0.merge(
            picks[["task", proxy]].rename(columns={proxy: "expert"}), on=["task", "expert"]
        ).accuracy.mean()
        cost_rows.append(
            {
                "method": f"{proxy} selection",
                "seconds": float(picks[f"{proxy}_seconds"].mean()),
                "accuracy": float(acc),
            }
        )
    oracle_acc = seed0.groupby("task").accuracy.max().mean()
    cost_rows.append(
        {
            "method": "fine-tune all (oracle)",
            "seconds": float(sweep_secs.mean()),
            "accuracy": float(oracle_acc),
        }
    )
    bench_csv = Path("results/benchmarks/selection_cost.csv")
    if bench_csv.exists():
        bc = pd.read_csv(bench_csv)
        if "dat_seconds" in bc:
            cost_rows.append(
                {
                    "method": "DAT-style re-training",
                    "seconds": float(bc.dat_seconds.mean()),
                    "accuracy": np.nan,
                }
            )
    cost = pd.DataFrame(cost_rows)
    plots.save_table(cost, ws.path("tables", "selection_cost"))
    figures += plots.save_figure(plots.cost_plot(cost.dropna()), ws.path("figures", "selection_cost"))[:1]

    # adapter vs full experts on their related tasks
    related = {t: bench.tasks[t].info.relates_to for t in ws.scale.tasks}
    avf = []
    for kind, log in (("adapter", adapter_log), ("full", full_log)):
        for r in log.itertuples():
            tasks = [t for t, rel in related.items() if rel == r.expert]
            acc = runs[
                (runs["mode"] == "finetune")
                & (runs.seed == 0)
                & (runs.model == f"{kind}:{r.expert}")
                & runs.task.isin(tasks)
            ]
            if len(acc):
                avf.append({"expert": r.expert, "kind": kind, "parameters": int(r.trainable_parameters),
                            "accuracy": float(acc.accuracy.mean()), "tasks": ",".join(tasks)})  # fmt: skip
    avf = pd.DataFrame(avf)
    if len(avf):
        plots.save_table(avf, ws.path("tables", "adapter_vs_full"))
        figures += plots.save_figure(plots.adapter_vs_full(avf), ws.path("figures", "adapter_vs_full"))[:1]
    sweep_path = ws.path("tables", "schedule_sweep.csv")
    if sweep_path.exists():
        sweep = pd.read_csv(sweep_path)
        if len(sweep):
            figures += plots.save_figure(plots.schedule_plot(sweep), ws.path("figures", "schedule_sweep"))[:1]
    spec_fig = ws.path("figures", "specialisation_knn.png")
    if spec_fig.exists():
        figures.append(spec_fig)

    claims = _claims(methods, spec, quality, cost, avf)
    plots.save_table(claims, ws.path("tables", "claims"))
    base_acc = ft[ft.method == BASE].set_index("task")["mean"].to_dict()
    write_data_summary(ws, bench, base_acc)
    summary = _summary_json(ws, bench, methods, picks, seed0, cost, record, adapter_log, full_log)
    atomic_write_json(ws.results_dir / "summary.json", summary)
    return {
        "vtab_table": vtab,
        "claims": claims,
        "methods": methods,
        "quality": quality,
        "cost": cost,
        "figures": figures,
    }


def _claims(
    methods: pd.DataFrame, spec: pd.DataFrame, quality: pd.DataFrame, cost: pd.DataFrame, avf: pd.DataFrame
) -> pd.DataFrame:
    ft = methods[methods.metric == "finetune"].pivot(index="task", columns="method", values=["mean", "sd"])
    rows = []

    def diff(a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
        if ("mean", a) not in ft or ("mean", b) not in ft:
            return np.array([]), np.array([])
        d = (ft["mean"][a] - ft["mean"][b]).to_numpy()
        s = np.nanmax(np.stack([ft["sd"][a].to_numpy(), ft["sd"][b].to_numpy()]), axis=0)
        return d, s

    own = spec[(spec.region == "own") & (spec.kind == "adapter")].pivot_table(
        index="expert", columns="model", values="knn"
    )
    if "adapter_expert" in own:
        gain = own["adapter_expert"] - own[BASE]
        ctrl = own[EXTRA] - own[BASE] if EXTRA in own else gain * 0
        rows.append({"claim": "Experts specialise: each beats B on held-out images of its own upstream subset (kNN)",
                     "evidence": f"{int((gain > 0).sum())}/{len(gain)} adapter experts better; mean gain {gain.mean():+.3f} "
                                 f"(B+extra: {ctrl.mean():+.3f})",
                     "verdict": "reproduced" if gain.mean() > max(0.01, ctrl.mean()) else "not reproduced"})  # fmt: skip
    for a, b, text in (("knn", BASE, "The kNN-selected expert transfers better than the generic model B"),
                       ("knn", EXTRA, "... and better than the compute-matched control B+extra"),
                       ("knn", "random", "kNN selection beats picking an expert at random"),
                       ("oracle", BASE, "Some expert (the oracle) transfers better than B"),
                       ("domain", BASE, "The domain-prediction pick transfers better than B")):  # fmt: skip
        d, s = diff(a, b)
        if len(d):
            rows.append({"claim": text, "evidence": f"mean {np.nanmean(d):+.3f} over {len(d)} tasks (better on "
                         f"{int(np.nansum(d > 0))}); mean seed sd {np.nanmean(s) if np.any(~np.isnan(s)) else float('nan'):.3f}",
                         "verdict": _verdict(d, s)})  # fmt: skip
    sel = cost.set_index("method").seconds
    if "knn selection" in sel and "fine-tune all (oracle)" in sel:
        ratio = sel["fine-tune all (oracle)"] / sel["knn selection"]
        rows.append({"claim": "Selection is 2-3 orders of magnitude cheaper than fine-tuning every expert",
                     "evidence": f"fine-tune all / kNN selection = {ratio:.0f}x in wall time per task",
                     "verdict": "reproduced" if ratio >= 100 else "not reproduced (ratio below 100x)"})  # fmt: skip
    if len(quality):
        q = quality.groupby("proxy")[["kendall_tau", "regret"]].mean()
        best = q.regret.idxmin()
        rows.append({"claim": "kNN is a good proxy among those tried (lowest regret)",
                     "evidence": "; ".join(f"{p}: tau {r.kendall_tau:+.2f}, regret {r.regret:.3f}" for p, r in q.iterrows()),
                     "verdict": "reproduced" if q.regret["knn"] <= q.regret.min() + 1e-12
                     else f"not reproduced ({best} has lower regret)"})  # fmt: skip
    if len(avf) and {"adapter", "full"} <= set(avf.kind):
        m = avf.pivot_table(index="expert", columns="kind", values=["accuracy", "parameters"]).dropna()
        if len(m):
            d = (m["accuracy"]["adapter"] - m["accuracy"]["full"]).mean()
            p = (m["parameters"]["adapter"] / m["parameters"]["full"]).mean()
            rows.append({"claim": "Adapter experts transfer about as well as full experts at a fraction of the parameters",
                         "evidence": f"adapter - full accuracy {d:+.3f} on related tasks; parameters {p:.1%} of a full expert",
                         "verdict": "reproduced" if d > -0.02 else "not reproduced"})  # fmt: skip
    return pd.DataFrame(rows, columns=["claim", "evidence", "verdict"])


def _summary_json(ws, bench, methods, picks, seed0, cost, record, adapter_log, full_log) -> dict:
    tasks = {}
    ft = methods[methods.metric == "finetune"]
    lin = methods[methods.metric == "linear"]
    for task in ws.scale.tasks:
        t = ft[ft.task == task].set_index("method")
        pk = picks.set_index("task").loc[task]
        acc0 = seed0[seed0.task == task].set_index("expert").accuracy
        get = lambda m: float(t.loc[m, "mean"]) if m in t.index else None  # noqa: E731, B023
        tasks[task] = {
            "group": bench.tasks[task].info.group,
            "relates_to": bench.tasks[task].info.relates_to,
            "baseline_accuracy": get(BASE),
            "baseline_extra_accuracy": get(EXTRA),
            "selected": {
                p: {"expert": pk[p], "accuracy_seed0": float(acc0.get(pk[p], np.nan))}
                for p in ("knn", "domain", "linear", "logme", "hscore")
            },
            "knn_pick_accuracy_mean": get("knn"),
            "domain_pick_accuracy_mean": get("domain"),
            "oracle": {"expert": str(acc0.idxmax()) if len(acc0) else None, "accuracy": get("oracle")},
            "random_expert_mean": get("random"),
            "frozen_linear": {
                m: float(v) for m, v in lin[lin.task == task].set_index("method")["mean"].items()
            },
        }
    return {
        "scale": ws.scale.name,
        "tasks": tasks,
        "selection_cost_seconds_per_task": {r.method: r.seconds for r in cost.itertuples()},
        "model": {
            "arch": ws.scale.arch,
            "generic_training": record,
            "adapter_expert_parameters": adapter_log.trainable_parameters.tolist(),
            "full_expert_parameters": full_log.trainable_parameters.tolist(),
        },  # fmt: skip
        "data": {
            "upstream_classes": len(bench.classes),
            "upstream_train": len(bench.upstream["train"]),
            "upstream_test": len(bench.upstream["test"]),
            "domains": len(bench.domains),
            "tasks": len(ws.scale.tasks),
        },  # fmt: skip
        "provenance": provenance(),
    }
