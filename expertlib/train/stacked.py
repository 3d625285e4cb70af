"""Many models of one structure trained together as one stacked model: one pass per step for K trainings.

At the embedded benchmark's size (a 44k-parameter network, batch 32, 32 px) a GPU is bound by kernel launches,
not arithmetic: one step of one model costs about what one step of many does. Here K models (the fine-tunes
of one task: its candidates and seeds) train as one: their parameters (and buffers) are stacked along a new
first dimension and one module, called through ``torch.func.functional_call`` under ``torch.func.vmap``, runs
all K per step (torch turns each convolution into one grouped convolution over the K models).

Each model keeps everything that makes its result its own: its seed and so its data order and augmentation
(its own :class:`~expertlib.train.batching.StepBatches` stream), its mixup draws, its head, its learning-rate
schedule (base lr and shape), its loss, metrics and :class:`~expertlib.train.training.TrainResult`. The step's
loss is the sum of the models' mean losses, so each model's gradient is its own loss's; SGD with momentum (and
weight decay) acts element by element, so the stacked update is each model's own. On CPU in float64 the
result equals K separate :func:`~expertlib.train.training.train` runs to rounding (tests/test_stacked.py, <=
1e-10); in float32 grouped and dense convolutions sum in different orders, so the runs agree statistically,
not to the bit: the cpu scale keeps its pool of separate runs (:mod:`expertlib.utils.parallel`) and its
committed bytes.

What may differ within one stack, and what may not, is :func:`stack_key`: models whose keys are equal stack.
Speed: ``benchmarks/bench_many_models.py`` (``results/benchmarks/many_models.csv``).

A step does no host work and waits for nothing: every step's K losses stay on the device and are read once every
``log_every`` steps. Over a task held on the device (a GPU's fine-tunes,
:class:`~expertlib.datasets.device.DeviceData`), every model's draws for the whole stack are made when it starts
and copied once, each step's K batches are built there with one gather and one crop
(:class:`~expertlib.train.stacked_batches.HeldDraws`), and on CUDA the step, after two warm-up steps, is
captured once as a CUDA graph and replayed (:class:`~expertlib.utils.runtime.GraphedSteps`;
:data:`CUDA_GRAPHS`), so a K=64 step is one launch, not the ~1,200 dispatches vmap makes. On a CPU the same
step runs eager, to the same bits as the ordinary path (tests/test_stacked.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.utils.data import Dataset
from tqdm import tqdm

from expertlib.datasets.batches import TrainData
from expertlib.datasets.device import DeviceData, on_device
from expertlib.train.batching import StepBatches, batches
from expertlib.train.evaluation import predict
from expertlib.train.schedules import learning_rate
from expertlib.train.stacked_batches import HeldDraws
from expertlib.train.training import (
    TrainConfig,
    TrainResult,
    accumulate,
    batch_loss,
    check_batching,
    mixup,
    non_finite,
)
from expertlib.utils.distributed import rank_and_world
from expertlib.utils.runtime import GraphedSteps, resolve_device, to_device

__all__ = [
    "StackError",
    "StackedSteps",
    "structure",
    "stack_key",
    "train_stacked",
    "finetune_stacked",
    "predicted_classes_stacked",
]


class StackError(ValueError):
    """Models, recipes or data that cannot train as one stack."""


# -- what may stack ------------------------------------------------------------------------------------------
# recipe fields every model of a stack shares (the steps too); the schedule's shape and base lr, the seed and the
# mixup weight are each model's own, and runtime settings (workers, prefetch) are taken from the first model's
SHARED_FIELDS = (
    "batch_size",
    "loss",
    "momentum",
    "weight_decay",
    "micro_batch",
    "device",
    "amp",
    "grad_clip",
)


def _plain_attrs(module: nn.Module) -> tuple:
    """A module's plain settings (strides, eps, placement, ...): what its forward reads besides tensors."""
    plain = (bool, int, float, str, tuple)
    return tuple(sorted((k, v) for k, v in vars(module).items()
                        if not k.startswith("_") and k != "training" and isinstance(v, plain)))  # fmt: skip


def structure(model: nn.Module) -> tuple:
    """Everything the stacked forward takes from the first model on trust that the others share: each
    submodule's class and plain settings, each parameter's and buffer's name, shape and dtype."""
    mods = tuple((n, type(m).__qualname__, _plain_attrs(m)) for n, m in model.named_modules())
    tensors = tuple((n, tuple(t.shape), str(t.dtype), isinstance(t, nn.Parameter))
                    for n, t in [*model.named_parameters(), *model.named_buffers()])  # fmt: skip
    return mods, tensors


def _recipe_key(cfg: TrainConfig) -> tuple:
    return (cfg.steps, *(getattr(cfg, f) for f in SHARED_FIELDS), cfg.mixup_alpha > 0)


def stack_key(model: nn.Module, cfg: TrainConfig, data: TrainData) -> tuple:
    """Jobs whose keys are equal can train in one stack: the same structure (:func:`structure`), the same
    steps, batch size, loss, momentum, weight decay, micro-batch, device, precision and clipping
    (:data:`SHARED_FIELDS`), mixup on or off for all, and the same crop. Their seeds, learning rates, schedule
    shapes, heads' weights and data (another split or task at the same crop) may differ."""
    return structure(model), _recipe_key(cfg), getattr(data, "crop", None)


def _refuse_unstackable(models: Sequence[nn.Module], cfgs: Sequence[TrainConfig], datas: Sequence[TrainData]
                        ) -> None:  # fmt: skip
    """Name the first model that differs from model 0 in what a stack must share, and the fix."""
    if cfgs[0].compile is True:  # "auto" runs the stack eager: stacking is this path's way of saving launches
        raise StackError("compile=True: the stacked path does not torch.compile (stacking already removes the "
                         "per-model launch cost compile would save); train the stack with compile=False or 'auto'")  # fmt: skip
    if cfgs[0].grad_clip is not None:
        raise StackError(f"grad_clip={cfgs[0].grad_clip}: clipping by the norm over all parameters would mix the "
                         "stacked models; train these models one at a time (expertlib.train.training.train)")  # fmt: skip
    first = structure(models[0])
    for i in range(1, len(models)):
        if structure(models[i]) != first:
            mine = structure(models[i])
            diff = next((f"{a} vs {b}" for part in (0, 1) for a, b in zip(first[part], mine[part], strict=False)
                         if a != b), "a different number of modules or tensors")  # fmt: skip
            raise StackError(f"model {i} has another structure than model 0 (first difference: {diff}); only "
                             "models of the same parameter structure stack: group jobs by stacked.stack_key")  # fmt: skip
        if cfgs[i].steps != cfgs[0].steps:
            raise StackError(f"model {i} trains {cfgs[i].steps} steps, model 0 {cfgs[0].steps}: steps must be equal "
                             "within one stack; group jobs by stacked.stack_key")  # fmt: skip
        for f in SHARED_FIELDS:
            if getattr(cfgs[i], f) != getattr(cfgs[0], f):
                raise StackError(f"model {i}'s {f} {getattr(cfgs[i], f)!r} differs from model 0's "
                                 f"{getattr(cfgs[0], f)!r}: {', '.join(SHARED_FIELDS)} and the steps must be "
                                 "equal within one stack; group jobs by stacked.stack_key")  # fmt: skip
        if (cfgs[i].mixup_alpha > 0) != (cfgs[0].mixup_alpha > 0):
            raise StackError(f"model {i} uses mixup and model 0 does not, or the reverse: mixup is on for all "
                             "models of a stack or for none")  # fmt: skip
        if getattr(datas[i], "crop", None) != getattr(datas[0], "crop", None):
            raise StackError(f"model {i}'s data is cropped to {getattr(datas[i], 'crop', None)} px, model 0's to "
                             f"{getattr(datas[0], 'crop', None)}: a stack trains at one resolution")  # fmt: skip


CUDA_GRAPHS = True
"""Whether a stack over a task held on a GPU replays its step as one CUDA graph (False: every step eager)."""


# -- stacked state ---------------------------------------------------------------------------------------------
def _stack(models: Sequence[nn.Module], trained: set[str]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The models' parameters (leaves, trained ones requiring grad) and buffers, each stacked on a new dim 0."""
    own = [dict(m.named_parameters()) for m in models]
    params = {n: torch.stack([o[n].detach() for o in own]).requires_grad_(n in trained) for n in own[0]}
    bufs = [dict(m.named_buffers()) for m in models]
    return params, {n: torch.stack([b[n] for b in bufs]) for n in bufs[0]}


def _stacked_forward(template: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], x: Tensor,
                     x_dim: int | None) -> Tensor:  # fmt: skip
    """Logits ``(K, n, classes)`` of the K stacked models; ``x`` holds each model's examples along ``x_dim``
    (1: ``(n, K, ...)``, which keeps each grouped convolution's input a view), or one batch for all (None)."""

    def one(p: dict, b: dict, xb: Tensor) -> Tensor:
        return functional_call(template, (p, b), (xb,))

    return vmap(one, in_dims=(0, 0, x_dim))(params, buffers, x)


def _sgd_step(params: list[Tensor], bufs: list[Tensor] | None, lrs: Tensor, momentum: float,
              weight_decay: float) -> list[Tensor]:  # fmt: skip
    """torch.optim.SGD's update (dampening 0, no Nesterov) with one learning rate per stacked model (``lrs``,
    shape ``(K,)``): every operation is element by element, so each model's slice moves as its own SGD would.
    Returns the momentum buffers (created from the first step's gradients, as torch does)."""
    with torch.no_grad():
        grads = [p.grad for p in params]
        if weight_decay:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
        if momentum:
            if bufs is None:
                bufs = [g.detach().clone() for g in grads]
            else:
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, grads)
            grads = bufs
        scale = [lrs.view(-1, *([1] * (p.ndim - 1))) for p in params]
        torch._foreach_addcmul_(params, grads, scale, value=-1.0)
    return bufs


class StackedSteps(Dataset):
    """Step ``i`` of every model's own :class:`~expertlib.train.batching.StepBatches` stream, stacked: (step,
    images ``(batch, K, ...)``, labels ``(K, batch)``, each model's generator state after its draws)."""

    def __init__(self, streams: Sequence[StepBatches]) -> None:
        self.streams = list(streams)

    def __len__(self) -> int:
        return len(self.streams[0])

    def __getitem__(self, i: int) -> tuple[int, Tensor, Tensor, list[Tensor]]:
        items = [s[i] for s in self.streams]
        return (items[0][0], torch.stack([it[1] for it in items], dim=1), torch.stack([it[2] for it in items]),
                [it[3] for it in items])  # fmt: skip


# -- training ------------------------------------------------------------------------------------------------
def _trained_names(models: Sequence[nn.Module], params: Sequence[Sequence[nn.Parameter]]) -> set[str]:
    """The names of the parameters each model trains (those of its ``params`` that require grad): the same in
    every model of a stack."""
    names = []
    for i, (m, ps) in enumerate(zip(models, params, strict=True)):
        wanted = {id(p) for p in ps if p.requires_grad}
        names.append({n for n, p in m.named_parameters() if id(p) in wanted})
        if not names[i]:
            raise StackError(f"nothing to train in model {i}: no parameter in its params requires grad")
        if names[i] != names[0]:
            raise StackError(f"model {i} trains other parameters than model 0 ({sorted(names[i] ^ names[0])[:4]} "
                             "differ): a stack trains the same ones in each")  # fmt: skip
    return names[0]


def train_stacked(
    models: Sequence[nn.Module],
    params: Sequence[Sequence[nn.Parameter]],
    data: TrainData | Sequence[TrainData],
    cfgs: Sequence[TrainConfig],
    num_classes: int,
    label_matrix: Tensor | None = None,
    progress: bool = True,
    desc: str = "train (stacked)",
) -> list[TrainResult]:
    """Train ``params[i]`` of ``models[i]`` on ``data`` (one for all, or one per model) under ``cfgs[i]``, all K
    in one stacked pass per step, as K calls of :func:`expertlib.train.training.train` would (without
    checkpoints: a stack is a short job; the pipeline's job files resume between jobs).

    Every model ends on the device in channels_last with its trained weights written back in place, in the
    train/eval mode it came in, so the usual evaluation
    (:func:`~expertlib.train.evaluation.predicted_classes`, or :func:`predicted_classes_stacked` for all at
    once) applies. Returns one :class:`~expertlib.train.training.TrainResult` per model; its ``seconds`` is
    the stack's wall time divided by K (each model's share), its ``images_per_second`` that model's images
    over its share. Refuses (:class:`StackError`) models that do not share :func:`stack_key`."""
    models, cfgs, params = list(models), list(cfgs), [list(p) for p in params]
    k = len(models)
    if k == 0:
        raise StackError("no models to train")
    if len(cfgs) != k or len(params) != k:
        raise StackError(
            f"{k} model(s) need as many configs and parameter lists; got {len(cfgs)} configs and "
            f"{len(params)} parameter lists"
        )
    datas = list(data) if isinstance(data, (list, tuple)) else [data] * k
    if len(datas) != k:
        raise StackError(f"{k} models need one data set for all or one each; got {len(datas)}")
    _refuse_unstackable(models, cfgs, datas)
    cfg = cfgs[0]
    device = resolve_device(cfg.device)
    if cfg.data_parallel and rank_and_world()[1] > 1:
        raise StackError("under torchrun a stack trains in one process: use data_parallel=False (as "
                         "expertlib.pipeline.recipes.transfer_config does) and share the job list instead")  # fmt: skip
    check_batching(cfg, device, 1)
    trained = _trained_names(models, params)
    was_training = [m.training for m in models]
    for m in models:
        m.to(device=device, memory_format=torch.channels_last)
    stacked, buffers = _stack(models, trained)
    leaves = [p for p in stacked.values() if p.requires_grad]
    template = models[0]
    template.train()
    lm = label_matrix.to(device) if label_matrix is not None else None
    on_gpu = device.startswith("cuda")
    # bf16 on a GPU, without autocast's weight cache: a CUDA graph must not keep casts made while it was captured
    bf16 = on_gpu and cfg.amp
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False) if bf16 else nullcontext()
    loss_of = vmap(partial(batch_loss, kind=cfg.loss, label_matrix=lm))
    dtype = leaves[0].dtype
    lr_table = to_device(torch.tensor([[learning_rate(c.schedule, s) for c in cfgs] for s in range(cfg.steps)],
                                      dtype=dtype), device)  # fmt: skip
    # each step's K losses (in float64 for float64 models: the exactness tests read them)
    history = torch.zeros((cfg.steps, k), dtype=torch.promote_types(torch.float32, dtype), device=device)
    held = datas[0] if isinstance(datas[0], DeviceData) and all(d is datas[0] for d in datas) else None
    state: dict = {"bufs": None}

    def update(step: Tensor | int, x: Tensor, y: Tensor) -> None:
        """One stacked step on batch ``x`` (``(batch, K, ...)``), labels ``y`` (``(K, batch[, classes])``): forward and
        backward of all K, their losses into ``history``, each model's SGD update at its own learning rate."""

        def chunk_loss(part: slice) -> Tensor:
            with autocast:
                logits = _stacked_forward(template, stacked, buffers, x[part], 1)
            return loss_of(logits, y[:, part])

        loss = accumulate(chunk_loss, x.shape[0], cfg.micro_batch, device)
        if isinstance(step, Tensor):  # a counter on the device (the held path, replayable as a CUDA graph)
            history.index_copy_(0, step, loss.detach().to(history.dtype).view(1, k))
            lrs = lr_table.index_select(0, step).view(k)
        else:
            history[step].copy_(loss.detach())
            lrs = lr_table[step]
        state["bufs"] = _sgd_step(leaves, state["bufs"], lrs, cfg.momentum, cfg.weight_decay)

    if held is not None:  # every step's batches built on the device from draws copied once
        draws = HeldDraws(held, cfgs, cfg.steps, cfg.batch_size, num_classes, cfg.loss, lm, dtype)
        counter = torch.zeros(1, dtype=torch.long, device=device)

        def held_step() -> None:
            update(counter, *draws.batch(counter))
            counter.add_(1)

        steps = GraphedSteps(held_step, leaves, device, enabled=on_gpu and CUDA_GRAPHS)
        feed: Iterable = range(cfg.steps)
    else:
        streams = [
            StepBatches(d, cfg.batch_size, c.seed, 0, cfg.steps) for d, c in zip(datas, cfgs, strict=True)
        ]
        # data held on the device is batched in this process, as train() does (a worker cannot touch it)
        on_dev = any(isinstance(d, DeviceData) for d in datas)
        feed = batches(
            StackedSteps(streams), 0 if on_dev else cfg.workers, on_gpu and not on_dev, cfg.prefetch
        )
    every = min(c.log_every for c in cfgs)
    metrics: list[list[dict]] = [[] for _ in range(k)]
    losses, read, timeline = [float("nan")] * k, 0, []
    bar = tqdm(desc=desc, disable=not progress, leave=False, total=cfg.steps)
    t0 = time.perf_counter()
    try:
        for item in feed:
            if held is not None:
                step = item
                steps.run()
            else:
                step, x, y, gen_states = item
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if cfg.mixup_alpha > 0:
                    mixed = []  # each model's own mixup: its weight and pairs from its seed and generator
                    for i, c in enumerate(cfgs):
                        gen = torch.Generator()
                        gen.set_state(gen_states[i])
                        mixed.append(mixup(x[:, i], y[i], c, step, gen, num_classes, lm))
                    x, y = torch.stack([a for a, _ in mixed], dim=1), torch.stack([b for _, b in mixed])
                for p in leaves:
                    p.grad = None
                update(step, x, y)
            bar.update(1)
            done = step + 1
            if done % every and done != cfg.steps:
                continue  # nothing read: the step never waits for the device
            values = history[read:done].tolist()  # one read for every model and step since the last
            for s, row in enumerate(values, start=read):
                for i, (c, v) in enumerate(zip(cfgs, row, strict=True)):
                    if not np.isfinite(v):
                        raise non_finite(f"{desc}, model {i}", s, learning_rate(c.schedule, s), v)
                    if (s + 1) % c.log_every == 0 or s + 1 == cfg.steps:
                        metrics[i].append({"step": s + 1, "loss": v, "lr": learning_rate(c.schedule, s)})
                losses = row
            read = done
            timeline.append((done, time.perf_counter() - t0))
    finally:
        bar.close()
        for m, mode in zip(models, was_training, strict=True):
            m.train(mode)
        for p in leaves:
            p.grad = None
        if held is not None:
            steps.close()
    share = (time.perf_counter() - t0) / k
    with torch.no_grad():  # the trained weights back into each model, so every evaluation applies as it is
        for i, m in enumerate(models):
            for n, p in m.named_parameters():
                if n in trained:
                    p.copy_(stacked[n][i])
    seen = cfg.batch_size * cfg.steps
    return [TrainResult(cfg.steps, share, losses[i], seen / max(share, 1e-9), metrics[i], timeline=timeline)
            for i in range(k)]  # fmt: skip


def finetune_stacked(models: Sequence[nn.Module], train_data: TrainData | Sequence[TrainData],
                     cfgs: Sequence[TrainConfig], num_classes: int, **kwargs) -> list[TrainResult]:  # fmt: skip
    """Transfer of K models at once: every parameter of each (a fresh zero head on B or an expert) trains, as
    :func:`expertlib.train.training.finetune` does for one; on a GPU the task's images are held there once for
    all K (:func:`~expertlib.datasets.device.on_device`), as ``finetune`` holds them for one."""
    for m in models:
        m.requires_grad_(True)
    device = resolve_device(cfgs[0].device)
    data = (
        [on_device(d, device) for d in train_data]
        if isinstance(train_data, (list, tuple))
        else on_device(train_data, device)
    )  # one set for all K (held once), or one per model, as train_stacked takes them
    return train_stacked(models, [list(m.parameters()) for m in models], data, cfgs, num_classes, **kwargs)


# -- evaluation ------------------------------------------------------------------------------------------------
def predicted_classes_stacked(models: Sequence[nn.Module], data: TrainData, batch_size: int = 512,
                              device: str = "cpu") -> np.ndarray:  # fmt: skip
    """The class each of ``models`` (same structure; put in eval mode) predicts for every example of ``data``,
    from one stacked pass over it: ``(K, len(data))``, row ``i`` what
    :func:`~expertlib.train.evaluation.predicted_classes` gives for ``models[i]``."""
    models = list(models)
    if not models:
        raise StackError("no models to evaluate")
    first = structure(models[0])
    for i, m in enumerate(models):
        if structure(m) != first:
            raise StackError(f"model {i} has another structure than model 0: only models of one structure "
                             "evaluate in one stacked pass")  # fmt: skip
    for m in models:
        m.to(device).eval()
    params, buffers = _stack(models, set())

    def all_logits(x: Tensor) -> dict[str, Tensor]:
        logits = _stacked_forward(models[0], params, buffers, x, None)
        return {str(i): logits[i] for i in range(len(models))}

    out = predict(all_logits, data, batch_size, device)
    return np.stack([out[str(i)].argmax(-1).numpy() for i in range(len(models))])
