"""The report's statistics on constructed inputs whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from expertlib.pipeline.hypotheses import hypothesis_table
from expertlib.pipeline.methods import method_rows, method_runs, proxy_picks, regime_gains


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
    # no val200 runs and no stored predictions: the oracle could only be chosen on the images it is judged on,
    # so it is refused (b, best at seed 0 by luck, would have been judged on those same test images)
    assert "oracle" not in set(m.reset_index().method)
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
    assert method_runs(runs, PICKS, "oracle").empty  # refused: only the judged test images could choose it
    incomplete = runs[
        ~((runs.model == "adapter:b") & (runs.seed == 2))
    ]  # random needs every expert at a seed
    assert sorted(set(method_runs(incomplete, PICKS, "random").seed)) == [0, 1]


def test_hypotheses_from_constructed_tables():
    spec = pd.DataFrame([
        {"expert": e, "kind": "adapter", "model": m, "region": "own", "knn": v}
        for e, vals in (("a", (0.9, 0.7, 0.7)), ("b", (0.6, 0.7, 0.72)))
        for m, v in zip(("adapter_expert", "base", "base+extra"), vals, strict=True)
    ])  # fmt: skip
    quality = pd.DataFrame({"task": ["t1", "t1"], "regime": "1k", "proxy": ["knn", "logme"],
                            "kendall_tau": [0.5, 0.1], "noise_ceiling_tau": [0.6, 0.6]})  # fmt: skip
    avf = pd.DataFrame({"expert": ["a", "a"], "kind": ["adapter", "full"], "parameters": [10, 100],
                        "accuracy": [0.80, 0.81], "tasks": ["t1", "t1"]})  # fmt: skip
    h = hypothesis_table(_runs(), PICKS, quality, spec, avf).set_index("id")
    assert list(h.index[:9]) == [f"P{i}" for i in range(1, 10)] and (h.family[:9] == "confirmatory").all()
    # kNN - B: +0.3, +0.2, +0.1 at seeds 0-2 on each of 2 tasks; the sign-flip test over 2 tasks cannot go below
    # 1/4 one-sided, so even this consistent gain is not supported after Holm: 2 tasks are too few
    p1 = h.loc["P1"]
    assert p1.estimate == pytest.approx(0.2) and p1.p == pytest.approx(0.25) and p1.verdict == "not shown"
    assert p1.p_adjusted >= p1.p and p1.adjustment == "Holm"
    # specialisation, paired over the two experts: a +0.2 over B, b -0.1
    assert h.loc["P7", "estimate"] == pytest.approx(0.05) and "2 experts" in h.loc["P7", "evidence"]
    # adapter - full on t1: -0.01, tested against the -0.02 margin
    assert h.loc["P8", "estimate"] == pytest.approx(-0.01) and h.loc["P8", "null"] == -0.02
    # fine-tune every expert (a and b, 10 s each at seed 0) over kNN's 0.1 s and 0.05 s: log10 200 and 400
    assert h.loc["P9", "estimate"] == pytest.approx(np.log10([200, 400]).mean())
    assert h.loc["P3", "verdict"] == "not testable at this scale" or h.loc["P3", "tasks"] == 2
    assert h.loc["P6", "verdict"] == "not testable at this scale" and np.isnan(h.loc["P6", "p_adjusted"])
    # no val200 runs and no halves of the test images: the oracle is refused, and the claims table says why
    e1 = h.loc["E1"]
    assert e1.family == "exploratory" and e1.adjustment == "BH q-value" and np.isnan(e1.estimate)
    assert e1.evidence.startswith("The oracle refused") and "biased upwards" in e1.evidence and e1.seeds == 0
    assert e1.verdict == "not testable at this scale"
    assert h.loc["E4le", "alternative"] == "two-sided" and h.loc["E4le", "estimate"] == pytest.approx(0.2)
    assert not any(i.startswith("F") for i in h.index), "no few-shot regime, no few-shot hypothesis"


def test_a_consistent_gain_over_12_tasks_is_supported_after_holm():
    rows = [{"task": f"t{i}", "group": "g", "model": m, "kind": k, "expert": e, "mode": "finetune", "seed": s,
             "accuracy": 0.5 + gain + 0.01 * s, "seconds": 1.0}
            for i in range(12) for s in range(3)
            for m, k, e, gain in (("base", "generic", "", 0.0), ("adapter:a", "adapter", "a", 0.02 + 0.001 * i),
                                  ("adapter:b", "adapter", "b", -0.01))]  # fmt: skip
    picks = pd.DataFrame({"task": [f"t{i}" for i in range(12)], "knn": "adapter:a", "domain": "adapter:b"})
    h = hypothesis_table(pd.DataFrame(rows), picks, pd.DataFrame(columns=["task", "regime", "proxy", "kendall_tau"]),
                        None, pd.DataFrame()).set_index("id")  # fmt: skip
    assert h.loc["P1", "p"] == pytest.approx(1 / 4096) and h.loc["P1", "verdict"] == "supported"
    assert h.loc["P4", "verdict"] == "contradicted"  # domain's pick is worse than B on every task
    assert h.loc["P5", "verdict"] == "supported"
    # testable here: P1, P2, P4, P5 (no B+extra, DAT, specialisation, adapter-vs-full or timings): Holm x4
    assert h[h.family == "confirmatory"].p.notna().sum() == 4
    assert h.loc["P1", "p_adjusted"] == pytest.approx(4 / 4096)


def test_ties_at_the_top_are_an_expectation_not_the_first_name():
    runs = _runs()
    rankings = pd.DataFrame({"task": ["t1"] * 3 + ["t2"] * 3, "model": ["base", "adapter:a", "adapter:b"] * 2,
                             "kind": ["generic", "adapter", "adapter"] * 2, "proxy": "knn",
                             "score": [0.9, 0.5, 0.5, 0.1, 0.7, 0.2]})  # fmt: skip
    picks, ties = proxy_picks(PICKS, rankings)
    assert picks.set_index("task").knn.to_dict() == {"t1": "adapter:a;adapter:b", "t2": "adapter:a"}
    assert ties.set_index("task").tied_at_top.to_dict() == {"t1": 2, "t2": 1}  # B's top score is not a pick
    knn = method_runs(runs, picks, "knn")
    t1 = knn[knn.task == "t1"].sort_values("seed")
    assert t1.accuracy.tolist() == pytest.approx([0.85, 0.65, 0.6]) and set(t1.model) == {
        "adapter:a;adapter:b"
    }


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
        g.loc[("5-shot", "finetune", "knn"), "interval"] == "above 0"
        and g.loc[("5-shot", "finetune", "knn"), "seeds"] == 3
    )
    # the oracle is refused: no images but the judged ones could choose it
    assert ("1k", "finetune", "oracle") not in g.index
    # B+extra was not lowered: its difference from B grows by exactly the 0.2
    assert g.loc[("5-shot", "finetune", "base+extra"), "minus_base"] == pytest.approx(
        g.loc[("1k", "finetune", "base+extra"), "minus_base"] + 0.2
    )
    assert "linear" not in set(g.index.get_level_values("metric")), "no linear runs, no linear rows"


def test_few_shot_hypotheses_are_paired_differences_of_differences():
    runs, picks = _with_few_shot()
    q = pd.DataFrame(columns=["task", "regime", "proxy", "kendall_tau"])
    h = hypothesis_table(runs, picks, q, None, pd.DataFrame()).set_index("id")
    assert h.loc["F5h", "estimate"] == pytest.approx(0.2) and h.loc["F5h", "ci_low"] == pytest.approx(
        0.2, abs=1e-3
    )
    # the oracle's hypotheses: refused without val200 runs or halves
    assert h.loc["F5i", "post_hoc"] and h.loc["F5i", "seeds"] == 0
    assert h.loc["F5a", "estimate"] == pytest.approx(0.4) and h.loc["F5a", "family"] == "exploratory"
    assert h.loc["F5j", "verdict"] == "not testable at this scale"  # no rank agreement given


def test_summary_is_rewritten_only_when_results_change(tmp_path):
    import json

    from expertlib.pipeline.summary import write_summary

    p = tmp_path / "summary.json"
    s = {"scale": "x", "value": np.float64(0.5), "missing": float("nan"), "provenance": {"time": "t1"}}
    assert write_summary(p, s)
    assert not write_summary(p, {**s, "provenance": {"time": "t2"}})  # same results: provenance kept
    assert json.loads(p.read_text())["provenance"]["time"] == "t1"
    assert write_summary(p, {**s, "value": 0.6, "provenance": {"time": "t3"}})
    assert json.loads(p.read_text())["provenance"]["time"] == "t3"


def test_the_oracle_is_chosen_on_one_half_of_the_test_images_and_judged_on_the_other():
    """Expert b is right on half A at seed 0 only (so it is chosen there); on half B, where it is judged, a and b
    score what their runs say. The oracle's comparisons are judged on half B alone, paired with B there."""
    from expertlib.pipeline.analysis import test_halves
    from expertlib.pipeline.methods import halved_runs
    from expertlib.pipeline.tables import prediction_key

    runs = _runs()
    labels = {t: np.arange(10) % 2 for t in ("t1", "t2")}
    preds = {}
    for r in runs.itertuples():
        a, b = test_halves(r.task, 10)
        p = 1 - labels[r.task]  # all wrong
        right = int(round(r.accuracy * len(b)))
        p[b[:right]] = labels[r.task][b[:right]]  # half B: the run's accuracy
        if r.model == "adapter:b" and r.seed == 0:
            p[a] = labels[r.task][a]  # half A at seed 0: b is perfect
        preds[prediction_key(r.task, r.model, "finetune", r.seed)] = p
    halves = halved_runs(runs, preds, labels)
    assert set(halves["mode"]) == {"finetune", "finetune_halfA"}
    oracle = method_runs(halves, PICKS, "oracle")
    assert set(oracle.model) == {"adapter:b"} and sorted(set(oracle.seed)) == [1, 2]
    h = hypothesis_table(runs, PICKS, pd.DataFrame(columns=["task", "regime", "proxy", "kendall_tau"]), None,
                         pd.DataFrame(), halves=halves).set_index("id")  # fmt: skip
    assert "half B" in h.loc["E1", "evidence"] and "half B" not in h.loc["P1", "evidence"]
    assert halved_runs(runs, {}, labels) is None  # no predictions: no halves
    # the method tables judge the oracle, and B beside it, on half B too; every other method on the whole test
    half_b = halves[halves["mode"] == "finetune"].set_index(["task", "model", "seed"]).accuracy.sort_index()
    m = method_rows(runs, PICKS, "finetune", halves).set_index(["task", "method"])
    assert m.loc[("t1", "oracle"), "mean"] == pytest.approx(
        half_b.loc[("t1", "adapter:b")].loc[[1, 2]].mean()
    )
    assert m.loc[("t1", "oracle"), "base_same_seeds"] == pytest.approx(
        half_b.loc[("t1", "base")].loc[[1, 2]].mean()
    )
    assert m.loc[("t1", "knn"), "mean"] == pytest.approx(0.8)  # the whole test set
    g = regime_gains(runs, PICKS, halves).set_index(["metric", "method"])
    paired = (half_b.xs("adapter:b", level="model") - half_b.xs("base", level="model")).loc[:, [1, 2]]
    assert g.loc[("finetune", "oracle"), "minus_base"] == pytest.approx(
        paired.groupby(level="task").mean().mean()
    )


def test_the_headline_differences_are_the_claims_pairs_per_task_group_and_overall():
    """knn (adapter:a) minus B: t1 [0.3, 0.2, 0.1] -> 0.2; t2 the same. The row over all tasks is the claims'
    comparison itself (same mean and bootstrap-t interval); a group of one task has no interval."""
    from expertlib.analysis.stats import compare, t_interval
    from expertlib.pipeline.methods import base_differences

    runs = _runs()
    d = base_differences(runs, PICKS).set_index(["level", "name", "method"])
    assert d.loc[("task", "t1", "knn"), "minus_base"] == pytest.approx(0.2)
    assert (d.loc[("task", "t1", "knn"), ["ci_low", "ci_high"]].tolist()
            == pytest.approx(list(t_interval(np.array([0.3, 0.2, 0.1])))))  # fmt: skip
    claim = compare(method_runs(runs, PICKS, "knn"), method_runs(runs, PICKS, "base"))
    assert d.loc[("all", "all", "knn"), ["minus_base", "ci_low", "ci_high"]].tolist() == pytest.approx(
        [claim.mean, claim.ci_low, claim.ci_high]
    )
    assert d.loc[("group", "natural", "knn"), "tasks"] == 1 and np.isnan(
        d.loc[("group", "natural", "knn"), "ci_low"]
    )
    # without test halves or val200 runs the oracle is refused (never judged where it was chosen): no row
    assert "oracle" not in set(d.index.get_level_values("method"))
    assert "base" not in set(d.index.get_level_values("method"))


def test_the_report_refuses_the_oracle_where_only_the_judged_images_could_choose_it(smoke_run, tmp_path):
    """The smoke run's report again without its stored predictions (an older run) and without val200 runs: the
    oracle is neither chosen on the test images nor shown; the tables, claims and summary.json say why."""
    import json
    import shutil

    from expertlib.pipeline import Workspace
    from expertlib.pipeline.inputs import load_benchmark
    from expertlib.pipeline.methods import ORACLE_REFUSED
    from expertlib.pipeline.report import build_report

    out, _, _ = smoke_run
    results = tmp_path / "results"
    shutil.copytree(out, results / "smoke")
    (results / "smoke" / "tables" / "transfer_predictions.npz").unlink()
    ws = Workspace.create("smoke", results, out.parent.parent / "data", progress=False)
    report = build_report(ws, load_benchmark(ws))
    assert "oracle" not in set(report["methods"].method) and "oracle" not in set(report["vtab_table"].method)
    assert json.loads((results / "smoke" / "summary.json").read_text())["oracle_chosen"] == ORACLE_REFUSED
    claims = report["claims"].set_index("id")
    assert claims.loc["E1", "evidence"].startswith("The oracle refused") and claims.loc["E1", "tasks"] == 0
    assert np.isnan(report["cost"].set_index("method").loc["fine-tune all (oracle)", "accuracy"])
