"""Notebook 07's step: its ranking goes to results/<scale>/your_task/ with the notebook's default parameters and
to a folder of its own with any other, so trying other images, models or settings never overwrites the default
run's outputs (the committed ones at the cpu scale)."""

from expertlib.pipeline import your_task as Y
from expertlib.run.parameters import declared_defaults
from expertlib.run.reproduce import NOTEBOOK_DIR


def test_the_notebooks_defaults_are_the_steps():
    declared = declared_defaults(NOTEBOOK_DIR / "07_your_task.ipynb")
    assert {k: declared[k] for k in Y.DEFAULTS} == Y.DEFAULTS


def test_each_set_of_parameters_has_its_own_folder(smoke):
    ws, _ = smoke
    home = ws.results_dir / "your_task"
    defaults = dict(images="", models=[], proxies=Y.DEFAULTS["proxies"], k=0, finetune_top=2)
    assert Y.output_folder(ws, **defaults) == home
    assert (
        Y.output_folder(ws, **{**defaults, "images": None, "models": None, "k": None}) == home
    )  # read alike
    assert Y.output_folder(ws, **{**defaults, "k": 1}) == home / "k=1"
    assert (
        Y.output_folder(ws, **{**defaults, "finetune_top": 0, "proxies": ["knn"]})
        == home / "finetune_top=0,proxies=knn"
    )


def test_a_run_with_other_parameters_leaves_the_default_runs_ranking_alone(smoke):
    ws, bench = smoke
    home = ws.results_dir / "your_task"
    home.mkdir(parents=True, exist_ok=True)
    committed = {
        "ranking.csv": b"model,knn\nours,0.5\n",
        "request.json": b"{}",
    }  # the default run's, as committed
    for name, data in committed.items():
        (home / name).write_bytes(data)
    table, out = Y.run(ws, bench, None, None, ["knn"], 1, 0)
    assert out == home / "finetune_top=0,k=1,proxies=knn" and (out / "ranking.csv").is_file()
    assert {n: (home / n).read_bytes() for n in committed} == committed  # untouched
    again, out2 = Y.run(ws, bench, "", [], ["knn"], 1, 0)  # the same request: read, not recomputed
    assert out2 == out and again.equals(table)
