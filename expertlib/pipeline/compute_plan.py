"""The compute plan of a scale: the upstream trainings it makes and the very job list notebooks 04 and 05 run,
priced job by job at each task's resolution from the GPU rates that ``make gpu-check`` measured
(:mod:`expertlib.pipeline.pricing`).

Before selection has run, each task's proxies' picks are unknown: the plan then takes the most expensive case
(every proxy picks a different expert, and none of them is in the random sample or the oracle pool), an upper
bound, and says so. After selection the same function, given ``selection_picks.csv``, counts exactly the jobs
that run (a test holds it to that). :func:`plan_options` prices the documented alternatives one by one.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from expertlib.datasets.benchmark import Benchmark, TaskInfo
from expertlib.models.candidates import BASE, EXTRA
from expertlib.pipeline.experts import choose_experts, released_names
from expertlib.pipeline.finetunes import MODES, task_resolution, transfer_jobs
from expertlib.pipeline.pricing import gpu_rates, gpu_seconds, warmup_seconds
from expertlib.pipeline.recipes import dat_steps
from expertlib.pipeline.tables import join_ids
from expertlib.pipeline.workspace import Workspace
from expertlib.select.proxies import PICKED_BY
from expertlib.utils.distributed import is_primary
from expertlib.utils.jobs import Job, share
from expertlib.utils.runtime import atomic_write_csv


@dataclass(frozen=True)
class CandidateRef:
    """A candidate as the plan needs it before any weights are loaded: its kind, expert and (DAT) task."""

    kind: str
    expert: str | None
    task: str | None = None


class PublishedVtab:
    """VTAB-1k as published (1,000 training images, 200 validation, each task's test size and image size): the
    part of a benchmark a plan reads, so a plan can be priced before anything is downloaded."""

    name = "vtab (published sizes)"

    def __init__(self, tasks: Sequence[str], hyperrule: bool = True, resolution: tuple[int, int] = (160, 128),
                 recipe: str = "bit-code"):  # fmt: skip
        from expertlib.datasets.vtab import PUBLISHED_TEST_SIZES, VTAB_TASKS

        unknown = [t for t in tasks if t not in PUBLISHED_TEST_SIZES]
        if unknown:
            raise KeyError(f"no published sizes for {unknown}; known: {', '.join(PUBLISHED_TEST_SIZES)}")
        self._sizes, self._tasks = PUBLISHED_TEST_SIZES, VTAB_TASKS
        self.hyperrule, self.resolution, self.recipe = hyperrule, resolution, recipe

    def task_labels(self, task: str, split: str) -> range:
        n = {"train800": 800, "val200": 200, "train800val200": 1000, "test": self._sizes[task][0]}[split]
        return range(n)  # only its length is read

    def task_info(self, task: str) -> TaskInfo:
        vt = self._tasks[task]
        return TaskInfo(task, vt.group, tuple(map(str, range(vt.num_classes))), flip=vt.flip, crop=vt.crop)

    def resolution_of(self, task: str, recipe: str | None = None) -> tuple[int, int]:
        """BiT-HyperRule's (precrop, crop) of the task's typical image, in ``recipe``'s form (default: the plan's)."""
        from expertlib.datasets.transforms import bit_resolution

        return (
            bit_resolution(*self._sizes[task][1], recipe or self.recipe)
            if self.hyperrule
            else self.resolution
        )


WARMUP = "compile warm-up (each process)"


def plan_frame(ws: Workspace, bench: Benchmark, write: bool = True) -> pd.DataFrame:
    """The plan: the very job lists the notebooks run, each priced at its resolution and step count from the GPU
    rates (:func:`~expertlib.pipeline.pricing.gpu_rates`), per stage, with wall-clock
    hours on 1 and 8 GPUs (for a scale that samples experts, an upper bound). With ``write`` (notebook 01),
    rank 0 writes it to ``tables/plan.csv`` and prices its documented alternatives into
    ``tables/plan_options.csv``; every notebook's start only prints it."""
    # the same plan whatever has run already (a rerun's notebooks print what the first run's did): for a scale
    # that samples experts, the upper bound before selection; `plan_jobs` gives the exact list after it
    names = list(choose_experts(ws, bench)) if ws.scale.trains_upstream else None
    cands = scale_candidates(ws, names)
    table = plan_table(ws, bench, cands)
    if write and is_primary():
        atomic_write_csv(ws.path("tables", "plan.csv"), table)
        atomic_write_csv(ws.path("tables", "plan_options.csv"), plan_options(ws, bench, cands))
    return table


def upper_bound_picks(ws: Workspace, experts: Sequence[str]) -> pd.DataFrame:
    """Picks that make the most fine-tunes: per task, every proxy a different expert, the random sample and the
    rest of the oracle pool others again (kNN's pick heads the pool, as it always does)."""
    sc, rows = ws.scale, []
    for task in ws.tasks:
        names = itertools.cycle(experts)
        row = {"task": task, **{p: next(names) for p in PICKED_BY}}
        if (
            sc.study.random_experts or sc.study.oracle_pool
        ):  # the design columns exist only where the scale samples
            row["random_sample"] = join_ids(next(names) for _ in range(sc.study.random_experts))
            row["oracle_pool"] = join_ids(
                [row["knn"], *(next(names) for _ in range(max(0, sc.study.oracle_pool - 1)))]
            )
            row["experts_scored"] = len(experts)
        rows.append(row)
    return pd.DataFrame(rows)


def plan_jobs(ws: Workspace, bench: Benchmark, candidates: Mapping, picks: pd.DataFrame | None) -> list[Job]:
    """The transfer jobs notebook 05 runs for these picks (upper-bound picks when None)."""
    experts = [n for n, c in candidates.items() if c.expert is not None]
    picks = picks if picks is not None else upper_bound_picks(ws, experts)
    hps = {t: {"steps": max(ws.scale.transfer.steps), "lr": ws.scale.transfer.lrs[0]} for t in ws.tasks}
    return transfer_jobs(ws, bench, candidates, hps, picks)


def scale_candidates(ws: Workspace, experts: Sequence[str] | None = None) -> dict[str, CandidateRef]:
    """The candidates notebook 05 fine-tunes, as the plan needs them: a scale that trains nothing, B and its
    released experts; else B, B+extra, the adapter experts (``experts``: their names, from the benchmark when
    the scale picks them by rule), its full experts and, where it asks for them, one DAT-style model per task."""
    sc = ws.scale
    if not sc.trains_upstream:
        return released_candidates(released_names(sc))
    names = list(experts if experts is not None else sc.expert.names or ())
    out = {BASE: CandidateRef("generic", None), EXTRA: CandidateRef("generic", None)}
    out.update({f"adapter:{e}": CandidateRef("adapter", e) for e in names})
    out.update({f"full:{e}": CandidateRef("full", e) for e in sc.expert.full})
    if sc.study.dat_accuracy:
        out.update({f"dat:{t}": CandidateRef("dat", None, t) for t in ws.tasks})
    return out


def upstream_stages(ws: Workspace, n_adapters: int) -> list[tuple[str, int, int, int]]:
    """(stage, resolution, trainings, training images) of the scale's upstream trainings: B (unless loaded),
    B+extra, every adapter expert, every full expert's recipe grid, and the DAT-style baseline (timed per task,
    and trained per task where the scale asks), each at the scale's crop."""
    sc = ws.scale
    if not sc.trains_upstream:
        return []
    one = sc.expert.steps * sc.expert.batch
    grid = max(1, len(sc.expert.full_steps)) * max(1, len(sc.expert.full_lrs or ()))
    full_steps = max(sc.expert.full_steps or (sc.expert.steps,))
    stages = [
        ("B", sc.data.crop, 0 if sc.upstream.weights else 1, 0 if sc.upstream.weights else sc.upstream.steps * sc.upstream.batch),
        ("B+extra", sc.data.crop, 1, one),
        ("adapter experts", sc.data.crop, n_adapters, n_adapters * one),
        ("full experts (recipe grid)", sc.data.crop, len(sc.expert.full) * grid,
         len(sc.expert.full) * grid * full_steps * sc.expert.batch),
        ("DAT timing", sc.data.crop, len(ws.tasks), len(ws.tasks) * dat_steps(sc) * sc.expert.batch),
    ]  # fmt: skip
    if sc.study.dat_accuracy:
        stages.append(("DAT models", sc.data.crop, len(ws.tasks), len(ws.tasks) * one))
    return [s for s in stages if s[2]]


def released_candidates(names: Sequence[str]) -> dict[str, CandidateRef]:
    return {
        BASE: CandidateRef("generic", None),
        **{f"released:{n}": CandidateRef("released", n) for n in names},
    }


def plan_table(ws: Workspace, bench: Benchmark, candidates: Mapping, picks: pd.DataFrame | None = None,
               rates: dict | None = None, gpus: int = 8) -> pd.DataFrame:  # fmt: skip
    """Per stage and resolution: jobs, images and GPU-hours, and wall-clock hours on 1 and on ``gpus`` GPUs (the
    jobs shared by :func:`expertlib.utils.jobs.share`, as torchrun shares them). Stages: selection (every
    candidate embeds each task's training images; ``jobs`` counts those embeddings), fine-tunes on test (every
    method at every seed), the oracle's choice (its pool on train800 -> val200) and evaluation. The total's
    ``jobs`` are the fine-tunes."""
    rates = rates or gpu_rates()
    jobs = plan_jobs(ws, bench, candidates, picks)
    rows = []

    def add(stage: str, res: int, n_jobs: int, images: int, secs: float) -> None:
        rows.append(
            {"stage": stage, "resolution": res, "jobs": n_jobs, "images": images, "gpu_hours": secs / 3600}
        )

    n_adapters = sum(c.kind == "adapter" for c in candidates.values())
    for stage, res, trainings, images in upstream_stages(
        ws, n_adapters
    ):  # DDP over every GPU: ideal speed-up
        add(stage, res, trainings, images, gpu_seconds(images, res, rates, "train"))
    scored = 1 + sum(c.kind in ("adapter", "released") for c in candidates.values())  # B and the experts
    for task in ws.tasks:  # selection: train800val200 embedded by every candidate
        res = task_resolution(bench, task, ws.scale)[1]
        n = len(bench.task_labels(task, "train800val200")) * scored
        add("selection features", res, scored, n, gpu_seconds(n, res, rates, "inference"))
    grid = len(ws.scale.transfer.steps) * len(ws.scale.transfer.lrs)
    if grid > 1:  # B's fine-tunes on train800 -> val200 that choose each task's steps and lr
        for task in ws.scale.data.tasks:
            res = task_resolution(bench, task, ws.scale)[1]
            images = (
                sum(s for s in ws.scale.transfer.steps) * len(ws.scale.transfer.lrs) * ws.scale.transfer.batch
            )
            add(
                "hyper-parameter choice (B, train800 -> val200)",
                res,
                grid,
                images,
                gpu_seconds(images, res, rates, "train"),
            )
    job_secs, sizes = [], {}
    for job in jobs:
        r = job.recipe
        res = r["resolution"][1]
        train_images = r["steps"] * r["batch"]
        key = (r["task"], MODES[r["mode"]][1])
        if key not in sizes:  # a split's length once, not once per job
            sizes[key] = len(bench.task_labels(*key))
        eval_images = sizes[key]
        train_s = gpu_seconds(train_images, res, rates, "train")
        eval_s = gpu_seconds(eval_images, res, rates, "inference")
        stage = "fine-tunes (test)" if r["mode"] == "finetune" else "oracle choice (train800 -> val200)"
        add(stage, res, 1, train_images, train_s)
        add("evaluation" if r["mode"] == "finetune" else "evaluation (val200)", res, 0, eval_images, eval_s)
        job_secs.append(train_s + eval_s)
    warm = warmup_seconds(rates)  # compiled graphs: once per process and resolution, not per job
    for res in sorted({j.recipe["resolution"][1] for j in jobs}) if warm else ():
        add(WARMUP, res, 0, 0, warm)
    table = rows_frame(rows)
    total_h = table.gpu_hours.sum()
    timed = [Job(j.recipe, s) for j, s in zip(jobs, job_secs, strict=True)]
    makespan = max(sum(timed[i].cost for i in share(timed, r, gpus)) for r in range(gpus)) / 3600
    # every stage but the job list's fine-tunes spreads over all GPUs ideally (DDP, or batched features)
    spread_h = table[~table.stage.isin(["fine-tunes (test)", "evaluation", "oracle choice (train800 -> val200)",
                                        "evaluation (val200)", WARMUP])].gpu_hours.sum()  # fmt: skip
    warm_h = table[table.stage == WARMUP].gpu_hours.sum()  # every process compiles: not shared
    table["hours_1gpu"] = table.gpu_hours
    table[f"hours_{gpus}gpu"] = table.gpu_hours.where(table.stage == WARMUP, table.gpu_hours / gpus)
    fine_tunes = int(table[table.stage.str.startswith(("fine-tunes", "oracle", "hyper"))].jobs.sum())
    total = {"stage": "total", "resolution": 0, "jobs": fine_tunes, "images": int(table.images.sum()),
             "gpu_hours": total_h, "hours_1gpu": total_h,
             f"hours_{gpus}gpu": makespan + spread_h / gpus + warm_h}  # fmt: skip
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    table["rates"] = rates["source"]
    sampled = ws.scale.study.random_experts or ws.scale.study.oracle_pool
    table["picks"] = ("every expert fine-tuned" if not sampled else
                      "upper bound (before selection)" if picks is None else "selection_picks.csv")  # fmt: skip
    return table


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows summed per (stage, resolution), in stage order."""
    frame = pd.DataFrame(rows)
    order = {s: i for i, s in enumerate(dict.fromkeys(frame.stage))}
    out = frame.groupby(["stage", "resolution"], as_index=False)[["jobs", "images", "gpu_hours"]].sum()
    return out.sort_values(["stage", "resolution"], key=lambda c: c.map(order) if c.name == "stage" else c,
                           ignore_index=True)  # fmt: skip


CHEAPER_RECIPE = {"transfer_batch": 128, "transfer_lrs": (0.001,)}
"""BiT's cheaper fine-tuning recipe: batch 128 at lr 0.001, which BiT reports as nearly equivalent to the published
batch 512 at lr 0.003 on CIFAR-10/100 only."""
PUBLISHED_RECIPE = {"transfer_batch": 512, "transfer_lrs": (0.003,)}


def other_hyperrule(recipe: str) -> tuple[str, dict, str]:
    """The other BiT-HyperRule than ``recipe``, as a priced option: (name, settings, what it is)."""
    from expertlib.datasets.transforms import HYPERRULE_RESOLUTIONS as RES
    from expertlib.train.schedules import HYPERRULE_SOURCES

    other = next(r for r in RES if r != recipe)
    px, own = RES[other][1], RES[recipe][1]
    return other, {"hyperrule": other}, f"{HYPERRULE_SOURCES[other]}: {px} px costs {(px / own) ** 2:.2f}x the pixels of {own}"  # fmt: skip


def options_for(scale) -> list[tuple[str, dict, str]]:
    """The documented alternatives to a scale's design that apply to it: (name, settings, what it buys)."""
    out = [("default", {}, "the scale as it is"),
           ("seeds 5", {"seeds": 5}, "narrower CIs per task; the design's paired tests gain power")]  # fmt: skip
    sampled = scale.study.random_experts or scale.study.oracle_pool
    if sampled:
        out += [
            ("oracle pool 5", {"oracle_pool": 5}, "an oracle nearer the best expert (it only sees kNN's top 5)"),
            ("random sample 5", {"random_experts": 5}, "a less noisy estimate of the random expert's expectation"),
            ("unpicked experts at 1 seed", {"unpicked_seeds": 1}, "cheaper: experts no proxy picked run once, so "
             "the random expectation and the oracle are compared with the picks at seed 0 alone"),
        ]  # fmt: skip
    if scale.data.task_resolution == "hyperrule":
        out.append(other_hyperrule(scale.transfer.hyperrule))
        if scale.transfer.batch == 512:
            out.append(("batch 128, lr 0.001", CHEAPER_RECIPE,
                        "a quarter of the fine-tuning compute: BiT's cheaper recipe, reported as equivalent to the "
                        "published one on CIFAR-10/100 only (not VTAB-1k's 19 tasks)"))  # fmt: skip
        else:
            out.append(("batch 512, lr 0.003", PUBLISHED_RECIPE, "BiT-HyperRule exactly as published"))
    if scale.trains_upstream and scale.data.crop > 128:
        out.append(("upstream at 128 px", {"crop": 128, "precrop": 160},
                    "cheaper upstream trainings (B+extra, experts) at 128 px instead of BiT-M's 224 px pre-training "
                    "resolution: about a third of their compute"))  # fmt: skip
    if sampled:
        out += [
            ("oracle over every expert", {"oracle_pool": 48},
             "the exact oracle: the best of all experts on val200, not bounded by kNN's own top experts"),
            ("random: exact expectation", {"random_experts": 48},
             "the random expert's exact expectation: the mean over every expert, no sample"),
            ("every expert, every seed", {"random_experts": 48, "oracle_pool": 48},
             "the full sweep: both exact baselines and an exact Kendall tau over every expert"),
        ]  # fmt: skip
    return out


def plan_options(ws: Workspace, bench: Benchmark, candidates: Mapping, rates: dict | None = None,
                 gpus: int = 8) -> pd.DataFrame:  # fmt: skip
    """Each documented alternative to the scale's design (:func:`options_for`), priced like the default
    (upper-bound picks)."""
    rates = rates or gpu_rates()
    n_experts = sum(c.expert is not None and c.kind != "full" for c in candidates.values())
    rows = []
    for variant, change, buys in options_for(ws.scale):
        capped = {
            k: min(v, n_experts) if k in ("random_experts", "oracle_pool") else v for k, v in change.items()
        }
        alt = replace(ws, scale=ws.scale.override(**capped))
        total = plan_table(alt, bench, candidates, None, rates, gpus).iloc[-1]
        rows.append({"variant": variant, "change": ", ".join(f"{k}={v}" for k, v in capped.items()) or "-",
                     "jobs": int(total.jobs), "gpu_hours": float(total.gpu_hours),
                     f"hours_{gpus}gpu": float(total[f"hours_{gpus}gpu"]), "buys": buys})  # fmt: skip
    return pd.DataFrame(rows)


def published_plan(
    scale: str = "released", out: str | Path | None = None, gpus: int = 8, rates: dict | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The plan and its options for ``scale`` on VTAB-1k's published sizes (no data needed); written to
    ``out/plan.csv`` and ``out/plan_options.csv`` when ``out`` is given."""
    from expertlib.datasets.hierarchy import PAPER_EXPERTS
    from expertlib.run.presets import get_scale

    sc = get_scale(scale)
    ws = Workspace(sc, Path(out or "."), Path("."))
    hyper = sc.data.task_resolution == "hyperrule"
    bench = PublishedVtab(sc.data.tasks, hyper, (sc.data.precrop, sc.data.crop), sc.transfer.hyperrule)
    cands = scale_candidates(ws, list(sc.expert.names or PAPER_EXPERTS))
    table = plan_table(ws, bench, cands, None, rates, gpus=gpus)
    options = plan_options(ws, bench, cands, rates, gpus=gpus)
    if out is not None:
        from expertlib.pipeline.workspace import record_provenance

        paths = [Path(out) / "plan.csv", Path(out) / "plan_options.csv"]
        atomic_write_csv(paths[0], table)
        atomic_write_csv(paths[1], options)
        record_provenance(paths)
    return table, options


def plan_markdown(table: pd.DataFrame, options: pd.DataFrame) -> str:
    """The plan and its options as the README shows them (a test holds the README to these files)."""
    gpus = next(c for c in table.columns if c.startswith("hours_") and c != "hours_1gpu")
    n = gpus.removeprefix("hours_").removesuffix("gpu")
    lines = [f"| stage | resolution | jobs | images | GPU-hours | hours on 1 GPU | hours on {n} GPUs |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in table.itertuples():
        if r.gpu_hours < 0.005 and r.stage != "total":
            continue
        res = "" if r.stage == "total" else f"{r.resolution} px"
        lines.append(f"| {r.stage} | {res} | {r.jobs:,} | {r.images:,} | {r.gpu_hours:.1f} | {r.hours_1gpu:.1f} | "
                     f"{getattr(r, gpus):.1f} |")  # fmt: skip
    lines += ["", f"| design | change | fine-tunes | GPU-hours | hours on {n} GPUs | what it buys |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in options.itertuples():
        lines.append(
            f"| {r.variant} | {r.change} | {r.jobs:,} | {r.gpu_hours:.1f} | {getattr(r, gpus):.1f} | {r.buys} |"
        )
    return "\n".join(lines)


if (
    __name__ == "__main__"
):  # python -m expertlib.pipeline.compute_plan [SCALE [OUT_DIR]]: the plan on VTAB's published sizes
    import sys

    plan, opts = published_plan(
        *(sys.argv[1:2] or ["released"]), out=sys.argv[2] if len(sys.argv) > 2 else None
    )
    print(plan_markdown(plan, opts))
