"""Notebook parameters: what a notebook's ``parameters`` cell declares, the one type check of every value
set from outside (``expertlib.run.reproduce``) or inside (each notebook's first step), before any compute, and
the folder name of a run whose values differ from the defaults (:func:`variant_name`), so that such a run
never overwrites the outputs of the run with the defaults (the committed one)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from expertlib.run.presets import get_scale


class ParameterError(ValueError):
    """An unknown or mistyped notebook parameter."""


_TYPES = {
    "int": int,
    "float": (int, float),
    "str": str,
    "bool": bool,
    "NoneType": type(None),
    "None": type(None),
    "list": list,
    "tuple": (list, tuple),
    "dict": dict,
}


def notebook_parameters(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """The parameters declared in a notebook's ``parameters`` cell: name -> {type, default, help}.

    Read with Python's own parser, not papermill's line patterns: those drop a parameter annotated with a union
    (``str | None``) or with a second ``=`` in its comment, and such a parameter could then not be set."""
    import ast
    import io
    import tokenize

    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise ParameterError(f"{notebook} has no cell tagged 'parameters'")
    src = cells[0].source
    try:
        tree = ast.parse(src)
        tokens = list(tokenize.generate_tokens(io.StringIO(src).readline))
    except (SyntaxError, tokenize.TokenError) as e:
        raise ParameterError(f"the parameters cell of {notebook} is not valid Python: {e}") from e
    comments = {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}
    out = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, annotation = node.target.id, ast.unparse(node.annotation)
        elif (
            isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            name, annotation = node.targets[0].id, None
        else:
            continue
        default = ast.get_source_segment(src, node.value) if node.value is not None else "None"
        out[name] = {"type": _declared_type(annotation, default), "default": default,
                     "help": comments.get(node.end_lineno, "")}  # fmt: skip
    return out


def declared_defaults(notebook: str | Path) -> dict[str, Any]:
    """Each declared parameter's default value (those whose default is a Python literal)."""
    import ast

    out = {}
    for name, spec in notebook_parameters(notebook).items():
        try:
            out[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            continue
    return out


def changed_values(values: dict[str, Any], defaults: dict[str, Any],
                   ignore: tuple[str, ...] = ("progress", "device")) -> dict[str, Any]:  # fmt: skip
    """The entries of ``values`` that differ from ``defaults`` (a name without a default counts as changed),
    leaving out those that say how a run goes, not what it computes (``ignore``: progress bars; the device,
    whose "auto" is CUDA wherever there is one, and whose results the recipes already hold to)."""
    return {k: v for k, v in values.items() if k not in ignore and (k not in defaults or defaults[k] != v)}


def variant_name(changed: dict[str, Any]) -> str:
    """The folder name of a run whose parameters ``changed`` (name -> value) differ from the defaults: sorted
    ``name=value`` pairs joined by commas (``k=1``, ``finetune_top=0,seed=3``), plus a short hash of the exact
    values wherever the readable part had to drop characters or shorten, so that different values never share
    a folder. Empty when nothing changed (the defaults' own folder)."""
    import hashlib
    import json
    import re

    if not changed:
        return ""

    def text(v: Any) -> str:
        return "+".join(map(str, v)) if isinstance(v, list | tuple) else str(v)

    raw = ",".join(f"{k}={text(v)}" for k, v in sorted(changed.items()))
    name = re.sub(r"[^A-Za-z0-9._+=,-]+", "_", raw)[:48]
    if name != raw:
        blob = json.dumps(sorted(changed.items()), default=str).encode()
        name = f"{name}-{hashlib.sha1(blob).hexdigest()[:8]}"
    return name


def _declared_type(annotation: str | None, default: str) -> str:
    """The annotation when there is one, else the type of the default's literal ('any' if it is None or not a
    literal)."""
    import ast

    if annotation not in (None, "None"):
        return annotation
    try:
        value = ast.literal_eval(default)
    except (ValueError, SyntaxError):
        return "any"
    return "any" if value is None else type(value).__name__


def validate_parameters(notebook: str | Path, values: dict[str, Any]) -> dict[str, Any]:
    """Check ``values`` against the notebook's parameters cell before any compute: an unknown name or a
    value of the wrong type raises :class:`ParameterError` naming it and what is accepted."""
    declared = notebook_parameters(notebook)
    for name, value in values.items():
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParameterError(
                f"unknown parameter {name!r} for {Path(notebook).name}.{hint} Accepted: {', '.join(sorted(declared))}"
            )
        want = declared[name]["type"]
        if not _type_ok(value, want):
            raise ParameterError(
                f"parameter {name!r} of {Path(notebook).name} must be {want} (default "
                f"{declared[name]['default']}), got {type(value).__name__} {value!r}"
            )
        if name == "scale":
            get_scale(value)
    return values


def _as_tuple(t: Any) -> tuple:
    if t is None:
        return ()
    return t if isinstance(t, tuple) else (t,)


def _type_ok(value: Any, want: str) -> bool:
    """Whether ``value`` fits a declared type (``"int"``, ``"str | None"``, ...): the one type check of every
    parameter, before a run and inside a notebook (a bool is not an int here)."""
    ok_types = tuple(t for part in want.split(" | ") for t in _as_tuple(_TYPES.get(part.strip())))
    return not ok_types or (
        isinstance(value, ok_types) and not (isinstance(value, bool) and bool not in ok_types)
    )


_VALUE_TYPES = {"scale": "str", "results_dir": "str", "data_root": "str", "seed": "int", "device": "str",
                "progress": "bool"}  # fmt: skip


def validate_values(**values: Any) -> None:
    """In-notebook check of the common parameters' values (types, known scale, known device)."""
    for name, value in values.items():
        want = _VALUE_TYPES.get(name)
        if want is not None and not _type_ok(value, want):
            raise ParameterError(f"parameter {name!r} must be {want}, got {type(value).__name__} {value!r}")
    if "scale" in values:
        get_scale(values["scale"])
    if "device" in values and not (
        values["device"] in ("auto", "cpu", "mps") or str(values["device"]).startswith("cuda")
    ):
        raise ParameterError(
            f"parameter 'device' must be 'auto', 'cpu' or 'cuda[:N]', got {values['device']!r}"
        )
