"""How far a run of the `gpu` scale got, and what the whole run would take at that pace (for `make gpu-check`).

    python tools/gpu_scale_progress.py RESULTS_DIR SECONDS_SPENT [--rates MANY_MODELS_CSV] [--out FILE]

Reads ``RESULTS_DIR/gpu``: the notebooks executed so far, and, if the fine-tunes (notebook 05) had started, how
many of the plan's fine-tunes have a result file in ``jobs/transfer``. When every notebook ran, the wall time is
what it is. Otherwise two extrapolations, each labelled as one: from the fine-tunes' own pace (once some have
finished), and from measured rates: the measured prefix plus the fine-tunes not yet done at the K=64 stacked rate
``--rates`` holds (``bench_many_models.py`` on the same GPU, earlier in the same check). Writes one JSON object
(to ``--out`` or stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from expertlib.run.reproduce import notebooks


def progress(results: Path, seconds: float, rate: float | None = None) -> dict:
    """How far the run got in ``seconds``; ``rate``: stacked fine-tunes per second measured on this GPU."""
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
        out["how"] = "the fine-tunes had not started: no extrapolation from their pace"
    if rate and planned:
        out["extrapolated_from_rates_seconds"] = seconds + (planned - finished) / rate
        out["how_from_rates"] = (
            f"extrapolated from measured rates: the measured prefix ({len(done)} of {len(every)} notebooks, "
            f"{seconds:.0f} s) plus {planned - finished} fine-tunes at the {rate:.1f} per second of a K=64 stack measured "
            "on this GPU; what the notebooks not reached do besides fine-tuning is not counted (a lower bound)"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("seconds", type=float)
    ap.add_argument("--rates", type=Path, help="many_models.csv with a GPU's K=64 stacked row")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    rate = None
    if args.rates is not None:
        from expertlib.pipeline.forecast import stacked_rate

        measured = stacked_rate(args.rates)
        rate = measured["finetunes_per_s"] if measured else None
    text = json.dumps(progress(args.results, args.seconds, rate), indent=2)
    (args.out.write_text(text + "\n") if args.out else sys.stdout.write(text + "\n"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
