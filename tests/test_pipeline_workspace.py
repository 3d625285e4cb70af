import json

import pandas as pd
import pytest

from expertlib.pipeline.workspace import MissingStepError, Workspace, cached, provenance


def test_cached_computes_once_then_reads(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"a": [1, 2]})

    p = tmp_path / "t.csv"
    first = cached(p, compute)
    again = cached(p, compute)
    assert len(calls) == 1 and again.equals(first)


def test_cached_several_outputs_and_formats(tmp_path):
    paths = (tmp_path / "x.json", tmp_path / "y.csv")
    out = cached(paths, lambda: ({"k": 1}, pd.DataFrame({"b": [3]})), ("json", "csv"))
    back = cached(paths, lambda: pytest.fail("must not recompute"), ("json", "csv"))
    assert back[0] == out[0] == {"k": 1} and back[1].b.tolist() == [3]
    (tmp_path / "y.csv").unlink()  # one output missing: recompute both
    again = cached(paths, lambda: ({"k": 2}, pd.DataFrame({"b": [4]})), ("json", "csv"))
    assert again[0] == {"k": 2}


def test_cached_failure_writes_nothing_and_bad_formats_are_named(tmp_path):
    def boom():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cached(tmp_path / "t.csv", boom)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unknown cache formats \\['parquet'\\]"):
        cached(tmp_path / "t.pq", boom, "parquet")
    with pytest.raises(ValueError, match="2 paths but 1 formats"):
        cached((tmp_path / "a", tmp_path / "b"), boom, ["csv"])


def test_missing_step_names_the_notebook(tmp_path):
    ws = Workspace.create("smoke", tmp_path / "r", tmp_path / "data", progress=False)
    with pytest.raises(MissingStepError, match="run notebook 02_generic.ipynb at scale='smoke'"):
        ws.require("models", "generic.safetensors", "02_generic.ipynb")
    assert (tmp_path / "r" / "smoke" / "models").is_dir()


def test_provenance_records_commit_and_machine():
    p = provenance()
    assert p["git_commit"] and "machine" in p and p["time"]


def test_cached_outputs_record_the_commit_that_computed_them(tmp_path):
    out = tmp_path / "tables" / "x.csv"
    cached(out, lambda: pd.DataFrame({"a": [1]}))
    book = json.loads((out.parent / "provenance.json").read_text())
    assert set(book) == {"x.csv"} and book["x.csv"]["git_commit"] and "time" in book["x.csv"]
    book["x.csv"]["time"] = "then"
    (out.parent / "provenance.json").write_text(json.dumps(book))
    cached(out, lambda: pd.DataFrame({"a": [2]}))  # reused, not recomputed: its entry stays
    assert json.loads((out.parent / "provenance.json").read_text())["x.csv"]["time"] == "then"


def test_provenance_asks_git_about_the_repository_wherever_the_process_runs(tmp_path, monkeypatch):
    import subprocess
    from pathlib import Path

    from expertlib.pipeline.workspace import provenance

    repo = Path(__file__).resolve().parents[1]
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    monkeypatch.chdir(tmp_path)  # as under `make lab` (cwd notebooks/), or any folder outside the repository
    assert provenance()["git_commit"] == head


def test_outputs_are_reused_only_under_the_recipe_that_made_them(tmp_path):
    import json

    import pandas as pd
    import pytest

    from expertlib.pipeline.workspace import RecipeMismatchError, cached

    made = tmp_path / "t.csv"
    cached(made, lambda: pd.DataFrame({"a": [1]}), recipe={"lr": 0.1, "seed": 0})
    assert cached(made, lambda: 1 / 0, recipe={"lr": 0.1, "seed": 0}).a.tolist() == [
        1
    ]  # reused, not recomputed
    with pytest.raises(
        RecipeMismatchError, match=r"another recipe \(lr: 0.1 -> 0.05\).*results_dir.*reproduce-fresh"
    ):
        cached(made, lambda: 1 / 0, recipe={"lr": 0.05, "seed": 0})
    # an output written before recipes were recorded adopts today's once, and is held to it from then on
    old = tmp_path / "old.csv"
    pd.DataFrame({"a": [2]}).to_csv(old, index=False)
    assert cached(old, lambda: 1 / 0, recipe={"lr": 0.1}).a.tolist() == [2]
    assert json.loads((tmp_path / "provenance.json").read_text())["old.csv"]["recipe"] == {"lr": 0.1}
    with pytest.raises(RecipeMismatchError, match="lr: 0.1 -> 0.2"):
        cached(old, lambda: 1 / 0, recipe={"lr": 0.2})


def test_a_changed_expert_setting_is_refused_at_every_step_built_on_it(smoke):
    """Change expert_lr and rerun: the stored experts (and every step made from them) are refused, naming the
    setting, where they used to be reused silently; runtime settings change nothing."""
    from dataclasses import replace

    import pytest

    from expertlib.pipeline import models as M
    from expertlib.pipeline import upstream as U
    from expertlib.pipeline.workspace import RecipeMismatchError

    ws, bench = smoke
    changed = replace(ws, scale=ws.scale.override(expert_lr=ws.scale.expert.lr / 2))
    base, _ = M.load_generic(ws)
    with pytest.raises(RecipeMismatchError, match="expert_lr"):
        U.train_experts(changed, bench, base, "adapter")
    with pytest.raises(RecipeMismatchError, match="expert_lr"):
        U.train_generic_extra(changed, bench, base)
    assert "expert_lr" in changed.recipe("selection") and "expert_lr" in changed.recipe("transfer")
    runtime = replace(ws, scale=ws.scale.override(transfer_workers=0, data_workers=1, eval_batch=7))
    U.train_experts(
        runtime, bench, base, "adapter"
    )  # reused: workers and eval batch are not part of a recipe


def test_outputs_scored_before_domain_prediction_had_a_setting_are_refused_where_it_now_differs(tmp_path):
    """Domain prediction read B's head as a softmax before ``domain_activation`` existed: an output recorded
    without the setting counts as softmax, so a scale whose head is now read as sigmoid (the released scales)
    refuses it, while the cpu scale (softmax) keeps its committed outputs."""
    import json

    from expertlib.pipeline.workspace import RecipeMismatchError, check_recipe
    from expertlib.run.presets import get_scale

    table = tmp_path / "selection_picks.csv"
    table.write_text("task\n")
    for name in ("cpu", "released"):
        recipe = Workspace(get_scale(name), tmp_path, tmp_path).recipe("selection")
        old = {k: v for k, v in recipe.items() if k != "domain_activation"}
        (tmp_path / "provenance.json").write_text(json.dumps({"selection_picks.csv": {"recipe": old}}))
        if name == "cpu":
            assert recipe["domain_activation"] == "softmax"
            check_recipe([table], recipe)  # the committed cpu outputs stay valid
        else:
            assert recipe["domain_activation"] == "sigmoid: expected count of classes present"
            with pytest.raises(RecipeMismatchError, match="domain_activation: 'softmax' -> 'sigmoid"):
                check_recipe([table], recipe)
