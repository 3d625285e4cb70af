"""R50x1 on a GPU, side by side in one run with timm's ``resnetv2_50x1_bit``, eager and compiled:

- every combination of train / inference, eager / compiled (``torch.compile``, what "auto" turns on on CUDA),
  bf16 autocast / fp32, each measured twice: on synthetic tensors already on the GPU, and fed by the real data
  pipeline (``training.train`` / ``evaluation.predict``):
    - upstream streaming at 224 px: JPEG files read as bytes by DataLoader workers and decoded on the GPU
      (``expertlib.datasets.encoded``), as upstream and expert trainings read ImageNet-21k;
    - a VTAB-style fine-tune at 128 px and at 480 px (BiT-HyperRule's two resolutions): 1,000 JPEGs decoded once
      into GPU memory and augmented there (``expertlib.datasets.device``);
- the selection's feature path as the pipeline runs it (``selection.extract_features`` over several R50x1
  candidates, the task's JPEGs decoded by data workers): candidate-images per second;
- timm's model (same architecture, its own weights) on synthetic tensors at 224 px, eager and compiled;
- the selection-cost table at the paper's budget (``bench_paper_cost.cost_rows``) from the compiled bf16 rates.

Every rate is the steady state: fed training rows take the slope of the training loop's own clock
(``TrainResult.timeline``) after the warm-up steps; fed inference rows one evaluation pass (one DataLoader) timed over
a window of batches after the warm-up ones; the feature path the slope between two run lengths. Start-up (workers
forking, nvJPEG initialising, compiling, the first batch) never enters a rate. Columns: ``images_per_s``;
``warmup_s``, the time before the steady state beyond its rate (compilation, autotuning, start-up: what each process
pays once per graph); ``setup_s``, a fine-tune's one decode of its task; ``vs_timm`` (ours over
timm's synthetic row of the same kind) and ``vs_synthetic`` (a pipeline row over its synthetic twin); the goals
of issue #32 as ``goal`` and ``goal_met``. Rows are measured in order of the goals (the goals' rows first, then
the cheap eager rows, then the rest) and written as each finishes; with ``--budget-s`` the rows left when the
time is spent are written as "unmeasured".

Run on a GPU: ``python benchmarks/gpu_throughput.py [--out results/benchmarks] [--budget-s 240]`` writes
``gpu_throughput.csv`` and ``gpu_throughput_selection_cost.csv`` there (``results/benchmarks/gpu.csv`` is the
earlier, committed measurement, which this never rewrites). ``--smoke``: a tiny BiT-shaped model at tiny sizes,
2 steps, on whatever device there is, compiled with dynamo's cheap "eager" backend, into a temporary folder: a
check that every path runs, not a measurement."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import ROOT, steady_seconds
from PIL import Image

from expertlib.datasets.batches import ImageData
from expertlib.datasets.device import DeviceData
from expertlib.datasets.encoded import EncodedImageData
from expertlib.datasets.folders import read_image
from expertlib.models.resnet import ResNetV2Config, create_model
from expertlib.select.selection import extract_features
from expertlib.train.evaluation import network, predict
from expertlib.train.schedules import Schedule
from expertlib.train.training import TrainConfig, train
from expertlib.utils import runtime
from expertlib.utils.runtime import atomic_write_csv, machine_description

GOAL_UPSTREAM_IPS, GOAL_VS_TIMM, GOAL_INFERENCE_IPS, GOAL_FINETUNE_VS_SYNTHETIC = 4000, 0.97, 12000, 0.90


@dataclass(frozen=True)
class Sizes:
    """What one run measures at: the full GPU run or the smoke run."""

    ours: str | ResNetV2Config
    timm: Callable[[], torch.nn.Module]
    classes: int
    upstream: tuple[int, int]  # (precrop, crop) of upstream streaming: 224 px
    finetunes: dict[str, tuple[int, int]]  # BiT-HyperRule's two resolutions, 128 and 480 px
    batch: int
    batch_480: int  # a batch at 480 px (4.6x the pixels of 224)
    steps: int
    images: int  # JPEG files written for the pipelines
    image_size: tuple[int, int]  # (height, width) of those files, ImageNet-like


def full_sizes(batch: int, steps: int) -> Sizes:
    import timm

    return Sizes("R50x1", lambda: timm.create_model("resnetv2_50x1_bit", num_classes=1000), 1000, (256, 224),
                 {"128": (160, 128), "480": (512, 480)}, batch, max(8, batch // 2), steps, 1000, (375, 500))  # fmt: skip


def smoke_sizes() -> Sizes:
    from timm.layers import GroupNormAct, StdConv2d
    from timm.models.resnetv2 import ResNetV2 as TimmResNetV2

    tiny = ResNetV2Config(layers=(1, 1), widths=(64, 128), stem_width=32, norm_groups=8)
    timm_tiny = partial(TimmResNetV2, layers=[1, 1], channels=(64, 128), stem_chs=32, stem_type="fixed",
                        conv_layer=partial(StdConv2d, eps=1e-8), norm_layer=partial(GroupNormAct, num_groups=8),
                        num_classes=10)  # fmt: skip
    return Sizes(tiny, timm_tiny, 10, (40, 32), {"128": (20, 16), "480": (56, 48)}, 4, 2, 2, 12, (30, 40))


# -- the rows ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    model: str  # "ours" or "timm"
    mode: str  # "train" or "inference"
    compiled: bool
    bf16: bool
    feed: str  # "synthetic", "upstream pipeline" or "fine-tune pipeline"
    resolution: str  # "224", "128", "480"

    def key(self) -> tuple:
        return (self.model, self.mode, self.compiled, self.bf16, self.feed, self.resolution)


def all_rows() -> list[Row]:
    """Every row, in the order they are measured: the goals' rows, the cheap eager rows, then the rest."""
    rows = []
    for mode in ("train", "inference"):
        for compiled in (False, True):
            for bf16 in (True, False):
                rows.append(Row("timm", mode, compiled, bf16, "synthetic", "224"))
                for feed, res in (("synthetic", "224"), ("upstream pipeline", "224"), ("synthetic", "128"),
                                  ("fine-tune pipeline", "128"), ("synthetic", "480"), ("fine-tune pipeline", "480")):  # fmt: skip
                    rows.append(Row("ours", mode, compiled, bf16, feed, res))
                if mode == "inference" and bf16:
                    rows.append(Row("ours", mode, compiled, bf16, "selection features", "224"))
    first = [
        ("ours", "train", True, True, "synthetic", "224"),
        ("timm", "train", True, True, "synthetic", "224"),
        ("ours", "train", True, True, "upstream pipeline", "224"),
        ("ours", "inference", True, True, "synthetic", "224"),
        ("timm", "inference", True, True, "synthetic", "224"),
        ("ours", "inference", True, True, "selection features", "224"),
        ("ours", "train", True, True, "synthetic", "480"),
        ("ours", "train", True, True, "fine-tune pipeline", "480"),
        ("ours", "train", True, True, "synthetic", "128"),
        ("ours", "train", True, True, "fine-tune pipeline", "128"),
    ]
    rank = {k: i for i, k in enumerate(first)}
    # then eager before compiled (no compilation to wait for), 224 before the others, bf16 before fp32
    return sorted(
        rows, key=lambda r: (rank.get(r.key(), len(first)), r.compiled, r.resolution != "224", not r.bf16)
    )


# -- measuring ----------------------------------------------------------------------------------------------------
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _autocast(device: str, bf16: bool):
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)


def synthetic(model: torch.nn.Module, row: Row, crop: int, batch: int, steps: int, device: str) -> dict:
    """Images/s on random tensors already on ``device``; the first call's extra time as the warm-up."""
    model = model.to(device, memory_format=torch.channels_last).train(row.mode == "train")
    run = network(
        model, row.compiled, device
    )  # compiled as the pipeline compiles: the backbone, its head eager
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x = torch.randn(batch, 3, crop, crop, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        if row.mode == "train":
            with _autocast(device, row.bf16):
                loss = torch.nn.functional.cross_entropy(run(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        else:
            with torch.inference_mode(), _autocast(device, row.bf16):
                run(x)

    t0 = time.perf_counter()
    step()
    _sync(device)
    first = time.perf_counter() - t0
    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    per = (time.perf_counter() - t0) / steps
    return {"images_per_s": batch / per, "warmup_s": max(0.0, first - per)}


WARMUP_STEPS, READ_EVERY = 6, 3


def pipeline_train(
    model: torch.nn.Module, data, row: Row, batch: int, steps: int, workers: int, device: str
) -> dict:
    """Images/s of ``training.train`` fed by ``data`` (staged JPEGs, or a task held on the device) in the steady
    state: the slope of its own clock between the first read after :data:`WARMUP_STEPS` and the last
    (:func:`~_common.steady_seconds`); ``warmup_s``: the time to that read beyond the steady rate."""
    total = WARMUP_STEPS + max(READ_EVERY, steps)
    cfg = TrainConfig(Schedule(total, 0, 1e-4), batch_size=batch, device=device, amp=row.bf16,
                      compile=row.compiled, workers=workers, log_every=READ_EVERY)  # fmt: skip
    res = train(model, list(model.parameters()), data, cfg, num_classes=10, progress=False)
    per = steady_seconds(res.timeline, WARMUP_STEPS)
    at, t = next((s, t) for s, t in res.timeline if s >= WARMUP_STEPS)
    return {"images_per_s": batch / per, "warmup_s": max(0.0, t - at * per)}


class Cycled:
    """``data`` read ``times`` over (a long evaluation pass from a thousand files): for a window of batches."""

    def __init__(self, data, times: int) -> None:
        self.data, self.n = data, len(data)
        self.labels = np.tile(data.labels, times)
        self.precrop, self.crop = data.precrop, data.crop
        if hasattr(data, "stage"):  # staged data stays staged (decoded on the device)
            self.stage = lambda idx, *a, **k: data.stage(np.asarray(idx) % self.n, *a, **k)
            self.finish = data.finish

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices, *args, **kwargs):
        return self.data.batch(np.asarray(indices) % self.n, *args, **kwargs)


def pipeline_inference(model: torch.nn.Module, data, row: Row, batch: int, workers: int, device: str) -> dict:
    """Images/s of ``evaluation.predict`` over ``data`` in one pass (one DataLoader): the host waits for the device
    after batch :data:`WARMUP_STEPS` and after the last, and the rate is the window between."""
    model.eval()
    times = max(1, -(-(WARMUP_STEPS + 8) * batch // len(data)))
    long = Cycled(data, times)
    marks: dict[int, float] = {}
    last = -(-len(long) // batch) - 1

    def mark(i: int) -> None:
        if i in (WARMUP_STEPS, last):
            _sync(device)
            marks[i] = time.perf_counter()

    t0 = time.perf_counter()
    predict(model, long, batch, device, workers=workers, compile=row.compiled, amp=row.bf16, on_batch=mark)
    per = (marks[last] - marks[WARMUP_STEPS]) / (last - WARMUP_STEPS)
    return {
        "images_per_s": batch / per,
        "warmup_s": max(0.0, marks[WARMUP_STEPS] - t0 - (WARMUP_STEPS + 1) * per),
    }


FEATURE_REPEATS = 2


def feature_path(
    models: list[torch.nn.Module], data, row: Row, batch: int, workers: int, device: str
) -> dict:
    """Candidate-images/s of the selection's feature path as the pipeline runs it (``extract_features``: every
    candidate in one pass over a task's images, decoded by ``workers``): the slope between passes over half and
    all of the images, so the pass's start-up (workers, compiling) cancels. Each length takes the faster of
    :data:`FEATURE_REPEATS` passes: start-up noise only adds time, and on a busy CPU one slow half pass made the
    slope negative."""
    from expertlib.datasets.batches import subset
    from expertlib.models.candidates import from_model

    cands = [from_model(m, f"c{i}") for i, m in enumerate(models)]
    compile = True if row.compiled else False

    def run(n: int) -> float:
        part = subset(data, np.arange(n), data.labels[:n])
        t0 = time.perf_counter()
        extract_features(cands, part, batch, device, compile=compile, workers=workers)
        _sync(device)
        return time.perf_counter() - t0

    run(min(len(data), 2 * batch))  # compiles, autotunes
    half = len(data) // 2
    t_half = min(run(half) for _ in range(FEATURE_REPEATS))
    per = (min(run(len(data)) for _ in range(FEATURE_REPEATS)) - t_half) / (len(data) - half)
    return {"images_per_s": len(cands) / per, "warmup_s": max(0.0, t_half - half * per)}


def profile_summary(
    model: torch.nn.Module, data, row: Row, crop: int, batch: int, workers: int, device: str
) -> str:
    """The operators a few steps of ``row`` spend their time in (torch.profiler, the top 20 by device time on a GPU,
    by CPU time elsewhere), with the row's own feed: synthetic tensors, or its data through the pipeline."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=acts) as prof:
        if row.feed == "synthetic" or data is None:
            synthetic(model, row, crop, batch, 3, device)
        elif row.mode == "train":
            pipeline_train(model, data, row, batch, READ_EVERY, workers, device)
        else:
            pipeline_inference(model, data, row, batch, workers, device)
        _sync(device)
    key = "cuda_time_total" if device.startswith("cuda") else "cpu_time_total"
    head = (
        f"{row.model} {row.mode} {'compiled' if row.compiled else 'eager'} {row.feed} {row.resolution} px\n"
    )
    return head + prof.key_averages().table(sort_by=key, row_limit=20)


def missed_by(r) -> str:
    """How far a measured row is from its goal."""
    target = GOAL_UPSTREAM_IPS if r.goal.startswith(">= 4") else GOAL_INFERENCE_IPS
    if "synthetic" in r.goal:
        return f"missed: {r.vs_synthetic} of the synthetic rate against {GOAL_FINETUNE_VS_SYNTHETIC}"
    gap = f"missed: {float(r.images_per_s):,.0f} images/s, {100 * (1 - float(r.images_per_s) / target):.0f}% short"
    return gap + (f" (and {r.vs_timm}x timm)" if r.goal.startswith(">= 4") else "")


def write_jpegs(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """ImageNet-like JPEGs: smooth content with some texture, landscape and portrait (about 60-90 KB each at
    500 x 375), so that decoders work as on photographs."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.meshgrid(np.linspace(0, 4, h), np.linspace(0, 4, w), indexing="ij")
    paths = []
    for i in range(n):
        base = (
            110
            + 90
            * np.sin(yy * rng.uniform(0.5, 2) + rng.uniform(0, 6))[..., None]
            * np.cos(xx * rng.uniform(0.5, 2))[..., None]
        )
        a = np.clip(base * rng.uniform(0.4, 1, 3) + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        p = folder / f"{i:05d}.jpg"
        Image.fromarray(a if i % 4 else a.transpose(1, 0, 2)).save(p, quality=90)
        paths.append(p)
    return paths


# -- the run ------------------------------------------------------------------------------------------------------
def goal_of(row: Row) -> str:
    if row.key() == ("ours", "train", True, True, "upstream pipeline", "224"):
        return f">= {GOAL_UPSTREAM_IPS:,} images/s and >= {GOAL_VS_TIMM}x timm compiled"
    if row.key() in (("ours", "inference", True, True, "synthetic", "224"),
                     ("ours", "inference", True, True, "selection features", "224")):  # fmt: skip
        return f">= {GOAL_INFERENCE_IPS:,} images/s"
    if row.key() == ("ours", "train", True, True, "fine-tune pipeline", "480"):
        return f">= {GOAL_FINETUNE_VS_SYNTHETIC}x synthetic compiled"
    return ""


def judge(frame: pd.DataFrame, smoke: bool) -> pd.DataFrame:
    """Fill ``vs_timm``, ``vs_synthetic`` and ``goal_met`` from the measured rows."""
    ips = {tuple(getattr(r, k) for k in ("model", "mode", "compile", "precision", "feed", "resolution")): r.images_per_s
           for r in frame.itertuples() if isinstance(r.images_per_s, float)}  # fmt: skip
    vs_timm, vs_syn, met = [], [], []
    for r in frame.itertuples():
        here = r.images_per_s if isinstance(r.images_per_s, float) else None
        timm = ips.get(("timm", r.mode, r.compile, r.precision, "synthetic", "224"))
        syn = ips.get(("ours", r.mode, r.compile, r.precision, "synthetic", r.resolution))
        t = round(here / timm, 3) if (here and timm and r.model == "ours" and r.resolution == "224") else None
        s = round(here / syn, 3) if (here and syn and r.feed != "synthetic") else None
        vs_timm.append(t)
        vs_syn.append(s)
        if not r.goal:
            met.append("")
        elif smoke:
            met.append("smoke: not judged")
        elif here is None:
            met.append("unmeasured")
        elif r.goal.startswith(">= 4"):
            met.append("yes" if here >= GOAL_UPSTREAM_IPS and t is not None and t >= GOAL_VS_TIMM else "no")
        elif "synthetic" in r.goal:
            met.append("yes" if s is not None and s >= GOAL_FINETUNE_VS_SYNTHETIC else "no")
        else:
            met.append("yes" if here >= GOAL_INFERENCE_IPS else "no")
    return frame.assign(vs_timm=vs_timm, vs_synthetic=vs_syn, goal_met=met)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--smoke", action="store_true", help="tiny model, tiny sizes, 2 steps, into a temporary folder"
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="folder for the CSVs (default: results/benchmarks)"
    )
    ap.add_argument("--steps", type=runtime.positive_int, default=30, help="timed steps per row")
    ap.add_argument("--batch", type=runtime.positive_int, default=128, help="batch at 224 and 128 px")
    ap.add_argument(
        "--workers", type=runtime.non_negative_int, default=12, help="DataLoader workers reading files"
    )
    ap.add_argument(
        "--budget-s", type=float, default=0.0, help="stop measuring after this many seconds (0: none)"
    )
    args = ap.parse_args(argv)
    device = runtime.resolve_device("auto")
    if args.smoke:
        sizes, workers = smoke_sizes(), 0  # the worker path has its own tests (tests/test_encoded.py)
        runtime.COMPILE_BACKEND = (
            "eager"  # dynamo's tracing and guards without code generation: seconds, not minutes
        )
        out = args.out or Path(tempfile.mkdtemp(prefix="gpu_throughput_smoke_"))
    else:
        if not device.startswith("cuda"):
            raise SystemExit(
                "no CUDA device: this benchmark measures a GPU (use --smoke to check it runs here)"
            )
        torch.backends.cudnn.benchmark = True
        sizes, workers, out = (
            full_sizes(args.batch, args.steps),
            args.workers,
            args.out or ROOT / "results" / "benchmarks",
        )
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"{device} (smoke)"
    m = machine_description()
    machine = f"{m['cpu_count']} CPUs, torch {m['torch']}, {m['cuda'] or 'no GPU'}"
    start = time.monotonic()
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp) / "jpegs", sizes.images, sizes.image_size)
        labels = np.arange(len(paths)) % 10
        upstream = EncodedImageData(paths, labels, *sizes.upstream, flip=True)
        held: dict[str, tuple[DeviceData, float]] = {}
        for row in all_rows():
            crop = sizes.upstream[1] if row.resolution == "224" else sizes.finetunes[row.resolution][1]
            batch = sizes.batch_480 if row.resolution == "480" else sizes.batch
            record = {"gpu": gpu, "model": row.model,
                      "mode": row.mode, "compile": "compiled" if row.compiled else "eager",
                      "precision": "bf16" if row.bf16 else "fp32", "feed": row.feed, "resolution": row.resolution,
                      "crop": crop, "batch": batch, "images_per_s": "unmeasured", "warmup_s": None, "setup_s": None,
                      "goal": goal_of(row), "note": ""}  # fmt: skip
            if args.budget_s and time.monotonic() - start > args.budget_s:
                record["note"] = f"time budget of {args.budget_s:.0f} s spent"
            else:
                torch.manual_seed(0)
                model = (
                    sizes.timm()
                    if row.model == "timm"
                    else create_model(sizes.ours, num_classes=sizes.classes)
                )
                if row.feed == "synthetic":
                    got = synthetic(model, row, crop, batch, sizes.steps, device)
                elif (
                    row.feed == "selection features"
                ):  # the task's JPEGs at the upstream crop, decoded by workers
                    models = [model] + [create_model(sizes.ours, num_classes=sizes.classes) for _ in range(3)]
                    source = ImageData(
                        paths, labels, *sizes.upstream, True, read=lambda i: read_image(paths[i])
                    )
                    got = feature_path(models, source, row, sizes.batch, workers, device)
                elif row.feed == "upstream pipeline":
                    if row.mode == "train":
                        got = pipeline_train(model, upstream, row, batch, sizes.steps, workers, device)
                    else:
                        got = pipeline_inference(model, upstream, row, batch, workers, device)
                else:
                    if (
                        row.resolution not in held
                    ):  # a fine-tune's task, decoded once (per job in the pipeline)
                        precrop, c = sizes.finetunes[row.resolution]
                        source = ImageData(
                            paths, labels, precrop, c, True, read=lambda i: read_image(paths[i])
                        )
                        t0 = time.perf_counter()
                        data = DeviceData(source, device)
                        data.held(precrop), data.held(c)
                        _sync(device)
                        held[row.resolution] = data, time.perf_counter() - t0
                    data, setup = held[row.resolution]
                    if row.mode == "train":
                        got = pipeline_train(model, data, row, batch, sizes.steps, 0, device)
                    else:
                        got = pipeline_inference(model, data, row, batch, 0, device)
                    got["setup_s"] = round(setup, 2)
                record.update(images_per_s=round(got["images_per_s"], 1), warmup_s=round(got["warmup_s"], 2),
                              setup_s=got.get("setup_s"))  # fmt: skip
                del model
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
            records.append(record)
            frame = judge(pd.DataFrame(records), args.smoke).assign(machine=machine)
            if frame.goal_met.iloc[-1] == "no" and not (
                args.budget_s and time.monotonic() - start > args.budget_s
            ):
                name = f"profile_{len(records)}.txt"  # where a missed goal's time goes
                torch.manual_seed(0)
                model = create_model(sizes.ours, num_classes=sizes.classes)
                data = upstream if row.feed == "upstream pipeline" else held.get(row.resolution, (None,))[0]
                crop = sizes.upstream[1] if row.resolution == "224" else sizes.finetunes[row.resolution][1]
                (out / name).write_text(profile_summary(model, data, row, crop, sizes.batch, workers, device))
                records[-1]["note"] = f"{missed_by(frame.iloc[-1])}; where the time goes: {name}"
                frame = judge(pd.DataFrame(records), args.smoke).assign(machine=machine)
                del model
            atomic_write_csv(
                out / "gpu_throughput.csv", frame
            )  # after every row: a time-boxed run keeps them
            print({k: record[k] for k in ("model", "mode", "compile", "precision", "feed", "resolution",
                                          "images_per_s", "warmup_s")}, flush=True)  # fmt: skip
    write_selection_cost(frame, out, gpu)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_rows", 100):
        print(frame.drop(columns=["machine", "gpu"]).to_string(index=False))
    print(f"-> {out / 'gpu_throughput.csv'}")
    return out / "gpu_throughput.csv"


def write_selection_cost(frame: pd.DataFrame, out: Path, gpu: str) -> None:
    """The paper-budget selection costs from the compiled bf16 rates at 224 px (forward: inference; training: a
    training step), when both were measured."""
    from bench_paper_cost import cost_rows

    from expertlib.select.proxies import knn_accuracy

    def rate(mode: str) -> float | None:
        hit = frame[(frame["model"] == "ours") & (frame["mode"] == mode) & (frame["compile"] == "compiled")
                    & (frame["precision"] == "bf16") & (frame["feed"] == "synthetic") & (frame["resolution"] == "224")]  # fmt: skip
        value = hit["images_per_s"].iloc[0] if len(hit) else None
        return value if isinstance(value, float) else None

    forward, step = rate("inference"), rate("train")
    if forward is None or step is None:
        return
    feats = torch.nn.functional.normalize(torch.randn(1000, 2048), dim=1)  # kNN runs on the host's CPU
    labels = torch.randint(0, 10, (1000,)).numpy()
    t0 = time.perf_counter()
    for _ in range(3):
        knn_accuracy(feats, labels, k=5)
    costs = {"forward": 1 / forward, "train": 1 / step, "knn": (time.perf_counter() - t0) / 3}
    rows = pd.DataFrame(cost_rows(costs, f"on one {gpu} at 224 px, compiled, bf16"))
    atomic_write_csv(out / "gpu_throughput_selection_cost.csv", rows)


if __name__ == "__main__":
    main()
