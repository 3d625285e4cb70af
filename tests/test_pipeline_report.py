"""The report's statistics on constructed inputs whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from expertlib.pipeline.report import claims, method_rows, verdict


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


def test_verdict_against_the_seed_spread():
    assert verdict(np.array([0.05, 0.03]), np.array([0.01, 0.01])) == "reproduced"
    assert verdict(np.array([-0.05]), np.array([0.01])) == "not reproduced"
    assert verdict(np.array([0.005, 0.0]), np.array([0.01, np.nan])) == "inconclusive (within seed spread)"
    assert verdict(np.array([]), np.array([])) == "inconclusive (no data)"
    assert verdict(np.array([0.001]), np.array([np.nan])) == "reproduced"  # no spread known: any gain counts


def test_claims_table_from_constructed_tables():
    picks = pd.DataFrame({"task": ["t1", "t2"], "knn": ["a", "a"], "domain": ["b", "b"]})
    methods = method_rows(_runs(), picks, "finetune")
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
    c = claims(methods, spec, quality, cost, avf).set_index("claim")
    rows = list(c.index)
    assert len(rows) == 9
    assert c.verdict.iloc[0] == "reproduced" and c.evidence.iloc[0].startswith("1/2 adapter experts better")
    knn_vs_base = c.loc["The kNN-selected expert transfers better than the generic model B"]
    assert "mean +0.250 over 2 tasks (better on 2)" in knn_vs_base.evidence
    assert knn_vs_base.verdict == "reproduced"
    assert c.loc["The domain-prediction pick transfers better than B"].verdict == "not reproduced"
    assert (
        "= 250x"
        in c.loc["Selection is 2-3 orders of magnitude cheaper than fine-tuning every expert"].evidence
    )
    assert c.loc["kNN is a good proxy among those tried (lowest regret)"].verdict == "reproduced"
    avf_row = c.loc["Adapter experts transfer about as well as full experts at a fraction of the parameters"]
    assert "-0.010" in avf_row.evidence and "10.0%" in avf_row.evidence and avf_row.verdict == "reproduced"
