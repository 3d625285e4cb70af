"""CUDA behaviour, run by `make gpu-check` on a machine with a GPU (deselected by `make test`, which runs on CPU)."""

import numpy as np
import pytest
import torch

from expertlib.candidates import from_model
from expertlib.datasets.batches import ArrayData
from expertlib.resnet import create_model
from expertlib.schedules import scaled_hyperrule
from expertlib.training import TrainConfig, predict, train

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def _needs_cuda():
    assert torch.cuda.is_available(), (
        "the CUDA tests need a GPU: run them with `make gpu-check` on a GPU machine"
    )


def _data(n=64, size=32):
    rng = np.random.default_rng(0)
    return ArrayData(
        rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 4, size + 4, size, True
    )


def test_fp32_training_on_cuda_matches_cpu():
    weights = []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        m = create_model("tiny", num_classes=4)
        cfg = TrainConfig(scaled_hyperrule(5, 0.01), batch_size=16, device=device, amp=False)
        train(m, list(m.parameters()), _data(), cfg, 4, progress=False)
        weights.append({k: v.detach().cpu() for k, v in m.state_dict().items()})
    worst = max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0])
    assert worst < 1e-3, worst


def test_bf16_r50x1_steps_with_worker_fed_pinned_batches():
    torch.manual_seed(0)
    m = create_model("R50x1", num_classes=10)
    data = ArrayData(
        np.random.default_rng(1).integers(0, 255, (64, 72, 72, 3), dtype=np.uint8),
        np.arange(64) % 10,
        72,
        64,
        True,
    )
    cfg = TrainConfig(scaled_hyperrule(4, 0.003), batch_size=16, device="cuda", amp=True, workers=2)
    res = train(m, list(m.parameters()), data, cfg, 10, progress=False)
    assert np.isfinite(res.final_loss) and next(m.parameters()).is_cuda


@pytest.fixture
def no_tf32():
    """cuDNN convolutions default to TF32 (10-bit mantissa): R50x1 features then differ from CPU by about 1%.
    An fp32 comparison turns it off."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_candidate_features_on_cuda_match_cpu(no_tf32):
    torch.manual_seed(0)
    c = from_model(create_model("R50x1", num_classes=0).eval())
    data = _data(8, 64)
    cpu = predict(c.features, data, 8, "cpu")
    c.cuda()
    gpu = predict(c.features, data, 8, "cuda", workers=1)
    assert (cpu - gpu).abs().max().item() < 1e-3 * cpu.abs().max().item()
