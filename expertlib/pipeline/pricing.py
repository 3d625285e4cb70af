"""What a GPU costs: the training and inference rates ``make gpu-check`` measured (R50x1 at 224 px,
``results/benchmarks/gpu.csv``), and the GPU seconds of a number of images at a resolution. Every job's cost and
every stage of the compute plan is priced here."""

from __future__ import annotations

import csv
from pathlib import Path

GPU_CSV = Path(__file__).resolve().parents[2] / "results" / "benchmarks" / "gpu.csv"
# R50x1 on one H100 at 224 px, images/s: what the GPU check measured (results/benchmarks/gpu.csv), used when
# that file has no rows
FALLBACK_RATES = {"train": 1882.2, "inference": 5195.5, "source": "assumed"}


def gpu_rates(path: str | Path | None = None) -> dict:
    """Training and inference images/s of R50x1 at 224 px from ``results/benchmarks/gpu.csv`` (the fp32 rows;
    bf16 measured no faster), and which GPU measured them."""
    path = Path(path) if path else GPU_CSV
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    pick = lambda mode: next((r for r in rows if r["mode"] == mode and r["precision"] == "fp32"  # noqa: E731
                              and r["feed"] == "synthetic"), None)  # fmt: skip
    train, infer = pick("train"), pick("inference")
    if not (train and infer):
        return FALLBACK_RATES
    return {"train": float(train["images_per_s"]), "inference": float(infer["images_per_s"]),
            "source": f"measured on {train['gpu']} ({path.name})"}  # fmt: skip


def gpu_seconds(images: int, crop: int, rates: dict, kind: str = "train") -> float:
    """Seconds of one GPU to train on (``kind="train"``) or evaluate ``images`` images at ``crop`` px: the rate
    measured at 224 px, scaled by pixels."""
    return images * (crop / 224) ** 2 / rates[kind]
