"""The report's statistics on constructed inputs whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from expertlib.pipeline.report import claims, few_shot_claims, method_rows, method_runs, regime_gains


def _runs():
    """Two tasks, three seeds. Expert b is best at seed 0 by luck, worse than a at seeds 1 and 2."""
    rows = []
    for task, group, shift in (("t1", "natural", 0.0), ("t2", "structured", 0.1)):
        models = [("base", [0.5, 0.7, 0.6]), ("base+extra", [0.6, 0.6, 0.6]), ("adapter:a", [0.8, 0.9, 0.7]),
                  ("adapter:b", [0.9, 0.4, 0.5])]  # fmt: skip
        if task == "t1":
            models.append(("full:a", [0.81, 0.8, 0.82]))
        for model, accs in models:
            kind, _, expert = model.rpartition(":") if ":" in model else ("generic", "", "")
            for seed, acc in enumerate(accs):
                rows.append({"task": task, "group": group, "model": model, "kind": kind, "expert": expert,
                             "mode": "finetune", "seed": seed,
                             "accuracy": acc + shift, "seconds": 10.0})  # fmt: skip
    return pd.DataFrame(rows)


PICKS = pd.DataFrame({"task": ["t1", "t2"], "knn": ["adapter:a"] * 2, "domain": ["adapter:b"] * 2,
                      "logme": ["adapter:b"] * 2,
                      "knn_seconds": [0.1, 0.05]})  # fmt: skip


def test_method_rows_known_means_and_spreads():
    m = method_rows(_runs(), PICKS, "finetune").set_index(["task", "method"])
    assert m.loc[("t1", "base"), "mean"] == pytest.approx(0.6)
    assert m.loc[("t1", "base"), "sd"] == pytest.approx(np.std([0.5, 0.7, 0.6], ddof=1))
    assert m.loc[("t1", "knn"), "model"] == "adapter:a" and m.loc[("t1", "knn"), "mean"] == pytest.approx(0.8)
    # the oracle is chosen at seed 0 (b, by luck) and judged at seeds 1 and 2 only: no selection bias
    assert m.loc[("t2", "oracle"), "model"] == "adapter:b" and m.loc[("t2", "oracle"), "n"] == 2
    assert m.loc[("t2", "oracle"), "mean"] == pytest.approx(0.55)
    # random: the mean over the expert pool (adapters; not the full expert) at each seed, then over seeds
    assert m.loc[("t1", "random"), "mean"] == pytest.approx(0.7) and m.loc[("t1", "random"), "n"] == 3
    assert set(m.reset_index().group) == {"natural", "structured"}


def test_method_runs_pair_picks_and_random_expectation():
    runs = _runs()
    knn = method_runs(runs, PICKS, "knn")
    assert set(knn.seed) == {0, 1, 2} and knn[knn.task == "t1"].accuracy.tolist() == pytest.approx(
        [0.8, 0.9, 0.7]
    )
    rnd = method_runs(runs, PICKS, "random")
    assert rnd[rnd.task == "t1"].accuracy.tolist() == pytest.approx([0.85, 0.65, 0.6])
    oracle = method_runs(runs, PICKS, "oracle")
    assert sorted(set(oracle.seed)) == [1, 2] and set(oracle.model) == {"adapter:b"}
    incomplete = runs[
        ~((runs.model == "adapter:b") & (runs.seed == 2))
    ]  # random needs every expert at a seed
    assert sorted(set(method_runs(incomplete, PICKS, "random").seed)) == [0, 1]


def test_claims_table_from_constructed_tables():
    spec = pd.DataFrame([
        {"expert": e, "kind": "adapter", "model": m, "region": "own", "knn": v}
        for e, vals in (("a", (0.9, 0.7, 0.7)), ("b", (0.6, 0.7, 0.72)))
        for m, v in zip(("adapter_expert", "base", "base+extra"), vals, strict=True)
    ])  # fmt: skip
    quality = pd.DataFrame({"task": ["t1", "t1"], "proxy": ["knn", "logme"], "kendall_tau": [0.5, 0.1],
                            "noise_ceiling_tau": [0.6, 0.6], "regret": [0.0, 0.2]})  # fmt: skip
    avf = pd.DataFrame({"expert": ["a", "a"], "kind": ["adapter", "full"], "parameters": [10, 100],
                        "accuracy": [0.80, 0.81], "tasks": ["t1", "t1"]})  # fmt: skip
    c = claims(_runs(), PICKS, spec, quality, avf).set_index("claim")
    assert len(c) == 10
    # specialisation, paired over the two experts: a +0.2 over B, b -0.1: mean +0.05, the CI spans both
    assert c.evidence.iloc[0].startswith("expert - B: +0.050 [-0.100, +0.200] over 2 experts; better on 1")
    assert (
        c.verdict.iloc[0] == "not shown (CI includes 0)" and "expert - B+extra: +0.040" in c.evidence.iloc[0]
    )
    knn_vs_base = c.loc["The kNN-selected expert transfers better than the generic model B"]
    # paired over seeds 0-2 of both tasks: +0.3, +0.2, +0.1 on each task, mean +0.2, every resample above 0
    assert knn_vs_base.evidence.startswith(
        "+0.200 ["
    ) and "over 2 tasks x 3 seeds; better on 2, worse on 0" in (knn_vs_base.evidence)
    assert knn_vs_base.verdict == "reproduced"
    assert c.loc["The domain-prediction pick transfers better than B"].evidence.startswith("+0.000")
    oracle = c.loc["Some expert (the oracle, chosen at seed 0) transfers better than B at other seeds"]
    assert oracle.evidence.startswith("-0.200") and "x 2 seeds" in oracle.evidence  # judged at seeds 1, 2
    assert oracle.verdict == "contradicted"
    assert "3 seeds" in c.loc["kNN selection beats picking an expert at random (its expectation)"].evidence
    # fine-tune every expert (a and b, 10 s each at seed 0) over kNN's 0.1 s and 0.05 s: 200x and 400x
    cost = c.loc["Selection is 2-3 orders of magnitude cheaper than fine-tuning every expert"]
    assert "283x (geometric mean over 2 tasks) [200x, 400x]" in cost.evidence and cost.verdict == "reproduced"
    proxy = c.loc["kNN is a good proxy: no other proxy's pick transfers better"]
    assert proxy.verdict == "reproduced (no proxy's pick better)" and "logme +0.200" in proxy.evidence
    avf_row = c.loc[
        "Adapter experts transfer about as well as full experts (within 0.02) at a fraction of the parameters"
    ]
    assert (
        avf_row.evidence.startswith("adapter - full on related tasks: -0.010") and "10.0%" in avf_row.evidence
    )
    assert avf_row.verdict == "not shown (CI crosses -0.02)"


def _with_few_shot():
    """_runs() at 1k, and a 5-shot copy of it where B (only) is 0.2 lower: the kNN pick's gain over B is
    +0.2 at 1k and +0.4 at 5-shot, at every task and seed."""
    full = _runs()
    few = full.assign(task=full.task + "@5shot")
    few.loc[few.model == "base", "accuracy"] -= 0.2
    picks = pd.concat([PICKS, PICKS.assign(task=PICKS.task + "@5shot")], ignore_index=True)
    return pd.concat([full, few], ignore_index=True), picks


def test_regime_gains_pair_each_method_with_b_per_regime():
    runs, picks = _with_few_shot()
    g = regime_gains(runs, picks).set_index(["regime", "metric", "method"])
    assert list(dict.fromkeys(g.index.get_level_values("regime"))) == ["5-shot", "1k"], "fewest images first"
    assert g.loc[("1k", "finetune", "knn"), "minus_base"] == pytest.approx(0.2)
    assert g.loc[("5-shot", "finetune", "knn"), "minus_base"] == pytest.approx(0.4)
    assert g.loc[("5-shot", "finetune", "knn"), "base_accuracy"] == pytest.approx(0.45)
    assert (
        g.loc[("5-shot", "finetune", "knn"), "verdict"] == "better"
        and g.loc[("5-shot", "finetune", "knn"), "seeds"] == 3
    )
    # B+extra was not lowered: its difference from B grows by exactly the 0.2
    assert g.loc[("5-shot", "finetune", "base+extra"), "minus_base"] == pytest.approx(
        g.loc[("1k", "finetune", "base+extra"), "minus_base"] + 0.2
    )
    assert "linear" not in set(g.index.get_level_values("metric")), "no linear runs, no linear rows"


def test_few_shot_claims_are_paired_differences_of_differences():
    runs, picks = _with_few_shot()
    c = few_shot_claims(runs, picks)
    assert len(c) == 2 and all("larger at 5-shot than at 1k" in t for t in c.claim)
    knn, oracle = c.evidence
    assert knn.startswith(
        "(knn - B at 5-shot) - (knn - B at 1k): +0.200 [+0.200, +0.200] over 2 tasks x 3 seeds"
    )
    assert oracle.startswith("(oracle - B at 5-shot) - (oracle - B at 1k): +0.200") and "x 2 seeds" in oracle
    assert (c.verdict == "reproduced").all()
    same = runs.copy()
    same.loc[same.task.str.endswith("@5shot") & (same.model == "base"), "accuracy"] += 0.2
    assert (few_shot_claims(same, picks).verdict == "not shown (CI includes 0)").all()
    assert few_shot_claims(_runs(), PICKS).empty, "no few-shot regime, no claim"


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
