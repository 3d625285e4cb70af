"""For a machine with a GPU, side by side in one run, BiT R50x1 at 224 px:
- training and inference images/s, bf16 autocast vs fp32, fed by synthetic tensors already on the GPU vs by the
  data pipeline (JPEG files decoded and augmented by worker processes into pinned memory, as the paper scale
  trains);
- feature extraction, ours (standardised weights reused, as ``training.predict`` runs) vs timm's ResNetV2 with
  the same weights and eps, channels_last, fp32 and bf16: the parity goal of >= 1.0x;
- the selection-cost table at the paper's budget (``bench_paper_cost.cost_rows``) from the per-image costs
  measured here: bf16 features for kNN, a bf16 training step for fine-tuning and DAT.
Writes results/benchmarks/gpu.csv and selection_cost_paper_gpu.csv, each with the card's name; `print_plan` turns
the bf16 training rate into GPU-hour estimates.
Run: python benchmarks/gpu_throughput.py [--steps 60] [--batch 128] [--workers 8]"""

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import write
from bench_models import timm_twin
from bench_paper_cost import cost_rows
from PIL import Image

from expertlib.datasets.batches import ImageData
from expertlib.datasets.folders import read_image
from expertlib.proxies import knn_accuracy
from expertlib.resnet import create_model, pooled_features, reuse_standardized_weights
from expertlib.schedules import Schedule
from expertlib.training import StepBatches, TrainConfig, batches


def _jpegs(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):  # ImageNet-like sizes: about 400 x 350 JPEGs
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (350 + i % 50, 400, 3), dtype=np.uint8)).save(buf, format="JPEG")
        p = folder / f"{i:05d}.jpg"
        p.write_bytes(buf.getvalue())
        paths.append(p)
    return paths


def measure(train: bool, amp: bool, steps: int, batch: int, feed=None, compiled: bool = False) -> float:
    torch.manual_seed(0)
    model = create_model("R50x1", num_classes=1000).cuda().to(memory_format=torch.channels_last)
    model.train(train)
    if compiled:  # the compile option (TrainConfig.compile); compilation happens in the warm-up steps
        model = torch.compile(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device="cuda")
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast("cuda", enabled=False)
    source = iter(feed) if feed is not None else None
    warm = 10
    for i in range(steps + warm):
        if i == warm:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        if source is not None:
            _, xb, yb, _ = next(source)
            x, y = xb.cuda(non_blocking=True), yb.cuda(non_blocking=True) % 1000
        with ctx, torch.set_grad_enabled(train):
            out = model(x)
            if train:
                loss = torch.nn.functional.cross_entropy(out.float(), y)
        if train:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def cuda_seconds(fn, steps: int, warm: int = 5) -> float:
    """Mean seconds per call of ``fn`` on the GPU after ``warm`` calls."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def feature_rows(name: str, steps: int, batch: int) -> list[dict]:
    """Features of R50x1 at 224 px, ours vs timm's twin, fp32 and bf16, interleaved per precision."""
    torch.manual_seed(0)
    ours = create_model("R50x1", num_classes=0).eval().cuda().to(memory_format=torch.channels_last)
    theirs = timm_twin(ours).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)

    def run_ours() -> None:
        with reuse_standardized_weights():
            pooled_features(ours, x)

    def run_timm() -> None:
        theirs.forward_head(theirs.forward_features(x), pre_logits=True)

    rows = []
    for amp in (False, True):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            speed = {}
            for _ in range(2):  # ours, timm, ours, timm: the best of two rounds each
                for who, fn in (("ours", run_ours), ("timm", run_timm)):
                    speed[who] = max(speed.get(who, 0.0), batch / cuda_seconds(fn, steps))
        rows.append({"gpu": name, "mode": "features ours vs timm", "precision": "bf16" if amp else "fp32",
                     "feed": "synthetic", "batch": batch, "images_per_s": round(speed["ours"], 1),
                     "timm_images_per_s": round(speed["timm"], 1),
                     "ours_over_timm": round(speed["ours"] / speed["timm"], 3)})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark needs a GPU")
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(0)
    rows = []
    for train in (True, False):
        for amp in (False, True):
            ips = measure(train, amp, args.steps, args.batch)
            rows.append({"gpu": name, "mode": "train" if train else "inference", "precision": "bf16" if amp else "fp32",
                         "feed": "synthetic", "batch": args.batch, "images_per_s": round(ips, 1)})  # fmt: skip
    for amp in (False, True):  # the compile option against the eager rows above (goal: 1.5x eager training)
        ips = measure(True, amp, args.steps, args.batch, compiled=True)
        rows.append({"gpu": name, "mode": "train", "precision": "bf16" if amp else "fp32",
                     "feed": "synthetic, torch.compile", "batch": args.batch, "images_per_s": round(ips, 1)})  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        paths = _jpegs(Path(tmp), 512)
        data = ImageData(paths, np.arange(len(paths)), 256, 224, True, read=lambda i: read_image(paths[i]))
        cfg = TrainConfig(Schedule(args.steps + 10, 1, 0.003), batch_size=args.batch)
        feed = batches(StepBatches(data, cfg.batch_size, 0, 0, args.steps + 10), args.workers, True, 4)
        ips = measure(True, True, args.steps, args.batch, feed)
        rows.append({"gpu": name, "mode": "train", "precision": "bf16", "feed": f"data pipeline, {args.workers} workers",
                     "batch": args.batch, "images_per_s": round(ips, 1)})  # fmt: skip
    rows += feature_rows(name, args.steps, 2 * args.batch)
    bf16 = next(r["images_per_s"] for r in rows if r["mode"] == "train" and r["precision"] == "bf16")
    for r in rows:  # the columns gpu_hours reads, on every row
        r["bf16_images_per_s"] = bf16
    write("gpu", rows)
    features = next(
        r["images_per_s"] for r in rows if r["mode"].startswith("features") and r["precision"] == "bf16"
    )
    feats = torch.nn.functional.normalize(torch.randn(1000, 2048), dim=1)  # kNN runs on the host's CPU
    labels = torch.randint(0, 10, (1000,)).numpy()
    knn = min(cuda_seconds(lambda: knn_accuracy(feats, labels, k=5), 5) for _ in range(3))
    costs = {"forward": 1 / features, "train": 1 / bf16, "knn": knn}
    write("selection_cost_paper_gpu", cost_rows(costs, f"on one {name} at 224 px, bf16, batch {args.batch}"))


if __name__ == "__main__":
    main()
