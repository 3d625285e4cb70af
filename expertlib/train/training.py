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
import io
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm  # plain bars: tqdm.auto warns in kernels without ipywidgets, in racy output order

from expertlib.datasets.batches import ArrayData, ImageData, TrainData, ready
from expertlib.datasets.device import DeviceData, on_device
from expertlib.models.adapters import ExpertBank
from expertlib.models.candidates import Candidate
from expertlib.train.batching import StepBatches, batches, finished_ahead, mix_seed, staged_on
from expertlib.train.evaluation import HeadAfterBackbone, network
from expertlib.train.schedules import Schedule, bit_hyperrule, bit_mixup_alpha, learning_rate
from expertlib.utils.distributed import rank_and_world
from expertlib.utils.runtime import (
    Compile,
    atomic_write,
    compiled,
    resolve_compile,
    resolve_device,
    synchronize,
    to_device,
)

__all__ = ["ArrayData", "ImageData", "TrainData", "TrainConfig", "hyperrule_config", "TrainResult", "train", "train_expert",
           "finetune", "NonFiniteLossError"]  # fmt: skip


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


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
    # steps between checkpoints (0: only at the end, when a checkpoint file is given)
    checkpoint_every: int = 0
    checkpoint_minutes: float = 0.0  # also checkpoint when this many minutes have passed since the last one
    log_every: int = 10  # steps between reads of the losses from the device (the only waits for it in a run)
    grad_clip: float | None = None
    workers: int = 0  # data worker processes building batches ahead of the step (0: in the training process)
    # examples per forward/backward pass, gradients accumulated over a step (0: all at once)
    micro_batch: int = 0
    prefetch: int = 4  # batches each worker prepares ahead
    # under torchrun: split every batch over the ranks (DDP); False: this process trains alone, as each job of
    # a sharded job list does (expertlib.utils.jobs)
    data_parallel: bool = True
    # torch.compile the model for training (and the evaluation that follows through ``accuracy``): True, False,
    # or "auto" (on CUDA only: expertlib.utils.runtime.resolve_compile). Agrees with eager within float32
    # tolerance (tested on CPU), not to the bit; its speed on GPUs is measured by benchmarks/gpu_throughput.py
    compile: Compile = "auto"

    def __post_init__(self) -> None:
        if self.loss not in ("softmax", "sigmoid"):
            raise ValueError(f"loss must be 'softmax' or 'sigmoid', got {self.loss!r}")
        # a mistyped compile setting fails here, not after the data is read
        resolve_compile(self.compile, self.device)

    @property
    def steps(self) -> int:
        return self.schedule.total_steps


def hyperrule_config(dataset_size: int, lr: float, hyperrule: str, small_steps: int, **settings) -> TrainConfig:  # fmt: skip
    """Fine-tuning on ``dataset_size`` images by BiT-HyperRule (``hyperrule``: its paper's or its code's form):
    the schedule for that size, ``small_steps`` standing for its 500-step regime, mixup from 20k images;
    ``settings``: the rest of the config (batch size, seed, device, ...)."""
    return TrainConfig(bit_hyperrule(dataset_size, lr, hyperrule, small_steps=small_steps),
                       mixup_alpha=bit_mixup_alpha(dataset_size), **settings)  # fmt: skip


@dataclass
class TrainResult:
    steps: int
    seconds: float
    final_loss: float
    images_per_second: float
    metrics: list[dict] = field(default_factory=list)
    resumed_from: int | None = None
    # the first step's seconds beyond a later step's (the mean of the others): compilation when compiled, plus
    # first-call set-up (cuDNN autotuning, allocator growth) either way; 0 for a run of one step
    warmup_seconds: float = 0.0
    # (steps done in this call, seconds since it started) at each point the host waited for the device: after
    # the first step and at every read of the losses (every log_every steps, at checkpoints, at the end). The
    # steady state is the slope between two points after the warm-up (benchmarks/_common.py, steady_rate)
    timeline: list[tuple[int, float]] = field(default_factory=list)


# -- the loop ------------------------------------------------------------------------------------------------
def batch_loss(logits: Tensor, y: Tensor, kind: str, label_matrix: Tensor | None) -> Tensor:
    # in float32 (bf16 logits under autocast included), or float64 for a float64 model (the exactness tests)
    logits = logits if logits.dtype == torch.float64 else logits.float()
    if kind == "softmax":
        if y.dtype.is_floating_point:  # mixed soft targets
            return torch.sum(-y * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return F.cross_entropy(logits, y)
    target = y if y.dtype.is_floating_point else _targets(y, logits.shape[-1], kind, label_matrix)
    target = target.to(torch.promote_types(target.dtype, logits.dtype))  # float32 targets of a float64 model
    # BiT's upstream loss: sigmoid cross-entropy summed over labels, averaged over examples.
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / logits.shape[0]


def _targets(y: Tensor, num_classes: int, kind: str, label_matrix: Tensor | None) -> Tensor:
    if kind == "sigmoid" and label_matrix is not None:
        return label_matrix[y]
    return F.one_hot(y, num_classes).float()


# settings that change how a run proceeds but not what it computes: a resume may differ in these
# (compile included: eager and compiled agree within float32 tolerance, as devices do)
RUNTIME_FIELDS = ("device", "workers", "prefetch", "log_every", "checkpoint_every", "checkpoint_minutes",
                  "data_parallel", "compile")  # fmt: skip


class RecipeMismatchError(RuntimeError):
    """A stored output (a pipeline step's file) or a checkpoint was made under other settings than those asked for now."""


def check_resume_recipe(ckpt: Path, stored: dict | None, cfg: TrainConfig) -> None:
    """Refuse to resume ``ckpt`` under a recipe other than the one it was written with (runtime settings aside):
    a resumed run would otherwise continue another schedule silently."""
    if stored is None:
        return  # a checkpoint from before configs were stored
    now = {**asdict(cfg), "schedule": asdict(cfg.schedule)}
    changed = sorted(k for k in now if k not in RUNTIME_FIELDS and _plain(stored.get(k)) != _plain(now[k]))
    if changed:
        diff = "; ".join(f"{k}: {stored.get(k)!r} -> {now[k]!r}" for k in changed)
        raise RecipeMismatchError(
            f"checkpoint {ckpt} was written under another recipe ({diff}): delete the checkpoint to start this "
            "training again, or restore the settings it was made with"
        )


def _plain(value):
    """Tuples and lists compare alike (a checkpoint stores what asdict gave)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _trained_by_name(model: nn.Module, params: Sequence[nn.Parameter]) -> dict[str, nn.Parameter]:
    """The parameters being trained, by their names in ``model``: what a checkpoint holds, so that an expert's
    checkpoint is that expert's parameters, not its whole bank (a resume then needs only the same expert)."""
    wanted = {id(p) for p in params}
    return {n: p for n, p in model.named_parameters() if id(p) in wanted}


def _resume(ckpt: Path | None, model: nn.Module, params: Sequence[nn.Parameter], opt: torch.optim.Optimizer,
            cfg: TrainConfig, device: str) -> tuple[int, list[dict], int | None]:  # fmt: skip
    """Load ``ckpt`` when it exists (its recipe checked, its trained parameters by name, the optimizer):
    (first step, metrics so far, the step resumed from or None)."""
    if ckpt is None or not ckpt.is_file():
        return 0, [], None
    state = torch.load(ckpt, map_location=device, weights_only=False)
    check_resume_recipe(ckpt, state.get("config"), cfg)
    if "trained" in state:
        mine = _trained_by_name(model, params)
        if set(mine) != set(state["trained"]):
            raise RecipeMismatchError(
                f"checkpoint {ckpt} holds other parameters than this training's ({sorted(set(state['trained']) ^ set(mine))[:4]}"
                " differ): delete it to start again"
            )
        with torch.no_grad():
            for n, p in mine.items():
                p.copy_(state["trained"][n])
    else:  # a checkpoint from before: the whole model
        model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return state["step"], state["metrics"], state["step"]


def _save_checkpoint(
    path: Path, model: nn.Module, params: Sequence[nn.Parameter], opt: torch.optim.Optimizer, step: int,
    metrics: list[dict], cfg: TrainConfig,
) -> None:  # fmt: skip
    state = {
        "trained": {n: p.detach().clone() for n, p in _trained_by_name(model, params).items()},
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


def check_batching(cfg: TrainConfig, device: str, world: int) -> None:
    """Refuse a batch that does not split evenly over the ranks, or (on CPU) an odd pass."""
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must divide evenly over {world} processes")
    share, chunk = cfg.batch_size // world, cfg.micro_batch or cfg.batch_size // world
    if not device.startswith("cuda") and (share % 2 or chunk % 2 or (share % chunk) % 2):
        raise ValueError(
            f"batch of {share} per process in passes of {chunk}: on CPU every pass needs an even number of examples, "
            "because torch's CPU backward of a strided 1x1 convolution in channels_last (BiT's projection shortcut) "
            "crashes the process for odd batches (seen with torch 2.14.1). Use an even batch_size per process and an "
            "even micro_batch"
        )


def mixup(x: Tensor, y: Tensor, cfg: TrainConfig, step: int, gen: torch.Generator, num_classes: int,
           lm: Tensor | None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Mixup of one batch (a Beta(alpha, alpha) weight fixed by seed and step; under DDP, pairs are formed
    within each process's share); soft targets come back."""
    lam = float(
        np.random.default_rng(mix_seed(cfg.seed, "mixup", step)).beta(cfg.mixup_alpha, cfg.mixup_alpha)
    )
    perm = to_device(torch.randperm(len(y), generator=gen), x.device)
    t = _targets(y, num_classes, cfg.loss, lm)
    return lam * x + (1 - lam) * x[perm], lam * t + (1 - lam) * t[perm]


def accumulate(chunk_loss: Callable[[slice], Tensor], n: int, micro_batch: int, device: torch.device | str,
                no_sync: Callable[[], AbstractContextManager] | None = None) -> Tensor:  # fmt: skip
    """Forward and backward of one batch of ``n`` examples in passes of ``micro_batch`` (exact gradient
    accumulation: GroupNorm has no batch statistics; under DDP, ``no_sync`` holds the all-reduce back until the
    last pass); the batch's loss. ``chunk_loss(part)`` is the mean loss of examples ``part``: a scalar, or one
    loss per model for a stacked batch (:mod:`expertlib.train.stacked`), back-propagated as their sum."""
    chunk = micro_batch or n
    loss = torch.zeros((), device=device)
    for a in range(0, n, chunk):
        last = a + chunk >= n
        with nullcontext() if (last or no_sync is None) else no_sync():
            part = chunk_loss(slice(a, a + chunk)) * (min(chunk, n - a) / n)
            part.backward(torch.ones_like(part))
        loss = loss + part.detach()
    return loss


class LossLog:
    """Each step's loss kept on the device, read by the host in one transfer every few steps (:meth:`read`): a
    step never waits for the GPU. A non-finite loss stops every rank together at the next read, naming the first
    step whose loss it was: at most ``log_every`` steps later, and before any checkpoint is written after it."""

    def __init__(self, world: int, desc: str) -> None:
        self.world, self.desc = world, desc
        self.pending: list[tuple[int, float, Tensor]] = []  # (step, lr, loss on the device)

    def add(self, step: int, lr: float, loss: Tensor) -> None:
        self.pending.append((step, lr, loss.detach().reshape(1)))

    def read(self, ckpt: Path | None = None, params: Sequence[Tensor] = ()) -> list[tuple[int, float, float]]:
        """(step, lr, loss) of every step since the last read: one host read. Under DDP the ranks agree first
        (one all-reduce of a flag) whether any loss was non-finite anywhere, so all of them stop together instead
        of one raising while the others wait at the next all-reduce; non-finite ``params`` (the weights a
        checkpoint would save) stop it the same way."""
        if not self.pending:
            return []
        losses = torch.cat([t for _, _, t in self.pending])
        broken = (~torch.isfinite(losses)).any()
        if params:
            broken = broken | ~torch.stack([torch.isfinite(p).all() for p in params]).all()
        flag = broken.to(losses.dtype).reshape(1)
        if self.world > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        *values, bad = torch.cat([losses, flag]).tolist()
        rows = [(step, lr, v) for (step, lr, _), v in zip(self.pending, values, strict=True)]
        self.pending = []
        if bad:
            self._stop(rows, ckpt)
        return rows

    def _stop(self, rows: list[tuple[int, float, float]], ckpt: Path | None) -> None:
        # no non-finite loss here: another rank's was, or the weights blew up after the last loss was taken
        step, lr, value = next(((s, r, v) for s, r, v in rows if not np.isfinite(v)), (*rows[-1][:2], float("nan")))  # fmt: skip
        raise non_finite(self.desc, step, lr, value, ckpt, self.world)


def non_finite(desc: str, step: int, lr: float, value: float, ckpt: Path | None = None,
               world: int = 1) -> NonFiniteLossError:  # fmt: skip
    """The error a non-finite loss stops a training with, naming the step, its learning rate and what is kept
    (under DDP ``value`` is this rank's loss, which may be finite when another rank's was not)."""
    kept = (
        f"the last good checkpoint {ckpt} is kept"
        if ckpt is not None and ckpt.is_file()
        else "no checkpoint was written"
    )
    where = "" if world == 1 else f" on at least one of {world} processes (this one's: {value})"
    return NonFiniteLossError(
        f"{desc}: loss became {'non-finite' if where else value}{where} at step {step} (lr {lr:.3g}); "
        f"{kept}. Lower the learning rate or check the inputs for NaNs"
    )


def _read_due(cfg: TrainConfig, done: int, end: int) -> bool:
    """Whether the losses are read after ``done`` steps: every ``log_every`` and ``checkpoint_every`` steps and
    at the end, the same steps on every rank (a read is collective under DDP)."""
    return (
        done % cfg.log_every == 0
        or bool(cfg.checkpoint_every and done % cfg.checkpoint_every == 0)
        or done == end
    )


def _checkpoint_due(cfg: TrainConfig, done: int, last_save: float) -> bool:
    """Every ``checkpoint_every`` steps, every ``checkpoint_minutes`` (at the first read after they have passed),
    and at the end."""
    due = (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.steps
    return bool(
        due or (cfg.checkpoint_minutes and time.monotonic() - last_save >= 60 * cfg.checkpoint_minutes)
    )


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
    """Train ``params`` of ``model`` (``forward(x) -> logits``) in place on ``data`` with SGD + momentum.

    ``model`` ends on ``cfg.device`` in channels_last memory format (faster for training and for every later
    pass, so it is not moved back), in the train/eval mode it came in. ``checkpoint``: resume from this file
    when it exists (:func:`_resume`), and write it atomically when due (:func:`_checkpoint_due`).
    ``stop_after``: stop (as if killed) after that many steps, for tests. Under torchrun each rank must call
    this with the same arguments.

    No step waits for the device: the losses stay there (:class:`LossLog`) and are read in one transfer every
    ``log_every`` steps, at every checkpoint and at the end; a non-finite loss stops the run at the next read, before
    any checkpoint after it is written. Compiled (``cfg.compile``), the network's backbone runs as one graph per
    resolution and mode and its head eager (:func:`~expertlib.train.evaluation.network`).
    """
    device = resolve_device(cfg.device)
    rank, world = rank_and_world() if cfg.data_parallel else (0, 1)
    check_batching(cfg, device, world)
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter in params requires grad")
    was_training = model.training
    model.to(device=device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        params, lr=cfg.schedule.base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    ckpt = Path(checkpoint) if checkpoint is not None else None
    start, metrics, resumed = _resume(ckpt, model, params, opt, cfg, device)
    lm = label_matrix.to(device) if label_matrix is not None else None
    run_model: nn.Module = network(model, cfg.compile, device)  # compiled where it pays, its head eager
    if world > 1:
        whole = run_model is not model and not isinstance(run_model, HeadAfterBackbone)
        run_model = nn.parallel.DistributedDataParallel(model if whole else run_model)
        if whole:  # a network without timm's contract compiles whole, DDP included
            run_model = compiled(run_model, True)
    on_gpu = device.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (on_gpu and cfg.amp) else nullcontext()
    model.train()
    t0, seen, loss_val = time.perf_counter(), 0, float("nan")
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    bar = tqdm(desc=desc, disable=not progress or rank != 0, leave=False, initial=start, total=cfg.steps)
    last_save = time.monotonic()
    staged = staged_on(data, device)
    workers = 0 if isinstance(data, DeviceData) else cfg.workers  # held on the device: built in this process
    feed = batches(StepBatches(data, cfg.batch_size, cfg.seed, start, end, rank, world, staged), workers,
                   on_gpu and workers > 0 and not staged, cfg.prefetch)  # fmt: skip
    if staged:  # decoded on the device one batch ahead of the step
        feed = finished_ahead(feed, lambda item: (item[0], data.finish(item[1], device), *item[2:]), device)
    first_step, timeline, log = 0.0, [], LossLog(world, desc)
    for step, x, y, gen_state in feed:
        t_step = time.perf_counter()
        lr = learning_rate(cfg.schedule, step)
        for group in opt.param_groups:
            group["lr"] = lr
        gen = torch.Generator()
        gen.set_state(gen_state)
        x, y = ready(data, x, device), y.to(device, non_blocking=True)
        if cfg.mixup_alpha > 0:
            x, y = mixup(x, y, cfg, step, gen, num_classes, lm)
        opt.zero_grad(set_to_none=True)

        def chunk_loss(part: slice, x: Tensor = x, y: Tensor = y) -> Tensor:
            with autocast:
                logits = run_model(x[part])
            return batch_loss(logits, y[part], cfg.loss, lm)

        loss = accumulate(
            chunk_loss, len(x), cfg.micro_batch, x.device, run_model.no_sync if world > 1 else None
        )
        log.add(step, lr, loss)  # kept on the device: no step waits for the GPU but those that read
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        seen += cfg.batch_size
        done = step + 1
        if step == start:  # the first step's time is its own: compilation, autotuning
            synchronize(device)
            first_step = time.perf_counter() - t_step
            timeline.append((1, time.perf_counter() - t0))
        bar.update(1)
        if not _read_due(cfg, done, end):
            continue
        # raises on a non-finite loss or weights (every rank together), before any checkpoint after them
        for s, r, value in log.read(ckpt, params if ckpt is not None else ()):
            loss_val = value
            if (s + 1) % cfg.log_every == 0 or s + 1 == cfg.steps:
                metrics.append({"step": s + 1, "loss": value, "lr": r})
        timeline.append((done - start, time.perf_counter() - t0))
        bar.set_postfix(loss=f"{loss_val:.3f}")
        if ckpt is not None and rank == 0 and _checkpoint_due(cfg, done, last_save):
            _save_checkpoint(ckpt, model, params, opt, done, metrics, cfg)
            last_save = time.monotonic()
    bar.close()
    seconds = time.perf_counter() - t0
    if metrics_csv is not None and rank == 0:
        _write_metrics(Path(metrics_csv), metrics)
    model.train(was_training)
    done = end - start
    warmup = max(0.0, first_step - (seconds - first_step) / (done - 1)) if done > 1 else 0.0
    return TrainResult(end, seconds, loss_val, seen / max(seconds, 1e-9), metrics, resumed, warmup, timeline)


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
    candidate = Candidate(expert, bank, expert)
    try:
        return train(
            candidate.training_module(),
            candidate.parameters_to_train(),
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
    """Transfer: every parameter of ``model`` (a fresh zero-initialised head on B or an expert) trains. On a
    GPU the task's images are decoded once onto it and augmented there
    (:func:`~expertlib.datasets.device.on_device`); on a CPU the batches are built as for any training."""
    model.requires_grad_(True)
    data = on_device(train_data, resolve_device(cfg.device))
    return train(model, list(model.parameters()), data, cfg, num_classes=num_classes, **kwargs)
