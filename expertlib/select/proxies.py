"""Proxies that score a representation for a task without fine-tuning: arrays in, a number out.

- :func:`knn_accuracy`: the paper's proxy. Leave-one-out kNN accuracy of an expert's features on the task's
  training images (k, distance and tie rule configurable; torch matrix products, chunked).
- :func:`domain_prediction_scores`: B's upstream head on the task's images; each expert scores the
  probability mass on its labels divided by that mass under the upstream prior (a lift), so the root expert,
  which holds all the mass, scores exactly 1 and large experts do not win by size. Needs no target labels.
  A multi-label head (BiT-M's) is read as sigmoids by :func:`domain_prediction_scores_sigmoid`: the expected
  number of the expert's classes present against that number under the prior, one statistic on both sides.
- the transferability metrics the field compares against: :func:`linear_probe_accuracy`, :func:`logme`,
  :func:`leep`, :func:`nce`, :func:`h_score`; and the later ones of :mod:`expertlib.select.transferability`
  (PACTran's Gaussian and Dirichlet variants, SFDA, H-score with Ledoit-Wolf shrinkage), with kNN averaged over
  resampled support sets for the few-shot regimes (``knn_resampled``, its variance beside it).

Which to use: kNN is cheap, label-aware and the most reliable single proxy in large studies; domain
prediction needs neither labels nor expert features (one forward pass of B) but only sees what B's upstream
labels can name; the linear probe is the most faithful to frozen-feature transfer and the most expensive;
LogME, LEEP, NCE and H-score are the literature's baselines; PACTran and SFDA the metrics that followed them
(PACTran was built for few shots).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from expertlib.select import transferability as T

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
    """Score experts from B's upstream predictions on the task's images (no target labels needed), reading B's
    head as a softmax: one class per image.

    ``upstream_probs`` [n, C] are B's class probabilities (renormalised here); ``expert_labels`` maps an expert to
    its upstream label indices; ``prior`` is the upstream label distribution (uniform when None). Score = mean
    predicted mass on the expert's labels / prior mass: the lift of the task towards the expert's domain. The
    root expert scores exactly 1.
    """
    p = np.asarray(upstream_probs, dtype=np.float64)
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
    mass = p.mean(0)
    return _lifts(lambda idx: mass[idx].sum(), expert_labels, _prior(prior, p.shape[1]))


def domain_prediction_scores_sigmoid(
    upstream_logits: np.ndarray, expert_labels: Mapping[str, Sequence[int]], prior: np.ndarray | None = None
) -> dict[str, float]:
    """Score experts from B's upstream logits read as independent sigmoids, as a multi-label head (BiT-M's,
    trained with sigmoid cross-entropy) was trained: the expected number of the expert's classes present on a
    task image, the sum of ``sigmoid(z_c)`` over its classes averaged over the task's images, over the same
    statistic on upstream images under the prior: the expected number of its classes an upstream image carries,
    the prior's mass on them (``prior``: the share of upstream labels per class; one label per upstream image,
    so it sums to 1; uniform when None).

    Score and normaliser are one statistic in one unit (classes present per image), so the lift has no ceiling
    set by the expert's size: an expert none of whose classes is present scores what the head's background
    presence gives every class, and one holding the present classes scores above it however many classes it
    has. (The probability that at least one class is present, over the prior mass, compared two statistics: a
    3-class expert of absent classes outranked an 8,000-class one holding every present class.) The root's score
    is B's expected number of labels per task image (about 1 on upstream-like images). Each class's presence is
    computed in log space, ``1 - P(absent)`` as ``-expm1(-softplus(z))``: exact down to the smallest floats.
    """
    z = np.asarray(upstream_logits, dtype=np.float64)
    presence = class_presence(z).mean(0)  # each class's expected presence on the task's images
    return _lifts(lambda idx: presence[idx].sum(), expert_labels, _prior(prior, z.shape[1]))


def class_presence(logits: np.ndarray) -> np.ndarray:
    """``sigmoid(z)`` of a multi-label head, as ``1 - P(absent)`` in log space: ``log P(absent) = -softplus(z)``
    and ``-expm1`` of it, which keeps full precision where a presence is tiny (``1 - exp(.)`` errs by float64's
    spacing near 1, about 1e-16: most digits of a presence below 1e-13, all below 1e-16) as where it is near 1."""
    return -np.expm1(-np.logaddexp(0.0, np.asarray(logits, dtype=np.float64)))


def _prior(prior: np.ndarray | None, classes: int) -> np.ndarray:
    if prior is None:
        return np.full(classes, 1.0 / classes)
    return np.asarray(prior, dtype=np.float64) / np.sum(prior)


def _lifts(presence: Callable[[np.ndarray], float], expert_labels: Mapping[str, Sequence[int]],
           prior: np.ndarray) -> dict[str, float]:  # fmt: skip
    """Each expert's presence on the task's images (``presence(its label indices)``) over its prior mass."""
    scores = {}
    for name, idx in expert_labels.items():
        idx = np.asarray(list(idx), dtype=np.int64)
        if idx.size == 0:
            raise ValueError(f"expert {name!r} has no upstream labels")
        scores[name] = float(presence(idx) / max(prior[idx].sum(), 1e-12))
    return scores


# -- the registry: every proxy by name, what it reads, how it scores, what it costs -------------------------------
Reads = Literal["features", "head", "base_head"]
DomainActivation = Literal["softmax", "sigmoid"]


@dataclass(frozen=True)
class ProxySettings:
    """The settings proxies take: kNN's ``k`` and metric, the linear probe's train/validation cut (VTAB's
    train800 -> val200), and how domain prediction reads B's head."""

    knn_k: int = 5
    knn_metric: Metric = "cosine"
    val_split: int | None = None
    domain_activation: DomainActivation = "softmax"


@dataclass(frozen=True)
class Proxy:
    """A proxy as every caller sees it (the pipeline, ``expertlib.rank``, the analysis plan).

    ``reads``: ``features`` (each candidate's pooled features and the task's labels), ``head`` (each
    candidate's own upstream head's probabilities and the labels: LEEP, NCE, PACTran-Dirichlet) or ``base_head``
    (B's upstream head on the task's images and each expert's upstream labels, no target labels: domain
    prediction). ``score(inputs, labels, settings)``: for ``base_head``, ``inputs`` is ``(B's logits,
    expert_labels, upstream_prior)`` and the result is a score per expert; a proxy averaged over resampled
    support sets returns a :class:`~expertlib.select.transferability.Scored` (score and variance).
    ``flops(n, d, classes, upstream_classes)``: rough FLOPs on ``n`` examples of ``d``-wide features (feature
    extraction not included). ``pick_column``: where its pick stands among the picks table's columns, whose
    picks the pipeline fine-tunes (None: its pick is judged from the runs of every expert)."""

    name: str
    reads: Reads
    score: Callable[..., float | dict[str, float]]
    flops: Callable[[int, int, int, int], float]
    pick_column: int | None
    description: str


def _linear_score(f: np.ndarray, y: np.ndarray, s: ProxySettings) -> float:
    cut = s.val_split if s.val_split is not None else int(0.8 * len(y))
    return linear_probe_accuracy(f[:cut], y[:cut], f[cut:], y[cut:])


def _domain_score(inputs: tuple, _labels: np.ndarray, s: ProxySettings) -> dict[str, float]:
    logits, expert_labels, prior = inputs
    if s.domain_activation == "sigmoid":
        return domain_prediction_scores_sigmoid(logits, expert_labels, prior)
    return domain_prediction_scores(softmax(logits), expert_labels, prior)


def _knn_resampled(f: np.ndarray, y: np.ndarray, s: ProxySettings) -> T.Scored:
    """kNN accuracy averaged over 20 support sets, each leaving a fifth of every class out; k is capped at the
    images kept minus one (2 shots of a 2-class task keep 2 images)."""
    return T.resampled(lambda x, t: knn_accuracy(x, t, k=min(s.knn_k, len(t) - 1), metric=s.knn_metric), f, y)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (float64 kept as it is)."""
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


_REGISTRY = [
    Proxy("knn", "features", lambda f, y, s: knn_accuracy(f, y, k=s.knn_k, metric=s.knn_metric),
          lambda n, d, c, u: 2.0 * n * n * d, 0, "leave-one-out kNN accuracy of the candidate's features (the paper's)"),
    Proxy("linear", "features", _linear_score, lambda n, d, c, u: 2.0 * n * d * c * 100, 2,
          "a logistic-regression probe on frozen features, train800 -> val200 (~100 L-BFGS iterations)"),
    Proxy("logme", "features", lambda f, y, s: logme(f, y),
          lambda n, d, c, u: 2.0 * n * d * min(n, d) + c * 11 * 10.0 * min(n, d), 3,
          "LogME: the evidence of a Bayesian linear model on the features"),
    Proxy("hscore", "features", lambda f, y, s: h_score(f, y), lambda n, d, c, u: 2.0 * n * d * d + 10.0 * d**3, 4,
          "H-score: between-class over total feature covariance"),
    Proxy("leep", "head", lambda p, y, s: leep(p, y), lambda n, d, c, u: 4.0 * n * u, None,
          "LEEP through the candidate's own upstream head"),
    Proxy("nce", "head", lambda p, y, s: nce(p.argmax(1), y), lambda n, d, c, u: 4.0 * n * u, None,
          "NCE of the candidate's own upstream head's hard labels"),
    Proxy("domain", "base_head", _domain_score, lambda n, d, c, u: 4.0 * n * u, 1,
          "domain prediction: B's upstream head on the task's images, lift of each expert's classes"),
    Proxy("pactran_gauss", "features", lambda f, y, s: T.pactran_gaussian(f, y),
          lambda n, d, c, u: 4.0 * n * d * c * 100, None,
          "PACTran-Gaussian: minus the PAC-Bayes bound of a softmax classifier on the features (~100 L-BFGS steps)"),
    Proxy("pactran_dir", "head", lambda p, y, s: T.pactran_dirichlet(p, y), lambda n, d, c, u: 80.0 * n * u,
          None, "PACTran-Dirichlet: the label model's evidence bound over the candidate's own upstream classes"),
    Proxy("sfda", "features", lambda f, y, s: T.sfda(f, y), lambda n, d, c, u: 4.0 * n * d * min(n, d) + 12.0 * min(n, d) ** 3 + 8.0 * n * d * c,
          None, "SFDA: a regularised Fisher discriminant, self-challenged by each image's own uncertainty"),
    Proxy("hscore_lw", "features", lambda f, y, s: T.h_score_shrinkage(f, y),
          lambda n, d, c, u: 4.0 * n * d * min(n, d) + 2.0 * min(n, d) ** 3, None,
          "H-score with the feature covariance shrunk by Ledoit-Wolf (stable with few images)"),
    Proxy("knn_resampled", "features", _knn_resampled, lambda n, d, c, u: 20 * 2.0 * (0.8 * n) ** 2 * d, None,
          "kNN accuracy averaged over 20 support sets that each leave a fifth of every class out (variance beside)"),
]  # fmt: skip
PROXIES: dict[str, Proxy] = {p.name: p for p in _REGISTRY}
"""Every proxy by name, in the order a ranking scores them."""
ALL_PROXIES: tuple[str, ...] = tuple(PROXIES)
PICKED_BY: tuple[str, ...] = tuple(
    sorted((p for p in PROXIES if PROXIES[p].pick_column is not None), key=lambda p: PROXIES[p].pick_column)
)
"""The proxies whose picks are fine-tuned: one column each in a picks table (LEEP and NCE score only experts
with an upstream head, so their picks are judged from the runs of every expert instead)."""
PAPER_PROXY = "knn"
"""The paper's proxy: the one the confirmatory claims test."""
LABELLED_PROXIES: tuple[str, ...] = tuple(p for p in PROXIES if PROXIES[p].reads != "base_head")
"""The proxies that need only the candidates and a labelled task (no upstream head of B, no expert subsets):
what ranking a user's own models can use."""
