"""Proxies that score a representation for a task without fine-tuning: arrays in, a number out.

- :func:`knn_accuracy`: the paper's proxy. Leave-one-out kNN accuracy of an expert's features on the task's
  training images (k, distance and tie rule configurable; torch matrix products, chunked).
- :func:`domain_prediction_scores`: B's upstream head on the task's images; each expert scores the
  probability mass on its labels divided by that mass under the upstream prior (a lift), so the root expert,
  which holds all the mass, scores exactly 1 and large experts do not win by size. Needs no target labels.
- the transferability metrics the field compares against: :func:`linear_probe_accuracy`, :func:`logme`,
  :func:`leep`, :func:`nce`, :func:`h_score`.

Which to use: kNN is cheap, label-aware and the most reliable single proxy in large studies; domain
prediction needs neither labels nor expert features (one forward pass of B) but only sees what B's upstream
labels can name; the linear probe is the most faithful to frozen-feature transfer and the most expensive;
LogME, LEEP, NCE and H-score are the literature's baselines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch

Metric = Literal["cosine", "euclidean"]
TieRule = Literal["smallest_label", "nearest"]


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t.double() if t.dtype == torch.float64 else t.float()


def knn_neighbours(
    features: np.ndarray | torch.Tensor, k: int, metric: Metric = "cosine", chunk: int = 1024
) -> torch.Tensor:
    """Indices [n, k] of each point's k nearest other points (itself excluded), nearest first."""
    x = _as_tensor(features)
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must lie in [1, n-1] = [1, {n - 1}], got {k}")
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
    elif metric != "euclidean":
        raise ValueError(f"unknown metric {metric!r}; use 'cosine' or 'euclidean'")
    sq = (x * x).sum(1)
    out = torch.empty(n, k, dtype=torch.long)
    for s in range(0, n, chunk):
        block = x[s : s + chunk]
        if metric == "cosine":
            score = block @ x.T  # larger = nearer
        else:
            score = -(sq[s : s + chunk, None] - 2 * block @ x.T + sq[None])  # minus squared distance
        rows = torch.arange(block.shape[0])
        score[rows, rows + s] = -torch.inf
        out[s : s + chunk] = torch.topk(score, k, dim=1).indices
    return out


def knn_predict(
    neighbour_labels: torch.Tensor, num_classes: int, tie: TieRule = "smallest_label"
) -> torch.Tensor:
    """Majority vote over neighbours' labels [n, k] (nearest first).

    Ties: ``smallest_label`` takes the smallest tied label (scikit-learn's rule); ``nearest`` takes the tied
    label whose first neighbour is nearest.
    """
    votes = torch.zeros(neighbour_labels.shape[0], num_classes, dtype=torch.long)
    votes.scatter_add_(1, neighbour_labels, torch.ones_like(neighbour_labels))
    if tie == "smallest_label":
        return votes.argmax(1)  # torch.argmax returns the first maximum
    if tie != "nearest":
        raise ValueError(f"unknown tie rule {tie!r}; use 'smallest_label' or 'nearest'")
    best = votes.max(1, keepdim=True).values
    tied = votes.gather(1, neighbour_labels) == best  # [n, k]: neighbour's label is among the winners
    first = tied.float().argmax(1)
    return neighbour_labels.gather(1, first[:, None])[:, 0]


def knn_accuracy(
    features: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    k: int = 5,
    metric: Metric = "cosine",
    tie: TieRule = "smallest_label",
    chunk: int = 1024,
) -> float:
    """Leave-one-out kNN accuracy: every training image classified by its k nearest other images."""
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    nb = knn_neighbours(features, k, metric, chunk)
    pred = knn_predict(y[nb], int(y.max()) + 1, tie)
    return float((pred == y).double().mean())


def linear_probe_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    c: float = 1.0,
    seed: int = 0,
) -> float:
    """Accuracy of an L2-regularised logistic regression on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(scaler.transform(train_x), train_y)
    return float((clf.predict(scaler.transform(test_x)) == np.asarray(test_y)).mean())


def logme(features: np.ndarray, labels: np.ndarray, iterations: int = 11, tol: float = 1e-3) -> float:
    """LogME (You et al. 2021): mean over classes of the per-example log evidence of a Bayesian linear
    model from features to the class indicator, with alpha/beta by fixed-point iteration. Larger is better.

    The log-determinant runs over all d eigenvalues of F^T F: with more features than examples (2,048 on
    1,000 at the paper scale) the d - n zero ones add (d - n) * log(alpha). The authors' published code keeps
    that term in effect: its truncated SVD of F^T F keeps the numerically non-zero eigenvalues beyond the
    rank (above its 1e-10 threshold), and a test shows both agree to 1e-9 with d < n and with d > n."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    out = []
    for c in np.unique(y):
        t_vec = (y == c).astype(np.float64)
        proj = u.T @ t_vec
        x2 = proj**2
        res_x2 = float(t_vec @ t_vec - x2.sum())
        alpha, beta = 1.0, 1.0
        for _ in range(iterations):
            t = alpha / beta
            gamma = float((sigma / (sigma + t)).sum())
            m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
            res2 = float((x2 / (1 + sigma / t) ** 2).sum()) + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= tol:
                break
        log_det = np.log(alpha + beta * sigma).sum() + (d - len(sigma)) * np.log(
            alpha
        )  # d - n zeros when d > n
        evidence = (
            d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * log_det - beta / 2 * res2 - alpha / 2 * m2
            - n / 2 * np.log(2 * np.pi)
        )  # fmt: skip
        out.append(evidence / n)
    return float(np.mean(out))


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP (Nguyen et al. 2020): log expected empirical prediction of target labels through the source
    head's distribution. Source classes that receive no mass are left out (they would divide by zero)."""
    theta = np.asarray(source_probs, dtype=np.float64)
    y = np.asarray(labels)
    n = len(y)
    classes = np.unique(y)
    joint = np.stack([theta[y == c].sum(0) for c in classes]) / n  # [Cy, Cz]
    marginal = joint.sum(0)
    keep = marginal > 0
    cond = np.zeros_like(joint)
    cond[:, keep] = joint[:, keep] / marginal[keep]  # P(y | z)
    index = np.searchsorted(classes, y)
    eep = (theta[:, keep] * cond[index][:, keep]).sum(1)
    return float(np.mean(np.log(np.maximum(eep, 1e-300))))


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """Negative conditional entropy -H(Y | Z) of target labels given the source model's hard predictions."""
    z = np.asarray(source_labels)
    y = np.asarray(labels)
    _, zi = np.unique(z, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((yi.max() + 1, zi.max() + 1))
    np.add.at(joint, (yi, zi), 1.0)
    joint /= len(y)
    pz = joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log((joint / pz)[nz])).sum())


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score (Bao et al. 2019): tr(cov(f)^+ cov(E[f | y])). Larger means more class-discriminative."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    f = f - f.mean(0)
    cov_f = f.T @ f / len(f)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(0)
    cov_g = g.T @ g / len(f)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-10, hermitian=True) @ cov_g))


def domain_prediction_scores(
    upstream_probs: np.ndarray, expert_labels: Mapping[str, Sequence[int]], prior: np.ndarray | None = None
) -> dict[str, float]:
    """Score experts from B's upstream predictions on the task's images (no target labels needed).

    ``upstream_probs`` [n, C] are B's class probabilities (softmax, or sigmoid outputs, renormalised here);
    ``expert_labels`` maps an expert to its upstream label indices; ``prior`` is the upstream label
    distribution (uniform when None). Score = mean predicted mass on the expert's labels / prior mass: the lift
    of the task towards the expert's domain. The root expert scores exactly 1.
    """
    p = np.asarray(upstream_probs, dtype=np.float64)
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
    mass = p.mean(0)
    q = (
        np.full(p.shape[1], 1.0 / p.shape[1])
        if prior is None
        else np.asarray(prior, dtype=np.float64) / np.sum(prior)
    )
    scores = {}
    for name, idx in expert_labels.items():
        idx = np.asarray(list(idx), dtype=np.int64)
        if idx.size == 0:
            raise ValueError(f"expert {name!r} has no upstream labels")
        scores[name] = float(mass[idx].sum() / max(q[idx].sum(), 1e-12))
    return scores
