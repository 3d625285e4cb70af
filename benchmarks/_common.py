"""Shared by the benchmark scripts: timing, and writing results/benchmarks/<name>.csv atomically."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from expertlib.utils.runtime import atomic_write_csv, machine_description  # noqa: E402


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


def steady_seconds(timeline: Sequence[tuple[int, float]], warmup: int) -> float:
    """Seconds per step in the steady state, from a run's ``(steps done, seconds)`` points taken where the host
    waited for the device (``TrainResult.timeline``): the slope between the first point at or after ``warmup``
    steps and the last one. Start-up (DataLoader workers forking, decoders initialising, the first batch, compiling)
    falls before the window and so out of the rate, however long it was."""
    points = sorted(p for p in timeline if p[0] >= warmup)
    if len(points) < 2 or points[-1][0] == points[0][0]:
        raise ValueError(
            f"no window after {warmup} warm-up steps in {list(timeline)}: run longer, or read more often"
        )
    (s0, t0), (s1, t1) = points[0], points[-1]
    return (t1 - t0) / (s1 - s0)


def slope(run: Callable[[int], float], short: int, long: int) -> float:
    """Seconds per unit of work from two run lengths: ``(run(long) - run(short)) / (long - short)``, ``run(n)`` being
    the wall seconds of a run of ``n`` units. Whatever a run pays once (start-up, warm-up) cancels."""
    if long <= short:
        raise ValueError(f"the long run ({long}) must be longer than the short one ({short})")
    return (run(long) - run(short)) / (long - short)


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
