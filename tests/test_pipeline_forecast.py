"""Notebook 01's forecast (expertlib.pipeline.forecast): the counts of fine-tunes, stacks and compiled graphs of the
very job list notebook 05 runs, and minutes only from a rate a GPU measured ("unmeasured" until one has)."""

from pathlib import Path

import pandas as pd

from expertlib.pipeline.compute_plan import PublishedVtab
from expertlib.pipeline.forecast import forecast, forecast_sentence, stacked_rate
from expertlib.pipeline.workspace import Workspace
from expertlib.run.presets import get_scale


def _released(**overrides):
    sc = get_scale("released", **overrides)
    return Workspace(sc, Path("."), Path(".")), PublishedVtab(sc.data.tasks)


def test_one_at_a_time_fine_tunes_of_r50x1_compile_one_graph_per_resolution_and_mode():
    ws, bench = _released()
    f = forecast(ws, bench, rate=None)
    assert f["fine_tunes"] == 19 * 33 and f["stacks"] == 0 and f["upper_bound"]
    assert f["compiles"] == 4  # 128 and 480 px, train and eval: R50x1 is measured to pay
    text = forecast_sentence(ws, bench, rate=None)
    assert "627 fine-tunes (an upper bound before selection), one at a time" in text and "4 graphs" in text


def test_stacked_fine_tunes_are_counted_in_stacks_and_priced_only_from_a_measured_rate():
    ws, bench = _released(stack_finetunes=64)
    f = forecast(ws, bench, rate=None)
    # per task: 30 test fine-tunes (10 candidates x 3 seeds) in one stack, the oracle's 3 on val200 in another
    assert f["stacks"] == 19 * 2 and f["compiles"] == 0 and f["minutes"] is None
    assert "unmeasured, since no GPU has measured a K=64 stack yet" in forecast_sentence(ws, bench, rate=None)
    rate = {"finetunes_per_s": 10.0, "gpu": "NVIDIA H100", "source": "many_models.csv"}
    assert forecast(ws, bench, rate)["minutes"] == 627 / 10 / 60
    assert (
        "10.0 fine-tunes per second measured on NVIDIA H100 (many_models.csv), they take about 1.1 minutes"
        in (forecast_sentence(ws, bench, rate))
    )


def test_the_rate_is_a_gpus_k64_stack_alone(tmp_path):
    path = tmp_path / "many_models.csv"
    assert stacked_rate(path) is None
    rows = [{"device": "cpu", "what": "finetunes", "models": 64, "way": "stacked, one pass", "finetunes_per_s": 3.0},
            {"device": "NVIDIA H100 80GB HBM3", "what": "finetunes", "models": 16, "way": "stacked, one pass",
             "finetunes_per_s": 50.0}]  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)
    assert stacked_rate(path) is None  # a CPU's rate, and a GPU's at another K, price nothing
    rows.append({**rows[1], "models": 64, "finetunes_per_s": 120.0})
    pd.DataFrame(rows).to_csv(path, index=False)
    assert stacked_rate(path) == {
        "finetunes_per_s": 120.0,
        "gpu": "NVIDIA H100 80GB HBM3",
        "source": path.name,
    }
