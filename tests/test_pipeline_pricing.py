"""GPU pricing: the rates every plan and job cost comes from, measured end to end where a GPU run wrote them."""

import csv

import pytest

from expertlib.pipeline import compute_plan as PL
from expertlib.pipeline.pricing import end_to_end_rates, gpu_rates, gpu_seconds

COLUMNS = ["gpu", "model", "mode", "compile", "precision", "feed", "resolution", "crop", "batch", "images_per_s",
           "warmup_s", "setup_s", "goal", "note"]  # fmt: skip


def write_throughput(path, train_224=4000.0, train_480=None, infer=12000.0, warm=60.0):
    """A gpu_throughput.csv as a GPU run of benchmarks/gpu_throughput.py writes it (here: the issue's goals)."""
    rows = [
        {"model": "ours", "mode": "train", "compile": "compiled", "precision": "bf16", "feed": "upstream pipeline",
         "resolution": "224", "crop": 224, "images_per_s": train_224, "warmup_s": warm},
        {"model": "ours", "mode": "train", "compile": "compiled", "precision": "bf16", "feed": "fine-tune pipeline",
         "resolution": "480", "crop": 480, "images_per_s": train_480 or "unmeasured", "warmup_s": 45.0},
        {"model": "ours", "mode": "inference", "compile": "compiled", "precision": "bf16", "feed": "upstream pipeline",
         "resolution": "224", "crop": 224, "images_per_s": infer, "warmup_s": 20.0},
        {"model": "timm", "mode": "train", "compile": "compiled", "precision": "bf16", "feed": "synthetic",
         "resolution": "224", "crop": 224, "images_per_s": 9999.0, "warmup_s": 30.0},
        {"model": "ours", "mode": "train", "compile": "eager", "precision": "fp32", "feed": "upstream pipeline",
         "resolution": "224", "crop": 224, "images_per_s": 1.0, "warmup_s": 0.0},
    ]  # fmt: skip
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows({**{c: "" for c in COLUMNS}, "gpu": "NVIDIA H200", **r} for r in rows)
    return path


def test_gpu_rates_from_the_measured_csv_or_the_fallback(tmp_path):
    measured = gpu_rates(throughput=tmp_path / "none.csv")
    assert measured["train"] == pytest.approx(1867.6) and "H100" in measured["source"]
    assert gpu_rates(tmp_path / "none.csv", tmp_path / "none.csv")["source"] == "assumed"


def test_end_to_end_rates_are_ours_compiled_in_bf16_fed_by_the_pipeline(tmp_path):
    path = write_throughput(tmp_path / "gpu_throughput.csv", train_480=900.0)
    rates = end_to_end_rates(path)
    assert rates["train_at"] == {224: 4000.0, 480: 900.0} and rates["inference_at"] == {224: 12000.0}
    assert rates["warmup_s"] == 60.0 and "end to end on NVIDIA H200" in rates["source"]
    # each resolution at its own measured rate, another by pixels from the nearest measured one
    assert gpu_seconds(900, 480, rates) == pytest.approx(1.0)
    assert gpu_seconds(4000, 224, rates) == pytest.approx(1.0)
    assert gpu_seconds(4000, 128, rates) == pytest.approx((128 / 224) ** 2)
    assert gpu_seconds(12000, 480, rates, "inference") == pytest.approx((480 / 224) ** 2)
    # no measured 224 px training rate: not an end-to-end measurement, the synthetic rates serve
    unmeasured = write_throughput(tmp_path / "u.csv", train_224="unmeasured")
    assert end_to_end_rates(unmeasured) is None and gpu_rates(throughput=unmeasured)[
        "train"
    ] == pytest.approx(1867.6)


def test_the_plan_prices_the_compile_warm_up_once_per_process_and_resolution(tmp_path):
    rates = gpu_rates(throughput=write_throughput(tmp_path / "t.csv"))
    table, _ = PL.published_plan("released", rates=rates)
    warm = table[table.stage == PL.WARMUP]
    assert set(warm.resolution) == {128, 384} and warm.gpu_hours.tolist() == pytest.approx([60 / 3600] * 2)
    assert (warm.hours_8gpu == warm.gpu_hours).all()  # each process compiles its own graphs


def test_at_the_issue_s_goal_rates_the_published_recipe_fits_48_gpu_hours(tmp_path):
    """What the speed work must reach (#32's goals: 4,000 images/s end to end at 224 px, 12,000 compiled
    inference): the released scale at BiT-HyperRule as published then fits 48 GPU-hours. At today's measured
    rates (eager fp32, results/benchmarks/gpu.csv) it does not: those hours are printed as they are."""
    goal = gpu_rates(throughput=write_throughput(tmp_path / "t.csv"))
    at_goal, _ = PL.published_plan("released", rates=goal)
    today, _ = PL.published_plan("released", rates=gpu_rates(throughput=tmp_path / "none.csv"))
    assert at_goal.iloc[-1].gpu_hours <= 48 < today.iloc[-1].gpu_hours
