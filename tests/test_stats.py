"""Paired statistics on constructed inputs whose answers are known."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from expertlib.stats import bootstrap_ci, compare, noise_ceiling, paired_differences, verdict


def _runs(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"task": t, "seed": s, "accuracy": v} for t, vs in values.items() for s, v in enumerate(vs)]
    )


def test_constant_gain_has_a_degenerate_interval_and_is_better():
    b = _runs({f"t{i}": [0.5, 0.6, 0.7] for i in range(5)})
    a = b.assign(accuracy=b.accuracy + 0.02)
    c = compare(a, b, resamples=500)
    assert (
        c.mean == pytest.approx(0.02) and c.ci_low == pytest.approx(0.02) and c.ci_high == pytest.approx(0.02)
    )
    assert (c.wins, c.losses, c.tasks, c.seeds, c.verdict) == (5, 0, 5, 3, "better")
    assert compare(b, a, resamples=500).verdict == "worse"


def test_sign_and_wilcoxon_p_values_match_their_definitions():
    gains = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, -0.005]  # better on 8 of 9 tasks
    b = _runs({f"t{i}": [0.5] for i in range(9)})
    a = b.assign(accuracy=0.5 + np.array(gains))
    c = compare(a, b, resamples=500)
    assert c.sign_p == pytest.approx(2 * 10 / 512)  # two-sided binomial: P(X >= 8) + P(X <= 1), n = 9
    assert c.wilcoxon_p == pytest.approx(sps.wilcoxon(gains).pvalue)
    assert c.wilcoxon_p == pytest.approx(2 * 2 / 512)  # exact: W- = 1 (the smallest rank); P(W- <= 1) = 2/512


def test_noise_gives_an_interval_around_zero():
    rng = np.random.default_rng(0)
    b = _runs({f"t{i}": list(rng.uniform(0.5, 0.6, 5)) for i in range(12)})
    a = b.assign(accuracy=b.accuracy + rng.choice([-0.01, 0.01], len(b)))
    c = compare(a, b, resamples=2000)
    assert c.ci_low < 0 < c.ci_high and c.verdict == "no difference shown"
    assert c.ci_high - c.ci_low < 0.02


def test_pairs_only_shared_seeds_and_bootstrap_is_seeded():
    a = _runs({"t": [0.9]})  # one seed
    b = _runs({"t": [0.5, 0.1, 0.1]})
    d = paired_differences(a, b)
    assert list(d) == ["t"] and d["t"].tolist() == pytest.approx([0.4])
    diffs = {"x": np.array([0.1, -0.1, 0.2]), "y": np.array([0.0, 0.3])}
    assert bootstrap_ci(diffs, resamples=300, seed=1) == bootstrap_ci(diffs, resamples=300, seed=1)
    assert verdict(float("nan"), 0.1) == "no data"


def test_noise_ceiling():
    acc = pd.DataFrame([{"candidate": c, "seed": s, "accuracy": q} for c, q in zip("abcd", (0.1, 0.2, 0.3, 0.4), strict=True)
                        for s in range(4)])  # fmt: skip
    tau = lambda x, y: sps.kendalltau(x, y).statistic  # noqa: E731
    assert noise_ceiling(acc, tau) == pytest.approx(1.0)
    flipped = acc.assign(accuracy=np.where(acc.seed % 2 == 1, 1 - acc.accuracy, acc.accuracy))
    assert noise_ceiling(flipped, tau) == pytest.approx(-1.0)
    assert np.isnan(noise_ceiling(acc[acc.seed == 0], tau))
