"""What a scale's run will do on one GPU, said before it runs (notebook 01): how many fine-tunes, in how many
stacks, how many compiled graphs, and the minutes its fine-tunes will take at the rates a GPU run measured, where
one has; where none has, it says so instead of guessing.

Counts come from the very job list notebook 05 runs (:func:`~expertlib.pipeline.compute_plan.plan_jobs`; before
selection, its upper bound), cut into stacks as :func:`expertlib.utils.jobs.chunks` cuts it (by task, mode,
steps, batch, resolution and network structure: adapter experts apart from the rest), and compiles as "auto"
decides (:data:`expertlib.train.evaluation.COMPILE_PAYS`: an architecture measured to pay, fine-tuned one job
at a time, compiles one graph per resolution and mode). The rate is the stacked fine-tunes' per second that
``make gpu-check`` measured (``bench_many_models.py``'s K=64 row on a GPU,
``results/benchmarks/many_models.csv``): that benchmark runs the ``cpu`` scale's fine-tuning recipe, which the
``gpu`` scale shares.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from expertlib.datasets.benchmark import Benchmark
from expertlib.models.resnet import config_name, get_config
from expertlib.pipeline.compute_plan import plan_jobs, scale_candidates
from expertlib.pipeline.experts import choose_experts
from expertlib.pipeline.workspace import Workspace
from expertlib.train.evaluation import COMPILE_PAYS
from expertlib.utils.jobs import Job, chunks

MANY_MODELS_CSV = Path(__file__).resolve().parents[2] / "results" / "benchmarks" / "many_models.csv"


def stacked_rate(path: Path = MANY_MODELS_CSV) -> dict | None:
    """The fine-tunes per second of K=64 stacks measured on a GPU (and which GPU), or None where no GPU row
    exists."""
    rows = pd.read_csv(path, keep_default_na=False) if Path(path).is_file() else pd.DataFrame()
    if rows.empty or "device" not in rows:
        return None
    hit = rows[(rows.device != "cpu") & (rows.what == "finetunes") & (rows.way == "stacked, one pass")
               & (pd.to_numeric(rows.models, errors="coerce") == 64)]  # fmt: skip
    rate = (
        pd.to_numeric(hit.finetunes_per_s, errors="coerce").dropna() if len(hit) else pd.Series(dtype=float)
    )
    if rate.empty:
        return None
    return {
        "finetunes_per_s": float(rate.iloc[-1]),
        "gpu": str(hit.device.iloc[-1]),
        "source": Path(path).name,
    }


def forecast(ws: Workspace, bench: Benchmark, rate: dict | None | str = "measured") -> dict:
    """Fine-tunes, stacks and compiled graphs of ``ws``'s run, and its fine-tunes' minutes on one GPU at ``rate``
    (default: :func:`stacked_rate`; None where unmeasured)."""
    sc = ws.scale
    names = list(choose_experts(ws, bench)) if sc.trains_upstream else None
    cands = scale_candidates(ws, names)
    jobs = plan_jobs(ws, bench, cands, None)
    stack = sc.runtime.stack_finetunes

    def group(job: Job) -> tuple:
        r = job.recipe
        adapter = cands[r["model"]].kind == "adapter"
        return r["task"], r["mode"], r["steps"], r["batch"], tuple(r["resolution"]), adapter

    stacks = len(chunks(jobs, group, stack)) if stack > 1 else 0
    arch = config_name(get_config(sc.upstream.arch))
    pays = sc.runtime.compile is True or (sc.runtime.compile == "auto" and arch in COMPILE_PAYS)
    alone = stack <= 1  # stacked fine-tunes replay CUDA graphs instead of compiling
    compiles = 2 * len({tuple(j.recipe["resolution"]) for j in jobs}) if (pays and alone and jobs) else 0
    rate = stacked_rate() if rate == "measured" else rate
    minutes = None
    if rate is not None and stacks:
        minutes = len(jobs) / rate["finetunes_per_s"] / 60
    return {"scale": sc.name, "fine_tunes": len(jobs), "stacks": stacks, "stack_size": stack, "compiles": compiles,
            "architecture": arch, "minutes": minutes, "rate": rate,
            "upper_bound": bool(sc.study.random_experts or sc.study.oracle_pool)}  # fmt: skip


def forecast_sentence(ws: Workspace, bench: Benchmark, rate: dict | None | str = "measured") -> str:
    """:func:`forecast` as notebook 01 says it."""
    f = forecast(ws, bench, rate)
    bound = " (an upper bound before selection)" if f["upper_bound"] else ""
    text = f"The `{f['scale']}` scale runs {f['fine_tunes']:,} fine-tunes{bound}"
    if f["stacks"]:
        text += (
            f", stacked {f['stack_size']} at a time in {f['stacks']:,} stacks (each replayed as a CUDA graph)"
        )
    else:
        text += ", one at a time"
    text += (f"; \"auto\" compiles {f['compiles']} graph{'s' if f['compiles'] != 1 else ''} for its "
             f"{f['architecture']} fine-tunes on a GPU (one per resolution and mode; {', '.join(COMPILE_PAYS)} only, "
             "where compiling was measured to pay).")  # fmt: skip
    if not f["stacks"]:
        return text
    if f["minutes"] is None:
        return text + (" Their minutes on one GPU: unmeasured, since no GPU has measured a K=64 stack yet "
                       "(`make gpu-check` writes that rate to many_models.csv).")  # fmt: skip
    r = f["rate"]
    return text + (
        f" At the {r['finetunes_per_s']:,.1f} fine-tunes per second measured on {r['gpu']} "
        f"({r['source']}), they take about {math.ceil(f['minutes'] * 10) / 10:.1f} minutes on one GPU "
        "(fine-tunes and their evaluation only; the upstream trainings and the selection come on top)."
    )
