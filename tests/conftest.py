"""Shared fixtures. Tests write their own small data in the real formats; nothing is downloaded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """A smoke-scale workspace with B, B+extra, adapter and full experts trained (about 15 s), shared by the
    pipeline tests. Returns (workspace, benchmark)."""
    from expertlib.pipeline import Workspace
    from expertlib.pipeline import upstream as U
    from expertlib.pipeline.inputs import load_benchmark

    root = tmp_path_factory.mktemp("smoke-pipeline")
    ws = Workspace.create("smoke", root / "results", root / "data", progress=False)
    bench = load_benchmark(ws)
    base, _ = U.train_generic(ws, bench)
    U.train_generic_extra(ws, bench, base)
    U.train_experts(ws, bench, base, "adapter")
    U.train_experts(ws, bench, base, "full")
    return ws, bench


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke scale through every notebook, as a user's interrupted run: ``python -m expertlib.reproduce`` is
    killed (SIGKILL) as soon as notebook 01 is written, then the same command runs to the end. The notebook
    tests check what the resumed run wrote; the reliability matrix, that it matches an uninterrupted run.
    Returns (results folder, executed notebooks, what the kill left: exit code and the notebooks there)."""
    from expertlib.reproduce import notebooks

    root = tmp_path_factory.mktemp("smoke")
    out = root / "results" / "smoke"
    cmd = [sys.executable, "-m", "expertlib.reproduce", "--scale", "smoke", "--results-dir", str(root / "results"),
           "--data-root", str(root / "data"), "--no-progress"]  # fmt: skip
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "notebooks" / "01_data.ipynb").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "notebook 01 did not finish in 5 minutes"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the run's process alone: its orphaned kernel must not spoil the rerun
    proc.wait()
    kill = {"exit": proc.returncode, "notebooks": sorted(p.name for p in (out / "notebooks").iterdir())}
    again = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    return out, [out / "notebooks" / nb.name for nb in notebooks()], kill


@pytest.fixture
def host_reads(monkeypatch):
    """Count the reads of tensor values by the host (``item``, ``tolist``, ``cpu``, ``float(tensor)``): on a GPU each
    is a sync that waits for every queued kernel. Returns a list that grows by one name per read."""
    reads: list[str] = []
    for name in ("item", "tolist", "cpu", "__float__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            reads.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads
