"""Decode-and-augment throughput of the paper-scale data pipeline: ImageNet-sized JPEG files read, resized
to the precrop, randomly cropped and flipped (BiT-HyperRule) into training batches, by 0 (in the training
process), 1, 2, ... worker processes. A GPU needs as many images per second as it trains on (R50x1 at 224 px:
see results/benchmarks/gpu.csv); this says how many workers feed it. Writes
results/benchmarks/data_pipeline.csv. Run: .venv/bin/python benchmarks/bench_data_pipeline.py [--workers 0 1 2]"""

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import write
from PIL import Image

from expertlib.datasets.batches import ImageData
from expertlib.datasets.folders import read_image
from expertlib.train.batching import StepBatches, batches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(256):  # ImageNet-like: about 400 x 350 JPEGs of natural-image statistics
            img = rng.integers(0, 255, (44, 50, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).resize((400, 350 + i % 50), Image.BICUBIC).save(
                buf, format="JPEG", quality=90
            )
            p = Path(tmp) / f"{i:05d}.jpg"
            p.write_bytes(buf.getvalue())
            paths.append(p)
        for precrop, crop in ((256, 224), (160, 128)):
            data = ImageData(
                paths, np.zeros(len(paths)), precrop, crop, True, read=lambda i: read_image(paths[i])
            )
            for workers in args.workers:
                items = StepBatches(data, args.batch, 0, 0, args.batches + 2)
                feed = iter(batches(items, workers, False, 2))
                next(feed), next(feed)  # start-up and the first prefetch are not steady state
                t0 = time.perf_counter()
                n = sum(x.shape[0] for _, x, _, _ in feed)
                secs = time.perf_counter() - t0
                rows.append({"precrop": precrop, "crop": crop, "workers": workers, "batch": args.batch,
                             "images_per_s": round(n / secs, 1), "cpu_cores": os.cpu_count()})  # fmt: skip
                print(rows[-1])
    write("data_pipeline", rows)


if __name__ == "__main__":
    main()
