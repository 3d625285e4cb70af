"""benchmarks/gpu_throughput.py at tiny sizes on a CPU (--smoke): every row's code path runs (ours and timm,
train and inference, eager and compiled, bf16 and fp32, synthetic and fed by each pipeline), the goals are
columns, a time budget leaves rows "unmeasured", and the committed GPU measurement is never touched."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_throughput.py"
COMMITTED = ROOT / "results" / "benchmarks" / "gpu.csv"


def _run(*args, check=True):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=check)  # fmt: skip


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.slow
def test_smoke_runs_every_row_and_leaves_the_committed_measurement_alone(tmp_path):
    before = _digest(COMMITTED)
    _run("--smoke", "--out", str(tmp_path))
    frame = pd.read_csv(tmp_path / "gpu_throughput.csv")
    assert (
        _digest(COMMITTED) == before and not (ROOT / "results" / "benchmarks" / "gpu_throughput.csv").exists()
    )
    kinds = {"mode": {"train", "inference"}, "compile": {"eager", "compiled"}, "precision": {"bf16", "fp32"}}
    ours = frame[frame.model == "ours"]
    for feed, res in (("synthetic", 224), ("upstream pipeline", 224), ("synthetic", 128),
                      ("fine-tune pipeline", 128), ("synthetic", 480), ("fine-tune pipeline", 480)):  # fmt: skip
        rows = ours[(ours.feed == feed) & (ours.resolution == res)]
        assert len(rows) == 8 and all(set(rows[k]) == v for k, v in kinds.items()), (feed, res)
    features = ours[ours.feed == "selection features"]  # the pipeline's own feature path, eager and compiled
    assert (
        len(features) == 2
        and set(features["compile"]) == {"eager", "compiled"}
        and set(features["mode"]) == {"inference"}
    )
    timm = frame[frame.model == "timm"]
    assert len(timm) == 8 and set(timm.feed) == {"synthetic"} and set(timm.resolution) == {224}
    assert (pd.to_numeric(frame.images_per_s) > 0).all() and len(frame) == 58
    goals = frame[frame.goal.notna()]
    assert len(goals) == 4 and set(goals.goal_met) == {"smoke: not judged"}
    pipeline = frame[frame.feed != "synthetic"]
    assert pipeline.vs_synthetic.notna().all() and ours[ours.resolution == 224].vs_timm.notna().all()
    assert frame[frame.feed == "fine-tune pipeline"].setup_s.notna().all()  # the task's one decode
    assert "fine-tune all 48" in (tmp_path / "gpu_throughput_selection_cost.csv").read_text()


def test_a_spent_time_budget_leaves_rows_unmeasured_and_a_cpu_run_is_refused(tmp_path):
    _run("--smoke", "--out", str(tmp_path), "--budget-s", "1e-9")
    frame = pd.read_csv(tmp_path / "gpu_throughput.csv")
    assert len(frame) == 58 and set(frame.images_per_s) == {"unmeasured"}
    assert frame.note.str.startswith("time budget").all()
    assert not (tmp_path / "gpu_throughput_selection_cost.csv").exists()
    refused = _run("--out", str(tmp_path / "cpu"), check=False)
    assert refused.returncode != 0 and "no CUDA device" in refused.stderr
    assert not (tmp_path / "cpu").exists()


def test_a_missed_goal_says_by_how_much_and_where_the_time_goes():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_throughput as G

    from expertlib.models.resnet import create_model

    row = pd.Series({"goal": G.goal_of(G.Row("ours", "train", True, True, "upstream pipeline", "224")),
                     "images_per_s": 1590.0, "vs_timm": 0.4, "vs_synthetic": 0.3})  # fmt: skip
    assert G.missed_by(row) == "missed: 1,590 images/s, 60% short (and 0.4x timm)"
    synthetic = G.Row("ours", "inference", False, False, "synthetic", "224")
    text = G.profile_summary(
        create_model(G.smoke_sizes().ours, num_classes=10), None, synthetic, 16, 2, 0, "cpu"
    )
    assert text.startswith("ours inference eager synthetic 224 px") and "conv" in text.lower()
