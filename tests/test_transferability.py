import itertools

import numpy as np
import pytest
from scipy import optimize, special

from expertlib.select.proxies import h_score
from expertlib.select.transferability import (
    h_score_shrinkage,
    ledoit_wolf_weight,
    pactran_dirichlet,
    pactran_gaussian,
    resampled,
    sfda,
    support_draws,
)


def _bound_by_search(f, y, reg_factor, prior_factor):
    """The PAC-Bayes bound of PACTran-Gaussian computed the long way: the MAP classifier from scikit-learn
    (C = reg_factor is the same objective scaled by n), then the bound E_Q[risk] + KL(Q || P) / (lambda n) with
    the risk expanded to second order, minimised over the posterior variance numerically."""
    from sklearn.linear_model import LogisticRegression

    f = f - f.mean(0)
    n, d = f.shape
    c = int(y.max()) + 1
    clf = LogisticRegression(C=reg_factor, tol=1e-12, max_iter=10_000).fit(f, y)
    w, b = clf.coef_.T, clf.intercept_
    z = f @ w + b
    p = special.softmax(z, axis=1)
    risk = -np.mean(special.log_softmax(z, axis=1)[np.arange(n), y])
    s0 = prior_factor / d
    lam_n = reg_factor * n / s0
    big_d = d * c
    trace_h = ((f * f).T @ (p * (1 - p))).sum() / n  # trace of the mean loss's Hessian over the weights

    def bound(log_s):
        s = np.exp(log_s)
        kl = 0.5 * (big_d * s / s0 + (w * w).sum() / s0 - big_d - big_d * np.log(s / s0))
        return risk + 0.5 * s * trace_h + kl / lam_n

    return optimize.minimize_scalar(bound, bounds=(-30, 10), method="bounded", options={"xatol": 1e-10}).fun


@pytest.mark.parametrize("n,d", [(120, 6), (40, 30)])  # many images, and few images in many dimensions
def test_pactran_gaussian_is_the_minimised_pac_bayes_bound(clusters, n, d):
    f, y = clusters(c=4, n=n, d=d, sep=0.7)
    for reg_factor, prior_factor in ((0.1, 10.0), (1.0, 100.0)):
        ours = pactran_gaussian(f, y, reg_factor, prior_factor)
        assert -ours == pytest.approx(_bound_by_search(f, y, reg_factor, prior_factor), rel=1e-5)


def test_pactran_gaussian_prefers_separable_features(clusters):
    f, y = clusters(n=120, d=6, c=4, sep=3.0)
    noise = np.random.default_rng(1).normal(size=f.shape)
    assert pactran_gaussian(f, y) > pactran_gaussian(noise, y)


def _dirichlet_multinomial_log_evidence(y, z, classes, alpha):
    """log p(labels | source classes) under a Dirichlet(alpha * label frequencies) per source class, by the
    sequential predictive rule (each label's probability given the labels before it in its source class)."""
    prior = alpha * np.bincount(y, minlength=classes) / len(y) + 1e-10
    counts: dict = {}
    total = 0.0
    for label, src in zip(y, z, strict=True):
        c = counts.setdefault(src, np.zeros(classes))
        total += np.log((prior[label] + c[label]) / (prior.sum() + c.sum()))
        c[label] += 1
    return total


def test_pactran_dirichlet_with_a_certain_head_is_the_exact_evidence():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 30)
    z = np.where(rng.random(30) < 0.7, y, rng.integers(0, 4, 30))  # source classes that mostly follow y
    onehot = np.eye(4)[z]
    exact = _dirichlet_multinomial_log_evidence(y, z, 3, 1.0)
    assert pactran_dirichlet(onehot, y) == pytest.approx(exact / 30, rel=1e-9)
    assert pactran_dirichlet(onehot, y) > pactran_dirichlet(np.eye(4)[rng.integers(0, 4, 30)], y)


def _dirichlet_elbo(q, s, y, classes, alpha):
    """The variational bound the Dirichlet variant maximises, for given per-image posteriors q: the
    Dirichlet-multinomial evidence of the q-weighted label counts minus sum_i KL(q_i || s_i)."""
    onehot = np.eye(classes)[y]
    a0 = alpha * onehot.mean(0)[:, None] + 1e-10
    a = a0 + onehot.T @ q
    log_b = lambda v: special.gammaln(v).sum(0) - special.gammaln(v.sum(0))  # noqa: E731
    return (log_b(a) - log_b(a0)).sum() - (q * np.log(q / s)).sum()


def test_pactran_dirichlet_is_the_best_mean_field_bound_below_the_exact_evidence():
    rng = np.random.default_rng(3)
    y = np.array([0, 1, 0, 1, 2, 2])
    s = special.softmax(rng.normal(0, 1.5, (6, 2)), axis=1)
    exact = special.logsumexp([  # every assignment of a source class to each image
        np.log(s[np.arange(6), z]).sum() + _dirichlet_multinomial_log_evidence(y, z, 3, 1.0)
        for z in itertools.product(range(2), repeat=6)
    ])  # fmt: skip
    best = optimize.minimize(lambda t: -_dirichlet_elbo(special.softmax(t.reshape(6, 2), axis=1), s, y, 3, 1.0),
                             np.log(s).ravel(), method="BFGS", options={"gtol": 1e-10})  # fmt: skip
    ours = pactran_dirichlet(s, y)
    assert ours * 6 == pytest.approx(-best.fun, abs=1e-6)  # the mean-field updates reach the bound's maximum
    assert ours * 6 < exact  # a lower bound of the evidence


def test_sfda_first_stage_is_the_shrunk_fisher_discriminant_and_whole_matches_a_composition(clusters):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from expertlib.select.transferability import _fisher_probs

    for n, d in (
        (90, 5),
        (24, 40),
    ):  # more images than features, and fewer (solved through Woodbury's identity)
        f, y = clusters(n=n, d=d, c=3, sep=1.0)
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.3).fit(f, y)
        assert np.allclose(_fisher_probs(f, y, 3, 0.3), lda.predict_proba(f), atol=1e-9), (n, d)
    f, y = clusters(n=90, d=5, c=3, sep=1.0)
    # the whole score, stage by stage with scikit-learn's discriminant and the self-challenging mix
    means = np.stack([f[y == c].mean(0) for c in range(3)])
    within = sum((y == c).mean() * np.cov(f[y == c].T, bias=True) for c in range(3))
    shrink = max(np.exp(-5 * np.linalg.eigvalsh(within)[-1]), 1e-10)
    p1 = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrink).fit(f, y).predict_proba(f)
    own = special.softmax(p1, axis=1)[np.arange(90), y][:, None]
    mixed = own * f + (1 - own) * ((means.sum(0) - means) / 2)[y]
    p2 = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrink).fit(mixed, y).predict_proba(mixed)
    assert sfda(f, y) == pytest.approx(p2[np.arange(90), y].mean(), rel=1e-9)
    noise = np.random.default_rng(2).normal(size=f.shape)
    assert sfda(f, y) > sfda(noise, y)


def test_shrunk_h_score_uses_ledoit_wolf_and_stays_finite_with_few_images(clusters):
    from sklearn.covariance import LedoitWolf, ledoit_wolf_shrinkage

    for n, d in (
        (60, 8),
        (20, 50),
    ):  # more images than features, and fewer (solved through Woodbury's identity)
        f, y = clusters(c=4, n=n, d=d, sep=1.0)
        lw = LedoitWolf().fit(f)
        fc = f - f.mean(0)
        assert ledoit_wolf_weight(fc) == pytest.approx(
            ledoit_wolf_shrinkage(fc, assume_centered=True), rel=1e-10
        )
        g = np.stack([fc[y == c].mean(0) for c in range(4)])[y]
        want = np.trace(np.linalg.inv(lw.covariance_) @ ((1 - lw.shrinkage_) * g.T @ g / n))
        assert h_score_shrinkage(f, y) == pytest.approx(want, rel=1e-8), (n, d)
    many, ym = clusters(c=4, n=20_000, d=4, sep=1.0)  # many images: hardly any shrinkage, the plain H-score
    assert h_score_shrinkage(many, ym) == pytest.approx(h_score(many, ym), rel=1e-3)
    wide, yw = clusters(
        n=20, d=60, c=4, sep=1.0
    )  # fewer images than dimensions: the pseudo-inverse fits noise
    assert 0 < h_score_shrinkage(wide, yw) < h_score(wide, yw)


def test_resampled_support_sets_are_stratified_fixed_and_averaged():
    y = np.repeat(np.arange(3), 5)  # 5-shot, 3 classes
    draws = support_draws(y, resamples=7, seed=0)
    assert len(draws) == 7 and all(len(d) == 12 for d in draws)  # one image of each class left out
    assert all((np.bincount(y[d], minlength=3) == 4).all() for d in draws)
    assert all((a == b).all() for a, b in zip(draws, support_draws(y, resamples=7, seed=0), strict=True))
    assert len({tuple(d) for d in draws}) > 1
    f = np.arange(15.0)[:, None]
    scored = resampled(lambda x, _y: float(x.sum()), f, y, resamples=7)
    sums = [f[d].sum() for d in draws]
    assert scored.score == pytest.approx(np.mean(sums)) and scored.variance == pytest.approx(
        np.var(sums, ddof=1)
    )
    assert resampled(lambda x, _y: 1.0, f, y).variance == 0.0
    two = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    assert all(
        np.bincount(two[d], minlength=2)[0] == 1 for d in support_draws(two)
    )  # a class keeps one image
