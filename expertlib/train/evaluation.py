"""The one evaluation loop: a function (a model, a model's method, or many candidates' features at once) over
every example in large batches, compiled where it pays with fixed shapes, and the predicted classes and
accuracy built on it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm  # plain bars: tqdm.auto warns in kernels without ipywidgets, in racy output order

from expertlib.datasets.batches import TrainData, ready
from expertlib.datasets.device import DeviceData
from expertlib.models.candidates import Candidate
from expertlib.models.resnet import Pooled, ResNetV2, config_name, reuse_standardized_weights
from expertlib.train.batching import EvalBatches, batches, finished_ahead, staged_on
from expertlib.utils.runtime import Compile, compiled, resolve_compile

# -- what compiles -------------------------------------------------------------------------------------------
COMPILE_PAYS = ("R50x1",)
"""Architectures that "auto" compiles on CUDA: those where compiling was measured to pay. R50x1 on one H200
(../shared/reference.md, 224 px, images/s): training 2,186 eager fp32 -> 3,455 compiled, 2,180 eager bf16 -> 4,638
compiled; inference 5,801 eager bf16 -> 13,520 compiled (timm's twin). The small 32-px configs (``tiny``, the
``gpu`` scale's) are not measured: their fine-tunes train stacked (:mod:`expertlib.train.stacked`, one CUDA
graph per stack), and each compile would cost tens of seconds per graph against that scale's 10-minute goal,
so they stay eager. Add an architecture here once ``make gpu-check`` has measured it."""


def compiles_once(fn: Callable) -> bool:
    """Whether "auto" may compile ``fn``: a network (a module) compiles to one graph per resolution that every model
    of its architecture reuses. Not a plain function over several networks (compiled, it would unroll them all
    into one graph), and not an adapter expert (:class:`~expertlib.models.candidates.Candidate` of kind
    "adapter"), whose forward looks its expert up by name: a graph per expert. ``compile=True`` compiles
    either."""
    if not isinstance(fn, nn.Module):
        return False
    return not any(isinstance(m, Candidate) and m.kind == "adapter" for m in fn.modules())


def compile_pays(fn: Callable) -> bool:
    """Whether ``fn``'s network is an architecture of :data:`COMPILE_PAYS`."""
    nets = [m for m in fn.modules() if isinstance(m, ResNetV2)] if isinstance(fn, nn.Module) else []
    return bool(nets) and all(config_name(m.cfg) in COMPILE_PAYS for m in nets)


def compile_here(fn: Callable, compile: Compile, device: str) -> bool:
    """Whether ``fn`` runs compiled: ``compile=True`` always (on any device); "auto" on CUDA for a network that
    :func:`compiles_once` and whose architecture :func:`compile_pays`."""
    return resolve_compile(compile, device) and (compile is True or (compiles_once(fn) and compile_pays(fn)))


class HeadAfterBackbone(nn.Module):
    """``net``'s logits from its backbone and pooling compiled (``backbone``) and its head run eager: the graph
    never sees the head, so one graph per architecture, resolution and mode serves every task, whatever its
    number of classes (a compiled head would be a graph per class count, and after dynamo's recompile limit,
    eager training)."""

    def __init__(self, net: nn.Module, backbone: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.net = net
        self.__dict__["backbone"] = backbone  # not a submodule: its parameters are net's

    def forward(self, x: Tensor) -> Tensor:
        return self.net.forward_head(self.backbone(x))


def network(fn: Callable, compile: Compile, device: str) -> Callable:
    """``fn`` as it runs: itself (eager), or compiled (:func:`compile_here`). One of our networks (a
    :class:`~expertlib.models.resnet.ResNetV2` inside, timm's contract outside: ``forward_features``, and a
    ``forward_head`` that takes pooled features) compiles its pooled features alone (:class:`HeadAfterBackbone`);
    anything else (a timm model, whose head takes the feature map) compiles whole."""
    if not compile_here(fn, compile, device):
        return fn
    ours = isinstance(fn, nn.Module) and any(isinstance(m, ResNetV2) for m in fn.modules())
    if ours and hasattr(fn, "forward_features") and hasattr(fn, "forward_head"):
        return HeadAfterBackbone(fn, compiled(Pooled(fn), True))
    return compiled(fn, True)


# -- evaluation ------------------------------------------------------------------------------------------------
def owner_module(fn: Callable) -> nn.Module | None:
    """The module ``fn`` is (a model) or belongs to (a model's method such as ``features``), else None."""
    owner = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def pad_batch(x: Tensor, size: int) -> Tensor:
    """``x`` with zero examples appended up to ``size`` (channels_last kept): an evaluation's last batch in the
    shape of the others, so compiled code runs it on the same graph."""
    if len(x) >= size:
        return x
    pad = x.new_zeros((size - len(x), *x.shape[1:]))
    out = torch.cat([x, pad])
    return out.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else out


@torch.inference_mode()
def predict(
    fn: Callable[[Tensor], Tensor | Mapping[str, Tensor]],
    data: TrainData,
    batch_size: int = 512,
    device: str = "cpu",
    progress: bool = False,
    workers: int = 0,
    modules: Iterable[nn.Module] = (),
    compile: Compile = "auto",
    fixed_shape: bool | None = None,
    desc: str = "eval",
    amp: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> Tensor | dict[str, Tensor]:
    """Apply ``fn`` to every example, in order, in large evaluation batches: the one evaluation loop (its
    progress bar, with ``progress``, labelled ``desc``: say which model it runs).

    ``fn`` returns a tensor (logits, features) or a dict of them (many candidates' features from one pass
    over the data); the result is concatenated the same way, in float32 on the CPU. ``fn`` (a module, or a
    module's method) and ``modules`` (the modules a plain function uses) are moved to ``device`` first: a model
    loaded from the cache sits on the CPU. ``compile`` (:func:`network`; "auto": on CUDA, where it pays) runs
    ``fn`` compiled; ``fixed_shape`` (default: when compiled; a caller whose ``fn`` compiles its own parts says
    so) pads the last batch to ``batch_size`` and trims the results, so every batch, every evaluation set and
    every job at one resolution runs one graph. Eager evaluation standardises each weight once
    (:func:`~expertlib.models.resnet.reuse_standardized_weights`); compiled code standardises inside its
    graph.

    On CUDA the outputs stay on the device until the pass is done (one transfer, no host sync per batch) and
    ``amp`` runs ``fn`` under bf16 autocast; on a CPU it runs in float32, exactly as before. ``on_batch(i)`` is
    called after batch ``i`` is queued (the benchmarks' clock)."""
    for m in [owner_module(fn), *modules]:
        if m is not None:
            m.to(device)
    use = compile_here(fn, compile, device)
    run = network(fn, compile, device)
    fixed = use if fixed_shape is None else fixed_shape
    on_gpu = device.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (on_gpu and amp) else nullcontext()
    outs: list = []
    staged = staged_on(data, device)
    items = EvalBatches(data, batch_size, staged)
    workers = 0 if isinstance(data, DeviceData) else workers  # held on the device: built in this process
    # the weights are fixed here: standardise each once, not once per batch (not under compiled code, where the
    # bookkeeping would be a guard that fails at every call)
    feed = batches(items, workers, on_gpu and not staged)
    if staged:
        feed = finished_ahead(feed, lambda x: data.finish(x, device), device)
    with nullcontext() if fixed else reuse_standardized_weights():
        for i, x in enumerate(tqdm(feed, desc=desc, disable=not progress, leave=False, total=len(items))):
            x = ready(data, x, device)
            n = len(x)
            with autocast:
                y = run(pad_batch(x, batch_size) if fixed else x)
            outs.append({k: v[:n] for k, v in y.items()} if isinstance(y, Mapping) else y[:n])
            if on_batch is not None:
                on_batch(i)
    if outs and isinstance(outs[0], dict):
        return {k: _on_host([o[k] for o in outs]) for k in outs[0]}
    return _on_host(outs) if outs else torch.empty(0)


def _on_host(parts: list[Tensor]) -> Tensor:
    """The batches' outputs as one float32 CPU tensor: joined where they are, then one transfer (bf16 features
    cross at half the bytes and widen on the host)."""
    return torch.cat(parts).cpu().float()


def predicted_classes(
    model: nn.Module, data: TrainData, batch_size: int = 512, device: str = "cpu", compile: Compile = "auto"
) -> np.ndarray:
    """The class ``model`` (put in eval mode) predicts for every example of ``data``."""
    model.eval()
    logits = predict(model, data, batch_size, device, modules=[model], compile=compile)
    return logits.argmax(-1).numpy()


def accuracy(
    model: nn.Module, data: TrainData, batch_size: int = 512, device: str = "cpu", compile: Compile = "auto"
) -> float:
    return float((predicted_classes(model, data, batch_size, device, compile) == data.labels).mean())
