"""Shared by the benchmark scripts: timing, and writing results/benchmarks/<name>.csv atomically."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from expertlib.runtime import atomic_write_csv, machine_description  # noqa: E402


def best_of(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Fastest wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def write(name: str, rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    m = machine_description()
    frame["machine"] = f"{m['cpu_count']} CPUs, torch {m['torch']}, {m['cuda'] or 'no GPU'}"
    out = ROOT / "results" / "benchmarks" / f"{name}.csv"
    atomic_write_csv(out, frame)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.drop(columns=["machine"]).to_string(index=False))
    print(f"-> {out.relative_to(ROOT)}")
    return frame
