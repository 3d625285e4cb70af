"""The transferability metrics after LogME: arrays in, a number out (larger is better, as for every proxy).

- :func:`pactran_gaussian` and :func:`pactran_dirichlet` (Ding et al., ECCV 2022): the optimal PAC-Bayesian
  bound of a linear classifier on the features (Gaussian prior), or of a Dirichlet label model over the source
  head's classes; returned negated, so that a tighter bound scores higher. PACTran was evaluated at 2-10 shots.
- :func:`sfda` (Shao et al., ECCV 2022): a regularised Fisher discriminant on the features, then the same again
  after each image is pulled towards the other classes by its own uncertainty ("self-challenging").
- :func:`h_score_shrinkage` (Ibrahim et al., 2022): H-score with a Ledoit-Wolf shrunk feature covariance, which
  stays stable where the plain H-score's pseudo-inverse breaks (few images, many dimensions).
- :func:`resampled`: any proxy averaged over resampled support sets (a stratified fifth of each class left out
  per draw), with its variance over the draws: a steadier score from a task's few images.

Written from the papers' equations; the constants are their defaults and are listed in docs/analysis_plan.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy import optimize, special


def _classes(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels as 0..C-1 and C."""
    _, y = np.unique(np.asarray(labels), return_inverse=True)
    return y, int(y.max()) + 1


# -- PACTran ------------------------------------------------------------------------------------------------------
def _softmax_fit(f: np.ndarray, y: np.ndarray, classes: int, reg: float, max_iter: int) -> tuple:
    """The MAP softmax classifier: minimise mean cross-entropy + ||W||^2 / (2 reg) (bias unpenalised) from zero
    (the objective is convex, so the start only saves work). Returns (objective, W, b, probabilities)."""
    n, d = f.shape
    onehot = np.eye(classes)[y]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * classes].reshape(d, classes), theta[d * classes :]
        z = f @ w + b
        logp = z - special.logsumexp(z, axis=1, keepdims=True)
        g = (np.exp(logp) - onehot) / n
        grad = np.concatenate([(f.T @ g + w / reg).ravel(), g.sum(0)])
        return float(-(onehot * logp).sum() / n + (w * w).sum() / (2 * reg)), grad

    res = optimize.minimize(objective, np.zeros((d + 1) * classes), jac=True, method="L-BFGS-B",
                            options={"maxiter": max_iter, "gtol": 1e-9, "ftol": 1e-15})  # fmt: skip
    w, b = res.x[: d * classes].reshape(d, classes), res.x[d * classes :]
    return float(res.fun), w, b, special.softmax(f @ w + b, axis=1)


def pactran_gaussian(features: np.ndarray, labels: np.ndarray, reg_factor: float = 0.1,
                     prior_factor: float = 10.0, max_iter: int = 1000) -> float:  # fmt: skip
    """PACTran-Gaussian: minus the optimal PAC-Bayes bound of a softmax classifier on the centred features.

    Prior N(0, s0 I) over the D = d x C weights with s0 = ``prior_factor`` / d; posterior N(W*, s I). With the
    bound E_Q[risk] + KL(Q || P) / (lambda n) and the risk's second-order expansion around W* (mean diagonal
    Hessian h of the mean cross-entropy), the best s gives, in closed form,

        bound = risk(W*) + ||W*||^2 / (2 lambda n s0) + D / (2 lambda n) * log(1 + lambda n s0 h),

    where W* minimises the first two terms. ``reg_factor`` sets lambda n s0 = ``reg_factor`` * n (the paper's
    lambda-factor; 0.1 and a prior factor of 10 are the setting later work adopts as PACTran's default).
    The published code takes h of the summed, not the mean, loss; this follows the equations."""
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(0)
    y, classes = _classes(labels)
    n, d = f.shape
    reg = reg_factor * n  # lambda n s0
    lam_n = reg / (prior_factor / d)  # lambda n
    value, _, _, p = _softmax_fit(f, y, classes, reg, max_iter)
    h = float(((f * f).T @ (p * (1 - p))).sum() / (n * d * classes))
    return -(value + d * classes / (2 * lam_n) * np.log1p(reg * h))


def pactran_dirichlet(source_probs: np.ndarray, labels: np.ndarray, alpha: float = 1.0, max_iter: int = 100,
                      tol: float = 1e-7) -> float:  # fmt: skip
    """PACTran-Dirichlet: the evidence lower bound (per image) of a label model over the source head's classes.

    Each source class z carries a distribution over target labels with a Dirichlet prior of total mass
    ``alpha`` spread as the labels' frequencies; each image's source class is latent, with the head's
    probabilities as its prior. Mean-field updates until no posterior (the Dirichlets' parameters, sums of the
    images' q_i(z)) moves by ``tol`` (at most ``max_iter`` sweeps; the published code stops after 10, short of
    convergence); the lower bound is the Dirichlet-multinomial evidence of the labels, sum_z log(B(a_z) / B(a0))
    with a_z the posterior Dirichlet of class z, minus sum_i KL(q_i || s_i). With lambda = 1 the PAC-Bayes bound
    under log loss is minus this evidence; returned per image, larger is better.

    An image's update is its head's probabilities times a factor w[y_i, z] of its label alone, renormalised, so a
    sweep is two matrix-vector products per label over the head's outputs: no n x Z temporaries, which matters
    for B's 21,843-way head."""
    s = np.asarray(source_probs, dtype=np.float64)
    s = s / s.sum(1, keepdims=True)
    y, classes = _classes(labels)
    blocks = [s[y == c] for c in range(classes)]  # each label's images' head probabilities
    a0 = (
        alpha * np.array([len(b) for b in blocks])[:, None] / len(y) + 1e-10
    )  # [C, 1]: one prior per source class
    counts = np.stack([b.sum(0) for b in blocks])  # the q-weighted label counts [C, Z], from q = s
    for _ in range(max_iter):
        a = a0 + counts  # the Dirichlet posteriors
        log_w = special.digamma(a) - special.digamma(a.sum(0))[None]
        log_w -= log_w.max(1, keepdims=True)  # q is unchanged by a factor per label; this keeps exp in range
        w = np.exp(log_w)
        norms = [b @ w[c] for c, b in enumerate(blocks)]  # q_i(z) = s_i(z) w[y_i, z] / norm_i
        new = np.stack([w[c] * (b.T @ (1 / norms[c])) for c, b in enumerate(blocks)])
        done = np.abs(new - counts).max() < tol
        counts = new
        if done:
            break
    a = a0 + counts
    log_norm = lambda v: special.gammaln(v.sum(0)) - special.gammaln(v).sum(0)  # noqa: E731 - log 1/B(v)
    evidence = (log_norm(a0) - log_norm(a)).sum()
    # sum_i KL(q_i || s_i) = sum_i sum_z q_i(z) log(w[y_i, z] / norm_i), with the w and norms that made q
    kl = (counts * log_w).sum() - sum(np.log(n).sum() for n in norms)
    return float((evidence - kl) / len(y))


# -- shrunk covariances ------------------------------------------------------------------------------------------
def _shrunk_solve(x: np.ndarray, shrinkage: float, rhs: np.ndarray) -> np.ndarray:
    """((1 - s) x^T x / n + s mu I)^-1 rhs for rows ``x`` [n, d] (mu: the mean eigenvalue of x^T x / n): through
    the d x d matrix when n >= d, else through Woodbury's n x n identity (a task's few images in many features):
    the same numbers for a fraction of the work."""
    n, d = x.shape
    a, b = shrinkage * (x * x).sum() / (n * d), (1 - shrinkage) / n
    if b <= 0:
        return rhs / a
    if n >= d or a <= 0:
        return np.linalg.solve(b * (x.T @ x) + a * np.eye(d), rhs)
    return (rhs - x.T @ np.linalg.solve(a / b * np.eye(n) + x @ x.T, x @ rhs)) / a


def ledoit_wolf_weight(x: np.ndarray) -> float:
    """Ledoit and Wolf's optimal weight of the mean eigenvalue mu in (1 - a) x^T x / n + a mu I, for centred rows
    ``x`` [n, d]; from the n x n Gram matrix (the squared Frobenius norm of x^T x equals that of x x^T), so the
    cost is n^2 d rather than n d^2. Equal to scikit-learn's ``ledoit_wolf_shrinkage`` (tested)."""
    n, d = x.shape
    gram = x @ x.T if n < d else x.T @ x
    mu = np.trace(gram) / (n * d)
    frob = (gram * gram).sum() / n**2  # ||x^T x / n||_F^2
    fourth = ((x * x).sum(1) ** 2).sum() / n  # the images' squared norms, squared, summed, over n
    delta = (frob - 2 * mu * np.trace(gram) / n + d * mu**2) / d
    beta = min((fourth - frob) / (n * d), delta)
    return 0.0 if beta == 0 else float(beta / delta)


def _top_eigenvalue(x: np.ndarray) -> float:
    """The largest eigenvalue of x^T x / n, from the smaller of the two Gram matrices."""
    gram = x @ x.T if len(x) < x.shape[1] else x.T @ x
    return float(np.linalg.eigvalsh(gram / len(x))[-1])


# -- SFDA ---------------------------------------------------------------------------------------------------------
def _fisher_probs(f: np.ndarray, y: np.ndarray, classes: int, shrinkage: float) -> np.ndarray:
    """Class probabilities of the regularised Fisher discriminant: within-class covariance (biased, weighted by
    the class priors) shrunk towards its mean eigenvalue by ``shrinkage``; linear scores, then a softmax."""
    priors = np.bincount(y, minlength=classes) / len(y)
    means = np.stack([f[y == c].mean(0) for c in range(classes)])
    # the within-class covariance (x^T x / n of the class-centred images: sum_c prior_c cov_c), shrunk
    coef = _shrunk_solve(f - means[y], shrinkage, means.T).T  # [C, d]
    scores = f @ coef.T - 0.5 * (means * coef).sum(1) + np.log(priors)
    return special.softmax(scores, axis=1)


def sfda(features: np.ndarray, labels: np.ndarray, strength: float = 5.0) -> float:
    """SFDA: mean probability of the true class under a regularised Fisher discriminant, after a first one
    (softened by a second softmax) has pulled each image towards the mean of the other classes' means, by how
    unsure it was of the image's class (``x <- p x + (1 - p) m_other``). The shrinkage is
    exp(-``strength`` * largest eigenvalue of the within-class covariance), as the authors' code sets it."""
    f = np.asarray(features, dtype=np.float64)
    y, classes = _classes(labels)
    if classes < 2:
        raise ValueError("SFDA needs at least two classes")
    means = np.stack([f[y == c].mean(0) for c in range(classes)])
    shrinkage = max(float(np.exp(-strength * _top_eigenvalue(f - means[y]))), 1e-10)
    p = _fisher_probs(f, y, classes, shrinkage)
    own = special.softmax(p, axis=1)[np.arange(len(y)), y][:, None]
    others = (means.sum(0) - means) / (classes - 1)  # per class: the mean of the other classes' means
    mixed = own * f + (1 - own) * others[y]
    return float(_fisher_probs(mixed, y, classes, shrinkage)[np.arange(len(y)), y].mean())


# -- H-score with shrinkage ---------------------------------------------------------------------------------------
def h_score_shrinkage(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score with the feature covariance shrunk by Ledoit-Wolf's optimal weight a towards its mean
    eigenvalue: tr(((1 - a) cov(f) + a mu I)^-1 (1 - a) cov(E[f | y])) (Ibrahim et al. 2022); cost n^2 d + n^3 with
    fewer images than features (Woodbury), n d^2 + d^3 otherwise."""
    f = np.asarray(features, dtype=np.float64)
    y, classes = _classes(labels)
    f = f - f.mean(0)
    a = ledoit_wolf_weight(f)
    means = np.stack([f[y == c].mean(0) for c in range(classes)])  # cov(E[f | y]) = sum_c p_c m_c m_c^T
    weights = np.bincount(y, minlength=classes) / len(y)
    return float((1 - a) * (weights * (means.T * _shrunk_solve(f, a, means.T)).sum(0)).sum())


# -- resampled support sets ---------------------------------------------------------------------------------------
class Scored(NamedTuple):
    """A proxy's score with its variance over resampled support sets."""

    score: float
    variance: float


def support_draws(labels: np.ndarray, resamples: int = 20, leave_out: float = 0.2, seed: int = 0) -> list:
    """``resamples`` index sets of the images kept: from each class, round(``leave_out`` x its images) left out
    (at least one, and never its last). The same labels and seed give the same draws for every candidate, so
    candidates are compared on the same support sets."""
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y == c) for c in np.unique(y)]
    out = []
    for _ in range(resamples):
        kept = []
        for idx in members:
            drop = min(max(1, round(leave_out * len(idx))), len(idx) - 1)
            kept.append(rng.permutation(idx)[drop:])
        out.append(np.sort(np.concatenate(kept)))
    return out


def resampled(score: Callable[[np.ndarray, np.ndarray], float], features: np.ndarray, labels: np.ndarray,
              resamples: int = 20, leave_out: float = 0.2, seed: int = 0) -> Scored:  # fmt: skip
    """``score`` averaged over :func:`support_draws` of the task's images, with its variance over the draws
    (ddof 1): how much the score of this candidate moves with which few images the task happened to have."""
    x, y = np.asarray(features), np.asarray(labels)
    values = np.array([score(x[i], y[i]) for i in support_draws(y, resamples, leave_out, seed)], dtype=float)
    return Scored(float(values.mean()), float(values.var(ddof=1)) if len(values) > 1 else float("nan"))
