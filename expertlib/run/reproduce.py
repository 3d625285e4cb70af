"""Run every notebook in order through papermill: ``python -m expertlib.reproduce --scale cpu``.

Parameters are validated against each notebook's ``parameters`` cell before anything runs (papermill itself
only warns about unknown names). Executed notebooks are saved under ``results/<scale>/notebooks/``; a failing
notebook stops the run with its path, and the executed copy (with the error) is kept for reading.

Inside a checkout, relative ``--results-dir`` and ``--data-root`` start at the repository root, wherever the
command runs from, and the notebooks' kernels work there (as notebooks opened in JupyterLab do, through
``session.start``); outside every checkout they start at the working directory. A run whose ``--param`` values
differ from the notebooks' defaults keeps its executed notebooks in a folder of its own,
``results/<scale>/notebooks/<variant>/`` (:func:`expertlib.run.parameters.variant_name`, e.g. ``k=1``), so it
never overwrites those of the run with the defaults (the committed run at the cpu scale).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
import time
from pathlib import Path

from expertlib.run.parameters import (
    ParameterError,
    changed_values,
    declared_defaults,
    validate_parameters,
    validate_values,
    variant_name,
)
from expertlib.run.presets import SCALES, get_scale
from expertlib.utils import runlock
from expertlib.utils.runtime import kernel_transport_encryption, repository_root

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
UPSTREAM_NOTEBOOKS = ("02_", "03_")  # skipped at scales that train nothing upstream (``released``)


def notebooks(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    found = sorted(directory.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no numbered notebooks in {directory}")
    return found


def run(
    scale: str,
    results_dir: str = "results",
    data_root: str = "data",
    only: list[str] | None = None,
    extra: dict | None = None,
    progress: bool | None = None,
    record_times: bool = False,
) -> list[Path]:
    """Execute the notebooks (all, or those whose names start with an entry of ``only``) at ``scale``.
    ``extra``: more notebook parameters (``--param``); ``progress``: show progress bars (None: as
    ``extra["progress"]`` says, else yes). ``record_times``: write each notebook's wall time into
    ``summary.json`` (``make reproduce-fresh`` does, so the recorded times are those of a run that computed
    everything).

    Every value, the options' and ``extra``'s, is checked against the type its notebooks declare before anything
    runs, and none is overwritten: a parameter given both ways must agree."""
    extra = dict(extra or {})
    results_dir, data_root = (
        os.fspath(v) if isinstance(v, os.PathLike) else v for v in (results_dir, data_root)
    )
    if only is not None and not (isinstance(only, list | tuple) and all(isinstance(o, str) for o in only)):
        raise ParameterError(f"only must be a list of notebook name prefixes, got {only!r}")
    for name, value in (("record_times", record_times), ("progress", progress)):
        if not isinstance(value, bool) and not (name == "progress" and value is None):
            raise ParameterError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    sc = get_scale(scale)
    found = notebooks()
    unknown = [o for o in only or () if not any(nb.name.startswith(o) for nb in found)]
    if unknown or (only is not None and not only):
        raise ValueError(f"--only {' '.join(unknown) or '(nothing)'} names no notebook; the notebooks: "
                         f"{', '.join(nb.name for nb in found)}")  # fmt: skip
    fixed = sorted(set(extra) & {"scale", "results_dir", "data_root"})
    if fixed:
        raise ValueError(f"--param {', '.join(fixed)}: set these with --scale, --results-dir and --data-root, so that "
                         "the run's lock covers the folder its results go to")  # fmt: skip
    chosen = [nb for nb in found if not only or any(nb.name.startswith(o) for o in only)]
    if not sc.trains_upstream:  # 02 and 03 train B and the experts: this scale downloads them instead
        chosen = [nb for nb in chosen if not nb.name.startswith(UPSTREAM_NOTEBOOKS)]
    for nb in chosen:  # the values as the user gave them, before anything is merged into them
        validate_parameters(nb, extra)
    if "progress" in extra and progress is not None and extra["progress"] != progress:
        said = "--no-progress" if progress is False else f"progress={progress!r}"
        raise ParameterError(f"--param progress={extra['progress']!r} disagrees with {said}: give it once")
    progress = extra.pop("progress", True if progress is None else progress)
    params = {
        **extra,
        "scale": scale,
        "results_dir": results_dir,
        "data_root": data_root,
        "progress": progress,
    }
    for nb in chosen:  # validate everything before any compute
        validate_parameters(nb, params)
    validate_values(**{k: params[k] for k in ("scale", "results_dir", "data_root", "seed", "device", "progress")
                       if k in params})  # fmt: skip
    # relative paths start at the repository root (the working directory outside a checkout), for this process and
    # the kernels alike, so a run started anywhere in the checkout reads and writes the same results/ and data/
    base = repository_root() or Path.cwd()
    scale_dir = base / results_dir / scale
    defaults: dict = {}
    for nb in chosen:
        defaults.update(declared_defaults(nb))
    variant = variant_name(changed_values(extra, defaults))
    out_dir = scale_dir / "notebooks" / variant if variant else scale_dir / "notebooks"
    if variant:
        print(
            f"other parameters than the defaults ({variant}): executed notebooks go to {_shown(out_dir, base)}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with runlock.locked(scale_dir), tempfile.TemporaryDirectory(prefix="expertlib-run-") as running:
        for i, nb in enumerate(chosen, 1):
            out = out_dir / nb.name
            t0 = time.perf_counter()
            # papermill saves as it goes: outside results/, so no half-run notebook ever sits there
            partial = Path(running) / nb.name
            print(f"[{i}/{len(chosen)}] {nb.name} (scale={scale}) ... (in progress: {partial})", flush=True)
            shown = _shown(out, base)
            try:
                execute(nb, partial, params, progress, base)
            finally:  # a failed notebook is kept too (complete, with its error), for reading
                if partial.exists():
                    finish(partial, out, shown)
            seconds = round(time.perf_counter() - t0, 1)
            print(f"[{i}/{len(chosen)}] {nb.name} done in {seconds:.0f} s -> {shown}", flush=True)
            written.append(out)
            if record_times:  # as each notebook ends, so a run stopped part-way keeps the times it measured
                write_run_seconds(scale_dir / "summary.json", {nb.stem: seconds})
    return written


def _shown(path: Path, base: Path) -> str:
    """``path`` as the checkout names it (from its root; the same in every clone), else in full."""
    return str(path.relative_to(base) if path.is_relative_to(base) else path)


def execute(notebook: Path, out: Path, parameters: dict, progress: bool, cwd: Path) -> None:
    """Run ``notebook`` through papermill into ``out``, its kernel working in ``cwd``, on an encrypted channel
    where pyzmq can (:func:`expertlib.utils.runtime.kernel_transport_encryption`)."""
    import papermill as pm
    from traitlets.config import Config

    encryption = kernel_transport_encryption()
    config = Config({"KernelManager": {"transport_encryption": encryption}} if encryption else {})
    pm.execute_notebook(str(notebook), str(out), parameters=parameters, kernel_name="python3",
                        progress_bar=progress, cwd=str(cwd), config=config)  # fmt: skip


def write_run_seconds(summary_path: Path, seconds: dict[str, float]) -> None:
    """Record notebooks' wall times in ``summary.json``, beside those already there (a run resumed with ``--only``
    adds the notebooks it ran), with their total and the machine."""
    import json

    from expertlib.utils.runtime import atomic_write_json, machine_description

    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    old = {k: v for k, v in summary.get("run_seconds", {}).items() if k not in ("total", "machine")}
    times = {k: (old | seconds)[k] for k in sorted(old | seconds)}
    m = machine_description()
    summary["run_seconds"] = {**times, "total": round(sum(times.values()), 1),
                              "machine": f"{m['cpu_count']} CPUs, {m['cuda'] or 'no GPU'}"}  # fmt: skip
    atomic_write_json(summary_path, summary)


VOLATILE_CELL_KEYS = ("execution",)  # per-cell timestamps
VOLATILE_PAPERMILL_KEYS = ("start_time", "end_time", "duration")


def is_progress_bar(output: dict) -> bool:
    """A tqdm progress bar written to stderr (``\\r``-redrawn ``... 3/9 [00:01<00:02, 3.74it/s]`` lines, and the
    bare newline it ends with)."""
    import re

    if output.get("output_type") != "stream" or output.get("name") != "stderr":
        return False
    text = "".join(output.get("text", ""))
    return not text.strip() or all(
        re.search(r"(\d+%\||\d+it \[|it/s\]|s/it\]|\| *\d+/\d+ \[)", line) or not line.strip()
        for line in re.split(r"[\r\n]", text)
    )


def finish(partial: Path, out: Path, output_path: str | None = None) -> Path:
    """Move an executed notebook to ``out`` atomically, without the timestamps papermill and the kernel record
    and without progress bars, so that a rerun that reproduces every output leaves the file byte-identical (also
    when a fresh clone rebuilds its data first). ``output_path``: where the notebook says it was written
    (default ``out``; a run in a checkout records it from the repository root, the same in every clone)."""
    import nbformat

    from expertlib.utils.runtime import atomic_write

    nb = nbformat.read(str(partial), as_version=4)
    for cell in nb.cells:
        if "outputs" in cell:  # progress bars say how a run went (e.g. data rebuilt), not what it found
            cell["outputs"] = [o for o in cell["outputs"] if not is_progress_bar(o)]
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"  # papermill gives it a random id on every run
        for key in VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)
        for key in VOLATILE_PAPERMILL_KEYS:
            cell.metadata.get("papermill", {}).pop(key, None)
    for key in VOLATILE_PAPERMILL_KEYS:
        nb.metadata.get("papermill", {}).pop(key, None)
    # where it came from and where it lands, the same in any clone; not the temporary folder it ran in
    if "papermill" in nb.metadata:
        pm_meta = nb.metadata["papermill"]
        pm_meta["output_path"] = output_path or str(out)
        if pm_meta.get("input_path"):
            pm_meta["input_path"] = f"notebooks/{Path(pm_meta['input_path']).name}"
    atomic_write(out, lambda p: nbformat.write(nb, str(p)))
    partial.unlink()
    return out


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m expertlib.reproduce", description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="cpu", metavar="SCALE",
                    help=f"one of {', '.join(SCALES)} (default: cpu; README's table says what each runs)")  # fmt: skip
    ap.add_argument("--results-dir", default="results",
                    help="outputs go to RESULTS_DIR/SCALE/ (relative: from the repository root; default: results)")  # fmt: skip
    ap.add_argument("--data-root", default="data",
                    help="datasets and data caches (relative: from the repository root; default: data)")  # fmt: skip
    ap.add_argument(
        "--only", nargs="+", metavar="NN", help="notebook name prefixes, e.g. 01 02 (default: all)"
    )
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a notebook parameter, as a Python literal (seed=3, device='cuda', progress=False); checked "
                    "against the type the notebooks declare before anything runs. Values other than the defaults "
                    "keep their executed notebooks in RESULTS_DIR/SCALE/notebooks/<name=value,...>/")  # fmt: skip
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument(
        "--record-times", action="store_true", help="write each notebook's wall time to summary.json"
    )
    args = ap.parse_args(argv)
    extra: dict = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            ap.error(f"--param expects NAME=VALUE, got {item!r}")
        if name in extra:  # never overwrite a value: a repeated name is a mistake to name, not to settle
            ap.error(
                f"--param {name} is given twice ({extra[name]!r} and {_parse_value(value)!r}): give it once"
            )
        extra[name] = _parse_value(value)
    try:
        run(
            args.scale,
            args.results_dir,
            args.data_root,
            args.only,
            extra,
            False if args.no_progress else None,
            args.record_times,
        )
    except Exception as e:  # report the cause in one line; papermill keeps the executed notebook
        print(f"reproduce failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
