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
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from expertlib import proxies as P
from expertlib.candidates import BASE, Candidate, features_of
from expertlib.resnet import Pooled
from expertlib.runtime import Compile, compiled, resolve_compile
from expertlib.training import TrainData, compiles_once, owner_module, predict


# -- features -------------------------------------------------------------------------------------------------
def extract_features(
    candidates: Sequence[Candidate], data: TrainData, batch_size: int = 500, device: str = "cpu",
    compile: Compile = "auto",
) -> dict[str, np.ndarray]:  # fmt: skip
    """Pooled features of every candidate for every example of ``data``, in one pass over the data.

    Compiled (``compile``; "auto": on CUDA), each candidate runs through the network that computes it, so every
    candidate of one architecture (B, each full or released expert) shares one graph; adapter experts stay
    eager (:func:`~expertlib.training.compiles_once`)."""
    for c in candidates:
        c.eval()
    use = resolve_compile(compile, device)
    if not use:
        fn = lambda x: features_of(candidates, x)  # noqa: E731
    else:
        nets = {c.name: Pooled(c.training_module()) for c in candidates}
        nets = {name: compiled(net, compile is True or compiles_once(net)) for name, net in nets.items()}
        fn = lambda x: {name: net(x) for name, net in nets.items()}  # noqa: E731
    feats = predict(fn, data, batch_size, device, modules=candidates, compile=False, fixed_shape=use)
    return {k: v.numpy() for k, v in feats.items()}


def head_logits(candidates: Sequence[Candidate], features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each candidate's upstream logits through its own head, from its features (no second pass); candidates
    without an upstream head are left out."""
    out = {}
    with torch.no_grad():
        for c in candidates:
            if c.bank.upstream_head(c.expert) is not None:
                out[c.name] = c.forward_head(torch.from_numpy(features[c.name])).numpy()
    return out


def forward_flops(fn: Callable[[torch.Tensor], torch.Tensor], input_shape: tuple[int, ...]) -> int:
    """FLOPs of one call of ``fn`` (a module, e.g. ``Pooled(candidate)``; multiply-adds count 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    owner = owner_module(fn)
    device = next(owner.parameters()).device if owner is not None else "cpu"
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn(torch.zeros(input_shape, device=device))
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
PICKED_BY = ("knn", "domain", "linear", "logme", "hscore")
"""The proxies whose picks are fine-tuned: one column each in a picks table (LEEP and NCE score only experts
with an upstream head, so their picks are judged from the runs of every expert instead)."""
PICK_COLUMNS = (*PICKED_BY, "random")
"""Every column of a picks table that names candidates by id (a tie: its ids in one cell, :func:`join_ids`)."""


def join_ids(ids: Iterable[str]) -> str:
    """Several candidate ids in one table cell (a tie at the top, a random sample, an oracle pool)."""
    return ";".join(ids)


def split_ids(cell: object) -> list[str]:
    """The candidate ids of one table cell written by :func:`join_ids`."""
    return str(cell).split(";")


def rank_experts(
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    proxies: Sequence[str] = ("knn",),
    head_logits: Mapping[str, np.ndarray] | None = None,
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
    (VTAB's train800 -> val200). LEEP and NCE score every candidate in ``head_logits`` through its own upstream
    head (an expert's covers its subset); domain prediction scores each expert of ``expert_labels`` from B's
    head (``head_logits['base']``), and B's feature extraction is counted once for all of them (each expert's
    row carries an equal share). Returns one row per (model, proxy): score, seconds, flops, ``model`` being the
    candidate id (the keys of ``features``).
    """
    unknown = [p for p in proxies if p not in ALL_PROXIES]
    if unknown:
        raise ValueError(f"unknown proxies {unknown}; known: {', '.join(ALL_PROXIES)}")
    y = np.asarray(labels)
    classes = int(y.max()) + 1
    rows = []
    extra_s, extra_f = extraction_seconds or {}, extraction_flops or {}
    probs = {n: _softmax(z) for n, z in (head_logits or {}).items()}
    for proxy in proxies:
        if proxy == "domain":
            if BASE not in probs or expert_labels is None:
                raise ValueError("domain prediction needs B's head_logits and expert_labels")
            t0 = time.perf_counter()
            scores = P.domain_prediction_scores(probs[BASE], expert_labels, upstream_prior)
            share = (time.perf_counter() - t0 + extra_s.get(BASE, 0.0)) / max(1, len(scores))
            flops = (
                proxy_flops("domain", len(y), 0, classes, probs[BASE].shape[1]) + extra_f.get(BASE, 0.0)
            ) / max(1, len(scores))
            rows += [_row(name, proxy, sc, share, flops) for name, sc in scores.items()]
            continue
        if proxy in ("leep", "nce"):
            for name, pr in probs.items():
                t0 = time.perf_counter()
                sc = P.leep(pr, y) if proxy == "leep" else P.nce(pr.argmax(1), y)
                secs = time.perf_counter() - t0 + extra_s.get(name, 0.0)
                rows.append(_row(name, proxy, sc, secs, proxy_flops(proxy, len(y), 0, classes, pr.shape[1])
                                 + extra_f.get(name, 0.0)))  # fmt: skip
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
            secs = time.perf_counter() - t0 + extra_s.get(name, 0.0)
            rows.append(
                _row(
                    name,
                    proxy,
                    sc,
                    secs,
                    proxy_flops(proxy, len(y), f.shape[1], classes) + extra_f.get(name, 0.0),
                )
            )
    return pd.DataFrame(rows)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _row(model: str, proxy: str, score: float, seconds: float, flops: float) -> dict:
    return {"model": model, "proxy": proxy, "score": float(score),
            "seconds": float(seconds), "flops": float(flops)}  # fmt: skip


def tied_best(ranking: pd.DataFrame, proxy: str, candidates: Sequence[str] | None = None) -> list[str]:
    """Every candidate sharing the best score under ``proxy`` (sorted by id): a tie is the proxy's honest
    answer, and the pipeline judges it by the expectation over the tied experts."""
    sub = ranking[ranking.proxy == proxy]
    if candidates is not None:
        sub = sub[sub.model.isin(candidates)]
    sub = sub.dropna(subset=["score"])
    if sub.empty:
        raise ValueError(f"no scores for proxy {proxy!r}")
    return sorted(sub.model[sub.score == sub.score.max()].astype(str))


def pick(ranking: pd.DataFrame, proxy: str, candidates: Sequence[str] | None = None) -> str:
    """One best-scoring candidate under ``proxy`` (a tie goes to the first id: for one name, e.g. a ranking
    command's answer; the pipeline keeps the whole tie, :func:`tied_best`)."""
    return tied_best(ranking, proxy, candidates)[0]


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
