"""The selection-quality tables and the selection families of the plan, on constructed runs whose answers are
known."""

import numpy as np
import pandas as pd
import pytest

from expertlib.pipeline.hypotheses import hypothesis_table
from expertlib.pipeline.quality import proxy_agreement, quality_tables

EXPERTS = [f"adapter:e{i}" for i in range(6)]


def _world(tasks=12, seeds=4, seed=0):
    """Runs of B and six adapter experts on ``tasks`` tasks and their 5-shot versions: expert i is better by
    0.01 x i everywhere (plus seed noise), so the prior from other tasks ranks them right; kNN's scores are
    noise, the resampled kNN's follow the truth on half the experts."""
    rng = np.random.default_rng(seed)
    names = [f"t{i}" for i in range(tasks)]
    names += [f"{t}@5shot" for t in names]
    runs, rankings = [], []
    for t in names:
        for i, m in enumerate(["base", *EXPERTS]):
            kind = "generic" if m == "base" else "adapter"
            for s in range(seeds):
                runs.append({"task": t, "group": "g", "model": m, "kind": kind, "expert": m.split(":")[-1],
                             "mode": "finetune", "seed": s, "accuracy": 0.5 + 0.01 * i + rng.normal(0, 0.004),
                             "seconds": 1.0})  # fmt: skip
            for proxy, score in (("knn", rng.random()), ("knn_resampled", (i % 3) + rng.random() * 0.1),
                                 ("logme", i + rng.normal(0, 1.0))):  # fmt: skip
                rankings.append({"task": t, "model": m, "kind": kind, "expert": m.split(":")[-1], "proxy": proxy,
                                 "score": score, "score_variance": np.nan, "seconds": 0.5 if proxy == "knn" else 1.0,
                                 "flops": 1e6})  # fmt: skip
    return pd.DataFrame(runs), pd.DataFrame(rankings)


@pytest.fixture(scope="module")
def judged():
    runs, rankings = _world()
    return runs, quality_tables(rankings, runs, draws=4)


def test_a_report_rerun_reuses_the_priors_measured_seconds_and_writes_the_same_tables(judged, tmp_path):
    from expertlib.pipeline.quality import measured_seconds

    runs, first = judged
    weights = tmp_path / "hybrid_weights.csv"
    assert measured_seconds(weights) is None  # nothing recorded yet: the prior is timed
    first["weights"].to_csv(weights, index=False)
    assert (first["weights"].prior_seconds > 0).all()
    _, rankings = _world()
    again = quality_tables(rankings, runs, draws=4, measured=measured_seconds(weights))
    pd.testing.assert_frame_equal(again["per_task"], first["per_task"])  # the seconds included, to the bit
    prior = again["rankings"][again["rankings"].proxy == "prior"]
    t0 = first["weights"].iloc[0]
    assert prior[prior.task == t0.task].seconds.sum() == pytest.approx(t0.prior_seconds)


def test_quality_tables_rank_every_score_against_its_ceiling(judged):
    _, q = judged
    per_task, summary = q["per_task"], q["summary"]
    assert set(per_task.proxy) == {"knn", "knn_resampled", "logme", "prior", "hybrid", "hybrid_nested"}
    assert set(per_task.regime) == {"1k", "5-shot"} and (per_task.experts == 6).all()  # B is not a candidate
    prior = per_task[per_task.proxy == "prior"]
    assert (prior.kendall_tau > 0.6).all() and (prior.regret_points < 1.5).all()  # the other tasks knew
    assert (
        per_task.noise_ceiling_tau.between(0, 1).all()
        and per_task.noise_ceiling_weighted_tau.between(0, 1).all()
    )
    assert per_task.recall_at_3.between(0, 1).all() and per_task.tau_drop_third.notna().all()
    s = summary.set_index(["regime", "proxy"])
    assert list(summary.regime.unique()) == ["5-shot", "1k"]  # fewest images first
    row = s.loc[("1k", "logme")]
    sub = per_task[(per_task.regime == "1k") & (per_task.proxy == "logme")]
    assert row.kendall_tau == pytest.approx(sub.kendall_tau.mean()) and row.tasks == 12
    assert row.fraction_of_ceiling == pytest.approx(sub.kendall_tau.mean() / sub.noise_ceiling_tau.mean())
    assert row.kendall_tau_low < row.kendall_tau < row.kendall_tau_high
    assert s.loc[("1k", "knn"), "seconds_over_knn"] == pytest.approx(1.0)
    assert s.loc[("1k", "logme"), "seconds_per_task"] == pytest.approx(6.0)  # 1 s for each of 6 experts
    # the hybrid's seconds: its resampled kNN's and the prior's own (small) share
    assert 6.0 <= s.loc[("1k", "hybrid"), "seconds_per_task"] < 6.5
    agreement = proxy_agreement(summary)
    assert list(agreement.columns) == ["regime", "proxy", "tasks", "kendall_tau", "ci_low", "ci_high",
                                       "noise_ceiling_tau", "fraction_of_ceiling", "fraction_ci_low",
                                       "fraction_ci_high"]  # fmt: skip
    assert (
        set(q["weights"].nested_weight) <= {0.0, 0.25, 0.5, 0.75, 1.0}
        and (q["weights"].past_tasks == 11).all()
    )


def test_the_selection_hypotheses_are_tested_within_their_own_families(judged):
    runs, q = judged
    picks = pd.DataFrame({"task": sorted(set(runs.task)), "knn": EXPERTS[0], "domain": EXPERTS[1]})
    from expertlib.pipeline.methods import proxy_picks

    picks, _ = proxy_picks(picks, q["rankings"])
    h = hypothesis_table(runs, picks, q["per_task"], None, pd.DataFrame()).set_index("id")
    s1 = h.loc["S1"]
    tau = q["per_task"][q["per_task"].regime == "5-shot"].pivot(
        index="task", columns="proxy", values="kendall_tau"
    )
    want = (tau.hybrid - tau.knn).mean()
    assert s1.family == "selection-confirmatory" and s1.estimate == pytest.approx(want) and s1.tasks == 12
    assert s1.adjustment == "Holm" and s1.p_adjusted == pytest.approx(s1.p)  # a family of one
    assert s1.verdict == "supported"  # the prior knows what kNN's noise does not
    t = h[h.family == "selection-exploratory"]
    assert (t.adjustment == "BH q-value").all() and {"T5p", "T1kh", "T5a", "T5k"} <= set(t.index)
    assert h.loc["T5g", "verdict"] == "not testable at this scale"  # PACTran was not scored here
    assert h.loc["T5a", "tasks"] == 12  # the hybrid's pick, judged from the runs of every expert
    # the paper's families are corrected as before: without the selection rows their adjusted p are the same
    before = q["per_task"][
        q["per_task"].proxy.isin(["knn", "logme"])
    ]  # the proxies the paper's families read
    alone = hypothesis_table(runs, picks, before, None, pd.DataFrame()).set_index("id")
    paper = [i for i in alone.index if alone.loc[i, "family"] in ("confirmatory", "exploratory")]
    assert np.allclose(h.loc[paper, "p_adjusted"].astype(float), alone.loc[paper, "p_adjusted"].astype(float),
                       equal_nan=True)  # fmt: skip


def test_the_figure_and_sentence_state_the_fractions_of_the_ceiling():
    from expertlib.analysis import proxy_plots
    from expertlib.pipeline.quality import quality_sentence

    summary = pd.DataFrame({"regime": ["5-shot", "5-shot", "1k", "1k"], "proxy": ["knn", "hybrid"] * 2,
                            "fraction_of_ceiling": [0.1, 0.6, 0.4, 0.5], "fraction_of_ceiling_low": [-0.1, 0.4, 0.2, 0.3],
                            "fraction_of_ceiling_high": [0.3, 0.8, 0.6, 0.7], "noise_ceiling_tau": [0.7] * 4})  # fmt: skip
    fig = proxy_plots.ceiling_fractions(summary)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "kNN accuracy",
        "hybrid: prior + resampled kNN",
    ]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["5-shot", "1k"]
    hybrid_5shot = ax.containers[0].lines[0].get_xdata()[1]
    assert hybrid_5shot == pytest.approx(0.6)
    text = quality_sentence(summary)
    assert "at 5-shot, hybrid 60% [40%, 80%] of the ceiling (0.70); knn 10% [-10%, 30%]" in text
