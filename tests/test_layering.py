"""The house's design, held by a scan of ``expertlib/`` with ``ast`` (every import, those inside functions too).

``expertlib/`` is wings by the paper's concepts, stacked in floors (docs/library.md, "Layout"): a module may
import its own wing and the wings on the floors below, never a wing above it nor a wing beside it on its own
floor. Inside the pipeline its own floors keep the same rule, and no notebook step imports another. Besides:
no import cycle, nothing outside the pipeline imports it but the short commands, no module grows past its size,
the top level holds only ``rank`` and the commands (each a few lines over its wing's ``main``), and every wing
opens with a docstring that says what it is and what it may import, and imports nothing itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "expertlib"

# The wings' floors, bottom first: a module imports its own wing and the floors below, nothing beside or above.
WINGS: list[tuple[str, ...]] = [
    ("utils",),  # process plumbing
    ("datasets",),  # the upstream hierarchy, the tasks, BiT's preprocessing
    ("models",),  # B, the experts (adapters, full), the released weights
    ("train", "analysis", "run"),  # fine-tuning and BiT-HyperRule | paired statistics, figures | scales, runs
    ("select",),  # the proxies and the expert they choose
    ("rank",),  # expertlib/rank.py: the user's command, ranking models on their own images
    ("pipeline",),  # the notebooks' steps over their shared base
    ("commands",),  # python -m expertlib.<command>: the thin entry modules at the top level
]
COMMANDS = ("reproduce", "convert", "download", "launch", "lab")  # each runs main() of <wing>.<command>
PACKAGES = [w for floor in WINGS for w in floor if w not in ("rank", "commands")]

# Inside the pipeline, bottom first: the base no step owns, the plan and session, the steps, its commands.
PIPELINE_FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("pipeline base", ("pipeline", "pipeline.workspace", "pipeline.tables", "pipeline.recipes", "pipeline.pricing",
                       "pipeline.analysis", "pipeline.experts", "pipeline.inputs", "pipeline.models", "pipeline.dat",
                       "pipeline.finetunes", "pipeline.methods", "pipeline.quality", "pipeline.hypotheses",
                       "pipeline.summary")),
    ("plan and session", ("pipeline.compute_plan", "pipeline.forecast", "pipeline.session")),
    ("notebook steps", ("pipeline.data", "pipeline.upstream", "pipeline.scoring", "pipeline.transfer",
                        "pipeline.report", "pipeline.your_task")),
    ("pipeline commands", ("pipeline.torchrun", "pipeline.docs", "pipeline.download")),
]  # fmt: skip
STEPS = dict(PIPELINE_FLOORS)["notebook steps"]
MAX_LINES, MAX_PIPELINE_LINES = 500, 400
MAX_COMMAND_LINES = 12


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


def wing_of(module: str) -> str:
    """The wing a module belongs to: its package, or ``rank`` and ``commands`` at the top level."""
    top = module.split(".")[0]
    if module in COMMANDS:
        return "commands"
    if top in PACKAGES or top == "rank":
        return top
    raise KeyError(f"{module} is in no declared wing")


def floor_of(wing: str) -> int:
    return next(i for i, floor in enumerate(WINGS) if wing in floor)


def pipeline_floor(module: str) -> int:
    for i, (_, members) in enumerate(PIPELINE_FLOORS):
        if module in members:
            return i
    raise KeyError(f"{module} is on no floor of the pipeline")


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(p, known) - {m} for m, p in mods.items() if m != "__init__"}


def misplaced(edges: dict[str, set[str]]) -> list[str]:
    """Every import that runs up a wing or across a floor (between two wings on one floor, or up the
    pipeline's own floors), named with both wings."""
    bad = []
    for m, targets in sorted(edges.items()):
        for t in sorted(targets):
            wm, wt = wing_of(m), wing_of(t)
            if wm != wt and floor_of(wt) >= floor_of(wm):
                way = "up to" if floor_of(wt) > floor_of(wm) else "across to"
                bad.append(f"{m} ({wm}) imports {t}: {way} {wt}")
            elif wm == wt == "pipeline" and pipeline_floor(t) > pipeline_floor(m):
                bad.append(f"{m} ({PIPELINE_FLOORS[pipeline_floor(m)][0]}) imports {t}: up to "
                           f"{PIPELINE_FLOORS[pipeline_floor(t)][0]}")  # fmt: skip
    return bad


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


def test_every_module_has_a_wing_and_every_wing_is_declared():
    mods = [m for m in modules() if m != "__init__"]
    unplaced = []
    for m in mods:
        try:
            wing_of(m)
            if m.startswith("pipeline"):
                pipeline_floor(m)
        except KeyError as e:
            unplaced.append(str(e))
    assert unplaced == []
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name not in ("data", "__pycache__")}
    assert folders == set(PACKAGES)


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_imports_go_down_the_wings_never_up_nor_across_a_floor():
    assert misplaced(graph()) == []


def test_the_library_never_imports_the_pipeline_and_no_step_imports_another():
    g = graph()
    library = [f"{m} -> {t}" for m, ts in g.items() if wing_of(m) not in ("pipeline", "commands")
               for t in ts if wing_of(t) == "pipeline"]  # fmt: skip
    assert library == []
    steps = [f"{m} -> {t}" for m in STEPS for t in g[m] if t in STEPS]
    assert steps == []


def test_modules_stay_small():
    sizes = {m: len(p.read_text().splitlines()) for m, p in modules().items()}
    limit = lambda m: MAX_PIPELINE_LINES if m.startswith("pipeline") else MAX_LINES  # noqa: E731
    assert {m: n for m, n in sizes.items() if n > limit(m)} == {}


def test_the_top_level_holds_only_rank_and_the_commands_each_a_few_lines():
    assert sorted(p.stem for p in ROOT.glob("*.py")) == sorted(["__init__", "rank", *COMMANDS])
    g = graph()
    for c in COMMANDS:
        tree = ast.parse((ROOT / f"{c}.py").read_text())
        assert len((ROOT / f"{c}.py").read_text().splitlines()) <= MAX_COMMAND_LINES, c
        assert not [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))], c
        (target,) = g[c]  # one import: the command's own module in its wing
        assert target.split(".")[-1] == c and wing_of(target) in PACKAGES, (c, target)


@pytest.mark.parametrize("wing", PACKAGES)
def test_each_wing_opens_with_a_docstring_and_imports_nothing(wing):
    tree = ast.parse((ROOT / wing / "__init__.py").read_text())
    doc = ast.get_docstring(tree)
    assert doc and "May import:" in doc, f"expertlib/{wing}/__init__.py: say what the wing is and may import"
    if wing != "pipeline":  # the pipeline re-exported Workspace & co. before the wings; it keeps doing so
        assert [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))] == []


@pytest.mark.parametrize("src, expected", [("import expertlib.models.resnet", {"models.resnet"}),
                                           ("from expertlib.pipeline import upstream as U", {"pipeline.upstream"}),
                                           ("def f():\n    from expertlib.pipeline.session import start", {"pipeline.session"}),
                                           ("from expertlib.analysis import plots", {"analysis.plots"}),
                                           ("from expertlib import rank", {"rank"})])  # fmt: skip
def test_the_scan_sees_every_form_of_import(tmp_path, src, expected):
    p = tmp_path / "m.py"
    p.write_text(src)
    assert imports(p, set(modules())) == expected


def test_a_cycle_an_upward_and_a_sideways_import_would_be_caught():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert misplaced({"models.resnet": {"train.training"}}) == [
        "models.resnet (models) imports train.training: up to train"
    ]
    assert misplaced({"train.training": {"run.presets"}, "analysis.plots": {"train.evaluation"}}) == [
        "analysis.plots (analysis) imports train.evaluation: across to train",
        "train.training (train) imports run.presets: across to run",
    ]
    assert misplaced({"pipeline.workspace": {"pipeline.session"}}) == [
        "pipeline.workspace (pipeline base) imports pipeline.session: up to plan and session"
    ]
    fine = {"select.zoo": {"train.training", "run.presets", "utils.runtime"}, "rank": {"select.zoo"},
            "download": {"pipeline.download"}, "pipeline.report": {"pipeline.methods", "analysis.plots"}}  # fmt: skip
    assert misplaced(fine) == []
    assert (
        floor_of("pipeline") > floor_of("rank") > floor_of("select") > floor_of("train") > floor_of("models")
    )
