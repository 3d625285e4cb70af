"""Rank your own models on your own images: ``python -m expertlib.rank IMAGES MODEL [MODEL ...]``.

The paper's promise to practitioners: score many candidate models cheaply on a new task and fine-tune only
the best. IMAGES is a folder of class folders (optionally under train/, val/, test/) or a CSV of
``path,label[,split]`` (:mod:`expertlib.datasets.user_images`); each MODEL is a spec of
:mod:`expertlib.select.zoo` (timm and torchvision names, with or without a local checkpoint, expertlib model
and bank files).

Every model embeds the training images once (batched, on a GPU when there is one, with its own resolution and
normalisation); the features are cached under ``OUT/features/``, so adding a proxy or a model recomputes
nothing else. Every proxy then scores every model: kNN accuracy (the paper's choice, the default), a linear
probe, LogME, H-score, SFDA, PACTran-Gaussian, the Ledoit-Wolf H-score, kNN over resampled support sets, and
LEEP, NCE and PACTran-Dirichlet through each model's own upstream classifier. With ``--prior TABLE`` (past
fine-tunes of these models on other tasks: task, model, accuracy, as ``transfer_runs.csv``) the prior from those
transfers and the hybrid of it with the resampled kNN join them (:mod:`expertlib.select.prior`). Output,
written atomically under ``OUT``: ``ranking.csv`` and ``ranking.md`` (each proxy's score and rank, seconds and
FLOPs per model) and ``ranking.png``/``.svg``; with ``--finetune-top K`` the top K by the first proxy are
fine-tuned (BiT-HyperRule by the training set's size: 500 steps under 20k images, 10k under 500k, else 20k,
mixup 0.1 from 20k) and their test accuracy joins the table beside the proxy's order.
"""

# ruff: noqa: E402 - the Ctrl-C handler is set before the heavy imports
from __future__ import annotations

import signal
import sys
import textwrap


def _interrupted_early(signum, frame) -> None:
    """Ctrl-C while the command is still starting (loading torch takes a second): one line, no traceback."""
    print("rank: interrupted while starting; nothing was written", file=sys.stderr)
    raise SystemExit(130)


if __name__ == "__main__":  # the command line: set before the heavy imports below
    signal.signal(signal.SIGINT, _interrupted_early)

import argparse
import hashlib
import io
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from expertlib.datasets.folders import DEFAULT_MAX_PIXELS
from expertlib.datasets.user_images import UserImages, load_images
from expertlib.select.prior import (
    HYBRID_PROXY,
    HYBRID_WEIGHT,
    hybrid_scores,
    read_prior_table,
    transfer_prior,
)
from expertlib.select.proxies import LABELLED_PROXIES
from expertlib.select.rank_table import (
    WIDTH,
    binomial_columns,
    describe_images,
    merge_same_weights,
    order,
    summary_text,
    write_ranking,
)
from expertlib.select.zoo import ModelCandidate, features_flops, from_spec
from expertlib.train.schedules import HYPERRULES
from expertlib.utils.runtime import (
    atomic_write,
    atomic_write_csv,
    non_negative_int,
    open_fraction,
    positive_float,
    positive_int,
    resolve_device,
    seed_int,
)


class FineTuneError(RuntimeError):
    """A fine-tune of ``--finetune-top`` failed (its loss became NaN or inf); the proxy ranking is written."""


PAST_PROXIES = ("prior", "hybrid")  # from a table of past fine-tunes (--prior); the nested hybrid needs more
PROXIES = (
    *LABELLED_PROXIES,
    *PAST_PROXIES,
)  # every proxy that needs only the models, the images (and --prior)


def _key(fingerprint: str, images: UserImages) -> str:
    """The cache key of a model's features: the model's content (its :meth:`~ModelCandidate.fingerprint`: weights,
    normalisation, eps, resolution), not its name or file, and the images' content, labels and splits."""
    blob = json.dumps([fingerprint, images.fingerprint()])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def embed(cand: ModelCandidate, fingerprint: str, images: UserImages, cache: Path, batch_size: int, device: str,
          workers: int, progress: bool) -> dict:  # fmt: skip
    """The candidate's features (and upstream logits) of the training images, from the cache (keyed by the
    model's ``fingerprint``, hashed once per run) or one pass. A cache entry that cannot be read (cut short,
    damaged) is recomputed, with a warning."""
    from expertlib.train.evaluation import predict

    path = cache / f"{cand.name.replace('/', '_').replace(':', '_')}-{_key(fingerprint, images)}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                found = {k: z[k] for k in z.files}
            if "features" in found and len(found["features"]) == len(images.split("train")):
                return found
            raise ValueError("it does not hold one feature row per training image")
        except Exception as e:  # noqa: BLE001 - any unreadable entry is recomputed
            warnings.warn(f"cached features {path} cannot be read ({type(e).__name__}: {e}); recomputing them",
                          stacklevel=2)  # fmt: skip
    data = images.data("train", cand.precrop, cand.crop, flip=False)
    cand.features_net.to(device).eval()
    t0 = time.perf_counter()
    feats = predict(
        cand.features, data, batch_size, device, progress=progress, workers=workers, desc=f"embed {cand.name}"
    )
    seconds = time.perf_counter() - t0
    out = {"features": feats.numpy(), "seconds": np.array(seconds)}
    cand.features_net.to("cpu")
    with torch.no_grad():
        logits = cand.head_logits(feats)
    if logits is not None:
        out["logits"] = logits.numpy()
    buf = io.BytesIO()
    np.savez(buf, **out)
    atomic_write(path, lambda p: p.write_bytes(buf.getvalue()))
    return out


def rank_models(images: UserImages, specs: Sequence[str | ModelCandidate], out_dir: str | Path,
                proxies: Sequence[str] = ("knn",), k: int = 5, batch_size: int = 64, device: str = "auto",
                workers: int = 0, finetune_top: int = 0, finetune_steps: int = 500, finetune_batch: int = 64,
                finetune_lr: float = 0.003, seed: int = 0, progress: bool = True,
                prior: str | Path | pd.DataFrame | None = None, prior_task: str | None = None,
                finetune_recipe: str = "bit-paper") -> pd.DataFrame:  # fmt: skip
    """Score every model on ``images`` with every proxy; write the ranking table and figure under ``out_dir``;
    return the table (one row per model, best first by the first proxy). ``prior``: a table of past fine-tunes
    of the same models on other tasks (task, model, accuracy): adds the ``prior`` and ``hybrid`` scores (asked
    for by name, or both when none is); ``prior_task``: this task's name in it, whose rows are left out. With
    ``finetune_top``, the top models are fine-tuned with BiT-HyperRule (``finetune_recipe``: "bit-paper" or
    "bit-code") by the training set's size: ``finetune_steps`` (BiT: 500) under 20k images, 20x that under 500k,
    40x above, mixup 0.1 from 20k."""
    from expertlib.select.selection import rank_experts
    from expertlib.train.training import NonFiniteLossError

    unknown = [p for p in proxies if p not in PROXIES]
    if unknown or not proxies:
        raise ValueError(f"unknown proxies {unknown}; choose from {', '.join(PROXIES)}")
    past = [p for p in proxies if p in PAST_PROXIES]
    if past and prior is None:
        raise ValueError(f"--proxy {' and '.join(past)} needs --prior TABLE: past fine-tunes of these models on other "
                         "tasks (columns task, model, accuracy, as tables/transfer_runs.csv)")  # fmt: skip
    if prior is not None and not past:
        proxies = (*proxies, *PAST_PROXIES)
    if prior_task is not None and prior is None:
        raise ValueError("--prior-task names this task in a --prior table: give the table too")
    for name, value, low in (("k", k, 1), ("batch_size", batch_size, 1), ("workers", workers, 0),
                             ("finetune_top", finetune_top, 0), ("finetune_steps", finetune_steps, 1),
                             ("finetune_batch", finetune_batch, 1), ("seed", seed, 0)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    if not finetune_lr > 0:
        raise ValueError(f"finetune_lr must be > 0, got {finetune_lr!r}")

    if finetune_recipe not in HYPERRULES:
        raise ValueError(f"finetune_recipe must be one of {', '.join(HYPERRULES)}, got {finetune_recipe!r}")
    if finetune_top and not len(images.split("test")):
        raise ValueError(
            "--finetune-top needs test (or val) images: add a test/ folder or let the split be made"
        )
    device = resolve_device(device)
    found: list[ModelCandidate] = []
    for s in specs:  # every model is resolved (names, checkpoints) before any compute
        found += [s] if isinstance(s, ModelCandidate) else from_spec(s)
    names = [c.name for c in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two models have the same name: {sorted({n for n in names if names.count(n) > 1})}")
    fingerprints = {c.name: c.fingerprint() for c in found}  # every parameter hashed, once per model
    cands, merged = merge_same_weights(found, list(fingerprints.values()))  # B once, however many banks
    kept = [c.name for c in cands]
    aliases = {old: new for new, olds in merged.items() for old in olds}
    past_acc = (  # checked before compute, by the names the ranking uses (B once)
        read_prior_table(prior, kept, prior_task, aliases) if prior is not None else None
    )
    out_dir = Path(out_dir)
    inside = next((p for p in images.paths if out_dir.resolve() in p.resolve().parents), None)
    if inside is not None:  # a second run would rank its own figure as an image
        raise ValueError(f"image {inside} lies inside the output folder {out_dir}: load the images with "
                         f"load_images(..., leave_out=[{str(out_dir)!r}]), or write the ranking elsewhere")  # fmt: skip
    cache = out_dir / "features"
    cache.mkdir(parents=True, exist_ok=True)
    emb = {c.name: embed(c, fingerprints[merged[c.name][0]], images, cache, batch_size, device, workers, progress)
           for c in cands}  # fmt: skip
    train = images.split("train")
    order_ = np.random.default_rng(seed).permutation(
        len(train)
    )  # the linear probe's 80/20 split mixes classes
    labels = images.labels[train][order_]
    feats = {n: e["features"][order_] for n, e in emb.items()}
    logits = {n: e["logits"][order_] for n, e in emb.items() if "logits" in e}
    flops = {c.name: features_flops(c) * len(train) for c in cands}
    scored = [p for p in proxies if p in LABELLED_PROXIES]
    scored += [HYBRID_PROXY] if "hybrid" in proxies and HYBRID_PROXY not in scored else []
    table = rank_experts(feats, labels, scored, head_logits=logits, knn_k=k,
                         extraction_seconds={n: float(e["seconds"]) for n, e in emb.items()},
                         extraction_flops=flops, device=device)  # fmt: skip
    if past_acc is not None:
        table = pd.concat(
            [table, _past_rows(table, past_acc, [c.name for c in cands], proxies)], ignore_index=True
        )
    wide = order(_wide(table, proxies, cands, merged), proxies)
    # everything found but not used, with the rule that left it out: never silently
    atomic_write_csv(
        out_dir / "ignored.csv",
        pd.DataFrame([(str(p), r) for p, r in images.ignored], columns=["path", "reason"]),
    )
    write_ranking(wide, proxies, out_dir, merged)  # the proxies' ranking, whatever the fine-tunes do
    if finetune_top:
        try:
            wide = _finetune(wide, cands, images, finetune_top, finetune_steps, finetune_batch, finetune_lr, device,
                             seed, progress, finetune_recipe)  # fmt: skip
        except NonFiniteLossError as e:
            raise FineTuneError(str(e).replace("Lower the learning rate", f"Lower the learning rate (--lr, now {finetune_lr:g}; "
                                f"the default is 0.003)") + f". The proxies' ranking is written: {out_dir / 'ranking.csv'}") from e  # fmt: skip
        write_ranking(wide, proxies, out_dir, merged)
    wide.attrs["merged"], wide.attrs["proxies"] = merged, list(proxies)
    return wide


def _past_rows(
    table: pd.DataFrame, past: pd.DataFrame, names: Sequence[str], proxies: Sequence[str]
) -> pd.DataFrame:
    """The prior from past fine-tunes (each model's mean normalised rank over the table's tasks) and the hybrid
    (half the prior's ranks, half the resampled kNN's) as ranking rows; the hybrid's seconds include its kNN's."""
    t0 = time.perf_counter()
    prior = transfer_prior(past, sorted(set(past.task)), names)
    seconds = (time.perf_counter() - t0) / len(names)
    rows = [{"model": m, "proxy": "prior", "score": prior[m], "seconds": seconds, "flops": float(len(past))}
            for m in names]  # fmt: skip
    if "hybrid" in proxies:
        own = table[table.proxy == HYBRID_PROXY].set_index("model")
        hybrid = hybrid_scores(prior, own.score.reindex(names), HYBRID_WEIGHT)
        rows += [{"model": m, "proxy": "hybrid", "score": hybrid[m], "seconds": seconds + own.seconds[m],
                  "flops": own.flops[m]} for m in names]  # fmt: skip
    return pd.DataFrame(rows)


def _wide(table: pd.DataFrame, proxies: Sequence[str], cands: Sequence[ModelCandidate],
          merged: dict[str, list[str]]) -> pd.DataFrame:  # fmt: skip
    """One row per model: each proxy's score and rank (1 = best, ties share it; models a proxy cannot score have
    none); ``same_as``: the other names of the same weights."""
    rows = {c.name: {"model": c.name, "source": c.source, "resolution": c.crop,
                     "same_as": " = ".join(n for n in merged.get(c.name, []) if n != c.name)} for c in cands}  # fmt: skip
    for p in proxies:
        sub = table[table.proxy == p].set_index("model")
        ranks = sub.score.rank(ascending=False, method="min")
        for name, r in sub.iterrows():
            rows[name][p] = r.score
            rows[name][f"{p}_rank"] = int(ranks[name])
            if pd.notna(r.get("score_variance", np.nan)):  # over resampled support sets
                rows[name][f"{p}_variance"] = r.score_variance
            rows[name][f"{p}_seconds"] = r.seconds
            rows[name][f"{p}_gflops"] = r.flops / 1e9
    return pd.DataFrame(list(rows.values()))


def _finetune(wide: pd.DataFrame, cands: Sequence[ModelCandidate], images: UserImages, top: int, steps: int,
              batch: int, lr: float, device: str, seed: int, progress: bool, recipe: str) -> pd.DataFrame:  # fmt: skip
    """Fine-tune the first ``top`` rows (BiT-HyperRule by the training set's size, ``steps`` for its 500) and test
    them: accuracy with its 95% binomial interval and the chance level
    (:func:`~expertlib.select.rank_table.binomial_columns`)."""
    from expertlib.train.evaluation import predicted_classes
    from expertlib.train.training import finetune, hyperrule_config

    by = {c.name: c for c in cands}
    classes = len(images.classes)
    test = images.labels[images.split("test")]
    n = len(images.split("train"))
    correct, secs = {}, {}
    for name in wide.model.head(top):
        c = by[name]
        net = c.transfer_net(classes)
        torch.manual_seed(seed)
        cfg = hyperrule_config(n, lr, recipe, steps, batch_size=batch, seed=seed, device=device)
        res = finetune(net, images.data("train", c.precrop, c.crop), cfg, classes, progress=progress,
                       desc=f"fine-tune {name}")  # fmt: skip
        net.eval()
        pred = predicted_classes(net, images.data("test", c.precrop, c.crop, flip=False), batch, device)
        correct[name] = int((pred == test).sum())
        secs[name] = res.seconds
    chance = float(np.bincount(test).max() / len(test))
    wide = wide.drop(columns=[c for c in wide if c.startswith("finetune_") or c == "chance"])
    wide = wide.merge(binomial_columns(correct, len(test), chance), on="model", how="left")
    wide["finetune_seconds"] = wide.model.map(secs)
    return wide


def parser() -> argparse.ArgumentParser:
    """The command line's options; every number is range-checked as it is parsed, before any model runs."""
    ap = argparse.ArgumentParser(prog="python -m expertlib.rank", description=__doc__.splitlines()[0])
    ap.add_argument(
        "images", help="a folder of class folders (optionally under train/val/test) or a CSV path,label"
    )
    ap.add_argument("models", nargs="+",
                    help="timm:<name>[=ckpt], torchvision:<name>[=ckpt], or an expertlib model or bank file: "
                    "PATH.safetensors, or expertlib:PATH for any name (a file that exists is always read as a "
                    "file, even with a colon in its name, e.g. run_12:30.safetensors)")  # fmt: skip
    ap.add_argument("--out", default="ranking",
                    help="output folder (default: ./ranking); never read as images, even inside IMAGES")  # fmt: skip
    ap.add_argument("--proxy", action="append", choices=PROXIES,
                    help="repeat for several (default: knn); prior and hybrid need --prior")  # fmt: skip
    ap.add_argument("--prior", metavar="TABLE",
                    help="a CSV of past fine-tunes of these models on other tasks (task, model, accuracy, as "
                    "tables/transfer_runs.csv): adds the prior from past transfers and its hybrid with kNN")  # fmt: skip
    ap.add_argument("--prior-task", metavar="NAME",
                    help="this task's name in the --prior table: its own rows are left out of its prior")  # fmt: skip
    ap.add_argument("-k", type=positive_int, default=5, help="kNN's k (default 5)")
    ap.add_argument("--batch-size", type=positive_int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=non_negative_int, default=0, help="image-decoding worker processes")
    ap.add_argument("--skip-corrupt", action="store_true",
                    help="leave out undecodable or too large files, broken symbolic links and link loops (listed "
                    "in ignored.csv) instead of stopping at the first")  # fmt: skip
    ap.add_argument("--max-image-pixels", type=positive_int, default=None, metavar="N",
                    help=f"the largest image accepted, in pixels (default {DEFAULT_MAX_PIXELS:,}): a guard against "
                    "decompression bombs; raise it for large images you trust")  # fmt: skip
    ap.add_argument("--test-fraction", type=open_fraction, default=0.2,
                    help="per class, when no split is given (between 0 and 1)")  # fmt: skip
    ap.add_argument(
        "--finetune-top",
        type=non_negative_int,
        default=0,
        metavar="K",
        help="fine-tune the top K and test them",
    )
    ap.add_argument("--finetune-steps", type=positive_int, default=500,
                    help="BiT-HyperRule's length under 20k training images (default 500); 20x that under 500k, 40x "
                    "above (BiT's 10k and 20k), with mixup 0.1 from 20k")  # fmt: skip
    ap.add_argument("--hyperrule", choices=HYPERRULES, default="bit-paper",
                    help="BiT-HyperRule's form for --finetune-top: bit-paper (the BiT paper's text: 448/384 px, "
                    "decays at 30/60/90%%, the default) or bit-code (BiT's released code: 512/480 px, warm-up)")  # fmt: skip
    ap.add_argument("--finetune-batch", type=positive_int, default=64)
    ap.add_argument("--lr", type=positive_float, default=0.003)
    ap.add_argument("--keep-duplicates", action="store_true",
                    help="keep repeated files and identical images (refused by default: they can leak into test)")  # fmt: skip
    ap.add_argument("--seed", type=seed_int, default=0, help="the split, the probe's order and the fine-tunes "
                    "(0 to 2**32-1; default 0)")  # fmt: skip
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = Path(args.out)
    if signal.getsignal(signal.SIGINT) is _interrupted_early:  # started: Ctrl-C from here on is caught below
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        images = load_images(args.images, args.test_fraction, args.seed, min_per_class=args.k + 1,
                             on_corrupt="skip" if args.skip_corrupt else "error",
                             duplicates="keep" if args.keep_duplicates else "refuse", leave_out=[args.out],
                             max_image_pixels=args.max_image_pixels)  # fmt: skip
        opening = describe_images(images, args.images, args.test_fraction, args.seed, out / "ignored.csv")
        print(textwrap.fill(opening, WIDTH, subsequent_indent="  ", break_on_hyphens=False), flush=True)
        table = rank_models(images, args.models, args.out, args.proxy or ["knn"], args.k, args.batch_size,
                            args.device, args.workers, args.finetune_top, args.finetune_steps, args.finetune_batch,
                            args.lr, args.seed, not args.no_progress, prior=args.prior, prior_task=args.prior_task,
                            finetune_recipe=args.hyperrule)  # fmt: skip
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        print(f"rank: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "rank: interrupted; finished features are cached under --out, a rerun continues", file=sys.stderr
        )
        return 130
    print(summary_text(table, table.attrs.get("proxies", args.proxy or ["knn"]), table.attrs.get("merged")))
    print(textwrap.fill(f"-> the full table: {out / 'ranking.csv'} and ranking.md; the figure: ranking.png", WIDTH,
                        subsequent_indent="  ", break_on_hyphens=False))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
