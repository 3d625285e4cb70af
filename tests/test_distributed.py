"""torchrun with 2 gloo processes on CPU reproduces the single-process training run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from expertlib.models.weights import load_model


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_single_process(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun, "torchrun ships with torch and must be on the venv's PATH"
    # A small learning rate keeps the comparison well conditioned: at lr 0.1 float rounding differences between
    # one all-reduced gradient and one summed gradient grow chaotically within a few steps.
    common = [
        "--scale",
        "smoke",
        "--steps",
        "6",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--device",
        "cpu",
        "--data-root",
        str(tmp_path / "data"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "expertlib.pipeline.torchrun", "generic", *common, "--out", str(tmp_path / "one.safetensors")],
                            capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "expertlib.pipeline.torchrun", "generic", *common,
                          "--out", str(tmp_path / "two.safetensors")], capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "on 2 process(es)" in ddp.stdout
    a, b = load_model(tmp_path / "one.safetensors"), load_model(tmp_path / "two.safetensors")
    worst = max(
        (x - y).abs().max().item()
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert worst < 1e-3, worst  # rounding only: a different batch split or augmentation gives ~0.3
    assert any(not torch.equal(v, torch.zeros_like(v)) for v in a.state_dict().values())


@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_stops_every_rank(tmp_path):
    """Under DDP a NaN on one process stops all of them with the named error (the ranks agree on the check),
    instead of one raising while the others wait forever at the next all-reduce."""
    script = tmp_path / "nan.py"
    script.write_text(
        "import sys, torch, torch.distributed as dist\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_training import _data\n"
        "from expertlib.models.resnet import create_model\n"
        "from expertlib.train.schedules import scaled_hyperrule\n"
        "from expertlib.train.training import NonFiniteLossError, TrainConfig, train\n"
        "dist.init_process_group('gloo')\n"
        "torch.manual_seed(0)\n"
        "net = create_model('tiny', num_classes=4)\n"
        "class Poisoned(torch.nn.Module):\n"
        "    def __init__(self, m):\n"
        "        super().__init__(); self.m = m\n"
        "    def forward(self, x):\n"
        "        out = self.m(x)\n"
        "        return out * float('nan') if dist.get_rank() == 1 else out\n"
        "model = Poisoned(net)\n"
        "cfg = TrainConfig(scaled_hyperrule(6, 0.05), batch_size=16, seed=0)\n"
        "try:\n"
        "    train(model, list(model.parameters()), _data(), cfg, 4, progress=False)\n"
        "    print('NO ERROR')\n"
        "except NonFiniteLossError as e:\n"
        "    print(f'rank {dist.get_rank()} stopped: {e}')\n"
    )
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(script)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert "rank 0 stopped" in proc.stdout and "rank 1 stopped" in proc.stdout, (
        proc.stdout + proc.stderr[-2000:]
    )
    assert "on at least one of 2 processes" in proc.stdout
