"""Notebook 01: what the data looks like (a sample of every domain and task), the candidate expert subtrees, and
what the notebook says about them. The benchmark itself is read by :mod:`expertlib.pipeline.inputs`."""

from __future__ import annotations

import pandas as pd

from expertlib.datasets.benchmark import Benchmark
from expertlib.pipeline.workspace import Workspace


def sample_figure(ws: Workspace, bench: Benchmark):
    """A row of examples per upstream domain and per task; saved and returned for the notebook."""
    # imported here: matplotlib and seaborn cost 1.5 s, and most callers never plot
    from expertlib.analysis import plots

    fig = plots.sample_grid(bench.samples())
    plots.save_figure(fig, ws.path("figures", "samples"))
    return fig


def candidate_experts(ws: Workspace, bench: Benchmark) -> pd.DataFrame:
    """The expert subtrees to choose from: every internal node with data (node, name, depth, classes, images),
    or, for a scale that trains nothing, the 48 released experts (node, name, wordnet lemmas, classes of
    ImageNet-21k; no image counts: upstream images are not read)."""
    if ws.scale.trains_upstream:
        return bench.hierarchy.candidate_experts(bench.class_counts())
    from expertlib.datasets.hierarchy import released_experts

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
