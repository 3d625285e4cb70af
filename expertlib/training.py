"""One training loop for every recipe: the generic model B, adapter and full experts, and transfer.

The recipes differ only in what is trainable, the data, the head, the loss and the schedule. The loop is
deterministic from ``(seed, step)``: batch ``s`` draws its examples from a per-epoch permutation and its
augmentation from a generator seeded by ``(seed, s)``, so a run killed at any point and resumed from its last
checkpoint ends with exactly the weights of an uninterrupted run (optimizer momentum, step and metrics are
in the checkpoint). Under ``torchrun`` (``torch.distributed`` initialised) each rank takes its share of every
global batch and DDP averages gradients, which reproduces the single-process run (GroupNorm has no batch
statistics).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from expertlib.adapters import ExpertBank
from expertlib.runtime import atomic_write, resolve_device
from expertlib.schedules import Schedule, learning_rate
from expertlib.transforms import eval_batch, train_batch


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


# -- data ---------------------------------------------------------------------------------------------------
class TrainData(Protocol):
    """What the loop needs from data: a size, labels, and a way to build an augmented batch."""

    labels: np.ndarray

    def __len__(self) -> int: ...

    def batch(
        self, indices: np.ndarray, train: bool, generator: torch.Generator, part: slice | None = None
    ) -> Tensor:
        """The (augmented) examples ``indices[part]``; random draws depend on the whole ``indices``."""
        ...


class ArrayData:
    """In-memory uint8 NHWC images (the embedded benchmark): batched tensor transforms, no worker processes."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, precrop: int, crop: int, flip: bool) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = np.asarray(labels, dtype=np.int64)
        self.precrop, self.crop, self.flip = precrop, crop, flip

    def __len__(self) -> int:
        return len(self.labels)

    def batch(
        self, indices: np.ndarray, train: bool, generator: torch.Generator, part: slice | None = None
    ) -> Tensor:
        if train:
            return train_batch(
                self.images[torch.from_numpy(indices)], self.precrop, self.crop, self.flip, generator, part
            )
        chosen = indices if part is None else indices[part]
        return eval_batch(self.images[torch.from_numpy(chosen)], self.crop)


class DatasetData:
    """A map-style dataset of (tensor image, label) whose transform draws from torch's global RNG; the RNG is
    seeded from the batch generator so each batch is reproducible."""

    def __init__(self, dataset: Dataset, labels: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        self.labels = np.asarray(
            labels if labels is not None else [dataset[i][1] for i in range(len(dataset))]
        )

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(
        self, indices: np.ndarray, train: bool, generator: torch.Generator, part: slice | None = None
    ) -> Tensor:
        base = int(torch.randint(0, 2**62, (1,), generator=generator))
        positions = range(len(indices))[part] if part is not None else range(len(indices))
        state = torch.get_rng_state()
        items = []
        try:
            for p in positions:  # one seed per position in the global batch: independent of sharding
                torch.manual_seed(base + p)
                items.append(self.dataset[int(indices[p])][0])
        finally:
            torch.set_rng_state(state)
        return torch.stack(items).contiguous(memory_format=torch.channels_last)


def _mix(seed: int, *keys: int | str) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, (seed, *keys))).encode()).digest()[:7], "little")


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> np.ndarray:
    """The examples of global batch ``step``: consecutive slices of per-epoch permutations."""
    pos = np.arange(step * batch_size, (step + 1) * batch_size)
    epochs = pos // n
    out = np.empty(batch_size, dtype=np.int64)
    for e in np.unique(epochs):
        perm = np.random.default_rng(_mix(seed, "epoch", int(e))).permutation(n)
        sel = epochs == e
        out[sel] = perm[pos[sel] % n]
    return out


# -- config and results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    schedule: Schedule
    batch_size: int = 128
    loss: Literal["softmax", "sigmoid"] = "softmax"
    momentum: float = 0.9
    weight_decay: float = 0.0
    mixup_alpha: float = 0.0
    seed: int = 0
    device: str = "cpu"
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    checkpoint_every: int = 0  # 0: no checkpoints
    log_every: int = 10
    grad_clip: float | None = None

    @property
    def steps(self) -> int:
        return self.schedule.total_steps


@dataclass
class TrainResult:
    steps: int
    seconds: float
    final_loss: float
    images_per_second: float
    metrics: list[dict] = field(default_factory=list)
    resumed_from: int | None = None


class LogitsOf(nn.Module):
    """An expert of a bank as a plain module (``forward(x) -> logits``) for the loop."""

    def __init__(self, bank: ExpertBank, expert: str | None) -> None:
        super().__init__()
        self.bank, self.expert = bank, expert

    def forward(self, x: Tensor) -> Tensor:
        return self.bank.logits(x, self.expert)


# -- the loop ------------------------------------------------------------------------------------------------
def _loss(logits: Tensor, y: Tensor, kind: str, label_matrix: Tensor | None) -> Tensor:
    if kind == "softmax":
        if y.dtype.is_floating_point:  # mixed soft targets
            return torch.sum(-y * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        return F.cross_entropy(logits.float(), y)
    target = y if y.dtype.is_floating_point else _targets(y, logits.shape[-1], kind, label_matrix)
    # BiT's upstream loss: sigmoid cross-entropy summed over labels, averaged over examples.
    return F.binary_cross_entropy_with_logits(logits.float(), target, reduction="sum") / logits.shape[0]


def _targets(y: Tensor, num_classes: int, kind: str, label_matrix: Tensor | None) -> Tensor:
    if kind == "sigmoid" and label_matrix is not None:
        return label_matrix[y]
    return F.one_hot(y, num_classes).float()


def _save_checkpoint(
    path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int, metrics: list[dict], cfg: TrainConfig
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "metrics": metrics,
        "config": {**asdict(cfg), "schedule": asdict(cfg.schedule)},
        "torch_rng": torch.get_rng_state(),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, lambda p: p.write_bytes(buf.getvalue()))


def _write_metrics(path: Path, metrics: list[dict]) -> None:
    if not metrics:
        return

    def write(p: Path) -> None:
        with open(p, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(metrics[0]))
            w.writeheader()
            w.writerows(metrics)

    atomic_write(path, write)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(
    model: nn.Module,
    params: Sequence[nn.Parameter],
    data: TrainData,
    cfg: TrainConfig,
    num_classes: int,
    checkpoint: str | os.PathLike | None = None,
    metrics_csv: str | os.PathLike | None = None,
    label_matrix: Tensor | None = None,
    progress: bool = True,
    desc: str = "train",
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``params`` of ``model`` (``forward(x) -> logits``) on ``data`` with SGD + momentum.

    ``checkpoint``: resume from this file when it exists, and write it atomically every
    ``cfg.checkpoint_every`` steps and at the end. ``stop_after``: stop (as if killed) after that many
    steps, for tests. Under torchrun each rank must call this with the same arguments.
    """
    device = resolve_device(cfg.device)
    rank, world = _rank_world()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must divide evenly over {world} processes")
    model.to(device=device, memory_format=torch.channels_last)
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter in params requires grad")
    opt = torch.optim.SGD(
        params, lr=cfg.schedule.base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    ckpt = Path(checkpoint) if checkpoint is not None else None
    start, metrics, resumed = 0, [], None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, metrics, resumed = state["step"], state["metrics"], state["step"]
    lm = label_matrix.to(device) if label_matrix is not None else None
    run_model: nn.Module = model
    if world > 1:
        run_model = nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if (device.startswith("cuda") and cfg.amp)
        else nullcontext()
    )
    model.train()
    t0, seen, loss_val = time.perf_counter(), 0, float("nan")
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    bar = tqdm(
        range(start, end),
        desc=desc,
        disable=not progress or rank != 0,
        leave=False,
        initial=start,
        total=cfg.steps,
    )
    for step in bar:
        lr = learning_rate(cfg.schedule, step)
        for group in opt.param_groups:
            group["lr"] = lr
        gen = torch.Generator().manual_seed(_mix(cfg.seed, "batch", step))
        idx = batch_indices(step, len(data), cfg.batch_size, cfg.seed)
        part = slice(rank * len(idx) // world, (rank + 1) * len(idx) // world)
        share = idx[part]
        x = data.batch(idx, train=True, generator=gen, part=part).to(device, non_blocking=True)
        y = torch.from_numpy(data.labels[share]).to(device)
        if cfg.mixup_alpha > 0:  # under DDP, pairs are formed within each process's share
            lam = float(
                np.random.default_rng(_mix(cfg.seed, "mixup", step)).beta(cfg.mixup_alpha, cfg.mixup_alpha)
            )
            perm = torch.randperm(len(share), generator=gen).to(device)
            x = lam * x + (1 - lam) * x[perm]
            t = _targets(y, num_classes, cfg.loss, lm)
            y = lam * t + (1 - lam) * t[perm]
        with autocast:
            logits = run_model(x)
        loss = _loss(logits, y, cfg.loss, lm)
        if not torch.isfinite(loss):
            kept = (
                f"the last good checkpoint {ckpt} is kept"
                if ckpt is not None and ckpt.is_file()
                else "no checkpoint was written"
            )
            raise NonFiniteLossError(
                f"{desc}: loss became {loss.item()} at step {step} (lr {lr:.3g}); {kept}. Lower the learning rate "
                "or check the inputs for NaNs"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        seen += len(idx)
        loss_val = loss.item()
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            metrics.append({"step": step + 1, "loss": loss_val, "lr": lr})
            bar.set_postfix(loss=f"{loss_val:.3f}")
        done = step + 1
        if (
            ckpt is not None
            and rank == 0
            and ((cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.steps)
        ):
            _save_checkpoint(ckpt, model, opt, done, metrics, cfg)
    bar.close()
    seconds = time.perf_counter() - t0
    if metrics_csv is not None and rank == 0:
        _write_metrics(Path(metrics_csv), metrics)
    model.eval()
    return TrainResult(end, seconds, loss_val, seen / max(seconds, 1e-9), metrics, resumed)


# -- evaluation ------------------------------------------------------------------------------------------------
@torch.inference_mode()
def predict(
    fn: Callable[[Tensor], Tensor],
    data: TrainData,
    batch_size: int = 512,
    device: str = "cpu",
    progress: bool = False,
) -> Tensor:
    """Apply ``fn`` (logits or features) to every example, in order, in eval mode with large batches."""
    outs = []
    gen = torch.Generator().manual_seed(0)
    for s in tqdm(range(0, len(data), batch_size), desc="eval", disable=not progress, leave=False):
        idx = np.arange(s, min(len(data), s + batch_size))
        outs.append(fn(data.batch(idx, train=False, generator=gen).to(device)).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def accuracy(model: nn.Module, data: TrainData, batch_size: int = 512, device: str = "cpu") -> float:
    model.eval()
    logits = predict(model, data, batch_size, device)
    return float((logits.argmax(-1).numpy() == data.labels).mean())


# -- recipes ---------------------------------------------------------------------------------------------------
def train_expert(
    bank: ExpertBank,
    expert: str,
    data: TrainData,
    cfg: TrainConfig,
    **kwargs,
) -> TrainResult:
    """Train one expert of ``bank`` on its subset: only its parameters (adapters, norms and head for an
    adapter expert; the whole copy for a full expert) receive gradients."""
    params = bank.train_only(expert)
    try:
        return train(
            LogitsOf(bank, expert),
            params,
            data,
            cfg,
            num_classes=bank.num_classes(expert),
            desc=f"expert {expert}",
            **kwargs,
        )
    finally:
        bank.requires_grad_(False)


def finetune(
    model: nn.Module, train_data: TrainData, cfg: TrainConfig, num_classes: int, **kwargs
) -> TrainResult:
    """Transfer: every parameter of ``model`` (a fresh zero-initialised head on B or an expert) trains."""
    model.requires_grad_(True)
    return train(model, list(model.parameters()), train_data, cfg, num_classes=num_classes, **kwargs)


# -- command line: train B on one machine or with torchrun ------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m expertlib.training --scale cpu --out B.safetensors`` trains the generic model B on the
    embedded benchmark; ``torchrun --nproc_per_node N -m expertlib.training ...`` runs the same training with
    DDP (NCCL on GPUs, gloo on CPU), splitting every global batch over the processes."""
    import argparse

    from expertlib.datasets.embedded import build
    from expertlib.presets import get_scale
    from expertlib.resnet import ResNetV2
    from expertlib.schedules import Schedule
    from expertlib.weights import save_model

    ap = argparse.ArgumentParser(description="train the generic model B on the embedded benchmark")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--steps", type=int, default=None, help="override the scale's upstream steps")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None, help="override the scale's upstream learning rate")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default=None, help="resume from / write this checkpoint")
    ap.add_argument("--out", required=True, help="where rank 0 saves the trained model (.safetensors)")
    args = ap.parse_args(argv)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and args.device != "cpu"
        dist.init_process_group("nccl" if use_cuda else "gloo")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    device = resolve_device(args.device)
    if device == "cuda" and dist.is_initialized():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    scale = get_scale(args.scale)
    bench = build(scale.embedded, cache_dir=Path(args.data_root) / "embedded")
    up = bench.upstream["train"]
    data = ArrayData(up.images, up.labels, scale.precrop, scale.crop, flip=True)
    steps = args.steps or scale.upstream_steps
    torch.manual_seed(args.seed)
    model = ResNetV2(scale.arch, num_classes=len(bench.classes), zero_head=False)
    cfg = TrainConfig(Schedule(steps, max(1, steps // 20), args.lr or scale.upstream_lr, kind="cosine"),
                      batch_size=args.batch_size or scale.upstream_batch, loss=scale.upstream_loss, seed=args.seed,
                      device=device, checkpoint_every=max(1, steps // 10))  # fmt: skip
    res = train(model, list(model.parameters()), data, cfg, len(bench.classes), checkpoint=args.checkpoint,
                progress=True, desc="generic B")  # fmt: skip
    rank, world = _rank_world()
    if rank == 0:
        save_model(model.cpu(), args.out)
        print(f"trained {res.steps} steps on {world} process(es) in {res.seconds:.1f} s "
              f"({res.images_per_second:.0f} images/s); saved {args.out}")  # fmt: skip
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
