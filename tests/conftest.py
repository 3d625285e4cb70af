"""Shared fixtures. Tests write their own small data in the real formats; nothing is downloaded."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
WORKER = os.environ.get(
    "PYTEST_XDIST_WORKER"
)  # make test: 2 workers on 2 cores, one thread each (children too)
if WORKER:
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import torch  # noqa: E402 - after the thread count its children inherit

torch.set_num_threads(1 if WORKER else max(1, min(2, os.cpu_count() or 1)))

SHARED = ("smoke", "smoke_run", "paper_smoke_run", "released_smoke_run")
"""Session fixtures that take a minute or more: under pytest-xdist every test that uses one runs on the same
worker, so each is built once (:func:`pytest_collection_modifyitems`)."""
TOGETHER = ("test_reliability.py",)
"""Modules whose tests share state across tests (the reliability matrix, written once at the module's end)."""


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Give the tests that share a :data:`SHARED` fixture (or a :data:`TOGETHER` module) one ``xdist_group``, so
    that ``--dist loadgroup`` (``make test``) runs them on one worker; tests linked through a test that uses two
    such fixtures share a group. pytest-xdist 3.8 names a group in the test's id (``test@group``) by an attribute
    that pytest 9 no longer reads, so under loadgroup the id is set here (without it, grouping falls back to
    none: each worker then builds the fixtures it needs, slower but the same results)."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    keys = {}
    for item in items:
        mine = [f for f in SHARED if f in item.fixturenames]
        mine += [f"module {item.path.name}"] if item.path.name in TOGETHER else []
        keys[item] = mine
        for a, b in zip(mine, mine[1:], strict=False):
            parent[root(b)] = root(a)
    for item, mine in keys.items():
        if not mine:
            continue
        group = root(mine[0]).replace(" ", "_")
        item.add_marker(pytest.mark.xdist_group(group))
        if config.getoption("loadgroup", False) and "@" not in item.nodeid:
            try:
                from _pytest.nodeid import coerce_node_id

                item._id = coerce_node_id(f"{item.nodeid}@{group}")
            except (ImportError, AttributeError, ValueError):
                pass


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
    from expertlib.run.reproduce import notebooks

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


def _legend_overlaps(fig) -> list[str]:
    """Every legend that covers plotted data: its box (drawn with the figure's renderer) against the window
    extent of each bar, line, collection and text of the axes it belongs to (a figure legend: of every axes).
    An empty list: every legend sits clear of the data."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # a figure released from pyplot has no renderer of its own
    canvas.draw()
    renderer = canvas.get_renderer()
    found = []
    for ax in fig.axes:
        legends = [lg for lg in (ax.get_legend(), *fig.legends) if lg is not None and lg.get_visible()]
        artists = [a for a in (*ax.patches, *ax.lines, *ax.collections, *ax.texts) if a.get_visible()]
        for lg in legends:
            box = lg.get_window_extent(renderer)
            for a in artists:
                ext = a.get_window_extent(renderer)
                if ext.width > 0 and ext.height > 0 and box.overlaps(ext):
                    found.append(
                        f"{ax.get_title() or 'axes'}: legend covers {type(a).__name__} {a.get_label()!r}"
                    )
    return found


@pytest.fixture()
def legend_overlaps():
    """The check that no legend covers plotted data (:func:`_legend_overlaps`), for the figure tests."""
    return _legend_overlaps


@pytest.fixture(scope="session")
def released_smoke_run(tmp_path_factory):
    """Every notebook of the released-smoke scale, once per session (the notebook tests and the launcher's test
    compare with it): (root holding ``d/`` the data root and ``r/`` the results, the executed notebooks)."""
    from expertlib.run.reproduce import run

    root = tmp_path_factory.mktemp("released-smoke")
    written = run("released-smoke", results_dir=str(root / "r"), data_root=str(root / "d"), progress=False)
    return root, written


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


@pytest.fixture
def clusters():
    """The proxies' synthetic task: ``clusters(n, d, c, sep, seed)`` gives ``n`` features in ``d`` dimensions around
    ``c`` Gaussian centres ``sep`` apart (unit noise), and their labels, 0 to c - 1 in turn."""

    def make(n: int = 300, d: int = 16, c: int = 5, sep: float = 3.0, seed: int = 0):
        rng = np.random.default_rng(seed)
        y = np.arange(n) % c
        return rng.normal(0, sep, (c, d))[y] + rng.normal(0, 1, (n, d)), y

    return make


@pytest.fixture
def released_without_transfer(released_smoke_run, tmp_path):
    """A copy of the released-smoke results without their fine-tunes (job files, transfer tables), for running them
    again another way (torchrun, SLURM's local executor): (the data root, the copy's results folder, the
    one-process run's transfer table, timings left out)."""
    import pandas as pd

    root, _ = released_smoke_run
    shutil.copytree(root / "r", tmp_path / "r")
    ws = tmp_path / "r" / "released-smoke"
    shutil.rmtree(ws / "jobs")
    for name in ("transfer_runs.csv", "transfer_hyperparameters.json"):
        (ws / "tables" / name).unlink()
    one = pd.read_csv(root / "r" / "released-smoke" / "tables" / "transfer_runs.csv").drop(columns="seconds")
    return root / "d", ws, one
