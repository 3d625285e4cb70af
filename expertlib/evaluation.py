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

from expertlib.batching import EvalBatches, batches, finished_ahead, staged_on
from expertlib.candidates import Candidate
from expertlib.datasets.batches import TrainData, ready
from expertlib.datasets.device import DeviceData
from expertlib.resnet import reuse_standardized_weights
from expertlib.runtime import Compile, compiled, resolve_compile


# -- what compiles -------------------------------------------------------------------------------------------
def compiles_once(fn: Callable) -> bool:
    """Whether "auto" compiles ``fn``: a network (a module) compiles to one graph per resolution that every model
    of its architecture reuses. Not a plain function over several networks (compiled, it would unroll them all
    into one graph), and not an adapter expert (:class:`~expertlib.candidates.Candidate` of kind "adapter"),
    whose forward looks its expert up by name: a graph per expert, and after torch's recompile limit (8), eager
    anyway. ``compile=True`` compiles either."""
    if not isinstance(fn, nn.Module):
        return False
    return not any(isinstance(m, Candidate) and m.kind == "adapter" for m in fn.modules())


def compile_here(fn: Callable, compile: Compile, device: str) -> bool:
    return resolve_compile(compile, device) and (compile is True or compiles_once(fn))


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
) -> Tensor | dict[str, Tensor]:
    """Apply ``fn`` to every example, in order, in large evaluation batches: the one evaluation loop (its
    progress bar, with ``progress``, labelled ``desc``: say which model it runs).

    ``fn`` returns a tensor (logits, features) or a dict of them (many candidates' features from one pass
    over the data); the result is concatenated the same way. ``fn`` (a module, or a module's method) and
    ``modules`` (the modules a plain function uses) are moved to ``device`` first: a model loaded from the
    cache sits on the CPU. ``compile`` (:func:`~expertlib.runtime.resolve_compile`; "auto": on CUDA, for a
    ``fn`` that :func:`compiles_once`) runs ``fn`` compiled; ``fixed_shape`` (default: when compiled; a caller
    whose ``fn`` compiles its own parts says so) pads the last batch to ``batch_size`` and trims the results,
    so every batch, every evaluation set and every job at one resolution runs one graph. Eager evaluation standardises each weight once
    (:func:`~expertlib.resnet.reuse_standardized_weights`); compiled code standardises inside its graph."""
    for m in [owner_module(fn), *modules]:
        if m is not None:
            m.to(device)
    use = compile_here(fn, compile, device)
    run = compiled(fn, use)
    fixed = use if fixed_shape is None else fixed_shape
    outs: list = []
    staged = staged_on(data, device)
    items = EvalBatches(data, batch_size, staged)
    workers = 0 if isinstance(data, DeviceData) else workers  # held on the device: built in this process
    # the weights are fixed here: standardise each once, not once per batch (not under compiled code, where the
    # bookkeeping would be a guard that fails at every call)
    feed = batches(items, workers, device.startswith("cuda") and not staged)
    if staged:
        feed = finished_ahead(feed, lambda x: data.finish(x, device), device)
    with nullcontext() if fixed else reuse_standardized_weights():
        for x in tqdm(feed, desc=desc, disable=not progress, leave=False, total=len(items)):
            x = ready(data, x, device)
            n = len(x)
            y = run(pad_batch(x, batch_size) if fixed else x)
            outs.append(
                {k: v[:n].float().cpu() for k, v in y.items()}
                if isinstance(y, Mapping)
                else y[:n].float().cpu()
            )
    if outs and isinstance(outs[0], dict):
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    return torch.cat(outs) if outs else torch.empty(0)


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
