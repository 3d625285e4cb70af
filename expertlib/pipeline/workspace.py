"""Where a scale's results live, the one cache-or-compute helper, and provenance.

Every pipeline step writes under ``results/<scale>/`` and reuses what is already there: :func:`cached`
returns the stored result when every output file exists, and otherwise computes, saves (atomically) and
returns it. That is what lets a notebook be re-run in seconds and a killed run resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from expertlib.datasets.fewshot import tasks_with_few_shot
from expertlib.run.presets import get_scale
from expertlib.run.scale import Scale
from expertlib.train.training import RecipeMismatchError  # one error for stored outputs and checkpoints
from expertlib.utils import runlock
from expertlib.utils.distributed import is_distributed, is_primary
from expertlib.utils.runtime import (
    atomic_write_csv,
    atomic_write_json,
    machine_description,
    resolve_device,
    seed_everything,
)

T = TypeVar("T")


class MissingStepError(FileNotFoundError):
    """A notebook's input is missing: says which notebook to run first."""


@dataclass
class Workspace:
    """Where a scale's results live, and the run's settings."""

    scale: Scale
    results_dir: Path
    data_root: Path
    device: str = "cpu"
    seed: int = 0
    progress: bool = True

    @classmethod
    def create(
        cls,
        scale: str,
        results_dir: str | os.PathLike = "results",
        data_root: str | os.PathLike = "data",
        device: str = "auto",
        seed: int = 0,
        progress: bool = True,
    ) -> Workspace:
        ws = cls(
            get_scale(scale),
            Path(results_dir) / scale,
            Path(data_root),
            resolve_device(device),
            seed,
            progress,
        )
        if is_primary():  # one run per results folder (under torchrun, rank 0 writes and holds it)
            runlock.hold(ws.results_dir)
        for sub in ("models", "tables", "figures", "checkpoints"):
            (ws.results_dir / sub).mkdir(parents=True, exist_ok=True)
        seed_everything(seed)
        return ws

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks every step runs: the scale's, then their few-shot versions (``scale.study.few_shot``)."""
        return tasks_with_few_shot(self.scale.data.tasks, self.scale.study.few_shot)

    @property
    def dataset_root(self) -> Path:
        """Where this scale's data lives: ``data_root``, or ``data_root/<scale>`` for the scales that write a
        fixture there (``paper-smoke``, ``released-smoke``)."""
        return self.data_root / self.scale.name if self.scale.data.writes_fixture else self.data_root

    def recipe(self, step: str) -> dict:
        """The settings that make ``step``'s results here (:func:`expertlib.pipeline.recipes.step_recipe`)."""
        from expertlib.pipeline.recipes import step_recipe

        return step_recipe(self.scale, step, self.seed)

    def pool_workers(self) -> int:
        """Processes for independent trainings (:func:`expertlib.utils.parallel.run_jobs`): the scale's
        ``transfer_workers`` on a CPU; none on a GPU or under torchrun, where the jobs run in turn."""
        return self.scale.runtime.transfer_workers if self.device == "cpu" and not is_distributed() else 0

    def path(self, kind: str, name: str) -> Path:
        return self.results_dir / kind / name

    def require(self, kind: str, name: str, notebook: str) -> Path:
        p = self.path(kind, name)
        if not p.exists():
            raise MissingStepError(
                f"{p} is missing: run notebook {notebook} at scale={self.scale.name!r} first"
            )
        return p


# -- cache or compute ------------------------------------------------------------------------------------------
def _load_model(p: Path) -> Any:
    from expertlib.models.weights import load_model

    return load_model(p)


def _save_model(p: Path, m: Any) -> None:
    from expertlib.models.weights import save_model

    save_model(m, p)  # copies to the CPU: the model stays where it trains


def _load_bank(p: Path) -> Any:
    from expertlib.models.weights import load_bank

    return load_bank(p)


def _save_bank(p: Path, b: Any) -> None:
    from expertlib.models.weights import save_bank

    save_bank(b, p)


FORMATS: dict[str, tuple[Callable[[Path], Any], Callable[[Path, Any], Any]]] = {
    "csv": (pd.read_csv, lambda p, v: atomic_write_csv(p, v)),
    "json": (lambda p: json.loads(Path(p).read_text()), lambda p, v: atomic_write_json(p, v)),
    "model": (_load_model, _save_model),
    "bank": (_load_bank, _save_bank),
}


def check_recipe(paths: Sequence[Path], recipe: dict | None) -> None:
    """Refuse stored outputs made under another recipe, naming the settings that changed and the two ways
    out. An output whose provenance records no recipe (written before recipes were recorded) adopts this one,
    once: recorded in its ``provenance.json`` entry."""
    if recipe is None:
        return
    by_dir: dict[Path, list[Path]] = {}
    for p in paths:
        by_dir.setdefault(Path(p).parent, []).append(Path(p))
    for folder, files in by_dir.items():
        book = folder / "provenance.json"
        known = json.loads(book.read_text()) if book.exists() else {}
        adopt = False
        for p in files:
            entry = known.setdefault(p.name, {})
            stored = entry.get("recipe")
            if stored is None:
                entry["recipe"], adopt = recipe, True
                continue
            # a setting added after the output was made is not in its recipe: it had the behaviour the code had then
            # (every new setting's default keeps it, or RECORDED_BEFORE names it), so compare recorded settings and
            # those whose old behaviour is known
            from expertlib.pipeline.recipes import RECORDED_BEFORE

            keys = set(stored) | {k for k in RECORDED_BEFORE if k in recipe}
            changed = sorted(k for k in keys if stored.get(k, RECORDED_BEFORE.get(k)) != recipe.get(k))
            if changed:
                diff = "; ".join(
                    f"{k}: {stored.get(k, RECORDED_BEFORE.get(k))!r} -> {recipe.get(k)!r}" for k in changed
                )
                raise RecipeMismatchError(
                    f"{p} was made under another recipe ({diff}). Keep both: give this run another results_dir; or "
                    "recompute: `make reproduce-fresh` (or delete the file and what was made from it)"
                )
        if adopt and is_primary():
            atomic_write_json(book, known)


def cached(paths: Path | Sequence[Path], compute: Callable[[], T], formats: str | Sequence[str] = "csv",
           recipe: dict | None = None) -> T:  # fmt: skip
    """The stored result when every file in ``paths`` exists (and was made under ``recipe``: else
    :class:`RecipeMismatchError`), else ``compute()`` saved to them, with ``recipe`` in their provenance.

    One path and format gives one value; several paths and formats give (and ``compute`` returns) a tuple in
    the same order. Formats: ``csv`` (a DataFrame), ``json``, ``model`` (a ResNetV2), ``bank`` (an expert
    bank). Each file is written atomically, so a killed step leaves no half-written output."""
    single = isinstance(paths, (str, Path))
    paths = [Path(paths)] if single else [Path(p) for p in paths]
    formats = [formats] * len(paths) if isinstance(formats, str) else list(formats)
    if len(formats) != len(paths):
        raise ValueError(f"{len(paths)} paths but {len(formats)} formats")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown cache formats {unknown}; known: {', '.join(FORMATS)}")
    if all(p.exists() for p in paths):
        check_recipe(paths, recipe)
        values = tuple(FORMATS[f][0](p) for p, f in zip(paths, formats, strict=True))
        return values[0] if single else values  # type: ignore[return-value]
    result = compute()
    values = (result,) if single else tuple(result)  # type: ignore[arg-type]
    if is_primary():  # under torchrun every rank computes, rank 0 writes
        for p, f, v in zip(paths, formats, values, strict=True):
            FORMATS[f][1](p, v)
        record_provenance(paths, recipe)
    return result


def record_provenance(paths: Sequence[Path], recipe: dict | None = None) -> None:
    """Note in ``provenance.json`` beside each file the commit, working-tree state and time that produced it,
    and the recipe (the settings that made it) when given (one entry per file name; a rerun that reuses the
    file leaves its entry alone)."""
    stamp = provenance()
    entry = {k: stamp[k] for k in ("git_commit", "uncommitted_changes", "time")}
    if recipe is not None:
        entry["recipe"] = recipe
    by_dir: dict[Path, list[str]] = {}
    for p in paths:
        by_dir.setdefault(Path(p).parent, []).append(Path(p).name)
    for folder, names in by_dir.items():
        book = folder / "provenance.json"
        known = json.loads(book.read_text()) if book.exists() else {}
        known.update({n: entry for n in names})
        atomic_write_json(book, known)


# -- provenance ------------------------------------------------------------------------------------------------
def provenance() -> dict:
    """The commit, whether the library or notebooks had uncommitted changes, the machine and the time."""
    repo = (
        Path(__file__).resolve().parents[2]
    )  # the repository, wherever the process runs (make lab: notebooks/)
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "expertlib", "notebooks"],
                                    capture_output=True, text=True).stdout.strip())  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", None
    return {"git_commit": commit, "uncommitted_changes": dirty, "machine": machine_description(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}  # fmt: skip
