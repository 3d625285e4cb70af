"""How far a run of the `gpu` scale got, and what the whole run would take at that pace (for `make gpu-check`).

    python tools/gpu_scale_progress.py RESULTS_DIR SECONDS_SPENT [--out FILE]

Reads ``RESULTS_DIR/gpu``: the notebooks executed so far, and, if the fine-tunes (notebook 05) had started, how
many of the plan's fine-tunes have a result file in ``jobs/transfer``. When every notebook ran, the wall time is
what it is; otherwise the time to the end is extrapolated from the fine-tunes' pace, and the output says it is an
extrapolation from a subset. Writes one JSON object (to ``--out`` or stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from expertlib.reproduce import notebooks


def progress(results: Path, seconds: float) -> dict:
    run = results / "gpu"
    done = sorted(p.name for p in (run / "notebooks").glob("*.ipynb")) if (run / "notebooks").is_dir() else []
    every = [p.name for p in notebooks()]
    out: dict = {"scale": "gpu", "seconds": seconds, "notebooks_done": done, "notebooks": len(every)}
    if len(done) == len(every):
        return {**out, "complete": True, "wall_seconds": seconds}
    plan = run / "tables" / "plan.csv"
    # the fine-tunes the job list holds (the test fine-tunes and the oracle's choice), not the hyper-parameter
    # trials the total also counts, which run before it and leave no file in jobs/transfer
    stages = pd.read_csv(plan) if plan.is_file() else pd.DataFrame(columns=["stage", "jobs"])
    planned = int(
        stages[stages.stage.isin(["fine-tunes (test)", "oracle choice (train800 -> val200)"])].jobs.sum()
    )
    finished = (
        len(list((run / "jobs" / "transfer").glob("*.json"))) if (run / "jobs" / "transfer").is_dir() else 0
    )
    out.update(complete=False, fine_tunes_planned=planned, fine_tunes_done=finished)
    if finished and planned:
        out["extrapolated_wall_seconds"] = seconds * planned / finished
        out["how"] = (f"extrapolated from a subset: {finished} of {planned} fine-tunes in {seconds:.0f} s, the steps "
                      "before them counted as if they scaled with the fine-tunes (an upper bound)")  # fmt: skip
    else:
        out["how"] = "the fine-tunes had not started: no extrapolation"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("seconds", type=float)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    text = json.dumps(progress(args.results, args.seconds), indent=2)
    (args.out.write_text(text + "\n") if args.out else sys.stdout.write(text + "\n"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
