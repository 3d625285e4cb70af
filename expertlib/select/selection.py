"""Where models meet proxies: rank a bank's experts for a task, judge the ranking, account for its cost.

:func:`extract_features` embeds a task's images with every candidate in one pass over the data (each image
is read and augmented once; every candidate runs its own full forward: sharing the stem of adapter experts
was measured to save nothing); :func:`rank_experts` scores every expert with any proxy of the registry
:data:`expertlib.select.proxies.PROXIES` and returns a table with score, seconds and estimated FLOPs.
Selection quality follows the literature: Kendall tau-b and weighted tau between proxy scores and fine-tuned
accuracies, regret (oracle accuracy minus the selected expert's), recall of the best expert in the top k,
top-k relative accuracy, and how the agreement holds when a third of the candidates are dropped.
:func:`dat_weights` gives the per-class weights of the Domain Adaptive Transfer baseline (Ngiam et al. 2018),
which re-weights upstream data by the target task and re-trains on it: the per-task cost the paper compares
against.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from expertlib.analysis.stats import tau_b_rows
from expertlib.models.candidates import BASE, Candidate, features_of
from expertlib.models.resnet import Pooled
from expertlib.select import proxies as P
from expertlib.select.probes import linear_probe_accuracies
from expertlib.select.transferability import Scored
from expertlib.train.evaluation import network, owner_module, predict
from expertlib.train.training import TrainData
from expertlib.utils.runtime import Compile


# -- features -------------------------------------------------------------------------------------------------
def extract_features(
    candidates: Sequence[Candidate], data: TrainData, batch_size: int = 500, device: str = "cpu",
    compile: Compile = "auto", workers: int = 0,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Pooled features of every candidate for every example of ``data``, in one pass over the data (each batch
    read and augmented once for all of them).

    Compiled (``compile``; "auto": on CUDA, for architectures where it pays,
    :func:`~expertlib.train.evaluation.compile_here`), each candidate runs through the network that computes
    it, so every candidate of one architecture (B, each full or released expert) shares one graph; adapter
    experts stay eager. On CUDA the features stay on the device, in bf16, until the pass is done
    (:func:`~expertlib.train.evaluation.predict`); on a CPU they are computed in float32 as always.
    ``workers``: data worker processes decoding the images (on a GPU, one pass over a task's images is
    otherwise bound by decoding them in this process)."""
    for c in candidates:
        c.eval()
    nets = {c.name: Pooled(c.training_module()) for c in candidates}
    runs = {name: network(net, compile, device) for name, net in nets.items()}
    fixed = any(runs[name] is not net for name, net in nets.items())
    if not fixed:  # every candidate eager: one batch of features for all of them, as it always was
        fn = lambda x: features_of(candidates, x)  # noqa: E731
    else:
        fn = lambda x: {name: run(x) for name, run in runs.items()}  # noqa: E731
    feats = predict(fn, data, batch_size, device, workers=workers, modules=candidates, compile=False,
                    fixed_shape=fixed)  # fmt: skip
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


# -- ranking --------------------------------------------------------------------------------------------------
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
    domain_activation: str = "softmax",
    device: str = "cpu",
) -> pd.DataFrame:
    """Score every candidate (keys of ``features``; ``'base'`` is B) with every proxy of
    :data:`expertlib.select.proxies.PROXIES` named in ``proxies``, by what each reads.

    ``val_split``: the linear probe trains on the first ``val_split`` examples and tests on the rest
    (VTAB's train800 -> val200). Proxies that read a head (LEEP, NCE) score every candidate in ``head_logits``
    through its own upstream head (an expert's covers its subset); domain prediction scores each expert of
    ``expert_labels`` from B's head (``head_logits['base']``, read as ``domain_activation``), and B's feature
    extraction is counted once for all of them (each expert's row carries an equal share). Returns one row per
    (model, proxy): score, score_variance (over resampled support sets; nan for proxies that do not resample),
    seconds, flops, ``model`` being the candidate id (the keys of ``features``).
    On a GPU ``device``, the linear probes of every candidate are fitted together there
    (:func:`~expertlib.select.probes.linear_probe_accuracies`, scikit-learn's optimum), each row an equal
    share of their seconds; elsewhere one at a time in scikit-learn.
    """
    unknown = [p for p in proxies if p not in P.PROXIES]
    if unknown:
        raise ValueError(f"unknown proxies {unknown}; known: {', '.join(P.ALL_PROXIES)}")
    settings = P.ProxySettings(knn_k, knn_metric, val_split, domain_activation)  # type: ignore[arg-type]
    y = np.asarray(labels)
    classes = int(y.max()) + 1
    rows = []
    extra_s, extra_f = extraction_seconds or {}, extraction_flops or {}
    logits = head_logits or {}
    probs = {n: P.softmax(z) for n, z in logits.items()}
    for name in proxies:
        proxy = P.PROXIES[name]
        if proxy.reads == "base_head":
            if BASE not in logits or expert_labels is None:
                raise ValueError(f"{name} needs B's head_logits and expert_labels")
            t0 = time.perf_counter()
            scores = proxy.score((logits[BASE], expert_labels, upstream_prior), y, settings)
            share = (time.perf_counter() - t0 + extra_s.get(BASE, 0.0)) / max(1, len(scores))
            flops = (proxy.flops(len(y), 0, classes, logits[BASE].shape[1]) + extra_f.get(BASE, 0.0)) / max(
                1, len(scores)
            )
            rows += [_row(model, name, sc, share, flops) for model, sc in scores.items()]
            continue
        inputs = probs if proxy.reads == "head" else features
        if name == "linear" and str(device).startswith("cuda") and inputs:
            t0 = time.perf_counter()
            cut = settings.val_split if settings.val_split is not None else int(0.8 * len(y))
            xs = list(inputs.values())
            scores = linear_probe_accuracies([x[:cut] for x in xs], y[:cut], [x[cut:] for x in xs], y[cut:],
                                             device=device)  # fmt: skip
            share = (time.perf_counter() - t0) / len(xs)
            rows += [_row(model, name, sc, share + extra_s.get(model, 0.0),
                          proxy.flops(len(y), x.shape[1], classes, 0) + extra_f.get(model, 0.0))
                     for (model, x), sc in zip(inputs.items(), scores, strict=True)]  # fmt: skip
            continue
        for model, x in inputs.items():
            t0 = time.perf_counter()
            sc = proxy.score(x, y, settings)
            secs = time.perf_counter() - t0 + extra_s.get(model, 0.0)
            width, upstream = (0, x.shape[1]) if proxy.reads == "head" else (x.shape[1], 0)
            rows.append(_row(model, name, sc, secs, proxy.flops(len(y), width, classes, upstream)
                             + extra_f.get(model, 0.0)))  # fmt: skip
    return pd.DataFrame(rows)


def _row(model: str, proxy: str, score: float | Scored, seconds: float, flops: float) -> dict:
    """One row of a ranking; ``score_variance``: the score's variance over resampled support sets, where the
    proxy resamples them (nan elsewhere)."""
    scored = score if isinstance(score, Scored) else Scored(float(score), float("nan"))
    return {"model": model, "proxy": proxy, "score": float(scored.score), "score_variance": float(scored.variance),
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


# -- selection quality ---------------------------------------------------------------------------------------
def kendall_tau(scores: Sequence[float], accuracies: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either ranking accounted for); nan where either side is constant."""
    return float(stats.kendalltau(scores, accuracies, variant="b").statistic)


def weighted_tau(scores: Sequence[float], accuracies: Sequence[float]) -> float:
    """scipy's weighted tau: disagreements among the top-ranked count more."""
    return float(stats.weightedtau(scores, accuracies).statistic)


def regret(selected_accuracy: float, accuracies: Sequence[float]) -> float:
    """Oracle (best) accuracy minus the selected expert's: 0 when the proxy picked the best."""
    return float(max(accuracies) - selected_accuracy)


def recall_at_k(scores: Sequence[float], accuracies: Sequence[float], k: int = 3) -> float:
    """Whether the best candidate by accuracy is among the proxy's top ``k`` (1 or 0); where the ``k``-th place is
    tied, the chance that breaking the tie at random keeps it (a tie is the proxy's honest answer)."""
    s, acc = np.asarray(scores, dtype=float), np.asarray(accuracies, dtype=float)
    k = min(k, len(s))
    kth = np.sort(s)[::-1][k - 1]
    best = s[int(np.argmax(acc))]
    if best != kth:
        return float(best > kth)
    return float((k - (s > kth).sum()) / (s == kth).sum())


def drop_third_taus(scores: pd.Series, accuracies: pd.Series, draws: int = 50, seed: int = 0,
                    rescore: Callable[[list[str]], pd.Series] | None = None) -> np.ndarray:  # fmt: skip
    """Kendall tau of the proxy against accuracy after a third of the candidates (rounded down) are dropped at
    random, ``draws`` times (``scores`` and ``accuracies`` indexed by candidate): how much the agreement rests on
    which candidates happen to be in the pool. ``rescore(kept)`` recomputes the scores on the kept candidates,
    for a proxy whose scores depend on the pool (one built from other tasks' rankings); else they stay."""
    names = sorted(scores.index)
    keep = len(names) - len(names) // 3
    rng = np.random.default_rng(seed)
    kept = [sorted(rng.choice(names, keep, replace=False)) for _ in range(draws)]
    s = np.array([(scores if rescore is None else rescore(k)).reindex(k).to_numpy(float) for k in kept])
    acc = np.array([accuracies.reindex(k).to_numpy(float) for k in kept])
    return tau_b_rows(s.reshape(draws, keep), acc.reshape(draws, keep))


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
