"""Which experts a scale has: the adapter experts its rule (or list) picks from the hierarchy, its full
experts, and the paper's released experts by name. Every step that trains, scores or fine-tunes experts asks
here, so they all mean the same experts."""

from __future__ import annotations

import re

from expertlib.datasets.benchmark import Benchmark
from expertlib.pipeline.workspace import Workspace

RELEASED_BANK = "released_experts.safetensors"


def released_names(scale) -> tuple[str, ...]:
    """The released experts a scale uses: its ``experts`` list, else all 48."""
    from expertlib.datasets.hierarchy import PAPER_EXPERTS

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
    from expertlib.datasets.hierarchy import released_expert_ids

    ids = released_expert_ids()
    wanted = {e: ids.get(e, e) for e in names}
    counts = None if all(n in bench.hierarchy for n in wanted.values()) else bench.class_counts()
    return {e: bench.hierarchy.resolve(n, counts) for e, n in wanted.items()}
