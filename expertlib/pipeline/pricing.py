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


THROUGHPUT_CSV = GPU_CSV.with_name("gpu_throughput.csv")
"""What ``benchmarks/gpu_throughput.py`` measured on a GPU: the model fed by the real pipeline (upstream streaming
at 224 px, fine-tunes at 128 and 480 px), compiled in bf16, beside timm. Written only by a GPU run."""


def gpu_rates(path: str | Path | None = None, throughput: str | Path | None = None) -> dict:
    """The images/s every plan is priced from, and which measurement they come from.

    Preferred: the end-to-end rates of ``gpu_throughput.csv`` (R50x1 compiled in bf16 and fed by the real data
    pipeline), per resolution for training and evaluation, with each compiled graph's warm-up; else the
    synthetic eager fp32 rates at 224 px of ``gpu.csv`` (bf16 measured no faster there), scaled by pixels to
    other resolutions; else :data:`FALLBACK_RATES`."""
    measured = end_to_end_rates(Path(throughput) if throughput else THROUGHPUT_CSV)
    if measured is not None:
        return measured
    path = Path(path) if path else GPU_CSV
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    pick = lambda mode: next((r for r in rows if r["mode"] == mode and r["precision"] == "fp32"  # noqa: E731
                              and r["feed"] == "synthetic"), None)  # fmt: skip
    train, infer = pick("train"), pick("inference")
    if not (train and infer):
        return FALLBACK_RATES
    return {"train": float(train["images_per_s"]), "inference": float(infer["images_per_s"]),
            "source": f"measured on {train['gpu']} ({path.name})"}  # fmt: skip


def end_to_end_rates(path: Path) -> dict | None:
    """Per-resolution rates of our compiled bf16 model fed by the real pipeline (``train_at`` / ``inference_at``:
    crop px -> images/s) and the largest compile warm-up in seconds, from a GPU run of
    ``benchmarks/gpu_throughput.py``; None unless the file holds a measured training rate at 224 px and an
    inference rate."""
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    ours = [r for r in rows if r.get("model") == "ours" and r.get("compile") == "compiled"
            and r.get("precision") == "bf16" and r.get("feed") != "synthetic" and _number(r.get("images_per_s"))]  # fmt: skip
    train = {int(r["crop"]): float(r["images_per_s"]) for r in ours if r["mode"] == "train"}
    infer = {int(r["crop"]): float(r["images_per_s"]) for r in ours if r["mode"] == "inference"}
    if 224 not in train or not infer:
        return None
    warm = [float(r["warmup_s"]) for r in ours if _number(r.get("warmup_s"))]
    return {"train": train[224], "inference": infer.get(224, max(infer.values())), "train_at": train,
            "inference_at": infer, "warmup_s": max(warm, default=0.0),
            "source": f"measured end to end on {ours[0]['gpu']} ({path.name})"}  # fmt: skip


def _number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def gpu_seconds(images: int, crop: int, rates: dict, kind: str = "train") -> float:
    """Seconds of one GPU to train on (``kind="train"``) or evaluate ``images`` images at ``crop`` px: at the rate
    measured at the nearest resolution (end to end, where measured per resolution), scaled by pixels."""
    at = rates.get(f"{kind}_at") or {224: rates[kind]}
    near = min(at, key=lambda px: (abs(px - crop), px))
    return images * (crop / near) ** 2 / at[near]


def warmup_seconds(rates: dict) -> float:
    """A compiled job's one-off warm-up (compilation) per process and resolution, where it was measured."""
    return float(rates.get("warmup_s", 0.0))
