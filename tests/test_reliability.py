"""The reliability matrix: faults and bad inputs, tried as a user would meet them. Every case is recorded in
``results/reliability.csv`` (case, what was done, expected, observed, pass) as the suite runs, so the file
says what the last run of the committed code saw; the README's reliability section cites it.

Kills are real: a child process sends itself SIGKILL at a chosen point (a training step, a fine-tune) or is
killed from outside between notebooks, and the rerun's outputs are compared with an uninterrupted run's."""

from __future__ import annotations

import errno
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from expertlib.utils.runtime import atomic_write_csv

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "results" / "reliability.csv"
COLUMNS = ["case", "done", "expected", "observed", "pass"]
_rows: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def _write_matrix():
    """Write the cases this run tried into the matrix (kept in case order), whether they passed or not."""
    yield
    old = pd.read_csv(MATRIX, dtype=str).to_dict("records") if MATRIX.exists() else []
    rows = {r["case"]: r for r in old} | _rows
    atomic_write_csv(MATRIX, pd.DataFrame([rows[k] for k in sorted(rows)], columns=COLUMNS))


def _clean(text: str, *folders: Path) -> str:
    """The observation without what changes from run to run (temporary folders, pids, times)."""
    for f in folders:
        text = text.replace(str(f), "<tmp>")
    text = re.sub(r"pid \d+, since [\d-]+ [\d:]+", "pid <pid>, since <time>", text)
    return " ".join(text.split())[:300]


def record(case: str, done: str, expected: str, observed: str, ok: bool, check: bool = True) -> None:
    """One row of the matrix; ``check``: assert it now (else :func:`_assert_recorded` later)."""
    _rows[case] = {"case": case, "done": done, "expected": expected, "observed": observed,
                   "pass": "yes" if ok else "NO"}  # fmt: skip
    assert ok or not check, f"{case}: expected {expected}; observed {observed}"


def _assert_recorded(*prefixes: str) -> None:
    bad = [r for c, r in _rows.items() if c.startswith(prefixes) and r["pass"] != "yes"]
    assert not bad, bad


def refused(case: str, done: str, error: type[BaseException], match: str, fn, *folders: Path) -> None:
    """Record that ``fn()`` raises ``error`` with a message matching ``match``."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the matrix records whatever happened
        observed, ok = (
            f"{type(e).__name__}: {_clean(str(e), *folders)}",
            isinstance(e, error) and bool(re.search(match, str(e), re.S)),
        )
    else:
        observed, ok = "no error", False
    record(case, done, f"{error.__name__} matching '{match}'", observed, ok)


# -- killed runs -------------------------------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    torch.set_num_threads({threads})
    sys.path.insert(0, {root!r})
    from expertlib.train import batching
    from expertlib.pipeline import Workspace, inputs as D, models as M, transfer as TR, upstream as U

    def die_on_call(module, name, n):
        real, calls = getattr(module, name), [0]
        def dying(*a, **k):
            calls[0] += 1
            if calls[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **k)
        setattr(module, name, dying)

    {patch}
    ws = Workspace.create("smoke", {results!r}, {data!r}, progress=False)
    bench = D.load_benchmark(ws)
    {body}
    """
)


def _child(results: Path, data: Path, body: str, patch: str = "") -> subprocess.CompletedProcess:
    script = CHILD.format(threads=torch.get_num_threads(), root=str(ROOT), results=str(results), data=str(data),
                          patch=patch, body=body)  # fmt: skip
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)


def _leftovers(folder: Path) -> list[str]:
    """Hidden files a run left (the lock and JupyterLab's own checkpoints aside)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")
                  if p.name not in (".lock", ".ipynb_checkpoints") and ".ipynb_checkpoints" not in p.parts)  # fmt: skip


def _same(a: Path, b: Path, names: list[str]) -> dict[str, bool]:
    return {n.split("/")[-1]: (a / n).read_bytes() == (b / n).read_bytes() for n in names}


MODELS = ["models/generic.safetensors", "models/generic_extra.safetensors", "models/adapter_experts.safetensors",
          "models/full_experts.safetensors"]  # fmt: skip
UPSTREAM = ("base, _ = U.train_generic(ws, bench); U.train_generic_extra(ws, bench, base); "
            "U.train_experts(ws, bench, base, 'adapter'); U.train_experts(ws, bench, base, 'full')")  # fmt: skip
TRANSFER = "TR.run_transfer(ws, bench, M.candidates(ws))"


def test_killed_runs_resume_to_the_same_results(smoke, smoke_run, tmp_path):
    """One results folder, killed three times as a user's long run might be: in B's training, in the second
    adapter expert, in the fine-tunes. Each rerun is the same call. The smoke fixture (trained in this process,
    never killed) is the uninterrupted reference for the models; the notebooks' smoke run, whose fine-tunes ran
    uninterrupted, for the transfer table."""
    ws, _ = smoke
    notebook_out, _, _ = smoke_run
    res, data, out = tmp_path / "r", tmp_path / "d", tmp_path / "r" / "smoke"
    kill_b = _child(res, data, UPSTREAM, "die_on_call(batching, 'batch_indices', 7)")
    # the rerun: B (12 steps), B+extra (4), the first adapter expert (4), then the 2nd step of the second
    kill_expert = _child(res, data, UPSTREAM, "die_on_call(batching, 'batch_indices', 12 + 4 + 4 + 2)")
    kept = sorted(p.name for p in (out / "checkpoints").glob("adapter_*.safetensors"))
    # transfer: the same call finishes the experts, then the first 12 fine-tunes choose the hyper-parameters
    # (3 tasks x 2 steps x 2 lrs); it dies in the 15th, the 3rd of the runs proper
    kill_ft = _child(res, data, f"{UPSTREAM}; {TRANSFER}", "die_on_call(TR, 'finetune_job', 15)")
    models = _same(out, ws.results_dir, MODELS)
    ok_b = (
        kill_b.returncode == -signal.SIGKILL
        and (out / MODELS[0]).read_bytes() == (ws.results_dir / MODELS[0]).read_bytes()
    )
    record("1a kill: B training", "SIGKILL at B's 7th of 12 training steps (smoke), then the same call again",
           "killed; the rerun trains B to the same bytes as an uninterrupted run",
           f"exit {kill_b.returncode}, then B identical: {models['generic.safetensors']}", ok_b, check=False)  # fmt: skip
    ok_expert = kill_expert.returncode == -signal.SIGKILL and len(kept) == 1
    record("1b kill: an expert", "the same call, SIGKILLed at the 2nd step of the 2nd adapter expert (B, B+extra and "
           "the first expert done), then again (continuing into the fine-tunes)", "the finished expert kept and "
           "reused; every model byte-identical to an uninterrupted run's", f"exit {kill_expert.returncode}; kept "
           f"{kept}; identical: {models}", ok_expert and all(models.values()), check=False)  # fmt: skip
    rows_at_kill = len(list((out / "jobs" / "transfer").glob("*.json")))  # one result file per finished job
    again = _child(res, data, TRANSFER)
    cols = ["task", "model", "mode", "seed", "accuracy", "steps", "lr"]  # all but wall-clock seconds
    a, b = (pd.read_csv(f / "tables" / "transfer_runs.csv")[cols] for f in (out, notebook_out))
    record("1c kill: a fine-tune", "SIGKILL in the 3rd fine-tune of notebook 05's runs (smoke), then the same call",
           "the runs finished before the kill kept (a result file each), not redone; the table equal to an "
           "uninterrupted run's",
           f"exit {kill_ft.returncode}, then {again.returncode}; {rows_at_kill} "
           f"runs kept at the kill; {len(a)} runs, equal: {a.equals(b)}",
           kill_ft.returncode == -signal.SIGKILL and again.returncode == 0 and rows_at_kill == 2 and a.equals(b),
           check=False)  # fmt: skip
    record("6a same seed: models and tables", "the smoke scale's models and transfer table made twice, by "
           "separate runs at the same seed (1a-1c)", "byte-identical models; equal tables (wall times aside)",
           f"models {models}; transfer table equal: {a.equals(b)}", all(models.values()) and a.equals(b),
           check=False)  # fmt: skip
    record(
        "1e kill: leftovers",
        "the results folder after 1a-1c",
        "no temporary file left by the kills",
        f"left: {_leftovers(out) or 'nothing'}",
        not _leftovers(out),
        check=False,
    )
    _assert_recorded("1a", "1b", "1c", "1e", "6a")


def test_a_killed_notebook_run_resumes_to_the_same_results(smoke, smoke_run):
    """The notebook tests' smoke run is itself a killed run (see conftest.smoke_run)."""
    ws, _ = smoke
    out, _, kill = smoke_run
    same = _same(out, ws.results_dir, MODELS)
    record("1d kill: between notebooks", "SIGKILL to `python -m expertlib.reproduce --scale smoke` as soon as "
           "01's executed notebook appears, then the same command again", "only finished notebooks under "
           "results/ at the kill; the rerun completes with models byte-identical to an uninterrupted run's; no "
           "temporary file left", f"exit {kill['exit']}; notebooks at the kill {kill['notebooks']}; identical: "
           f"{same}; left: {_leftovers(out) or 'nothing'}", kill["exit"] == -signal.SIGKILL and all(same.values())
           and not _leftovers(out) and all(not n.startswith(".") for n in kill["notebooks"]))  # fmt: skip


# -- two runs at once ------------------------------------------------------------------------------------------
def test_a_second_run_on_the_same_results_is_refused_and_the_lock_dies_with_its_holder(tmp_path):
    from expertlib.pipeline import Workspace
    from expertlib.run.reproduce import run
    from expertlib.utils.runlock import ResultsInUseError

    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); "
         "from expertlib.pipeline import Workspace; "
         f"Workspace.create('smoke', {str(tmp_path)!r}, progress=False); print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    refused(
        "2a two runs: a second workspace",
        "Workspace.create on a results folder another process holds",
        ResultsInUseError,
        r"in use by another run \(pid \d+.*another results_dir",
        lambda: Workspace.create("smoke", tmp_path, progress=False),
        tmp_path,
    )
    refused(
        "2b two runs: a second reproduce",
        "reproduce.run on a results folder another process holds",
        ResultsInUseError,
        r"in use by another run",
        lambda: run("smoke", results_dir=str(tmp_path)),
        tmp_path,
    )
    written = sorted(p.name for p in (tmp_path / "smoke" / "notebooks").iterdir())
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    Workspace.create("smoke", tmp_path, progress=False)  # the holder is gone: no stale lock
    record(
        "2c two runs: holder killed",
        "SIGKILL to the process holding the lock, then Workspace.create",
        "the refused runs wrote nothing; the lock is free once its holder dies (no stale lock)",
        f"notebooks written by the refused run: {written or 'none'}; Workspace.create then succeeded",
        not written,
    )
    # fmt: skip


# -- interrupted writes ----------------------------------------------------------------------------------------
def _disk_full_after(n_bytes: int):
    def write(p: Path) -> None:
        with open(p, "wb") as f:
            f.write(b"x" * n_bytes)
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


def test_a_full_disk_during_any_write_leaves_no_partial_file(tmp_path):
    import matplotlib.pyplot as plt

    from expertlib.analysis import plots
    from expertlib.models.resnet import create_model
    from expertlib.models.weights import save_model
    from expertlib.utils.runtime import atomic_write

    table = tmp_path / "tables" / "t.csv"
    atomic_write_csv(table, pd.DataFrame({"a": [1]}))
    before = table.read_bytes()
    refused(
        "3a full disk: a table",
        "a table rewritten while the disk fills (ENOSPC mid-write)",
        OSError,
        "No space left",
        lambda: atomic_write(table, _disk_full_after(10)),
    )
    record("3a' full disk: a table", "the folder after 3a", "the previous table intact, no temporary file",
           f"previous intact: {table.read_bytes() == before}; files: {sorted(p.name for p in table.parent.iterdir())}",
           table.read_bytes() == before and [p.name for p in table.parent.iterdir()] == ["t.csv"])  # fmt: skip

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    real = fig.savefig

    def failing_savefig(path, **kw):
        real(path, **kw)  # a whole file, then the disk is full before the rename
        raise OSError(errno.ENOSPC, "No space left on device")

    fig.savefig = failing_savefig
    refused(
        "3b full disk: a figure",
        "plots.save_figure while the disk fills",
        OSError,
        "No space left",
        lambda: plots.save_figure(fig, tmp_path / "figures" / "f"),
    )
    figs = sorted(p.name for p in (tmp_path / "figures").iterdir())
    record("3b' full disk: a figure", "the folder after 3b", "no figure file and no temporary file",
           f"files: {figs or 'none'}", not figs)  # fmt: skip

    model = tmp_path / "models" / "m.safetensors"
    import expertlib.models.weights as W

    real_save = W.save_file
    W.save_file = lambda tensors, path, metadata=None: _disk_full_after(100)(Path(path))
    try:
        refused(
            "3c full disk: a model",
            "weights.save_model while the disk fills",
            OSError,
            "No space left",
            lambda: save_model(create_model("tiny", num_classes=3), model),
        )
    finally:
        W.save_file = real_save
    left = sorted(p.name for p in model.parent.iterdir()) if model.parent.exists() else []
    record("3c' full disk: a model", "the folder after 3c", "no model file and no temporary file",
           f"files: {left or 'none'}", not left)  # fmt: skip


def test_temporary_files_of_a_killed_write_are_swept_by_the_next_run(tmp_path):
    from expertlib.pipeline import Workspace

    stale = tmp_path / "smoke" / "tables" / ".transfer_runs.csv.k3j2.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_text("half a table")
    Workspace.create("smoke", tmp_path, progress=False)
    record("3d killed write: stale temporary", "a `.name.xyz.tmp` left by a write killed before its rename, then "
           "a new run starts", "the new run (holding the lock) removes it", f"still there: {stale.exists()}",
           not stale.exists())  # fmt: skip


# -- bad inputs ------------------------------------------------------------------------------------------------
def _image_folder(root: Path) -> None:
    from expertlib.datasets.fixtures import write_image_folder

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 8)
    write_image_folder(
        root, rng.integers(0, 255, (24, 20, 20, 3), dtype=np.uint8), labels, ["cat", "dog", "fox"]
    )


def test_bad_images(tmp_path):
    from expertlib.datasets.folders import CorruptImageError
    from expertlib.datasets.user_images import ImagesError, load_images

    write_image_folder = _image_folder
    write_image_folder(tmp_path / "a")
    bad = tmp_path / "a" / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a JPEG")
    refused(
        "4a bad images: corrupt file",
        "a class folder with a file that is not an image",
        CorruptImageError,
        "broken.jpg",
        lambda: load_images(tmp_path / "a"),
        tmp_path,
    )
    write_image_folder(tmp_path / "b")
    good = next((tmp_path / "b" / "dog").iterdir())
    good.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    refused(
        "4b bad images: truncated JPEG",
        "a class folder with a JPEG cut in half",
        CorruptImageError,
        good.name,
        lambda: load_images(tmp_path / "b"),
        tmp_path,
    )
    write_image_folder(tmp_path / "c")
    (tmp_path / "c" / "empty_class").mkdir()
    refused(
        "4c bad images: empty class folder",
        "a class folder with no images",
        ImagesError,
        "empty_class.*holds no images",
        lambda: load_images(tmp_path / "c"),
        tmp_path,
    )


def test_bad_datasets(tmp_path):
    from PIL import Image

    from expertlib.datasets.folders import DatasetNotFoundError
    from expertlib.datasets.hierarchy import HierarchyError, LabelHierarchy
    from expertlib.datasets.vtab import load_vtab

    rng = np.random.default_rng(0)
    task = tmp_path / "vtab" / "resisc45"
    for i in range(8):
        p = task / "train" / str(i % 2) / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(p)
    refused(
        "4d bad data: VTAB task missing a split",
        "vtab/resisc45 with train/ but no test/",
        DatasetNotFoundError,
        "has no test/",
        lambda: load_vtab("resisc45", tmp_path),
        tmp_path,
    )
    wn = tmp_path / "imagenet21k"
    wn.mkdir()
    (wn / "wordnet.is_a.txt").write_text("n0 n1\nn1\tn2 n3\n")
    (wn / "words.txt").write_text("n0\tentity\nn1\tanimal\n")
    refused(
        "4e bad data: malformed WordNet file",
        "wordnet.is_a.txt with a line of three ids",
        HierarchyError,
        r"wordnet.is_a.txt:2: expected 'parent_wnid child_wnid'",
        lambda: LabelHierarchy.from_wordnet(wn / "wordnet.is_a.txt", wn / "words.txt"),
        tmp_path,
    )


def test_bad_checkpoints(tmp_path):
    import pickle

    import timm

    from expertlib.models.weights import CheckpointError, load_model
    from expertlib.select.zoo import from_spec

    torch.save(timm.create_model("test_byobnet").state_dict(), tmp_path / "other.pth")
    refused(
        "4f bad checkpoint: another architecture",
        "timm:test_resnet with a test_byobnet checkpoint",
        CheckpointError,
        "does not fit architecture timm:test_resnet.*(missing|unexpected)",
        lambda: from_spec(f"timm:test_resnet={tmp_path / 'other.pth'}"),
        tmp_path,
    )
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"w": Payload()}))
    refused(
        "4g bad checkpoint: a pickle with code",
        "a .pth whose unpickling would run code",
        CheckpointError,
        "refused",
        lambda: from_spec(f"timm:test_resnet={tmp_path / 'evil.pth'}"),
        tmp_path,
    )
    record(
        "4g' bad checkpoint: code not run",
        "after 4g",
        "the pickle's code never ran",
        f"code ran: {marker.exists()}",
        not marker.exists(),
    )
    good = tmp_path / "m.safetensors"
    from expertlib.models.resnet import create_model
    from expertlib.models.weights import save_model

    save_model(create_model("tiny", num_classes=3), good)
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[:500])
    refused(
        "4h bad checkpoint: truncated safetensors",
        "load_model on a model file cut short",
        CheckpointError,
        "cannot read",
        lambda: load_model(tmp_path / "cut.safetensors"),
        tmp_path,
    )


def test_nan_loss_names_the_step_and_a_remedy():
    from expertlib.datasets.batches import ArrayData
    from expertlib.models.resnet import create_model
    from expertlib.train.schedules import scaled_hyperrule
    from expertlib.train.training import NonFiniteLossError, TrainConfig, train

    rng = np.random.default_rng(0)
    data = ArrayData(rng.integers(0, 255, (32, 8, 8, 3), dtype=np.uint8), np.arange(32) % 2, 8, 8, False)
    m = create_model("tiny", num_classes=2)
    cfg = TrainConfig(scaled_hyperrule(6, 1e30), batch_size=8)
    refused(
        "4i NaN loss",
        "training with a learning rate of 1e30",
        NonFiniteLossError,
        r"loss became (nan|inf) at step \d+.*Lower the learning rate",
        lambda: train(m, list(m.parameters()), data, cfg, 2, progress=False),
    )


WRONG = {"str": 7, "int": "seven", "bool": "yes", "list": "knn", "float": "x", "str | None": 7,
         "int | None": "seven", "list | None": "knn"}  # fmt: skip


def test_every_notebook_parameter_mistyped_or_of_the_wrong_type_is_refused():
    from expertlib.run.parameters import ParameterError, notebook_parameters, validate_parameters
    from expertlib.run.reproduce import notebooks

    for nb in notebooks():
        declared = notebook_parameters(nb)
        bad = []
        for name, spec in declared.items():
            typo = name[:-1] + name[-1] * 2
            for values, want in (
                ({typo: 1}, f"Did you mean '{name}'"),
                ({name: WRONG[spec["type"]]}, "must be"),
            ):
                try:
                    validate_parameters(nb, values)
                    bad.append(f"{values} accepted")
                except ParameterError as e:
                    if want not in str(e):
                        bad.append(f"{values}: {e}")
        record(f"4j parameters: {nb.stem}", f"each of its {len(declared)} parameters misspelt, and given a value of "
               "the wrong type", "every one refused before any compute, naming the parameter (and the close match)",
               "; ".join(bad) or f"all {2 * len(declared)} refused", not bad)  # fmt: skip


# -- same bytes ------------------------------------------------------------------------------------------------
FIGURE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    import matplotlib.pyplot as plt
    from expertlib.analysis import plots
    fig, ax = plt.subplots()
    ax.plot([0, 1, 3], label="a")
    ax.legend()
    plots.save_figure(fig, {stem!r})
    """
)


def test_the_same_figure_is_the_same_bytes_in_two_processes(tmp_path):
    for run in ("a", "b"):
        script = FIGURE.format(root=str(ROOT), stem=str(tmp_path / run / "f"))
        subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    same = {ext: (tmp_path / "a" / f"f.{ext}").read_bytes() == (tmp_path / "b" / f"f.{ext}").read_bytes()
            for ext in ("svg", "png")}  # fmt: skip
    record(
        "5a same bytes: figures",
        "one figure saved by two processes",
        "identical SVG and PNG bytes (fixed SVG ids, no dates)",
        str(same),
        all(same.values()),
    )


# -- a user's images, options and downloads (#26): a correct result or a named error, never a silent wrong one --
def _reads_as(case: str, done: str, path: Path, want: np.ndarray, tol: float = 1.0) -> None:
    from expertlib.datasets.folders import read_image

    try:
        got = np.asarray(read_image(path), dtype=np.float64)
        err = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        observed, ok = f"read as {got.shape} uint8 RGB, max difference {err:.1f}", err <= tol
    except Exception as e:  # noqa: BLE001
        observed, ok = f"{type(e).__name__}: {_clean(str(e), path.parent)}", False
    record(case, done, "read as the image it stores, 8-bit RGB (within 1 level)", observed, ok)


def test_every_image_mode_reads_correctly_or_is_refused_by_name(tmp_path):
    """7a-7c: every mode PIL opens, EXIF orientations, oversized images."""
    from PIL import Image

    from expertlib.datasets.folders import CorruptImageError, read_image

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (10, 14), dtype=np.uint8)
    rgb = rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)
    as_rgb = lambda g: np.repeat(g[..., None], 3, -1).astype(np.float64)  # noqa: E731
    cases = {
        "1 (bilevel)": (Image.fromarray(grey > 127), as_rgb((grey > 127) * 255), "png"),
        "L (grey)": (Image.fromarray(grey), as_rgb(grey), "png"),
        "LA (grey + alpha)": (Image.fromarray(np.dstack([grey, grey])), as_rgb(grey), "png"),
        "P (palette)": (Image.fromarray(rgb).quantize(16), None, "png"),
        "PA (palette + transparency)": (Image.fromarray(rgb).quantize(16), None, "png-transparent"),
        "RGB": (Image.fromarray(rgb), rgb, "png"),
        "RGBA": (Image.fromarray(np.dstack([rgb, grey])), rgb, "png"),
        "CMYK": (Image.fromarray(rgb).convert("CMYK"), None, "tiff"),
        "YCbCr": (Image.fromarray(rgb).convert("YCbCr"), None, "tiff"),
        "I;16 (16-bit grey)": (Image.fromarray(grey.astype(np.uint16) * 257), as_rgb(grey), "png"),
        "I (32-bit grey within 16 bits)": (
            Image.fromarray(grey.astype(np.int32) * 257, "I"),
            as_rgb(grey),
            "tiff",
        ),
        "F (float in [0, 1])": (Image.fromarray(grey.astype(np.float32) / 255, "F"), as_rgb(grey), "tiff"),
    }
    for i, (mode, (im, want, fmt)) in enumerate(cases.items()):
        path = tmp_path / f"m{i}.{'png' if fmt.startswith('png') else 'tiff'}"
        kw = {"transparency": 0} if fmt == "png-transparent" else {}
        im.save(path, **kw)
        ref = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) if want is None else want
        _reads_as(f"7a image mode: {mode}", f"a {mode} image saved as {path.suffix[1:].upper()}", path, ref)
    for mode, im in (("F outside [0, 1]", Image.fromarray(grey.astype(np.float32), "F")),
                     ("I beyond 16 bits", Image.fromarray(grey.astype(np.int32) * 70000, "I"))):  # fmt: skip
        path = tmp_path / f"{mode[0]}-bad.tiff"
        im.save(path)
        refused(f"7a image mode: {mode}", f"an {mode} image", CorruptImageError, "save it with 8 or 16 bits",
                lambda p=path: read_image(p), tmp_path)  # fmt: skip
    wide = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    for orientation in range(2, 9):
        path = tmp_path / f"exif{orientation}.jpg"
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(wide).save(path, exif=exif, quality=100)
        upright = {2: (10, 6), 3: (10, 6), 4: (10, 6), 5: (6, 10), 6: (6, 10), 7: (6, 10), 8: (6, 10)}[
            orientation
        ]
        size = read_image(path).size
        record(f"7b EXIF orientation {orientation}", f"a 10x6 JPEG whose EXIF says orientation {orientation}",
               f"read upright, {upright[0]}x{upright[1]}", f"read {size[0]}x{size[1]}", size == upright)  # fmt: skip
    big = tmp_path / "big" / "a"
    _image_folder(tmp_path / "big")
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 100  # 20x20 images are then 4x over PIL's bomb limit
        refused("7c oversized image", "an image above PIL's decompression-bomb limit", CorruptImageError,
                "more than the limit of 200", lambda: read_image(next((tmp_path / "big" / "cat").iterdir())), tmp_path)  # fmt: skip
        from expertlib.datasets.user_images import load_images

        try:
            load_images(tmp_path / "big", on_corrupt="skip")
            observed, ok = "no error", False
        except Exception as e:  # noqa: BLE001 - every image is oversized: then too few images is the error
            observed, ok = f"{type(e).__name__}: {_clean(str(e), tmp_path)}", "two classes" in str(e)
        record("7c oversized image, skipped", "the same with --skip-corrupt", "skipped (listed), no traceback",
               observed, ok)  # fmt: skip
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    assert big


def test_folder_and_csv_rules_hold(tmp_path):
    """7d-7e: what is read from a folder tree or CSV, by stated rules."""
    import os
    import shutil

    from expertlib.datasets.user_images import ImagesError, load_images

    def tree(name: str) -> Path:
        root = tmp_path / name
        _image_folder(root)
        return root

    root = tree("d1")
    shutil.copytree(root / "cat", root / ".ipynb_checkpoints")
    imgs = load_images(root)
    record("7d notebook-checkpoint folder", "a .ipynb_checkpoints folder of images at the root", "not a class; listed",
           f"classes {imgs.classes}; listed: {[p.name for p, _ in imgs.ignored]}",
           imgs.classes == ["cat", "dog", "fox"] and any(p.name == ".ipynb_checkpoints" for p, _ in imgs.ignored))  # fmt: skip
    root = tree("d2")
    shutil.copytree(root / "dog", root / "cat" / "thumbnails")
    imgs = load_images(root)
    n_cat = int((imgs.labels == imgs.classes.index("cat")).sum())
    record("7d thumbnails inside a class", "a thumbnails/ folder of 8 images inside cat/", "not added to cat; listed",
           f"cat has {n_cat} images; listed {[p.name for p, _ in imgs.ignored]}", n_cat == 8 and len(imgs.ignored) == 1)  # fmt: skip
    root = tree("d3")
    (root / "dog" / "scan.tif").write_bytes(
        (root / "dog" / next(iter(os.listdir(root / "dog")))).read_bytes()
    )
    (root / "dog" / ".DS_Store").write_bytes(b"\x00\x01")
    imgs = load_images(root)
    reasons = sorted(r.split(" (")[0] for _, r in imgs.ignored)
    record("7d unlisted extension and hidden file", "a .tif and a .DS_Store inside dog/", "both listed with their rule",
           f"listed: {reasons}", len(imgs.ignored) == 2 and any("not an image" in r for r in reasons))  # fmt: skip
    root = tree("d4")
    (root / "wolf").symlink_to(root / "dog", target_is_directory=True)
    refused("7d class folder reached twice", "wolf/ a symbolic link to dog/", ImagesError, "same folder",
            lambda: load_images(root), tmp_path)  # fmt: skip
    root = tree("d5")
    first = sorted((root / "dog").iterdir())[0]
    (root / "cat" / "also.png").symlink_to(first)
    refused("7d a file in two classes", "a dog image linked into cat/ too", ImagesError, "two labels",
            lambda: load_images(root), tmp_path)  # fmt: skip
    root = tree("d6")
    shutil.copy(first if first.exists() else next((root / "dog").iterdir()), root / "fox" / "copy.png")
    shutil.copy(sorted((root / "dog").iterdir())[0], root / "cat" / "copy.png")
    refused("7d identical images in two classes", "the same bytes as cat/copy.png and fox/copy.png", ImagesError,
            "identical bytes", lambda: load_images(root), tmp_path)  # fmt: skip
    kept = load_images(root, duplicates="keep")
    record("7d identical images kept on request", "the same with --keep-duplicates", "kept: 26 images",
           f"{len(kept.paths)} images", len(kept.paths) == 26)  # fmt: skip
    root = tree("c")
    files = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    rows = [f"{p},{p.parent.name}" for p in files]

    def csv_case(case, done, lines, encoding="utf-8", **kw):
        path = root / f"{case[:3]}.csv"
        path.write_bytes(("path,label\n" + "\n".join(lines) + "\n").encode(encoding))
        return lambda: load_images(path, **kw)

    refused("7e CSV repeated rows", "every row twice", ImagesError, "listed twice",
            csv_case("7e1", "", rows + rows), tmp_path)  # fmt: skip
    refused("7e CSV two labels", "one file with two labels", ImagesError, "two labels",
            csv_case("7e2", "", [*rows, f"{files[0]},fox"]), tmp_path)  # fmt: skip
    shutil.copy(root / files[0], root / "cat" / "dup.png")
    refused("7e CSV same image under two paths", "a copy of an image listed under another path", ImagesError,
            "identical bytes", csv_case("7e3", "", [*rows, "cat/dup.png,cat"]), tmp_path)  # fmt: skip
    for case, enc, note in (("7e CSV UTF-8 with BOM", "utf-8-sig", "Excel's CSV UTF-8"),
                            ("7e CSV UTF-16", "utf-16", "a UTF-16 export")):  # fmt: skip
        imgs = csv_case(case[:3] + enc, "", rows, enc)()
        record(case, f"the list as {note}", "read: 24 images, 3 classes", f"{len(imgs.paths)} images, {len(imgs.classes)} classes",
               len(imgs.paths) == 24 and len(imgs.classes) == 3)  # fmt: skip
    latin = [*rows[:-1], f"{files[-1]},f\xf6x"]
    refused("7e CSV in Latin-1", "a label with an umlaut, saved as Latin-1", ImagesError, "not UTF-8",
            csv_case("7e6", "", latin, "latin-1"), tmp_path)  # fmt: skip


def test_numeric_options_and_commands_fail_by_name(tmp_path, capsys):
    """7f-7h: numbers checked before any model runs; reproduce's --only and --param; the feature cache."""
    from expertlib.rank import main as rank_main
    from expertlib.run.reproduce import main as reproduce_main

    for option, value, want in (("-k", "0", ">= 1"), ("--batch-size", "0", ">= 1"), ("--test-fraction", "-0.2", "> 0"),
                                ("--test-fraction", "1.5", "< 1"), ("--finetune-top", "-1", ">= 0"),
                                ("--workers", "-1", ">= 0"), ("--lr", "0", "> 0"), ("--finetune-steps", "0", ">= 1")):  # fmt: skip
        try:
            rank_main(["images", "timm:x", option, value])
            observed, ok = "no error", False
        except SystemExit as e:
            err = capsys.readouterr().err.strip().splitlines()[-1]
            observed, ok = (
                f"exit {e.code}: {err}",
                e.code == 2 and f"argument {option}" in err and want in err,
            )
        record(f"7f option {option} {value}", f"rank {option} {value}", f"refused naming {option} and its range",
               observed, ok)  # fmt: skip
    for case, args, want in (("7h reproduce --only 99", ["--only", "99"], "names no notebook"),
                             ("7h reproduce --param results_dir", ["--param", "results_dir='elsewhere'"], "--results-dir")):  # fmt: skip
        code = reproduce_main(["--scale", "smoke", "--results-dir", str(tmp_path / "r"), *args])
        err = capsys.readouterr().err
        record(case, f"python -m expertlib.reproduce {' '.join(args)}", "exit 1 naming the problem, nothing run",
               f"exit {code}: {_clean(err, tmp_path)}", code == 1 and want in err and not (tmp_path / "r" / "smoke").exists())  # fmt: skip
    try:
        reproduce_main(["--only"])
        observed, ok = "no error", False
    except SystemExit as e:
        observed, ok = f"exit {e.code}: {capsys.readouterr().err.strip().splitlines()[-1]}", e.code == 2
    record("7h reproduce --only without a value", "python -m expertlib.reproduce --only", "refused (no run of everything)",
           observed, ok)  # fmt: skip


def test_a_replaced_model_and_a_damaged_cache_never_give_stale_scores(tmp_path):
    """7g: features are cached by the model's content, and a damaged cache entry is recomputed."""
    import warnings

    from expertlib.datasets.user_images import load_images
    from expertlib.models.resnet import ResNetV2
    from expertlib.models.weights import save_model
    from expertlib.rank import rank_models

    _image_folder(tmp_path / "imgs")
    imgs = load_images(tmp_path / "imgs")
    model = tmp_path / "m.safetensors"
    scores = []
    for seed in (0, 1):  # the same file name, replaced in place by another model
        torch.manual_seed(seed)
        save_model(ResNetV2("tiny", num_classes=0), model)
        scores.append(
            rank_models(imgs, [str(model)], tmp_path / "out", ["knn", "logme"], k=3, progress=False)
        )
    torch.manual_seed(1)
    fresh = rank_models(imgs, [str(model)], tmp_path / "fresh", ["knn", "logme"], k=3, progress=False)
    same = float(scores[1].logme.iloc[0]) == float(fresh.logme.iloc[0])
    record("7g model replaced in place", "rank m.safetensors, replace the file by another model, rank again into the "
           "same --out", "the new model's scores (as a fresh --out gives)", f"logme {scores[0].logme.iloc[0]:.4f} then "
           f"{scores[1].logme.iloc[0]:.4f}; fresh run {fresh.logme.iloc[0]:.4f}", same and
           scores[0].logme.iloc[0] != scores[1].logme.iloc[0])  # fmt: skip
    entry = next((tmp_path / "out" / "features").glob("*.npz"))
    entry.write_bytes(entry.read_bytes()[:100])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        again = rank_models(imgs, [str(model)], tmp_path / "out", ["knn", "logme"], k=3, progress=False)
    warned = any("cannot be read" in str(w.message) for w in seen)
    record("7g truncated cache entry", "a cached feature file cut short, then the same ranking again",
           "recomputed with a warning, the same scores", f"warned: {warned}; logme {again.logme.iloc[0]:.4f}",
           warned and float(again.logme.iloc[0]) == float(fresh.logme.iloc[0]))  # fmt: skip


def test_converter_inputs_fail_by_name(tmp_path, capsys):
    """7i: archives with unsafe members, outputs that cannot be written, a corrupt download."""
    import io
    import shutil
    import tarfile

    from expertlib.models.convert import main as convert

    fixture = ROOT / "tests" / "fixtures" / "released_experts"
    unsafe = tmp_path / "bird.tar.gz"
    with tarfile.open(unsafe, "w:gz") as tar:
        data = b"x"
        info = tarfile.TarInfo("../../escape.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    cases = [
        ("7i archive with an unsafe member", "a .tar.gz whose member is ../../escape.txt", [str(unsafe)],
         "member '../../escape.txt' climbs out"),
        ("7i output is a folder", "--out an existing folder", [str(fixture / "bird"), "--out", str(tmp_path)],
         "is a folder"),
        ("7i output under a file", "--out a path whose parent is a file",
         [str(fixture / "bird"), "--out", str(unsafe / "x.safetensors")], "convert failed"),
    ]  # fmt: skip
    bad = tmp_path / "dl" / "food" / "1"
    shutil.copytree(fixture / "food" / "1", bad)
    shard = bad / "variables" / "variables.data-00000-of-00001"
    raw = bytearray(shard.read_bytes())
    raw[100] ^= 0x10
    shard.write_bytes(bytes(raw))
    cases.append(("7i corrupt download", "one flipped bit in an expert's variables", [str(bad)], "CRC32C"))
    for case, done, args, want in cases:
        if "--out" not in args:
            args = [*args, "--out", str(tmp_path / "o.safetensors")]
        code = convert(args)
        err = capsys.readouterr().err
        record(case, done, "exit 1 with a message naming the problem, no traceback",
               f"exit {code}: {_clean(err, tmp_path)}", code == 1 and want in err and "Traceback" not in err)  # fmt: skip
    assert not (tmp_path.parent / "escape.txt").exists()


# -- bad input, second round (#35): a missing label is no class, rank never reads its own output, no value dropped --
def test_csv_labels_are_checked_row_by_row_and_compared_as_written(tmp_path):
    """9a: a missing or empty label, a case variant, a stray space, a row naming a folder: each refused with its
    line (the 24 good rows are lines 2-25; the added row is line 26)."""
    from PIL import Image

    from expertlib.datasets.user_images import ImagesError, load_images

    _image_folder(tmp_path)
    good = [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(tmp_path.rglob("*.png"))]
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "new.png")

    def with_row(name: str, row: str):
        path = tmp_path / f"{name}.csv"  # one list per case: list0.csv, list1.csv, ...
        path.write_text("\n".join(["path,label", *good, row]) + "\n")
        return lambda: load_images(path)

    for i, (case, row, match) in enumerate((
        ("9a CSV row with an empty label", "new.png,", r"line 26: .*new.png has an empty label"),
        ("9a CSV row without a label field", "new.png", r"line 26: .*new.png has no label"),
        ("9a CSV label in another case", "new.png,Cat", r"'cat' \(line 2\) vs 'Cat' \(line 26\)"),
        ("9a CSV label with a stray space", "new.png,dog ", r"'dog' \(line 10\) vs 'dog ' \(line 26\)"),
        ("9a CSV row naming a folder", "cat,cat", r"line 26: .*cat is a folder, not an image file"),
    )):  # fmt: skip
        refused(case, f"a CSV of 24 good rows, then the row {row!r}", ImagesError, match, with_row(f"list{i}", row),
                tmp_path)  # fmt: skip


def test_rank_leaves_its_own_output_out_and_reads_only_what_it_should(tmp_path, capsys):
    """9b, 9e-9g: rank's --out inside the images (twice, and the default from inside the folder), a model file
    with a colon in its name, a zero-byte image, an archive or a single image given as IMAGES."""
    import os

    from expertlib.models.resnet import create_model
    from expertlib.models.weights import save_model
    from expertlib.rank import main as rank
    from expertlib.select.zoo import from_spec

    images = tmp_path / "imgs"
    _image_folder(images)
    torch.manual_seed(0)
    model = tmp_path / "run_12:30.safetensors"
    save_model(create_model("tiny", num_classes=0), model)
    out = images / "ranking"
    codes = [rank([str(images), str(model), "--out", str(out), "-k", "3", "--no-progress"]) for _ in range(2)]
    capsys.readouterr()
    listed = pd.read_csv(out / "ignored.csv")
    record("9b rank --out inside the images", "rank IMAGES --out IMAGES/ranking, twice", "both succeed on the same 3 "
           "classes; ignored.csv lists the output folder", f"exits {codes}; listed: "
           f"{[(_clean(p, tmp_path), r) for p, r in zip(listed.path, listed.reason, strict=True)]}",
           codes == [0, 0] and listed.path.tolist() == [str(out)] and "output folder" in listed.reason[0])  # fmt: skip
    cwd = os.getcwd()
    try:
        os.chdir(images)
        codes = [rank([".", str(model), "-k", "3", "--no-progress"]) for _ in range(2)]
    finally:
        os.chdir(cwd)
    table = capsys.readouterr().out
    listed = pd.read_csv(images / "ranking" / "ignored.csv").path.tolist()
    record("9b rank . with the default --out", "cd IMAGES; rank . MODEL (writes ./ranking), twice", "both succeed; "
           "./ranking is listed, not ranked as a class", f"exits {codes}; listed: {listed}",
           codes == [0, 0] and listed == ["ranking"] and "run_12:30" in table)  # fmt: skip
    try:
        names = [c.name for c in from_spec(str(model))]
        observed, ok = f"read as the file: candidate {names}", names == ["run_12:30"]
    except Exception as e:  # noqa: BLE001
        observed, ok = f"{type(e).__name__}: {_clean(str(e), tmp_path)}", False
    record("9e model file with a colon", "from_spec('.../run_12:30.safetensors'), an existing expertlib model",
           "read as the file, not as a '<type>:' spec", observed, ok)  # fmt: skip
    try:
        rank(["--help"])
    except SystemExit:
        pass
    helptext = " ".join(capsys.readouterr().out.split())
    record("9e expertlib:PATH documented", "python -m expertlib.rank --help", "names expertlib:PATH and the colon rule",
           "documented" if "expertlib:PATH" in helptext and "colon" in helptext else "missing",
           "expertlib:PATH" in helptext and "colon" in helptext)  # fmt: skip
    (images / "dog" / "zero.png").write_bytes(b"")
    code = rank([str(images), str(model), "--out", str(tmp_path / "o"), "-k", "3", "--no-progress"])
    err = capsys.readouterr().err
    record("9f zero-byte image under rank", "rank on a folder holding a 0-byte dog/zero.png",
           "exit 2 naming the file and rank's own --skip-corrupt (not another class's skip_corrupt=True)",
           f"exit {code}: {_clean(err, tmp_path)}",
           code == 2 and "zero.png" in err and "--skip-corrupt" in err and "skip_corrupt=True" not in err)  # fmt: skip
    (images / "dog" / "zero.png").unlink()
    archive = tmp_path / "imgs.zip"
    archive.write_bytes(b"PK\x03\x04" + bytes(60))
    single = next((images / "cat").iterdir())
    for case, given, want in (("9g an archive as IMAGES", archive, "is an archive: unpack it"),
                              ("9g a single image as IMAGES", single, "is a single image")):  # fmt: skip
        code = rank([str(given), str(model), "--out", str(tmp_path / "o"), "--no-progress"])
        err = capsys.readouterr().err
        record(case, f"rank {given.name} MODEL", "exit 2 naming what the file is and what to pass instead (no CSV "
               "advice)", f"exit {code}: {_clean(err, tmp_path)}",
               code == 2 and want in err and "CSV UTF-8" not in err)  # fmt: skip


def test_reproduce_checks_every_value_before_it_runs(tmp_path, capsys):
    """9c: a --param of the wrong type, one that disagrees with a flag, one given twice: refused, nothing run."""
    from expertlib.run.reproduce import main as reproduce_main

    for case, args, want in (
        ("9c reproduce --param progress=yes", ["--param", "progress=yes"], "'progress' of 01_data.ipynb must be bool"),
        ("9c reproduce --param against its flag", ["--param", "progress=True", "--no-progress"], "disagrees with --no-progress"),
    ):  # fmt: skip
        code = reproduce_main(
            ["--scale", "smoke", "--results-dir", str(tmp_path / "r"), "--only", "01", *args]
        )
        err = capsys.readouterr().err
        record(case, f"python -m expertlib.reproduce --only 01 {' '.join(args)}", "exit 1 naming the parameter and its "
               "type, nothing run", f"exit {code}: {_clean(err, tmp_path)}",
               code == 1 and want in err and not (tmp_path / "r").exists())  # fmt: skip
    try:
        reproduce_main(["--results-dir", str(tmp_path / "r"), "--param", "seed=1", "--param", "seed=2"])
        observed, ok = "no error", False
    except SystemExit as e:
        err = capsys.readouterr().err.strip().splitlines()[-1]
        observed, ok = f"exit {e.code}: {err}", e.code == 2 and "given twice" in err
    record("9c reproduce --param given twice", "python -m expertlib.reproduce --param seed=1 --param seed=2",
           "refused (the second never silently replaces the first)", observed, ok)  # fmt: skip


def test_model_files_and_archives_that_are_not_what_they_claim_are_named(tmp_path, capsys):
    """9d, 9h: a bank file without its metadata; a .tar.gz that is no tar archive; an archive member with an
    absolute path."""
    import io
    import tarfile

    from safetensors.torch import save_file

    from expertlib.models.convert import main as convert
    from expertlib.models.weights import CheckpointError
    from expertlib.select.zoo import from_spec

    bank = tmp_path / "bank.safetensors"
    save_file({"w": torch.zeros(2)}, str(bank), metadata={"format": "expertlib.expert_bank"})
    refused("9d bank file without its metadata", "rank a .safetensors whose format says expert bank, with no config",
            CheckpointError, r"bank.safetensors says it is an 'expertlib.expert_bank' file but its metadata lacks "
            r"'kind', 'config'", lambda: from_spec(str(bank)), tmp_path)  # fmt: skip
    page = tmp_path / "animal.tar.gz"
    page.write_bytes(b"<!DOCTYPE html><html><body>404 Not Found</body></html>")
    absolute = tmp_path / "bird.tar.gz"
    with tarfile.open(absolute, "w:gz") as tar:
        info = tarfile.TarInfo("/tmp/escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    for case, done, given, want in (
        ("9h a .tar.gz that is no tar archive", "an HTML error page saved as animal.tar.gz", page,
         "animal.tar.gz is not a tar archive of a SavedModel (it is a web page"),
        ("9h archive member with an absolute path", "bird.tar.gz holding /tmp/escape.txt", absolute,
         "archive <tmp>/bird.tar.gz: member '/tmp/escape.txt' has an absolute path"),
    ):  # fmt: skip
        code = convert([str(given), "--out", str(tmp_path / "o.safetensors")])
        err = _clean(capsys.readouterr().err, tmp_path)
        record(case, done, "exit 1 naming the archive (and member) and what is wrong, no temporary folder",
               f"exit {code}: {err}", code == 1 and want in err and "saved_model.pb not found" not in err)  # fmt: skip


def test_results_in_an_old_format_or_a_stale_page_are_refused(tmp_path):
    """Tables that name candidates the old way, a pick naming no candidate, a mistyped scale setting and a
    stated number that no longer matches its table: each stops with a message that names it and the way out."""
    from expertlib.pipeline import docs as D
    from expertlib.pipeline.tables import OutdatedTableError, read_candidate_table
    from expertlib.run.presets import get_scale

    old = tmp_path / "selection_rankings.csv"
    pd.DataFrame({"task": ["t"], "expert": ["animal"], "proxy": ["knn"], "score": [0.5]}).to_csv(
        old, index=False
    )
    refused("8a rankings naming experts bare", "a selection_rankings.csv from before candidate ids", OutdatedTableError,
            "migrate_candidate_ids.py.*reproduce-fresh", lambda: read_candidate_table(old), tmp_path)  # fmt: skip
    picks = tmp_path / "selection_picks.csv"
    pd.DataFrame({"task": ["t"], "knn": ["animal"]}).to_csv(picks, index=False)
    refused("8a picks naming no candidate", "a pick 'animal' where the ids are adapter:animal, base", OutdatedTableError,
            "names candidates the old way", lambda: read_candidate_table(picks, ids=["adapter:animal", "base"]),
            tmp_path)  # fmt: skip
    runs = tmp_path / "transfer_runs.csv"
    pd.DataFrame({"task": ["t"], "model": ["base"], "seed": [0], "accuracy": [0.5]}).to_csv(runs, index=False)
    refused("8a runs without kind", "a transfer_runs.csv without kind and expert columns", OutdatedTableError,
            "'kind' and 'expert'", lambda: read_candidate_table(runs), tmp_path)  # fmt: skip
    refused("8b a setting in no part", "get_scale('cpu', expert_lrs=...)", ValueError,
            "unknown scale setting 'expert_lrs'.*did you mean 'expert_lr'",
            lambda: get_scale("cpu", expert_lrs=(0.1,)))  # fmt: skip
    tables = tmp_path / "results" / "cpu" / "tables"
    tables.mkdir(parents=True)
    pd.DataFrame({"id": ["P1"], "family": ["confirmatory"], "claim": ["x"], "regime": ["1k"], "comparison": ["a - b"],
                  "estimate": [0.02], "ci_low": [0.01], "ci_high": [0.03], "p_adjusted": [0.01], "verdict": ["supported"],
                  "post_hoc": [False]}).to_csv(tables / "claims.csv", index=False)  # fmt: skip
    (tmp_path / "page.md").write_text("<!-- claims:cpu/confirmatory -->\n| P1 | +1.0 |\n<!-- /claims -->\n")
    found = D.stale(("page.md",), tmp_path)
    record("8c a stated number older than its table", "a page whose claims block says +1.0 where claims.csv says +2.0",
           "the docs test names the page and block", "; ".join(found) or "nothing found",
           found == ["page.md: claims:cpu/confirmatory"])  # fmt: skip


# -- rank's unusual inputs (#38): each a one-line error naming the problem and the fix ---------------------------
def _one_line(err: str) -> bool:
    lines = [x for x in err.splitlines() if x.strip()]
    return len(lines) == 1 and "Traceback" not in err


def test_rank_unusual_inputs_name_the_problem_and_the_fix(tmp_path, capsys):
    """10a-10f: a fine-tune that blows up, broken links and loops, a folder as a model, a negative seed, Ctrl-C
    while starting, an image above the pixel limit."""
    import os
    import time

    from expertlib.models.resnet import create_model
    from expertlib.models.weights import save_model
    from expertlib.rank import main as rank

    images, model = tmp_path / "imgs", tmp_path / "m.safetensors"
    _image_folder(images)
    save_model(create_model("tiny", num_classes=0), model)
    base = [str(images), str(model), "-k", "3", "--no-progress"]

    out = tmp_path / "lr"
    # lr 1e20: sure to overflow within 8 steps (at 1e6 weight standardisation and the zero head can keep the
    # loss finite for 8 steps of the paper's schedule, which has no warm-up)
    code = rank([*base, "--out", str(out), "--finetune-top", "1", "--lr", "1e20", "--finetune-steps", "8"])
    err = capsys.readouterr().err
    written = (out / "ranking.csv").is_file() and len(pd.read_csv(out / "ranking.csv")) == 1
    record("10a rank: a fine-tune that diverges", "rank --finetune-top 1 --lr 1e20", "exit 2, one line naming the step "
           "and the fix (lower --lr); the proxies' ranking already written", f"exit {code}: {_clean(err, tmp_path)}; "
           f"ranking.csv written: {written}", code == 2 and _one_line(err) and "Lower the learning rate (--lr" in err and written)  # fmt: skip

    links = tmp_path / "linked"
    _image_folder(links)
    os.symlink(
        links / "cat" / "gone.png", links / "cat" / "unfetched.png"
    )  # a DVC or git-annex file not fetched
    os.symlink(links / "dog" / "b.png", links / "dog" / "a.png")
    os.symlink(links / "dog" / "a.png", links / "dog" / "b.png")  # a loop
    code = rank([str(links), *base[1:], "--out", str(tmp_path / "l1")])
    err = capsys.readouterr().err
    record("10b rank: a broken symbolic link", "rank on a folder holding a link to a missing file and a link loop",
           "exit 2, one line naming the link and the fixes (fetch, remove, --skip-corrupt)",
           f"exit {code}: {_clean(err, tmp_path)}", code == 2 and _one_line(err) and "unfetched.png" in err
           and "--skip-corrupt" in err)  # fmt: skip
    code = rank([str(links), *base[1:], "--out", str(tmp_path / "l2"), "--skip-corrupt"])
    capsys.readouterr()
    listed = (
        pd.read_csv(tmp_path / "l2" / "ignored.csv")
        if code == 0
        else pd.DataFrame(columns=["path", "reason"])
    )
    said = sorted(f"{Path(p).name}: {'loop' if 'loop' in r else 'missing target' if 'does not exist' in r else r}"
                  for p, r in zip(listed.path, listed.reason, strict=True))  # fmt: skip
    record("10b rank --skip-corrupt: broken links and loops", "the same with --skip-corrupt", "ranked; the missing "
           "target and both links of the loop listed in ignored.csv", f"exit {code}; listed: {said}",
           code == 0 and said == ["a.png: loop", "b.png: loop", "unfetched.png: missing target"])  # fmt: skip

    code = rank([str(images), str(tmp_path / "imgs" / "cat"), "--out", str(tmp_path / "f"), "--no-progress"])
    err = capsys.readouterr().err
    record("10c rank: a folder as a model", "rank IMAGES imgs/cat (a folder)", "exit 2, one line: a folder, not a "
           "model file (not 'not found')", f"exit {code}: {_clean(err, tmp_path)}", code == 2 and _one_line(err)
           and "is a folder, not a model file" in err and "not found" not in err)  # fmt: skip

    try:
        rank([*base, "--seed", "-1"])
        observed, ok = "no error", False
    except SystemExit as e:
        err = capsys.readouterr().err.strip().splitlines()[-1]
        observed, ok = f"exit {e.code}: {err}", e.code == 2 and "argument --seed" in err and ">= 0" in err
    record("10d rank --seed -1", "rank --seed -1", "refused as parsed, naming --seed and its range (not numpy's "
           "message)", observed, ok)  # fmt: skip

    seen = []
    for delay in (0.3, 0.6, 1.2):
        proc = subprocess.Popen([sys.executable, "-m", "expertlib.rank", *base, "--out", str(tmp_path / "c")], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        seen.append((delay, proc.returncode, _clean(err, tmp_path)))
    record("10e rank: Ctrl-C while starting", "SIGINT to `python -m expertlib.rank ...` 0.3, 0.6 and 1.2 s after it "
           "starts", "exit 130 with one line each, no traceback", "; ".join(f"{d} s: exit {c}: {e}" for d, c, e in seen),
           all(c == 130 and _one_line(e) for _, c, e in seen))  # fmt: skip

    code = rank([*base, "--out", str(tmp_path / "p1"), "--max-image-pixels", "100"])
    err = capsys.readouterr().err
    again = rank([*base, "--out", str(tmp_path / "p2"), "--max-image-pixels", "400"])
    capsys.readouterr()
    record("10f rank: an image above the pixel limit", "rank --max-image-pixels 100 on 20x20 images, then 400",
           "exit 2, one line naming the image and rank's own --max-image-pixels 400 (not PIL.Image.MAX_IMAGE_PIXELS); "
           "then ranked", f"exit {code}: {_clean(err, tmp_path)}; then exit {again}", code == 2 and _one_line(err)
           and "--max-image-pixels 400" in err and "PIL.Image" not in err and again == 0)  # fmt: skip


def test_the_readme_states_the_matrix_as_it_is():
    """docs/reliability.md's count of reliability rows is the committed matrix's, and every row there passes."""
    readme = (ROOT / "docs" / "reliability.md").read_text()
    stated = re.search(r"every one of its (\d+) rows passes", readme)
    matrix = pd.read_csv(MATRIX, dtype=str)
    assert stated and int(stated[1]) == len(matrix) and (matrix["pass"] == "yes").all()
