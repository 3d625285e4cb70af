"""Where models meet proxies: rank a bank's experts for a task, judge the ranking, account for its cost.

:func:`extract_features` embeds a task's images once per expert in one pass over the data (adapter experts
share the stem's work); :func:`rank_experts` scores every expert with any proxy of :mod:`expertlib.proxies`
and returns a table with score, seconds and estimated FLOPs. Selection quality follows the literature:
Kendall tau and weighted tau between proxy scores and fine-tuned accuracies, regret (oracle accuracy minus
the selected expert's) and top-k relative accuracy. :func:`dat_weights` gives the per-class weights of the
Domain Adaptive Transfer baseline (Ngiam et al. 2018), which re-weights upstream data by the target task and
re-trains on it: the per-task cost the paper compares against.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from expertlib import proxies as P
from expertlib.candidates import BASE, Candidate, features_of
from expertlib.training import TrainData, predict


# -- features -------------------------------------------------------------------------------------------------
def extract_features(
    candidates: Sequence[Candidate],
    data: TrainData,
    batch_size: int = 500,
    device: str = "cpu",
    logits_of: Candidate | None = None,
) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], np.ndarray]:
    """Pooled features of every candidate for every example of ``data``, in one pass over the data (adapter
    experts of one bank share the stem). With ``logits_of`` (B), also its upstream logits (for LEEP, NCE and
    domain prediction)."""
    for c in candidates:
        c.eval()

    def fn(x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = features_of(candidates, x)
        if logits_of is not None:
            out[_LOGITS] = logits_of(x)
        return out

    res = {k: v.numpy() for k, v in predict(fn, data, batch_size, device).items()}
    logits = res.pop(_LOGITS, None)
    return (res, logits) if logits_of is not None else res


_LOGITS = "\0logits"  # a key no candidate can be named


def forward_flops(fn: Callable[[torch.Tensor], torch.Tensor], input_shape: tuple[int, ...]) -> int:
    """FLOPs of one call of ``fn`` (a module or a candidate's ``features``; multiply-adds count 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn(torch.zeros(input_shape))
    return int(counter.get_total_flops())


def proxy_flops(proxy: str, n: int, d: int, classes: int, upstream_classes: int = 0) -> float:
    """Rough FLOPs of a proxy on n examples with d-wide features (feature extraction not included)."""
    if proxy == "knn":
        return 2.0 * n * n * d
    if proxy == "linear":
        return 2.0 * n * d * classes * 100  # ~100 L-BFGS iterations
    if proxy == "logme":
        return 2.0 * n * d * min(n, d) + classes * 11 * 10.0 * min(n, d)
    if proxy == "hscore":
        return 2.0 * n * d * d + 10.0 * d**3
    if proxy in ("leep", "nce", "domain"):
        return 4.0 * n * upstream_classes
    raise ValueError(f"unknown proxy {proxy!r}")


# -- ranking --------------------------------------------------------------------------------------------------
ALL_PROXIES = ("knn", "linear", "logme", "hscore", "leep", "nce", "domain")


def rank_experts(
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    proxies: Sequence[str] = ("knn",),
    upstream_logits: np.ndarray | None = None,
    expert_labels: Mapping[str, Sequence[int]] | None = None,
    upstream_prior: np.ndarray | None = None,
    val_split: int | None = None,
    knn_k: int = 5,
    knn_metric: str = "cosine",
    extraction_seconds: Mapping[str, float] | None = None,
    extraction_flops: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Score every candidate (keys of ``features``; ``'base'`` is B) with every proxy.

    ``val_split``: the linear probe trains on the first ``val_split`` examples and tests on the rest
    (VTAB's train800 -> val200). LEEP, NCE and domain prediction use B's upstream head (``upstream_logits``);
    LEEP and NCE score B only (experts' heads cover their own subsets), domain prediction scores each expert
    from ``expert_labels``. Returns one row per (expert, proxy): score, seconds, flops.
    """
    unknown = [p for p in proxies if p not in ALL_PROXIES]
    if unknown:
        raise ValueError(f"unknown proxies {unknown}; known: {', '.join(ALL_PROXIES)}")
    y = np.asarray(labels)
    classes = int(y.max()) + 1
    rows = []
    probs = None
    if upstream_logits is not None:
        z = upstream_logits - upstream_logits.max(1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    for proxy in proxies:
        if proxy == "domain":
            if probs is None or expert_labels is None:
                raise ValueError("domain prediction needs upstream_logits and expert_labels")
            t0 = time.perf_counter()
            scores = P.domain_prediction_scores(probs, expert_labels, upstream_prior)
            secs = (time.perf_counter() - t0) / max(1, len(scores))
            base_secs = (extraction_seconds or {}).get(BASE, 0.0)
            for name, sc in scores.items():
                flops = proxy_flops("domain", len(y), 0, classes, probs.shape[1])
                rows.append(
                    _row(name, proxy, sc, secs + base_secs, flops + (extraction_flops or {}).get(BASE, 0.0))
                )
            continue
        if proxy in ("leep", "nce"):
            if probs is None:
                raise ValueError(f"{proxy} needs upstream_logits")
            t0 = time.perf_counter()
            sc = P.leep(probs, y) if proxy == "leep" else P.nce(probs.argmax(1), y)
            rows.append(
                _row(
                    BASE,
                    proxy,
                    sc,
                    time.perf_counter() - t0,
                    proxy_flops(proxy, len(y), 0, classes, probs.shape[1]),
                )
            )
            continue
        for name, f in features.items():
            t0 = time.perf_counter()
            if proxy == "knn":
                sc = P.knn_accuracy(f, y, k=knn_k, metric=knn_metric)
            elif proxy == "linear":
                cut = val_split if val_split is not None else int(0.8 * len(y))
                sc = P.linear_probe_accuracy(f[:cut], y[:cut], f[cut:], y[cut:])
            elif proxy == "logme":
                sc = P.logme(f, y)
            else:
                sc = P.h_score(f, y)
            secs = time.perf_counter() - t0 + (extraction_seconds or {}).get(name, 0.0)
            flops = proxy_flops(proxy, len(y), f.shape[1], classes) + (extraction_flops or {}).get(name, 0.0)
            rows.append(_row(name, proxy, sc, secs, flops))
    return pd.DataFrame(rows)


def _row(expert: str, proxy: str, score: float, seconds: float, flops: float) -> dict:
    return {"expert": expert, "proxy": proxy, "score": float(score),
            "seconds": float(seconds), "flops": float(flops)}  # fmt: skip


def pick(ranking: pd.DataFrame, proxy: str, candidates: Sequence[str] | None = None) -> str:
    """The best-scoring expert under ``proxy`` (ties: the first in name order)."""
    sub = ranking[ranking.proxy == proxy]
    if candidates is not None:
        sub = sub[sub.expert.isin(candidates)]
    if sub.empty:
        raise ValueError(f"no scores for proxy {proxy!r}")
    return str(sub.sort_values(["score", "expert"], ascending=[False, True]).iloc[0].expert)


# -- selection quality ---------------------------------------------------------------------------------------
def kendall_tau(scores: Sequence[float], accuracies: Sequence[float]) -> float:
    return float(stats.kendalltau(scores, accuracies).statistic)


def weighted_tau(scores: Sequence[float], accuracies: Sequence[float]) -> float:
    """scipy's weighted tau: disagreements among the top-ranked count more."""
    return float(stats.weightedtau(scores, accuracies).statistic)


def regret(selected_accuracy: float, accuracies: Sequence[float]) -> float:
    """Oracle (best) accuracy minus the selected expert's: 0 when the proxy picked the best."""
    return float(max(accuracies) - selected_accuracy)


def top_k_relative_accuracy(scores: Sequence[float], accuracies: Sequence[float], k: int = 1) -> float:
    """Best accuracy among the proxy's top-k, relative to the oracle's (1.0 = as good as the oracle)."""
    order = np.argsort(-np.asarray(scores), kind="stable")[:k]
    acc = np.asarray(accuracies, dtype=float)
    return float(acc[order].max() / acc.max())


# -- Domain Adaptive Transfer baseline -------------------------------------------------------------------------
def dat_weights(upstream_probs_on_target: np.ndarray, upstream_prior: np.ndarray) -> np.ndarray:
    """Ngiam et al.'s importance weights per upstream class: P_target(c) / P_source(c), where P_target is B's
    mean predicted distribution over the target task's images. Normalised to mean 1 over the prior."""
    p = np.asarray(upstream_probs_on_target, dtype=np.float64)
    p = p / p.sum(1, keepdims=True)
    target = p.mean(0)
    prior = np.asarray(upstream_prior, dtype=np.float64)
    prior = prior / prior.sum()
    w = target / np.maximum(prior, 1e-12)
    return w / (w * prior).sum()


def dat_sample(labels: np.ndarray, class_weights: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of upstream examples drawn with replacement in proportion to their class's DAT weight."""
    p = class_weights[np.asarray(labels)]
    p = p / p.sum()
    return np.random.default_rng(seed).choice(len(labels), size=size, replace=True, p=p)
