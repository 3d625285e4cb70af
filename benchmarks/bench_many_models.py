"""Fine-tunes per second: K models in one stacked pass against one at a time; writes
results/benchmarks/many_models.csv (rows of other devices kept).

At the ``cpu`` scale's sizes (its architecture, ``tiny``; 32 px from a 36 px precrop; its transfer batch, 32;
its transfer schedule and learning rates; its evaluation batch), K fine-tunes of the transfer network of B
(a fresh zero head each, seeds 0..K-1, the scale's two learning rates in turn), each then predicting the
classes of an evaluation set, side by side in one run:

- ``one at a time``: :func:`expertlib.pipeline.transfer.finetune_job` (fine-tune, then predict) per model
  through :func:`expertlib.utils.parallel.run_jobs`, each job single-threaded: on a CPU by the scale's pool of
  processes (the current path there) and in turn in this process, on a GPU in turn (the current path there).
  Its throughput does not depend on K, so only the first ``--timed`` models run (``models_timed``);
- ``stacked, one pass``: :func:`expertlib.train.stacked.finetune_stacked` then
  :func:`expertlib.train.stacked.predicted_classes_stacked`, all K in one pass per step (single-threaded on a
  CPU: on our shared 2 cores a two-thread process measures the other processes' load more than itself;
  ``train_s`` and ``eval_s`` split its time).

``finetunes_per_s`` is models over wall seconds, evaluation included; ``speedup`` is over the current path,
``speedup_vs_in_turn`` over one at a time in turn (the same single core on a CPU). ``data_s`` is the time that
building the K models' augmented batches alone takes on the CPU (single-threaded, as a data worker would): it
bounds what a GPU can gain without data workers. Synthetic images (speed only). On a CPU, K = 16, 64 and 256
run a fraction of a cpu-scale fine-tune (``--fractions``, default 0.4, 0.04 and 0.02: that share of its 50
steps and of its 1,000 evaluation images, so training and evaluation keep their proportions) to keep the run
near five minutes; every row says its ``steps`` and ``eval_images``. ``load_1min`` is the machine's load
average when the row started (other processes share our 2 cores).

Rows ``what=step`` time one training step (forward and backward, no data) of K stacked ``tiny`` models three
ways: ``vmap`` over model-major inputs ``(K, batch, ...)``, ``vmap`` over batch-major inputs ``(batch, K,
...)`` (what :mod:`expertlib.train.stacked` does: each grouped convolution's input is then a view), and a
hand-written grouped-convolution ``tiny`` (one ``groups=K`` convolution and one ``K x groups`` GroupNorm per
layer; here only, to measure it), best of three after a warm-up (of one on a CPU for K > 16). ``max_abs_diff``
is each way's logits' largest difference from the batch-major vmap's.

On a GPU the stack holds the task on the device and replays its step as a CUDA graph
(:mod:`expertlib.train.stacked`); the K=64 row's ``goal`` is #40's (stacked >= 10x one at a time) and
``goal_met`` says whether it was met.

    python benchmarks/bench_many_models.py                  # CPU rows
    python benchmarks/bench_many_models.py --device cuda    # GPU rows
    python benchmarks/bench_many_models.py --device cuda --ks 64 --timed 8 --step-ks "" --out DIR  # make gpu-check
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from _common import ROOT
from torch import Tensor
from torch.func import functional_call, vmap

from expertlib.models.candidates import from_model
from expertlib.models.resnet import ResNetV2
from expertlib.pipeline import recipes as R
from expertlib.pipeline.transfer import finetune_job
from expertlib.run.presets import get_scale
from expertlib.train.batching import StepBatches
from expertlib.train.stacked import StackedSteps, finetune_stacked, predicted_classes_stacked
from expertlib.train.training import ArrayData
from expertlib.utils.parallel import run_jobs, single_thread
from expertlib.utils.runtime import atomic_write_csv, machine_description, resolve_device

CLASSES = 10
OUT = ROOT / "results" / "benchmarks" / "many_models.csv"
GOAL_SPEEDUP = 10  # #40: K=64 stacked at least 10x the fine-tunes per second of one at a time, on a GPU


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _task(sc, n: int, seed: int) -> ArrayData:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n, sc.data.crop, sc.data.crop, 3), dtype=np.uint8)
    return ArrayData(images, np.arange(n) % CLASSES, sc.data.precrop, sc.data.crop, True)


def _cfgs(sc, k: int, steps: int, device: str) -> list:
    lrs = sc.transfer.lrs
    return [R.transfer_config(sc, steps, lrs[i % len(lrs)], seed=i, device=device) for i in range(k)]


def one_at_a_time(sc, cand, train, test, cfgs, device: str, workers: int) -> float:
    """Wall seconds of the pipeline's path: each fine-tune a job of ``finetune_job``, run by ``workers``
    single-threaded processes (0: in turn in this process, single-threaded too, as the pipeline runs them)."""
    jobs = ((cand.transfer_net(CLASSES), train, test, c, CLASSES, sc.runtime.eval_batch) for c in cfgs)
    t0 = time.perf_counter()
    done = list(run_jobs(finetune_job, jobs, workers))
    _sync(device)
    assert len(done) == len(cfgs)
    return time.perf_counter() - t0


def stacked(sc, cand, train, test, cfgs, device: str) -> tuple[float, float]:
    """Wall seconds of the K fine-tunes in one stack, and of their stacked evaluation (single-threaded on a
    CPU: on our shared 2 cores a two-thread process measures the other processes' load more than itself)."""
    nets = [cand.transfer_net(CLASSES) for _ in cfgs]
    with single_thread() if device == "cpu" else nullcontext():
        t0 = time.perf_counter()
        finetune_stacked(nets, train, cfgs, CLASSES, progress=False)
        _sync(device)
        t1 = time.perf_counter()
        pred = predicted_classes_stacked(nets, test, sc.runtime.eval_batch, device)
        _sync(device)
        t2 = time.perf_counter()
    assert pred.shape == (len(cfgs), len(test))
    return t1 - t0, t2 - t1


def data_seconds(train, cfgs) -> float:
    """Building every step's K augmented batches alone (what the stacked run does on the CPU)."""
    streams = [StepBatches(train, c.batch_size, c.seed, 0, c.steps) for c in cfgs]
    steps = StackedSteps(streams)
    with single_thread():
        t0 = time.perf_counter()
        for i in range(len(steps)):
            steps[i]
        return time.perf_counter() - t0


# -- formulations of one stacked step ------------------------------------------------------------------------------
def _grouped_tiny(p: dict, x: Tensor, k: int, groups: int) -> Tensor:
    """The ``tiny`` ResNet-v2 (basic pre-activation units) for K stacked parameter sets as grouped convolutions:
    ``x`` is ``(batch, K * 3, H, W)``, the logits ``(K, batch, classes)``."""

    def conv(name: str, h: Tensor, stride: int = 1, padding: int = 0, std: bool = True) -> Tensor:
        w = p[name]  # (K, out, in, kh, kw)
        if std:  # weight standardisation per output filter, as StdConv2d
            w = F.batch_norm(
                w.reshape(1, -1, w[0, 0].numel()), None, None, training=True, momentum=0.0, eps=1e-10
            )
        w = w.reshape(-1, *p[name].shape[2:])
        return F.conv2d(h, w, p.get(name.replace("weight", "bias")), stride, padding, groups=k)

    def norm(name: str, h: Tensor) -> Tensor:
        return F.relu(
            F.group_norm(h, k * groups, p[f"{name}.weight"].reshape(-1), p[f"{name}.bias"].reshape(-1))
        )

    h = conv("stem.conv.weight", x, padding=1)
    for s in range(3):
        for b in range(2):
            u = f"stages.{s}.blocks.{b}"
            stride = 2 if (s > 0 and b == 0) else 1
            a = norm(f"{u}.norm1", h)
            short = (
                conv(f"{u}.downsample.conv.weight", a, stride) if f"{u}.downsample.conv.weight" in p else h
            )
            mid = norm(f"{u}.norm2", conv(f"{u}.conv1.weight", a, stride, 1))
            h = conv(f"{u}.conv2.weight", mid, 1, 1) + short
    pooled = norm("norm", h).mean((2, 3), keepdim=True)
    head = F.conv2d(pooled, p["head.fc.weight"].reshape(-1, *p["head.fc.weight"].shape[2:]),
                    p["head.fc.bias"].reshape(-1), groups=k)  # fmt: skip
    return head.view(x.shape[0], k, -1).transpose(0, 1)


def step_rows(sc, k: int, device: str, repeats: int = 3) -> list[dict]:
    """One stacked training step of K ``tiny`` models (forward and backward, no data), three ways."""
    nets = []
    for i in range(k):
        torch.manual_seed(i)
        nets.append(ResNetV2(sc.upstream.arch, num_classes=CLASSES, zero_head=False).to(device))
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in nets]).requires_grad_()
              for n, _ in nets[0].named_parameters()}  # fmt: skip
    b, c = sc.transfer.batch, sc.data.crop
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, k, 3, c, c, generator=g).to(device)  # batch-major
    x_model_major = x.transpose(0, 1).contiguous()  # (K, batch, ...): the layout torch.stack gives
    y = torch.randint(0, CLASSES, (k, b), generator=g).to(device)
    template = nets[0]

    def one(p: dict, xb: Tensor) -> Tensor:
        return functional_call(template, p, (xb,))

    ways = {
        "vmap, model-major input": lambda: vmap(one)(params, x_model_major),
        "vmap, batch-major input (expertlib.train.stacked)": lambda: vmap(one, in_dims=(0, 1))(params, x),
        "grouped convolutions (hand-written tiny)": lambda: _grouped_tiny(
            params, x.flatten(1, 2), k, template.cfg.norm_groups
        ),  # fmt: skip
    }
    with torch.no_grad():
        ref = ways["vmap, batch-major input (expertlib.train.stacked)"]()
        diffs = {w: (f() - ref).abs().max().item() for w, f in ways.items()}

    def run(f) -> None:
        losses = F.cross_entropy(f().flatten(0, 1), y.flatten(), reduction="none").view(k, -1).mean(1)
        losses.sum().backward()
        _sync(device)

    rows = []
    for way, f in ways.items():
        run(f)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            run(f)
            best = min(best, time.perf_counter() - t0)
        rows.append({"what": "step", "kind": "generic", "models": k, "way": way, "models_timed": k, "steps": 1,
                     "batch": b, "eval_images": 0, "seconds": round(best, 4), "model_steps_per_s": round(k / best, 1),
                     "max_abs_diff": f"{diffs[way]:.1e}", "load_1min": round(os.getloadavg()[0], 1)})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ks", default="1,16,64,256", help="models per stack")
    ap.add_argument("--fractions", default="",
                    help="per K, the fraction of a cpu-scale fine-tune to run (its steps and evaluation images); "
                         "default 1,0.4,0.04,0.02 on a CPU, 1 on a GPU")  # fmt: skip
    ap.add_argument("--timed", type=int, default=16, help="models the one-at-a-time path runs (0: all K)")
    ap.add_argument("--step-ks", default="16,64", help="K for the formulation rows (empty: none)")
    ap.add_argument(
        "--out", type=Path, default=None, help="folder for many_models.csv (default: results/benchmarks)"
    )
    args = ap.parse_args()
    out = args.out / "many_models.csv" if args.out else OUT
    device = resolve_device(args.device)
    sc = get_scale("cpu")
    ks = [int(v) for v in args.ks.split(",")]
    default = "1,0.4,0.04,0.02" if device == "cpu" and args.ks == "1,16,64,256" else ",".join(["1"] * len(ks))
    fractions = [float(v) for v in (args.fractions or default).split(",")]
    train = _task(sc, 1000, 0)  # train800val200's size
    torch.manual_seed(0)
    cand = from_model(ResNetV2(sc.upstream.arch, num_classes=0).to(device))
    warm = _cfgs(sc, 2, 2, device)
    pool = sc.runtime.transfer_workers if device == "cpu" else 0  # the pipeline's current path on this device
    one_at_a_time(sc, cand, train, _task(sc, 64, 1), warm, device, pool)
    stacked(sc, cand, train, _task(sc, 64, 1), warm, device)
    rows = []
    for k, f in zip(ks, fractions, strict=True):
        n_steps = max(1, round(f * sc.transfer.steps[0]))
        test = _task(sc, max(1, round(f * 1000)), 1)  # the test split's 1,000 images, or the same fraction
        cfgs = _cfgs(sc, k, n_steps, device)
        timed = min(k, args.timed) if args.timed else k
        load = os.getloadavg()[0]
        ways = {}
        if pool:
            ways[f"one at a time, pool of {pool} single-threaded processes (current)"] = (
                timed,
                one_at_a_time(sc, cand, train, test, cfgs[:timed], device, pool),
                "",
                "",
            )
        name = "one at a time, in turn" + ("" if pool else " (current)")
        ways[name] = (timed, one_at_a_time(sc, cand, train, test, cfgs[:timed], device, 0), "", "")
        t_train, t_eval = stacked(sc, cand, train, test, cfgs, device)
        ways["stacked, one pass"] = (k, t_train + t_eval, round(t_train, 2), round(t_eval, 2))
        d = (
            data_seconds(train, cfgs) if device == "cpu" else None
        )  # a GPU builds a held stack's batches itself
        rates = {w: n / secs for w, (n, secs, _, _) in ways.items()}
        current = next(w for w in ways if w.endswith("(current)"))
        for way, (n, secs, t_train, t_eval) in ways.items():
            rows.append({"what": "finetunes", "kind": "generic", "models": k, "way": way, "models_timed": n,
                         "steps": n_steps, "batch": sc.transfer.batch, "eval_images": len(test),
                         "seconds": round(secs, 2), "finetunes_per_s": round(rates[way], 3),
                         "speedup": round(rates[way] / rates[current], 2),
                         "speedup_vs_in_turn": round(rates[way] / rates[name], 2), "train_s": t_train,
                         "eval_s": t_eval, "data_s": round(d, 2) if way.startswith("stacked") and d is not None else "",
                         "load_1min": round(load, 1)})  # fmt: skip
            print(rows[-1], flush=True)
    if args.step_ks:
        with single_thread() if device == "cpu" else nullcontext():
            for k in (int(v) for v in args.step_ks.split(",")):
                rows += step_rows(sc, k, device, repeats=3 if k <= 16 or device != "cpu" else 1)
    frame = pd.DataFrame(rows)
    m = machine_description()
    frame.insert(0, "device", "cpu" if device == "cpu" else torch.cuda.get_device_name())
    frame["threads"] = 1 if device == "cpu" else ""  # per process
    frame["machine"] = f"{m['cpu_count']} CPUs, torch {m['torch']}, {m['cuda'] or 'no GPU'}"
    gpu_goal = (
        (frame["what"] == "finetunes") & (frame["way"] == "stacked, one pass") & (frame["models"] == 64)
    )
    frame["goal"] = np.where(gpu_goal & (device != "cpu"), f">= {GOAL_SPEEDUP}x one at a time", "")
    frame["goal_met"] = np.where(
        frame["goal"] != "", np.where(frame["speedup"] >= GOAL_SPEEDUP, "yes", "no"), ""
    )
    if out.exists():  # other devices' rows stay
        old = pd.read_csv(out, keep_default_na=False)
        frame = pd.concat([old[old["device"] != frame["device"][0]], frame], ignore_index=True)
    atomic_write_csv(out, frame)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(frame.drop(columns=["machine"]).to_string(index=False))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
