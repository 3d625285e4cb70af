"""The report's statistics on constructed inputs whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from expertlib.pipeline.report import claims, method_rows, method_runs


def _runs():
    rows = []
    for task, group, shift in (("t1", "natural", 0.0), ("t2", "structured", 0.1)):
        for model, accs in (("base", [0.5, 0.7]), ("base+extra", [0.6, 0.6]), ("adapter:a", [0.8, 0.9]),
                            ("adapter:b", [0.4])):  # fmt: skip
            for seed, acc in enumerate(accs):
                rows.append({"task": task, "group": group, "model": model, "mode": "finetune", "seed": seed,
                             "accuracy": acc + shift})  # fmt: skip
    return pd.DataFrame(rows)


def test_method_rows_known_means_and_spreads():
    picks = pd.DataFrame({"task": ["t1", "t2"], "knn": ["a", "a"], "domain": ["b", "b"]})
    m = method_rows(_runs(), picks, "finetune").set_index(["task", "method"])
    assert m.loc[("t1", "base"), "mean"] == pytest.approx(0.6)
    assert m.loc[("t1", "base"), "sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert m.loc[("t1", "knn"), "model"] == "adapter:a" and m.loc[("t1", "knn"), "mean"] == pytest.approx(
        0.85
    )
    assert m.loc[("t1", "domain"), "n"] == 1 and np.isnan(m.loc[("t1", "domain"), "sd"])
    # oracle: the best adapter on seed 0, reported with its mean over seeds; random: the mean over adapters
    assert m.loc[("t2", "oracle"), "model"] == "adapter:a" and m.loc[
        ("t2", "oracle"), "mean"
    ] == pytest.approx(0.95)
    assert m.loc[("t1", "random"), "mean"] == pytest.approx(0.6) and m.loc[("t1", "random"), "n"] == 2
    assert set(m.reset_index().group) == {"natural", "structured"}


def test_method_runs_pair_picks_and_random_expectation():
    picks = pd.DataFrame({"task": ["t1", "t2"], "knn": ["a", "a"], "domain": ["b", "b"]})
    runs = _runs()
    knn = method_runs(runs, picks, "knn")
    assert set(knn.seed) == {0, 1} and knn[knn.task == "t1"].accuracy.tolist() == pytest.approx([0.8, 0.9])
    rnd = method_runs(runs, picks, "random")  # only seed 0 has every adapter expert
    assert rnd.seed.tolist() == [0, 0] and rnd[rnd.task == "t1"].accuracy.item() == pytest.approx(0.6)
    assert method_runs(runs, picks, "base").accuracy.tolist() == pytest.approx([0.5, 0.7, 0.6, 0.8])


def test_claims_table_from_constructed_tables():
    picks = pd.DataFrame({"task": ["t1", "t2"], "knn": ["a", "a"], "domain": ["b", "b"]})
    spec = pd.DataFrame([
        {"expert": e, "kind": "adapter", "model": m, "region": "own", "knn": v}
        for e, vals in (("a", (0.9, 0.7, 0.7)), ("b", (0.6, 0.7, 0.72)))
        for m, v in zip(("adapter_expert", "base", "base+extra"), vals, strict=True)
    ])  # fmt: skip
    quality = pd.DataFrame({"task": ["t1", "t1"], "proxy": ["knn", "logme"], "kendall_tau": [0.5, 0.1],
                            "regret": [0.0, 0.2]})  # fmt: skip
    cost = pd.DataFrame({"method": ["knn selection", "fine-tune all (oracle)"], "seconds": [1.0, 250.0]})
    avf = pd.DataFrame({"expert": ["a", "a"], "kind": ["adapter", "full"], "parameters": [10, 100],
                        "accuracy": [0.80, 0.81]})  # fmt: skip
    c = claims(_runs(), picks, spec, quality, cost, avf).set_index("claim")
    assert len(c) == 9
    assert c.verdict.iloc[0] == "reproduced" and c.evidence.iloc[0].startswith("1/2 adapter experts better")
    knn_vs_base = c.loc["The kNN-selected expert transfers better than the generic model B"]
    # paired over seeds 0 and 1 of both tasks: +0.3 and +0.2 on each task, mean +0.25, every resample above 0
    assert knn_vs_base.evidence.startswith(
        "+0.250 [+0.200, +0.300] over 2 tasks x 2 seeds; better on 2, worse on 0"
    )
    assert knn_vs_base.verdict == "reproduced"
    assert c.loc["The domain-prediction pick transfers better than B"].verdict == "contradicted"
    assert "1 seeds" in c.loc["kNN selection beats picking an expert at random (its expectation)"].evidence
    assert (
        c.loc["Some expert (the oracle) transfers better than B"].verdict == "not evidence (selection bias)"
    )
    assert (
        "= 250x"
        in c.loc["Selection is 2-3 orders of magnitude cheaper than fine-tuning every expert"].evidence
    )
    assert c.loc["kNN is a good proxy among those tried (lowest regret)"].verdict == "reproduced"
    avf_row = c.loc["Adapter experts transfer about as well as full experts at a fraction of the parameters"]
    assert "-0.010" in avf_row.evidence and "10.0%" in avf_row.evidence and avf_row.verdict == "reproduced"


def test_summary_is_rewritten_only_when_results_change(tmp_path):
    import json

    from expertlib.pipeline.report import write_summary

    p = tmp_path / "summary.json"
    s = {"scale": "x", "value": np.float64(0.5), "missing": float("nan"), "provenance": {"time": "t1"}}
    assert write_summary(p, s)
    assert not write_summary(p, {**s, "provenance": {"time": "t2"}})  # same results: provenance kept
    assert json.loads(p.read_text())["provenance"]["time"] == "t1"
    assert write_summary(p, {**s, "value": 0.6, "provenance": {"time": "t3"}})
    assert json.loads(p.read_text())["provenance"]["time"] == "t3"
