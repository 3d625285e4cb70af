"""Process-level runtime settings: devices, compilation, copies to the device without a sync, a step replayed as a
CUDA graph, seeding, atomic writes, a description of the machine, and where a checkout's relative paths start
(:func:`repository_root`).

(A glibc malloc tuning applied on import was removed: in expertlib's own training loop it measured 0.93x and
1.01x, results/benchmarks/allocator.csv, so no code stays on the earlier probe's unreproduced gain.)
"""

from __future__ import annotations

import json
import os
import platform
import random
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

Compile = bool | Literal["auto"]
"""The compile setting every training and evaluation takes: True, False, or "auto" (compile iff on CUDA)."""


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; anything else is checked and returned."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asked for CUDA but none is available; use device='cpu' or 'auto'"
        )
    if not (device == "cpu" or device.startswith("cuda") or device == "mps"):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device


def resolve_compile(compile: Compile, device: str) -> bool:
    """Whether to ``torch.compile``: "auto" means on CUDA only (where compilation fuses GroupNorm and weight
    standardisation, the bulk of R50x1's eager time; on CPU eager keeps the committed results' bytes)."""
    if compile == "auto":
        return str(device).startswith("cuda")
    if isinstance(compile, bool):
        return compile
    raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")


COMPILE_BACKEND = "inductor"
"""torch.compile's backend for :func:`compiled` (tests set a cheap one, "eager", to count graphs)."""

RECOMPILE_LIMIT = 64
"""Graphs dynamo keeps per compiled function before it gives up and runs eager (torch's default is 8). Callers
compile a network's backbone without its head (:func:`expertlib.train.evaluation.network`), so the graphs are
bounded by architectures x resolutions x modes (train, eval), not by tasks; a process of the released scale
holds about 8."""


def compiled(fn: Callable, compile: Compile = True, device: str = "cuda") -> Callable:
    """``fn`` (a module or a function) under ``torch.compile`` when :func:`resolve_compile` says so, else ``fn``.

    Static shapes (``dynamic=False``): callers keep every batch one shape (training batches are fixed, evaluation
    pads its last batch), so a resolution compiles once, and a batch of another size gets its own static graph
    instead of a slower dynamic one. Graphs are cached by code, not by module instance: every model of one
    architecture (each job's fresh copy, each full expert) reuses the graph of the first."""
    if not resolve_compile(compile, device):
        return fn
    import torch
    import torch._dynamo.config as dynamo

    name = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"  # torch < 2.6
    setattr(dynamo, name, max(getattr(dynamo, name), RECOMPILE_LIMIT))
    return torch.compile(fn, backend=COMPILE_BACKEND, dynamic=False)


def to_device(t: Any, device: str | Any, dtype: Any = None) -> Any:
    """CPU tensor ``t`` on ``device`` without a host sync: on CUDA copied from pinned memory, non-blocking (a
    blocking copy waits for every kernel queued before it), so a step's indices and random draws travel while the
    GPU still runs the step before; elsewhere an ordinary ``.to``."""
    if dtype is not None:
        t = t.to(dtype)
    if str(device).startswith("cuda") and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def synchronize(device: str | Any) -> None:
    """Wait for ``device``'s queued work (CUDA); nothing on a CPU, whose operations finish before they return."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) so the same seed gives the same numbers on CPU."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - seeds code that uses the legacy global RNG
    torch.manual_seed(seed)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one rename, so readers never see a
    half-written file and an interrupted run leaves the previous version intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        # the permissions open() would give: mkstemp's 0600 would hide results from other users
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_csv(path: str | os.PathLike, frame: Any) -> Path:
    """Write a pandas DataFrame as CSV atomically."""
    return atomic_write(path, lambda p: frame.to_csv(p, index=False))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__} to JSON")


def machine_description() -> dict[str, Any]:
    """The machine a result came from: written into every summary."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


WARMUP_STEPS = 2


class GraphedSteps:
    """``step()`` called once per training step: the first :data:`WARMUP_STEPS` eagerly on a side stream (as a
    CUDA graph's capture asks: lazy initialisation, autotuning and SGD's first step, which creates the momentum
    buffers), then captured once as a CUDA graph and replayed, one launch per step where a K=64 step under vmap
    dispatches about 1,200 operations. ``step`` must take its inputs from tensors that live across steps (the
    parameters, gradients, the draws indexed by a counter on the device). Eager throughout when not ``enabled`` (a
    CPU), or when the capture fails (a warning says why, and the training goes on, eager)."""

    def __init__(self, step: Callable[[], None], leaves: Sequence[Any], device: str, enabled: bool) -> None:
        self.step, self.leaves, self.device, self.enabled = step, list(leaves), device, enabled
        self.calls, self.graph, self.side = 0, None, None

    def _eager(self) -> None:
        for p in self.leaves:
            p.grad = None
        self.step()
        self.calls += 1

    def run(self) -> None:
        import torch

        if self.graph is not None:
            self.graph.replay()
        elif not self.enabled:
            self._eager()
        elif self.calls < WARMUP_STEPS:
            here = torch.cuda.current_stream(self.device)
            self.side = self.side or torch.cuda.Stream(self.device)
            self.side.wait_stream(here)
            with torch.cuda.stream(self.side):
                self._eager()
            here.wait_stream(self.side)
        else:
            for p in self.leaves:
                p.grad = None
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    self.step()
            except Exception as e:  # noqa: BLE001 - any failure to capture leaves an eager step, named
                warnings.warn(f"the stacked step could not be captured as a CUDA graph ({type(e).__name__}: {e}); "
                              "this stack trains eager", RuntimeWarning, stacklevel=2)  # fmt: skip
                self.enabled = False
                self._eager()
                return
            self.graph = graph
            graph.replay()

    def close(self) -> None:
        """Wait for the work once (memory the side stream allocated is freed after it) and free the graph."""
        import torch

        if self.side is not None or self.graph is not None:
            torch.cuda.synchronize(self.device)
        self.graph = None


# -- where relative paths start ---------------------------------------------------------------------------------
def repository_root(start: str | os.PathLike | None = None) -> Path | None:
    """The expertlib checkout that holds ``start`` (default: the working directory): the nearest folder at or
    above it with a ``notebooks/`` folder and the ``pyproject.toml`` of the project named expertlib. None outside
    every checkout (an installed expertlib run elsewhere), where relative paths keep meaning the working
    directory's."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        project = folder / "pyproject.toml"
        if (folder / "notebooks").is_dir() and project.is_file():
            try:
                text = project.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if any(line.replace(" ", "") == 'name="expertlib"' for line in text.splitlines()):
                return folder
    return None


def work_at_repository_root() -> Path:
    """Move this process to the repository root when it runs inside a checkout but elsewhere in it (a Jupyter
    kernel starts beside its notebook, in ``notebooks/``), so every relative path a notebook is given means
    what it means to ``python -m expertlib.reproduce`` run from the root. Returns the working directory."""
    root = repository_root()
    if root is not None and root != Path.cwd().resolve():
        os.chdir(root)
        print(f"working in the repository root {root}: relative paths (results_dir, data_root) start there")
    return Path.cwd()


def kernel_transport_encryption() -> str | None:
    """How the Jupyter kernels we start (papermill's, JupyterLab's) talk to us: ``"auto"`` (CurveZMQ keys from
    the kernel manager, for kernels whose spec declares support, as ipykernel's does) where pyzmq has CurveZMQ,
    else ``"disabled"``; None with a jupyter_client too old to have the setting (its kernels do not warn).
    jupyter_client's default is ``"disabled"``: plain TCP, about which every ipykernel 7 kernel warns on start."""
    import zmq
    from jupyter_client.manager import KernelManager

    if "transport_encryption" not in KernelManager.class_trait_names():
        return None
    return "auto" if zmq.has("curve") else "disabled"


# -- command-line numbers, checked before any model runs ---------------------------------------------------------
def _number(kind, low: float | None, high: float | None, low_open: bool = False, high_open: bool = False):
    """An argparse ``type`` that parses ``kind`` and checks its range; argparse names the option in the error."""
    import argparse

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if kind is int else 'a number'}"
            ) from None
        if (
            value != value
            or (low is not None and (value < low or (low_open and value == low)))
            or (high is not None and (value > high or (high_open and value == high)))
        ):
            lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
            raise argparse.ArgumentTypeError(
                f"{text} is out of range: it must be {' and '.join(x for x in (lo, hi) if x)}"
            )
        return value

    parse.__name__ = kind.__name__  # argparse's "invalid <name> value" message
    return parse


positive_int = _number(int, 1, None)
non_negative_int = _number(int, 0, None)
positive_float = _number(float, 0, None, low_open=True)
open_fraction = _number(float, 0, 1, low_open=True, high_open=True)
seed_int = _number(int, 0, 2**32 - 1)  # what numpy's and torch's generators take
