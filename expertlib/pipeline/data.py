"""Notebook 01: the benchmark a scale runs on, the expert subtrees carved from it, and the data figures."""

from __future__ import annotations

import re

import pandas as pd

from expertlib.datasets.benchmark import Benchmark
from expertlib.pipeline.workspace import Workspace
from expertlib.presets import validate_values
from expertlib.runtime import atomic_write_csv


def start(
    scale: str, results_dir: str, data_root: str, seed: int = 0, device: str = "auto", progress: bool = True
) -> tuple[Workspace, Benchmark]:
    """Every notebook's first step: check its parameters, open the workspace, load the benchmark (at the paper
    scale a missing folder is named here with the layout it expects) and print the plan."""
    validate_values(
        scale=scale, results_dir=results_dir, data_root=data_root, seed=seed, device=device, progress=progress
    )
    ws = Workspace.create(scale, results_dir, data_root, device, seed, progress)
    bench = load_benchmark(ws)
    print_plan(ws, bench)
    return ws, bench


def load_benchmark(ws: Workspace) -> Benchmark:
    """The scale's benchmark at its resolution: the embedded one (built or read from ``data_root/embedded``)
    or ImageNet-21k + VTAB-1k from ``data_root`` (missing data raises an error naming the path and layout)."""
    sc = ws.scale
    if sc.data.embedded is not None:
        from expertlib.datasets.embedded import build

        bench = build(sc.data.embedded, cache_dir=ws.data_root / "embedded", progress=ws.progress)
    else:
        from expertlib.datasets.ondisk import FolderBenchmark, VtabBenchmark

        root = ws.dataset_root
        if sc.data.writes_fixture and not (root / "COMPLETE").is_file():
            from expertlib.datasets.fixtures import write_paper_fixture, write_released_fixture

            if sc.trains_upstream:
                write_paper_fixture(root)
            else:
                write_released_fixture(root, sc.upstream.weights or "", sc.data.released_experts or "")
        if sc.trains_upstream:
            bench = FolderBenchmark(root, sc.data.tasks, heldout_per_class=sc.data.heldout_per_class,
                                    task_resolution=sc.data.task_resolution, index_dir=ws.results_dir / "cache")  # fmt: skip
        else:
            check_downloads(ws)  # B and the experts, named with where to get them, before any compute
            bench = VtabBenchmark(root, sc.data.tasks, task_resolution=sc.data.task_resolution)
    bench.resolution = (sc.data.precrop, sc.data.crop)
    missing = [t for t in sc.data.tasks if t not in bench.task_names]
    if missing:
        raise KeyError(f"scale {sc.name!r} needs tasks {missing}, which benchmark {bench.name!r} lacks")
    if sc.study.few_shot:
        from expertlib.datasets.fewshot import FewShotBenchmark

        bench = FewShotBenchmark(bench, sc.study.few_shot)
    return bench


class MissingDownloadError(FileNotFoundError):
    """A public download the ``released`` scale needs is not under ``data_root``; the message says where to get
    it."""


WHERE_B = ("BiT-M R50x1's released weights, BiT-M-R50x1.npz (about 100 MB), from the big_transfer repository's "
           "download links (google-research/big_transfer README)")  # fmt: skip
WHERE_EXPERTS = ("the paper's experts, TF Hub / Kaggle Models handle google/experts/bit/r50x1/in21k/<name>/1 (a "
                 "~90 MB .tar.gz SavedModel each); unpack each into <folder>/<name>/ or keep the archives, then the "
                 "notebooks convert them once (or run python -m expertlib.convert <folder> --out "
                 "results/<scale>/models/released_experts.safetensors --base <BiT-M-R50x1.npz>)")  # fmt: skip


def check_downloads(ws: Workspace) -> None:
    """The ``released`` scale's downloads besides VTAB-1k (whose loaders name a missing task): B's ``.npz``, and
    each expert's SavedModel unless the converted bank is already in ``results/<scale>/models/``. Every missing
    one is named, with where to get it, in one error."""
    sc, root = ws.scale, ws.dataset_root
    problems = []
    weights = root / (sc.upstream.weights or "")
    if not sc.upstream.weights or not weights.is_file():
        problems.append(f"B's weights {weights} not found: {WHERE_B}")
    if not ws.path("models", RELEASED_BANK).exists():
        folder = root / (sc.data.released_experts or "released_experts")
        from expertlib.convert import ConversionError, sources

        try:
            found = sources([folder]) if folder.is_dir() else {}
        except ConversionError as e:
            found, problems = {}, [*problems, str(e)]
        missing = [e for e in released_names(sc) if e not in found]
        if missing:
            problems.append(
                f"{len(missing)} of the {len(released_names(sc))} released experts are not in {folder}: "
                f"{', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''}; download "
                + WHERE_EXPERTS.replace("<folder>", str(folder))
            )
    if problems:
        raise MissingDownloadError(
            f"scale {sc.name!r} needs downloads that {root} lacks:\n- " + "\n- ".join(problems)
        )


RELEASED_BANK = "released_experts.safetensors"


def released_names(scale) -> tuple[str, ...]:
    """The released experts a scale uses: its ``experts`` list, else all 48."""
    from expertlib.hierarchy import PAPER_EXPERTS

    return tuple(scale.expert.names) if scale.expert.names is not None else PAPER_EXPERTS


def expert_name(bench: Benchmark, node: str) -> str:
    """A readable, file-safe expert name for a hierarchy node: its first lemma ('animal' for n00015388)."""
    lemma = bench.hierarchy.names.get(node, node).split(",")[0].strip()
    return re.sub(r"[^A-Za-z0-9_-]+", "_", lemma).strip("_") or node


def choose_experts(ws: Workspace, bench: Benchmark) -> dict[str, str]:
    """The adapter experts: name -> hierarchy node. The scale's list (lemmas or ids), or the subtrees its
    rule picks from the data."""
    if ws.scale.expert.names is not None:
        return resolve_experts(bench, ws.scale.expert.names)
    nodes = bench.hierarchy.select_experts(bench.class_counts(), ws.scale.expert.rule)
    names: dict[str, str] = {}
    for n in nodes:
        name = expert_name(bench, n)
        names[name if name not in names else f"{name}_{n}"] = n
    return names


def full_experts(ws: Workspace, bench: Benchmark) -> dict[str, str]:
    """The experts that also get a full (whole-network) version: name -> node."""
    return resolve_experts(bench, ws.scale.expert.full)


def resolve_experts(bench: Benchmark, names) -> dict[str, str]:
    """Expert names -> hierarchy nodes. A released expert's name means its explicit WordNet id
    (``expertlib/data/released_experts.json``: ``food`` and ``nutrient`` are different synsets); other names
    are ids or lemmas of the benchmark's hierarchy."""
    from expertlib.hierarchy import released_expert_ids

    ids = released_expert_ids()
    wanted = {e: ids.get(e, e) for e in names}
    counts = None if all(n in bench.hierarchy for n in wanted.values()) else bench.class_counts()
    return {e: bench.hierarchy.resolve(n, counts) for e, n in wanted.items()}


def print_plan(ws: Workspace, bench: Benchmark | None = None) -> dict:
    """Print what the scale trains and fine-tunes and its GPU-hours per stage (:func:`plan_frame`)."""
    if bench is None:
        return {}
    table = plan_frame(ws, bench, write=False)
    total = table.iloc[-1]
    experts = len(choose_experts(ws, bench)) if ws.scale.trains_upstream else len(released_names(ws.scale))
    kind = "adapter experts" if ws.scale.trains_upstream else "released experts"
    per_stage = ", ".join(f"{r.stage} at {r.resolution} px {r.gpu_hours:,.1f}" for r in table.iloc[:-1].itertuples()
                          if r.gpu_hours >= 0.05)  # fmt: skip
    print(f"scale {ws.scale.name}: {ws.scale.upstream.arch} on {ws.scale.data.source}; {experts} {kind}, {len(ws.scale.expert.full)} full; "
          f"{len(ws.scale.data.tasks)} tasks, {total.jobs:,} fine-tunes ({total.picks}); GPU-hours ({total.rates}): "
          f"{per_stage or 'under 0.05 each'}; total {total.gpu_hours:,.2f}, {total.hours_1gpu:,.2f} h on 1 GPU, "
          f"{total.hours_8gpu:,.2f} h on 8")  # fmt: skip
    return {"plan": table, "experts": experts, "fine_tunes": int(total.jobs)}


def plan_frame(ws: Workspace, bench: Benchmark, write: bool = True) -> pd.DataFrame:
    """The plan (:mod:`expertlib.pipeline.plan`): the very job lists the notebooks run, each priced at its
    resolution and step count from the GPU rates of ``results/benchmarks/gpu.csv``, per stage, with wall-clock
    hours on 1 and 8 GPUs (for a scale that samples experts, an upper bound). With ``write`` (notebook 01),
    rank 0 writes it to ``tables/plan.csv`` and prices its documented alternatives into
    ``tables/plan_options.csv``; every notebook's start only prints it."""
    from expertlib.pipeline import plan as PL
    from expertlib.pipeline.workspace import is_main_process

    # the same plan whatever has run already (a rerun's notebooks print what the first run's did): for a scale
    # that samples experts, the upper bound before selection; `plan.plan_jobs` gives the exact list after it
    names = list(choose_experts(ws, bench)) if ws.scale.trains_upstream else None
    cands = PL.scale_candidates(ws, names)
    table = PL.plan_table(ws, bench, cands)
    if write and is_main_process():
        atomic_write_csv(ws.path("tables", "plan.csv"), table)
        atomic_write_csv(ws.path("tables", "plan_options.csv"), PL.plan_options(ws, bench, cands))
    return table


def write_data_summary(
    ws: Workspace, bench: Benchmark, accuracy: dict[str, float] | None = None
) -> pd.DataFrame:
    """``results/<scale>/data_summary.csv``: domains and tasks (and, once known, B's fine-tuned accuracy)."""
    frame = bench.summary(accuracy)
    atomic_write_csv(ws.results_dir / "data_summary.csv", frame)
    return frame


def sample_figure(ws: Workspace, bench: Benchmark):
    """A row of examples per upstream domain and per task; saved and returned for the notebook."""
    # imported here: matplotlib and seaborn cost 1.5 s, and most callers never plot
    from expertlib import plots

    fig = plots.sample_grid(bench.samples())
    plots.save_figure(fig, ws.path("figures", "samples"))
    return fig


def candidate_experts(ws: Workspace, bench: Benchmark) -> pd.DataFrame:
    """The expert subtrees to choose from: every internal node with data (node, name, depth, classes, images),
    or, for a scale that trains nothing, the 48 released experts (node, name, wordnet lemmas, classes of
    ImageNet-21k; no image counts: upstream images are not read)."""
    if ws.scale.trains_upstream:
        return bench.hierarchy.candidate_experts(bench.class_counts())
    from expertlib.hierarchy import released_experts

    return pd.DataFrame([{"node": e.wnid, "name": e.name, "lemmas": e.lemmas, "classes": len(e.classes), "gloss": e.gloss}
                         for e in released_experts().values()])  # fmt: skip


def data_sentence(ws: Workspace, bench: Benchmark, summary: pd.DataFrame, experts: dict[str, str]) -> str:
    """What notebook 01 says about the data, from the run."""
    tasks = summary[summary.kind == "task"]
    groups = ", ".join(f"{g}: {n}" for g, n in tasks.group.value_counts().sort_index().items())
    sizes = ", ".join(sorted({f"{r.train}+{r.val}" for r in tasks.itertuples()}))
    down = (f"{len(ws.scale.data.tasks)} downstream tasks ({groups}), {sizes} training images and "
            f"{tasks.test.min():,}-{tasks.test.max():,} test images each")  # fmt: skip
    if not ws.scale.trains_upstream:
        return (f"**{bench.name}** at scale `{ws.scale.name}`: no upstream image is read. B is BiT-M (its "
                f"{len(bench.classes):,}-way head over ImageNet-21k), the candidates are {len(experts)} released experts "
                f"({', '.join(experts)}), each with its ImageNet-21k classes for domain prediction; {down}.")  # fmt: skip
    return (f"**{bench.name}** at scale `{ws.scale.name}`: {len(bench.classes)} upstream classes in "
            f"{len(bench.domain_names)} domains, {len(bench.upstream_labels('train')):,} training and "
            f"{len(bench.upstream_labels('test')):,} held-out upstream images; {len(experts)} adapter experts "
            f"({', '.join(experts)}); {down}.")  # fmt: skip
