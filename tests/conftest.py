"""Shared fixtures. Tests write their own small data in the real formats; nothing is downloaded."""

from __future__ import annotations

import os

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
    from expertlib.pipeline import data as D
    from expertlib.pipeline import upstream as U

    root = tmp_path_factory.mktemp("smoke-pipeline")
    ws = Workspace.create("smoke", root / "results", root / "data", progress=False)
    bench = D.load_benchmark(ws)
    base, _ = U.train_generic(ws, bench)
    U.train_generic_extra(ws, bench, base)
    U.train_experts(ws, bench, base, "adapter")
    U.train_experts(ws, bench, base, "full")
    return ws, bench
