"""Many independent small trainings at once: a pool of single-threaded worker processes.

The cpu scale fine-tunes about a thousand 44k-parameter networks. On a 2-core CPU one such training does not
use both cores well (its kernels are small), and training K of them in one pass (``torch.func.vmap`` over
stacked parameters, i.e. grouped convolutions) measured no faster than K separate runs
(``results/benchmarks/batched_training.csv``). What does pay is one single-threaded process per core, each
training its own networks. :func:`run_jobs` does that.

Every job runs with one torch thread, in a worker or in this process alike, because the thread count changes
floating-point reduction order: with it fixed, ``workers=0`` and ``workers=2`` give bit-identical results
(tested), so the pool size is a speed setting, never a result setting.

Jobs travel as ``torch.save`` bytes (modules, tensors and data holders included) and results come back the
same way. Workers are forked on Linux, as torch's DataLoader workers are (a script needs no ``__main__`` guard,
and a forked worker that keeps to one thread is safe after the parent ran OpenMP kernels); elsewhere they are
spawned.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Any

import torch


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the enclosed code with one torch thread (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pack(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _unpack(blob: bytes) -> Any:
    return torch.load(io.BytesIO(blob), weights_only=False)  # our own parent's objects, not a downloaded file


def _call(blob: bytes) -> bytes:
    fn, args = _unpack(blob)
    with single_thread():
        return _pack(fn(*args))


def _init_worker() -> None:
    torch.set_num_threads(1)


def run_jobs(fn: Callable[..., Any], jobs: Iterable[tuple], workers: int = 0) -> Iterator[tuple[int, Any]]:
    """Yield ``(i, fn(*jobs[i]))`` for every job as each finishes (in order when ``workers`` is 0).

    ``fn`` must be importable (a module-level function) when ``workers > 0``. ``jobs`` is consumed lazily (it
    may be a generator) and at most ``2 * workers`` jobs are in flight, so a long list does not sit pickled in
    memory; a job's exception is raised here, after the jobs
    already finished have been yielded (the caller has saved them)."""
    if workers <= 0:
        for i, args in enumerate(jobs):
            with single_thread():
                yield i, fn(*args)
        return
    context = get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        pending: dict = {}
        todo = iter(enumerate(jobs))
        while True:
            while len(pending) < 2 * workers:
                nxt = next(todo, None)
                if nxt is None:
                    break
                i, args = nxt
                pending[pool.submit(_call, _pack((fn, tuple(args))))] = i
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: pending[f]):
                i = pending.pop(fut)
                yield i, _unpack(fut.result())
