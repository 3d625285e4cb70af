"""Linear probes fitted together in torch (expertlib.select.probes) against scikit-learn's, on a CPU in
float64: the same optimum (weights within 1e-4 relative of scikit-learn run to a tight tolerance, the same
test accuracy), and within one test example in a hundred of the pipeline's own scikit-learn settings (which
stop before the optimum)."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from expertlib.select import probes
from expertlib.select.probes import linear_probe_accuracies
from expertlib.select.proxies import linear_probe_accuracy
from expertlib.utils.parallel import single_thread


@pytest.fixture(autouse=True)
def _one_thread():
    """Small batched problems: one torch thread (two threads spin on each tiny operation of a busy machine)."""
    with single_thread():
        yield


def _task(k, seed, n=200, m=100, d=12, sets=3):
    """``sets`` feature sets of the same examples (candidates), classes separated by random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (k, d))
    y, yt = rng.integers(0, k, n), rng.integers(0, k, m)
    xs = [centres[y] * 0.7 + rng.normal(0, 1, (n, d)) for _ in range(sets)]
    xt = [centres[yt] * 0.7 + rng.normal(0, 1, (m, d)) for _ in range(sets)]
    return xs, y, xt, yt


@pytest.mark.parametrize("k", [2, 5])
def test_the_probe_reaches_scikit_learns_optimum(k):
    xs, y, _, _ = _task(k, seed=k)
    scaled = StandardScaler().fit_transform(xs[0])
    ref = LogisticRegression(C=1.0, max_iter=10_000, tol=1e-12).fit(scaled, y)
    x = torch.cat([torch.from_numpy(scaled), torch.ones(len(y), 1, dtype=torch.float64)], -1)[None]
    w = probes._lbfgs(x, torch.from_numpy(y), k, 1.0, 1000, 1e-10)[0].numpy()
    coef, bias = w[:-1].T, w[-1]
    if k > 2:  # softmax is unchanged by a shift common to every class: scikit-learn's optimum sums to zero
        bias = bias - bias.mean()
    assert np.abs(coef - ref.coef_).max() <= 1e-4 * np.abs(ref.coef_).max()
    assert np.abs(bias - ref.intercept_).max() <= 1e-4 * max(1.0, np.abs(ref.intercept_).max())


def test_accuracies_equal_scikit_learns_together_and_apart():
    worst = 0.0
    for k, seed in ((2, 0), (3, 1), (6, 2), (10, 3)):
        xs, y, xt, yt = _task(k, seed)
        together = linear_probe_accuracies(xs, y, xt, yt)
        apart = [linear_probe_accuracies([a], y, [b], yt)[0] for a, b in zip(xs, xt, strict=True)]
        assert together == apart
        for a, b, acc in zip(xs, xt, together, strict=True):
            sc = StandardScaler().fit(a)
            tight = LogisticRegression(C=1.0, max_iter=10_000, tol=1e-12).fit(sc.transform(a), y)
            assert acc == (tight.predict(sc.transform(b)) == yt).mean()
            worst = max(worst, abs(acc - linear_probe_accuracy(a, y, b, yt)))
    assert (
        worst <= 0.01
    )  # the pipeline's settings (tol 1e-4) stop short of the optimum by that much at most here


def test_feature_sets_of_other_widths_unseen_classes_and_a_single_class():
    xs, y, xt, yt = _task(4, seed=5)
    wide = [np.hstack([xs[0], xs[1]])], [np.hstack([xt[0], xt[1]])]
    mixed = linear_probe_accuracies([xs[0], wide[0][0]], y, [xt[0], wide[1][0]], yt)
    assert mixed == [linear_probe_accuracies([xs[0]], y, [xt[0]], yt)[0],
                     linear_probe_accuracies(wide[0], y, wide[1], yt)[0]]  # fmt: skip
    labels = np.where(y == 3, 0, y)  # class 3 never seen in training: its test examples count as wrong
    acc = linear_probe_accuracies(xs[:1], labels, xt[:1], yt)[0]
    assert abs(acc - linear_probe_accuracy(xs[0], labels, xt[0], yt)) <= 0.01
    with pytest.raises(ValueError, match="at least two classes"):
        linear_probe_accuracies(xs[:1], np.zeros_like(y), xt[:1], yt)
