"""Leave-one-out kNN on 1,000 x 2,048 features: expertlib's torch implementation vs scikit-learn's
KNeighborsClassifier, side by side, with identical accuracy required. Writes results/benchmarks/knn.csv."""

import numpy as np
from _common import best_of, write
from sklearn.neighbors import KNeighborsClassifier

from expertlib.select.proxies import knn_accuracy


def sklearn_loo(x: np.ndarray, y: np.ndarray, k: int) -> float:
    clf = KNeighborsClassifier(n_neighbors=k).fit(x, y)
    nb = clf.kneighbors(x, n_neighbors=k + 1, return_distance=False)[:, 1:]  # drop the point itself
    votes = np.zeros((len(y), y.max() + 1), int)
    np.add.at(votes, (np.repeat(np.arange(len(y)), k), y[nb].ravel()), 1)
    return float((votes.argmax(1) == y).mean())


def main() -> None:
    rng = np.random.default_rng(0)
    n, d, c = 1000, 2048, 10
    y = np.arange(n) % c
    x = (rng.normal(0, 1, (c, d))[y] * 0.15 + rng.normal(0, 1, (n, d))).astype(np.float32)
    rows = []
    for k in (1, 5, 10):
        ours = knn_accuracy(x, y, k=k, metric="euclidean")
        theirs = sklearn_loo(x, y, k)
        t_ours = best_of(lambda k=k: knn_accuracy(x, y, k=k, metric="euclidean"))
        t_sk = best_of(lambda k=k: sklearn_loo(x, y, k))
        rows.append({"n": n, "dim": d, "k": k, "ours_seconds": round(t_ours, 4), "sklearn_seconds": round(t_sk, 4),
                     "speedup": round(t_sk / t_ours, 1), "ours_accuracy": ours, "sklearn_accuracy": theirs,
                     "identical": ours == theirs})  # fmt: skip
    write("knn", rows)


if __name__ == "__main__":
    main()
