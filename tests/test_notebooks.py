"""Every notebook executes at the smoke scale through papermill and writes what the report needs (the report run
in JupyterLab in a real browser: tests/test_lab.py)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from expertlib.models.resnet import pooled_features
from expertlib.run.parameters import ParameterError
from expertlib.run.reproduce import notebooks, run

pytestmark = pytest.mark.notebook


def test_every_notebook_has_one_documented_parameters_cell():
    for nb_path in notebooks():
        nb = nbformat.read(nb_path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, nb_path.name
        for line in tagged[0].source.splitlines():
            if "=" in line:
                assert "#" in line, f"{nb_path.name}: parameter without a help comment: {line}"


def test_papermill_reads_every_parameter_without_a_warning(caplog):
    """papermill's own parser (its --help-notebook, its "unknown parameter" warning) reads every parameter ours
    reads: no union annotation and no second '=' on a parameter's line, which it skips with a warning."""
    import logging

    import papermill as pm

    from expertlib.run.parameters import notebook_parameters

    with caplog.at_level(logging.WARNING, logger="papermill"):
        for nb_path in notebooks():
            assert set(pm.inspect_notebook(str(nb_path))) == set(notebook_parameters(nb_path)), nb_path.name
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def _cells(nb) -> list[tuple]:
    return [(c.cell_type, c.source.strip(), "parameters" in c.metadata.get("tags", [])) for c in nb.cells]


def test_every_notebook_is_paired_with_a_jupytext_percent_file_in_sync():
    import jupytext

    for nb_path in notebooks():
        twin = nb_path.with_suffix(".py")
        assert twin.is_file(), f"{twin.name} is missing: run `jupytext --sync {nb_path}`"
        assert "formats: ipynb,py:percent" in twin.read_text(), twin.name
        a, b = jupytext.read(nb_path), jupytext.read(twin)
        assert _cells(a) == _cells(b), (
            f"{nb_path.name} and {twin.name} differ: run `jupytext --sync {nb_path}`"
        )


def test_executed_notebooks_show_their_figures_inline(smoke_run):
    _, written, _ = smoke_run
    for p in written:
        nb = nbformat.read(p, as_version=4)
        images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
        markdown = sum("text/markdown" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
        assert images >= 1, f"{p.name} shows no figure"
        assert markdown >= 1 or p.name.startswith("06"), f"{p.name} states no number from its run"


def test_all_notebooks_execute_and_write_results(smoke_run):
    out, written, _ = smoke_run
    assert [p.name for p in written] == [p.name for p in notebooks()]
    for p in written:
        nb = nbformat.read(p, as_version=4)
        errors = [
            o
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
            if o.output_type == "error"
        ]
        assert not errors, p.name
    for name in ("data_summary.csv", "expert_specialisation.csv", "summary.json", "tables/vtab_table.md",
                 "tables/claims.csv", "figures/transfer_finetune.png", "figures/transfer_linear.svg",
                 "figures/specialisation_knn.png", "figures/selection_cost.png", "figures/proxy_knn_vs_accuracy.png",
                 "your_task/ranking.csv", "your_task/ranking.png", "tables/vtab_table_3shot.md",
                 "tables/proxy_agreement.csv", "tables/selection_ties.csv", "tables/regimes.csv", "figures/regimes.png",
                 "figures/transfer_finetune_3shot.png", "figures/minus_base.png", "tables/minus_base.csv",
                 "tables/selection_quality.csv", "figures/selection_quality.png",
                 "tables/selection_quality_per_task.csv", "tables/hybrid_weights.csv"):  # fmt: skip
        assert (out / name).is_file(), name


def test_summary_keys_and_ranges(smoke_run):
    out, _, _ = smoke_run
    s = json.loads((out / "summary.json").read_text())
    assert s["scale"] == "smoke" and len(s["tasks"]) == 3
    for task, t in s["tasks"].items():
        assert t["group"] in ("natural", "specialized", "structured")
        for key in ("baseline_accuracy", "baseline_extra_accuracy", "random_expert_mean"):
            assert 0.0 <= t[key] <= 1.0, (task, key)
        assert set(t["selected"]) >= {"knn", "domain"} and t["oracle"]["model"]
        for proxy, sel in t["selected"].items():  # a tie's accuracy is the mean over its experts, never NaN
            assert 0.0 <= sel["accuracy_mean"] <= 1.0, (task, proxy, sel)
        assert 0.0 <= t["oracle"]["accuracy_other_seeds"] <= 1.0  # chosen at seed 0, judged at seed 1
    assert s["selection_cost_seconds_per_task"]["knn selection"] > 0
    # the few-shot regime beside the full one: each method's difference from B, in both transfer metrics
    assert set(s["regimes"]) == {"3-shot", "1k"} and set(s["regimes"]["3-shot"]) == {"finetune", "linear"}
    assert -1 <= s["regimes"]["3-shot"]["finetune"]["knn"]["minus_base"] <= 1
    assert s["provenance"]["git_commit"] and s["data"]["upstream_classes"] >= 100
    assert s["provenance"]["report_code_commit"] and set(s["provenance"]["inputs"]) >= {"transfer_runs.csv"}
    assert {"P1", "E1", "F3a", "F3j", "S1", "T3h", "T1kh"} <= set(
        s["hypotheses"]
    )  # every planned hypothesis, the few-shot ones too
    import pandas as pd

    data = pd.read_csv(out / "data_summary.csv")
    assert data[data.kind == "task"].generic_finetuned_accuracy.between(0, 1).all()
    claims = pd.read_csv(out / "tables" / "claims.csv").set_index("id")
    assert "Judged on test half B" in claims.loc["E1", "evidence"]  # every fine-tune stored its predictions


def test_rerun_skips_finished_work(smoke_run, capsys):
    out, _, _ = smoke_run
    before = (out / "models" / "generic.safetensors").stat().st_mtime
    executed = (out / "notebooks" / "02_generic.ipynb").read_bytes()
    figure = (out / "figures" / "specialisation_knn.svg").read_bytes()
    run(
        "smoke",
        results_dir=str(out.parent),
        data_root=str(out.parent.parent / "data"),
        only=["02", "03"],
        progress=False,
    )
    assert (out / "models" / "generic.safetensors").stat().st_mtime == before
    # a rerun that reproduces the outputs leaves the executed notebook and the figures byte-identical
    assert (out / "notebooks" / "02_generic.ipynb").read_bytes() == executed
    assert (out / "figures" / "specialisation_knn.svg").read_bytes() == figure
    assert not list((out / "notebooks").glob(".*running*")) and b'"end_time"' not in executed


def _scale_run(tmp_path_factory, scale: str):
    """Every notebook a scale runs, into a fresh results folder and data root: (root, executed notebooks)."""
    root = tmp_path_factory.mktemp(scale)
    written = run(scale, results_dir=str(root / "r"), data_root=str(root / "d"), progress=False)
    return root, written


def test_gpu_scale_runs_at_smoke_sizes_with_stacked_fine_tunes(tmp_path_factory):
    """The gpu scale's code paths (#34) through every notebook at smoke sizes: VTAB-like tasks beyond the cpu
    scale's 12, and the fine-tunes of one task, mode and structure trained together as one stacked model."""
    import pandas as pd

    from expertlib.run.presets import GPU_SMOKE_TASKS, get_scale

    root, written = _scale_run(tmp_path_factory, "gpu-smoke")
    assert [p.name for p in written] == [p.name for p in notebooks()]
    out = root / "r" / "gpu-smoke"
    runs = pd.read_csv(out / "tables" / "transfer_runs.csv")
    ft = runs[runs["mode"] == "finetune"]
    assert set(ft.task.str.split("@").str[0]) == set(GPU_SMOKE_TASKS) and ft.accuracy.between(0, 1).all()
    # a stack's models share its wall time equally: one value per (task, kind) where they stacked
    stacked = ft.groupby(["task", "kind"]).seconds.nunique()
    assert (stacked == 1).all() and len(ft) == ft.groupby(["task", "model", "seed"]).ngroups
    assert get_scale("gpu").data.tasks[4:7] == ("street_letters", "texture", "animal_coat")
    s = json.loads((out / "summary.json").read_text())
    assert set(s["tasks"]) == set(GPU_SMOKE_TASKS)


@pytest.fixture(scope="session")
def paper_smoke_run(tmp_path_factory):
    return _scale_run(tmp_path_factory, "paper-smoke")


def test_paper_smoke_scale_runs_the_paper_code_paths(paper_smoke_run):
    """Every notebook at the paper scale's code paths: on-disk ImageNet-21k tree with real WordNet ids, two VTAB
    tasks in folders, the real R50x1, worker processes; the report beside published numbers."""
    import pandas as pd

    root, written = paper_smoke_run
    assert [p.name for p in written] == [p.name for p in notebooks()]
    out = root / "r" / "paper-smoke"
    ranking = pd.read_csv(out / "your_task" / "ranking.csv")  # 07: R50x1 models ranked on resisc45
    assert ranking.knn.between(0, 1).all() and ranking.finetune_accuracy.notna().sum() == 2
    s = json.loads((out / "summary.json").read_text())
    assert s["model"]["arch"] == "R50x1" and set(s["tasks"]) == {"resisc45", "dsprites_location"}
    assert s["data"]["benchmark"] == "imagenet21k+vtab" and s["data"]["upstream_classes"] == 12
    both = pd.read_csv(out / "tables" / "vtab_vs_published.csv")
    # both fixture tasks are class folders: our rows say their splits are not VTAB's
    ours = "ours (paper-smoke scale; splits not VTAB's (dsprites_location, resisc45))"
    assert set(both.who) == {ours, "published"} and 72.3 in both["mean"].tolist()
    assert (out / "figures" / "vtab_vs_published.png").is_file()
    picks = pd.read_csv(out / "tables" / "selection_picks.csv")
    assert {m for v in picks.knn for m in v.split(";")} <= {
        "adapter:animal",
        "adapter:bird",
        "adapter:artifact",
    }


@pytest.mark.slow
def test_experts_stage_under_torchrun_matches_one_process(paper_smoke_run, tmp_path):
    """The docs' `torchrun ... -m expertlib.pipeline.torchrun experts` at the paper-smoke scale (R50x1, on-disk fixture): 2 gloo
    processes train the same experts as the same command in one process, and only rank 0 writes."""
    from expertlib.models.weights import load_bank

    root, _ = paper_smoke_run
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "expertlib.pipeline.torchrun", "experts", "--scale", "paper-smoke", "--device", "cpu",
            "--data-root", str(root / "d")]  # fmt: skip
    banks = {}
    two = [torchrun, "--standalone", "--nproc_per_node", "2"]
    for name, launcher in (("one", [sys.executable]), ("two", two), ("sharded", two)):
        shutil.copytree(root / "r", tmp_path / name)
        ws = tmp_path / name / "paper-smoke"
        for p in [*ws.glob("models/*_experts.safetensors"), *ws.glob("tables/*_expert_training.csv"),
                  *ws.glob("checkpoints/adapter_*"), *ws.glob("checkpoints/full_*")]:  # fmt: skip
            p.unlink()
        extra = ["--shard-experts"] if name == "sharded" else []
        proc = subprocess.run([*launcher, *args, *extra, "--results-dir", str(tmp_path / name)], capture_output=True,
                              text=True, timeout=600, env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        banks[name] = {k: load_bank(ws / "models" / f"{k}_experts.safetensors") for k in ("adapter", "full")}
        assert "adapter experts on 2 process(es)" in proc.stdout or name == "one"
    # whole experts shared over the ranks: each trained on one process, so the very bits of the single process
    for kind in ("adapter", "full"):
        one, sharded = banks["one"][kind].state_dict(), banks["sharded"][kind].state_dict()
        assert one.keys() == sharded.keys() and all(torch.equal(one[k], sharded[k]) for k in one), kind
    x = torch.randn(2, 3, 32, 32)
    for kind in ("adapter", "full"):
        a, b = banks["one"][kind], banks["two"][kind]
        worst = max(
            (u - v).abs().max().item()
            for u, v in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
        )
        assert worst < 1e-3, (kind, worst)
        with torch.no_grad():  # the experts did train: none of them computes B any more
            assert all(
                not torch.allclose(pooled_features(b, x, expert=e), pooled_features(b, x, expert=None))
                for e in b.expert_names
            )


def test_released_smoke_runs_from_public_downloads_alone(released_smoke_run):
    """The paper's downstream half from what anyone can download: a data root with B's .npz, three released
    expert SavedModels (converted at run time) and VTAB tasks (one in folders, one in TFRecord shards), and no
    imagenet21k/ folder. Notebooks 01 and 04-07 run (02 and 03 train nothing here); the plan counts exactly
    the fine-tunes that ran; the report says which claims this scale cannot test."""
    import pandas as pd

    from expertlib.models.weights import load_bank, read_metadata

    root, written = released_smoke_run
    assert [p.name[:2] for p in written] == ["01", "04", "05", "06", "07"]
    assert not (root / "d" / "released-smoke" / "imagenet21k").exists()
    out = root / "r" / "released-smoke"
    for p in written:
        nb = nbformat.read(p, as_version=4)
        assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"], p.name
    report = nbformat.read(out / "notebooks" / "06_report.ipynb", as_version=4)
    shown = [o for c in report.cells for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in shown) >= 4  # figures inline
    assert any("not testable at this scale" in str(o.get("data", {})) for o in shown)  # the claims, inline
    bank = load_bank(out / "models" / "released_experts.safetensors")
    assert sorted(bank.expert_names) == ["bird", "food", "nutrient"]
    assert read_metadata(out / "models" / "released_experts.safetensors")["architecture"] == "bit_fixture"
    rankings = pd.read_csv(out / "tables" / "selection_rankings.csv")
    assert {"knn", "domain", "linear", "logme", "hscore"} <= set(rankings.proxy)
    assert set(rankings[rankings.proxy == "domain"].model) == {
        "released:bird",
        "released:food",
        "released:nutrient",
    }
    runs = pd.read_csv(out / "tables" / "transfer_runs.csv")
    plan = pd.read_csv(out / "tables" / "plan.csv")
    assert plan.picks.iloc[-1] == "upper bound (before selection)" and plan.jobs.iloc[-1] >= len(runs)
    assert set(runs["mode"]) == {"finetune", "finetune_val"} and set(runs.seed) == {0, 1}
    claims = pd.read_csv(out / "tables" / "claims.csv")
    paper = claims[
        claims.family.isin(["confirmatory", "exploratory"])
    ]  # S1 and T*: the smoke scale checks them
    untestable = set(paper[paper.verdict == "not testable at this scale"].id)
    # B+extra, DAT, specialisation, adapter vs full; and LEEP's and NCE's picks, which this design does not fine-tune
    assert untestable == {"P3", "P6", "P7", "P8", "E3", "E5", "E4lp", "E4ne"}
    # the report names the baselines' definitions: a sampled random expert, an oracle pool of kNN's top 2 of 3
    defs = json.loads((out / "summary.json").read_text())["definitions"]
    assert defs["random"] == "random expert (mean of 1 of 3 drawn per task: an estimate)"
    assert "best of kNN's top 2 of 3 on val200" in defs["oracle"]
    e2 = claims.set_index("id").loc["E2", "evidence"]
    assert "pool is kNN's top 2 of 3 experts" in e2 or e2.startswith("not testable")
    both = pd.read_csv(out / "tables" / "vtab_vs_published.csv")
    # resisc45 from folders; dsprites from TFDS shards (VTAB's rules) holding fewer examples than the published version
    assert set(both.who) == {
        "ours (released-smoke scale; splits not VTAB's (resisc45); TFDS version differs (dsprites_location))",
        "published",
    }
    methods = pd.read_csv(out / "tables" / "methods_per_task.csv")
    assert {"base", "knn", "domain", "random", "oracle"} <= set(methods.method)


def test_released_plan_counts_the_jobs_that_run(released_smoke_run):
    """The plan's job list, computed from selection's picks, is the job list notebook 05 ran."""
    import pandas as pd

    from expertlib.pipeline import compute_plan as PL
    from expertlib.pipeline.inputs import load_benchmark
    from expertlib.pipeline.workspace import Workspace
    from expertlib.run.presets import get_scale

    root, _ = released_smoke_run
    ws = Workspace(get_scale("released-smoke"), root / "r" / "released-smoke", root / "d")
    bench = load_benchmark(ws)
    picks = pd.read_csv(ws.path("tables", "selection_picks.csv"))
    jobs = PL.plan_jobs(ws, bench, PL.released_candidates(["bird", "food", "nutrient"]), picks)
    runs = pd.read_csv(ws.path("tables", "transfer_runs.csv"))
    planned = sorted((j.recipe["task"], j.recipe["model"], j.recipe["mode"], j.recipe["seed"]) for j in jobs)
    assert planned == sorted(zip(runs.task, runs.model, runs["mode"], runs.seed, strict=True))
    upper = PL.plan_jobs(ws, bench, PL.released_candidates(["bird", "food", "nutrient"]), None)
    assert len(upper) >= len(jobs)  # before selection: an upper bound


@pytest.mark.slow
def test_released_transfer_under_torchrun_matches_one_process(released_without_transfer):
    """2 gloo ranks share the released-smoke fine-tunes (each job run once, one file each) and rank 0 writes a
    transfer table identical, timings aside, to the one-process run's."""
    import pandas as pd

    data, ws, one = released_without_transfer
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "expertlib.pipeline.torchrun", "transfer",
                           "--scale", "released-smoke", "--device", "cpu", "--data-root", str(data),
                           "--results-dir", str(ws.parent)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 process(es)" in proc.stdout
    two = pd.read_csv(ws / "tables" / "transfer_runs.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(one, two)
    assert len(list((ws / "jobs" / "transfer").glob("*.json"))) == len(two)


def test_bad_parameters_fail_before_compute(tmp_path):
    with pytest.raises(ParameterError, match="unknown parameter 'sede'.*Did you mean 'seed'"):
        run("smoke", results_dir=str(tmp_path), extra={"sede": 1})
    with pytest.raises(ParameterError, match="'seed'.*must be int"):
        run("smoke", results_dir=str(tmp_path), extra={"seed": "zero"})
    with pytest.raises(ValueError, match="unknown scale 'laptop'"):
        run("laptop", results_dir=str(tmp_path))
    assert not (tmp_path / "smoke" / "notebooks").exists() or not any(
        (tmp_path / "smoke" / "notebooks").iterdir()
    )


def test_missing_inputs_name_the_notebook_to_run_first(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="run notebook 02_generic.ipynb"):
        run(
            "smoke",
            results_dir=str(tmp_path / "r"),
            data_root=str(tmp_path / "d"),
            only=["03"],
            progress=False,
        )


def test_executed_notebooks_keep_no_progress_bars(tmp_path):
    """A fresh clone that must rebuild its data shows progress bars; the executed notebook must not keep them,
    so `make reproduce` leaves git clean either way. Warnings and printed text stay."""
    from expertlib.run.reproduce import finish

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output(
            "stream", name="stderr", text="\rupstream train:  11%|█  | 1/9 [00:00<00:02, 3.7it/s]"
        ),
        nbformat.v4.new_output("stream", name="stderr", text="\rfine-tunes: 0it [00:00, ?it/s]\n"),
        nbformat.v4.new_output("stream", name="stderr", text="\n"),  # what a closing bar leaves
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: something worth reading\n"),
        nbformat.v4.new_output("stream", name="stdout", text="scale cpu: ...\n"),
    ]
    nb.cells.append(cell)
    partial = tmp_path / "run.ipynb"
    nbformat.write(nb, str(partial))
    out = finish(partial, tmp_path / "out.ipynb")
    kept = [o.text for o in nbformat.read(str(out), as_version=4).cells[0].outputs]
    assert kept == ["UserWarning: something worth reading\n", "scale cpu: ...\n"]


def _planned_equals_run(scale: str, results: Path, data: Path) -> None:
    import pandas as pd

    from expertlib.pipeline import compute_plan as PL
    from expertlib.pipeline.experts import choose_experts
    from expertlib.pipeline.inputs import load_benchmark
    from expertlib.pipeline.workspace import Workspace
    from expertlib.run.presets import get_scale

    ws = Workspace(get_scale(scale), results, data)
    bench = load_benchmark(ws)
    picks = pd.read_csv(ws.path("tables", "selection_picks.csv"))
    cands = PL.scale_candidates(ws, list(choose_experts(ws, bench)) if ws.scale.trains_upstream else None)
    planned = sorted((j.recipe["task"], j.recipe["model"], j.recipe["mode"], j.recipe["seed"])
                     for j in PL.plan_jobs(ws, bench, cands, picks))  # fmt: skip
    runs = pd.read_csv(ws.path("tables", "transfer_runs.csv"))
    runs = runs[runs["mode"] != "linear"]  # frozen-feature probes are no fine-tunes
    assert planned == sorted(zip(runs.task, runs.model, runs["mode"], runs.seed, strict=True))
    plan = pd.read_csv(ws.path("tables", "plan.csv"))
    grid = len(ws.scale.transfer.steps) * len(ws.scale.transfer.lrs)
    trials = len(ws.scale.data.tasks) * grid if grid > 1 else 0
    assert plan.iloc[-1].jobs == len(planned) + trials  # notebook 01 onwards wrote the plan of these jobs


def test_the_plan_counts_the_jobs_the_smoke_scale_ran(smoke_run):
    out, _, _ = smoke_run
    _planned_equals_run("smoke", out, out.parent.parent / "data")


def test_the_plan_counts_the_jobs_the_paper_smoke_scale_ran(paper_smoke_run):
    root, _ = paper_smoke_run
    _planned_equals_run("paper-smoke", root / "r" / "paper-smoke", root / "d")


def _repeated_images(path: Path) -> list[str]:
    """Each image an executed notebook shows more than once (the same PNG bytes), by cell."""
    nb = nbformat.read(path, as_version=4)
    first, repeated = {}, []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            png = o.get("data", {}).get("image/png")
            if png:
                key = "".join(png) if isinstance(png, list) else png
                if key in first:
                    repeated.append(
                        f"{path.parent.parent.name}/{path.name}: cell {i} repeats an image of cell {first[key]}"
                    )
                first.setdefault(key, i)
    return repeated


def test_no_executed_notebook_shows_an_image_twice(smoke_run):
    """The committed runs' executed notebooks and the smoke run's: a figure both returned by a cell and left
    open for the inline backend would be shown twice."""
    _, written, _ = smoke_run
    committed = sorted((Path(__file__).resolve().parents[1] / "results").glob("*/notebooks/*.ipynb"))
    assert committed and written
    repeated = [r for p in [*committed, *written] for r in _repeated_images(p)]
    assert not repeated, repeated
