"""The house's design, held by a scan of ``expertlib/`` with ``ast``: every import (those inside functions too)
goes down or across the declared floors, never up and never round in a circle; the library never imports the
pipeline; no notebook step imports another step; no module grows past its size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "expertlib"

# The floors, bottom first: a module may import its own floor and the floors below it (docs/library.md).
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("runtime", "distributed", "runlock", "published", "parallel", "claims", "fetch")),
    (
        "data and models",
        (
            "datasets",
            "datasets.*",
            "resnet",
            "adapters",
            "candidates",
            "hierarchy",
            "transforms",
            "schedules",
            "weights",
            "tfcheckpoint",
            "convert",
            "download_checks",
        ),
    ),  # fmt: skip
    (
        "training and proxies",
        (
            "batching",
            "evaluation",
            "training",
            "stacked",
            "stacked_batches",
            "proxies",
            "transferability",
            "probes",
            "stats",
            "plots",
            "jobs",
        ),
    ),
    ("selection", ("selection", "zoo", "rank", "rank_table", "prior", "proxy_plots")),
    ("scales", ("scale", "presets", "parameters", "reproduce", "lab")),
    (
        "pipeline base",
        (
            "pipeline",
            "pipeline.workspace",
            "pipeline.tables",
            "pipeline.recipes",
            "pipeline.pricing",
            "pipeline.analysis",
            "pipeline.experts",
            "pipeline.inputs",
            "pipeline.models",
            "pipeline.dat",
            "pipeline.finetunes",
            "pipeline.methods",
            "pipeline.quality",
            "pipeline.hypotheses",
            "pipeline.summary",
        ),
    ),  # fmt: skip
    ("plan and session", ("pipeline.compute_plan", "pipeline.forecast", "pipeline.session")),
    (
        "notebook steps",
        (
            "pipeline.data",
            "pipeline.upstream",
            "pipeline.scoring",
            "pipeline.transfer",
            "pipeline.report",
            "pipeline.your_task",
        ),
    ),  # fmt: skip
    ("entry points", ("pipeline.torchrun", "pipeline.docs", "download", "launch")),
]
STEPS = dict(FLOORS)["notebook steps"]
ENTRY_POINTS = dict(FLOORS)[
    "entry points"
]  # commands over the whole pipeline: the only modules outside it that use it
MAX_LINES, MAX_PIPELINE_LINES = 500, 400


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name or "__init__"] = p
    return out


def imports(path: Path, known: set[str]) -> set[str]:
    """The expertlib modules ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "expertlib":
            base = node.module.removeprefix("expertlib").lstrip(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                found.add(sub if sub in known else base)
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("expertlib.") for a in node.names if a.name.startswith("expertlib.")
            }
    return {m for m in found if m in known}


def floor_of(module: str) -> int:
    for i, (_, members) in enumerate(FLOORS):
        if module in members or any(m.endswith(".*") and module.startswith(m[:-1]) for m in members):
            return i
    raise KeyError(module)


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(p, known) - {m} for m, p in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_floor():
    assert [m for m in modules() if m != "__init__" and not _has_floor(m)] == []


def _has_floor(m: str) -> bool:
    try:
        floor_of(m)
    except KeyError:
        return False
    return True


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_imports_go_down_or_across_never_up():
    up = [f"{m} ({FLOORS[floor_of(m)][0]}) imports {t} ({FLOORS[floor_of(t)][0]})"
          for m, targets in graph().items() if m != "__init__" for t in sorted(targets)
          if floor_of(t) > floor_of(m)]  # fmt: skip
    assert up == []


def test_the_library_never_imports_the_pipeline_and_no_step_imports_another():
    g = graph()
    library = [f"{m} -> {t}" for m, ts in g.items() if not m.startswith("pipeline") and m not in ENTRY_POINTS
               for t in ts if t.startswith("pipeline")]  # fmt: skip
    assert library == []
    steps = [f"{m} -> {t}" for m in STEPS for t in g[m] if t in STEPS]
    assert steps == []


def test_modules_stay_small():
    sizes = {m: len(p.read_text().splitlines()) for m, p in modules().items()}
    limit = lambda m: MAX_PIPELINE_LINES if m.startswith("pipeline") else MAX_LINES  # noqa: E731
    assert {m: n for m, n in sizes.items() if n > limit(m)} == {}


@pytest.mark.parametrize("src, expected", [("import expertlib.resnet", {"resnet"}),
                                           ("from expertlib.pipeline import upstream as U", {"pipeline.upstream"}),
                                           ("def f():\n    from expertlib.pipeline.session import start", {"pipeline.session"}),
                                           ("from expertlib import plots", {"plots"})])  # fmt: skip
def test_the_scan_sees_every_form_of_import(tmp_path, src, expected):
    p = tmp_path / "m.py"
    p.write_text(src)
    assert imports(p, set(modules())) == expected


def test_a_cycle_and_an_upward_import_would_be_caught():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert (
        floor_of("pipeline.report")
        > floor_of("pipeline.methods")
        > floor_of("selection")
        > floor_of("resnet")
    )
