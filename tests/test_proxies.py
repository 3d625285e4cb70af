import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from expertlib.select.proxies import (
    domain_prediction_scores,
    domain_prediction_scores_sigmoid,
    h_score,
    knn_accuracy,
    knn_neighbours,
    knn_predict,
    leep,
    linear_probe_accuracy,
    logme,
    nce,
)


def _brute_force_loo(x, y, k):
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    correct = 0
    for i in range(len(x)):
        nb = np.argsort(d[i], kind="stable")[:k]
        votes = np.bincount(y[nb], minlength=y.max() + 1)
        correct += int(np.argmax(votes) == y[i])
    return correct / len(x)


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_loo_knn_matches_brute_force_and_sklearn(clusters, k):
    x, y = clusters(sep=0.8)
    ours = knn_accuracy(x, y, k=k, metric="euclidean", chunk=64)
    assert ours == pytest.approx(_brute_force_loo(x, y, k))
    clf = KNeighborsClassifier(n_neighbors=k).fit(x, y)
    nb = clf.kneighbors(x, n_neighbors=k + 1, return_distance=False)[:, 1:]
    sk_pred = np.array([np.argmax(np.bincount(y[r], minlength=5)) for r in nb])
    ours_pred = knn_predict(torch.as_tensor(y)[knn_neighbours(x, k, "euclidean")], 5).numpy()
    assert np.array_equal(ours_pred, sk_pred)


def test_knn_cosine_and_ties(clusters):
    x, y = clusters(sep=4.0)
    assert knn_accuracy(x, y, k=5, metric="cosine") > 0.95
    labels = torch.tensor([[2, 1, 1, 2]])  # a 2-2 tie: smallest label 1; nearest neighbour's label 2
    assert knn_predict(labels, 3, "smallest_label").item() == 1
    assert knn_predict(labels, 3, "nearest").item() == 2
    with pytest.raises(ValueError, match="k must lie"):
        knn_accuracy(x[:3], y[:3], k=3)


def test_linear_probe_and_hscore_separate_good_from_random_features(clusters):
    x, y = clusters(n=400, sep=2.0)
    noise = np.random.default_rng(1).normal(size=x.shape)
    assert linear_probe_accuracy(x[:300], y[:300], x[300:], y[300:]) > 0.9
    assert linear_probe_accuracy(noise[:300], y[:300], noise[300:], y[300:]) < 0.4
    big = np.random.default_rng(2).normal(size=(5000, 8))
    assert abs(h_score(big, np.arange(5000) % 4)) < 0.02  # random Gaussian features: ~0
    assert h_score(x, y) > 1.0


def test_logme_prefers_informative_features(clusters):
    x, y = clusters(n=400, sep=2.0)
    noise = np.random.default_rng(3).normal(size=(400, 16))
    assert logme(x, y) > logme(noise, y)
    assert np.isfinite(logme(np.random.default_rng(4).normal(size=(50, 80)), np.arange(50) % 3))  # n < d


def test_leep_properties():
    y = np.arange(100) % 4
    onehot = np.eye(4)[y]
    assert leep(onehot, y) == pytest.approx(0.0, abs=1e-9)  # perfect one-hot predictions
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20000, 10)) * 0.01
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert leep(probs, np.arange(20000) % 4) == pytest.approx(np.log(1 / 4), abs=0.01)
    with_dead_class = np.concatenate([onehot, np.zeros((100, 1))], axis=1)  # a source class with no mass
    assert np.isfinite(leep(with_dead_class, y))


def test_nce_bounds():
    y = np.arange(200) % 4
    assert nce(y + 10, y) == pytest.approx(0.0)  # target determined by the source label
    assert nce(np.zeros(200, int), y) == pytest.approx(-np.log(4))  # uninformative


def test_domain_prediction_normalises_by_prior():
    probs = np.tile([0.5, 0.3, 0.1, 0.1], (10, 1))
    experts = {"root": [0, 1, 2, 3], "a": [0], "ab": [0, 1], "d": [3]}
    s = domain_prediction_scores(probs, experts)
    assert s["root"] == pytest.approx(1.0)
    assert s["a"] == pytest.approx(2.0) and s["ab"] == pytest.approx(1.6) and s["d"] == pytest.approx(0.4)
    skewed_prior = np.array([0.7, 0.1, 0.1, 0.1])
    assert domain_prediction_scores(probs, experts, skewed_prior)["a"] < 1.0
    with pytest.raises(ValueError, match="no upstream labels"):
        domain_prediction_scores(probs, {"empty": []})


def _published_logme(f: np.ndarray, y: np.ndarray) -> float:
    """LogME as the authors' published fixed-point algorithm computes it (You et al. 2021, thuml/LogME): a
    truncated SVD through the eigen-decomposition of F^T F (rank k <= min(n, d)), then per class 11 steps of
    alpha, beta from 1, 1, the evidence of each step kept, stopping at a 1e-3 relative change of alpha/beta; the
    log-determinant over the k non-zero eigenvalues."""
    f = f.astype(np.float64)
    n, d = f.shape
    _, s2, vh = np.linalg.svd(f.T @ f)
    s = np.sqrt(s2)
    k = int((s > 1e-10).sum())
    u = (f @ vh.T)[:, :k] / s[:k]
    sigma = s2[:k]
    out = []
    for c in np.unique(y):
        t = (y == c).astype(np.float64)
        x2 = (u.T @ t) ** 2
        res_x2 = (t**2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            lam = alpha / beta
            gamma = (sigma / (sigma + lam)).sum()
            m2 = (sigma * x2 / (lam + sigma) ** 2).sum()
            res2 = (x2 / (1 + sigma / lam) ** 2).sum() + res_x2
            alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * sigma).sum()
                        - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n  # fmt: skip
            if abs(alpha / beta - lam) / lam <= 1e-3:
                break
        out.append(evidence)
    return float(np.mean(out))


def test_logme_matches_the_published_algorithm_with_fewer_and_with_more_features_than_examples():
    rng = np.random.default_rng(7)
    y = np.arange(120) % 4
    tall = rng.normal(size=(120, 30)) + y[:, None] * 0.3  # n > d
    assert logme(tall, y) == pytest.approx(_published_logme(tall, y), rel=1e-9, abs=1e-9)
    yw = np.arange(40) % 4
    wide = rng.normal(size=(40, 100)) + yw[:, None] * 0.3  # d > n, as 2,048 features on 1,000 images
    assert logme(wide, yw) == pytest.approx(_published_logme(wide, yw), rel=1e-9, abs=1e-9)


def test_domain_prediction_read_as_softmax_or_sigmoid_can_rank_experts_differently():
    """One known head on two kinds of image: half show class 0 alone, half show classes 1 and 2 together. A
    softmax (one class per image) splits the second kind's mass between b = {1, 2}'s two classes, so a = {0} has
    the larger lift; read as independent sigmoids (how a multi-label head such as BiT-M's was trained), both of
    b's classes are present on those images and b's expected count of present classes gives it the larger lift."""
    logits = np.array([[2.0, -10.0, -10.0, -10.0], [-10.0, 8.0, 8.0, -10.0]] * 3)
    experts = {"a": [0], "b": [1, 2], "root": [0, 1, 2, 3]}
    soft = domain_prediction_scores(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), experts)
    sig = domain_prediction_scores_sigmoid(logits, experts)
    assert soft["a"] > soft["b"] and sig["b"] > sig["a"]
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    assert soft["root"] == pytest.approx(1.0)
    assert sig["root"] == pytest.approx(
        np.mean([sigmoid(2.0) + 3 * sigmoid(-10.0), 2 * sigmoid(8.0) + 2 * sigmoid(-10.0)])
    )
    # the expected count of a's classes present (class 0's mean presence) over its uniform prior mass, 1/4
    assert sig["a"] == pytest.approx((sigmoid(2.0) + sigmoid(-10.0)) / 2 / 0.25)
    with pytest.raises(ValueError, match="no upstream labels"):
        domain_prediction_scores_sigmoid(logits, {"empty": []})


def test_the_sigmoid_reading_ranks_the_expert_holding_every_present_class_first():
    """Issue #39's synthetic BiT-like head (21,843 classes): every image shows one class of an 8,000-class expert
    confidently, and every other class sits at the same faint background presence (1.63e-4). Comparing the
    probability that some class is present with the prior mass (two statistics) put a 3-class expert none of
    whose classes is present first (3.56 against 2.73); the expected count of classes present against its prior
    expectation ranks the 8,000-class expert first, and the 3-class expert level with any other absent set."""
    rng = np.random.default_rng(0)
    classes, n = 21_843, 40
    background = np.log(1.63e-4 / (1 - 1.63e-4))
    logits = np.full((n, classes), background)
    big = rng.choice(classes, 8_000, replace=False)
    absent = np.setdiff1d(np.arange(classes), big)
    small, other = absent[:3], absent[3:8_003]
    logits[np.arange(n), big[rng.integers(0, 8_000, n)]] = 6.0  # one present class per image, all in ``big``
    experts = {"small": small, "big": big, "absent_8000": other, "root": np.arange(classes)}
    sig = domain_prediction_scores_sigmoid(logits, experts)
    assert max(sig, key=sig.get) == "big" and sig["big"] > 1.5 * sig["small"]
    assert sig["small"] == pytest.approx(sig["absent_8000"]) == pytest.approx(1.63e-4 * classes, rel=1e-6)
    # the old statistic, for contrast: P(at least one of the expert's classes present) over the prior mass
    anyone = {
        k: (1 - np.exp(-np.logaddexp(0, logits[:, v]).sum(1))).mean() * classes / len(v)
        for k, v in experts.items()
    }
    assert anyone["small"] == pytest.approx(3.56, abs=0.01) and anyone["big"] == pytest.approx(2.73, abs=0.01)


def test_the_sigmoid_reading_keeps_a_presence_of_1e_15_to_full_precision():
    """Each class's presence comes from log space (-expm1 of the log-probability of absence): a class present with
    probability 1e-15 counts as 1e-15 to 10 digits, where 1 - exp(.) of the same log-probability keeps 3 (its
    error is float64's spacing near 1, about 1e-16, whatever the presence)."""
    from expertlib.select.proxies import class_presence

    p = 1e-15
    z = np.array([[np.log(p) - np.log1p(-p)]])
    assert class_presence(z)[0, 0] == pytest.approx(p, rel=1e-10)
    assert abs((1 - np.exp(-np.logaddexp(0.0, z[0, 0]))) - p) / p > 1e-4  # what the naive form gives
    score = domain_prediction_scores_sigmoid(np.concatenate([z, np.full((1, 3), 30.0)], 1), {"tiny": [0]})
    assert score["tiny"] == pytest.approx(p * 4, rel=1e-10)  # over a uniform prior of 1/4
    assert class_presence(np.array([40.0, -800.0])).tolist() == [1.0, 0.0]


def test_the_registry_is_the_one_list_of_proxies():
    from expertlib.select.proxies import ALL_PROXIES, LABELLED_PROXIES, PICKED_BY, PROXIES

    assert ALL_PROXIES == ("knn", "linear", "logme", "hscore", "leep", "nce", "domain", "pactran_gauss", "pactran_dir",
                           "sfda", "hscore_lw", "knn_resampled")  # fmt: skip
    assert PICKED_BY == ("knn", "domain", "linear", "logme", "hscore")  # the picks table's columns, in order
    assert "domain" not in LABELLED_PROXIES and set(LABELLED_PROXIES) | {"domain"} == set(PROXIES)
    assert all(PROXIES[p].flops(100, 64, 10, 1000) > 0 for p in PROXIES)
