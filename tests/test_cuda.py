"""CUDA behaviour, written so that it cannot rot: every test's body is a function of ``device`` and runs on
``cpu`` in `make test` (so an API change fails there too); only its ``cuda`` parameter, marked ``cuda``, needs a
GPU (`make gpu-check` runs those: ``pytest -m cuda tests/test_cuda.py``)."""

import numpy as np
import pytest
import torch
from PIL import Image

from expertlib.candidates import from_model
from expertlib.datasets.batches import ArrayData, ImageData
from expertlib.datasets.device import DeviceData, on_device
from expertlib.datasets.encoded import EncodedImageData
from expertlib.evaluation import predict
from expertlib.resnet import Pooled, create_model
from expertlib.schedules import scaled_hyperrule
from expertlib.training import TrainConfig, finetune, train

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda":
        assert torch.cuda.is_available(), (
            "the CUDA tests need a GPU: run them with `make gpu-check` on a GPU machine"
        )
    return request.param


@pytest.fixture
def no_tf32():
    """cuDNN convolutions default to TF32 (10-bit mantissa): R50x1 features then differ from CPU by about 1%.
    An fp32 comparison turns it off."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def _data(n=64, size=32, precrop=None):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    return ArrayData(images, np.arange(n) % 4, precrop or size + 4, size, True)


def _weights(m):
    return {k: v.detach().cpu() for k, v in m.state_dict().items()}


def _worst(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_fp32_training_matches_cpu(device, no_tf32):
    weights = []
    for d in ("cpu", device):
        torch.manual_seed(0)
        m = create_model("tiny", num_classes=4)
        cfg = TrainConfig(scaled_hyperrule(5, 0.01), batch_size=16, device=d, amp=False, compile=False)
        train(m, list(m.parameters()), _data(), cfg, 4, progress=False)
        weights.append(_weights(m))
    assert _worst(*weights) < 1e-3


def test_bf16_r50x1_steps_with_worker_fed_pinned_batches(device):
    torch.manual_seed(0)
    m = create_model("R50x1", num_classes=10)
    data = ArrayData(np.random.default_rng(1).integers(0, 255, (32, 40, 40, 3), dtype=np.uint8), np.arange(32) % 10,
                     40, 32, True)  # fmt: skip
    cfg = TrainConfig(
        scaled_hyperrule(2, 0.003), batch_size=8, device=device, amp=True, workers=2, compile=False
    )
    res = train(m, list(m.parameters()), data, cfg, 10, progress=False)
    assert np.isfinite(res.final_loss) and next(m.parameters()).device.type == device


def test_candidate_features_match_cpu(device, no_tf32):
    torch.manual_seed(0)
    c = from_model(create_model("R50x1", num_classes=0).eval())
    data = _data(6, 48)
    cpu = predict(Pooled(c), data, 4, "cpu", compile=False)
    here = predict(Pooled(c), data, 4, device, workers=1, compile=False)
    assert (cpu - here).abs().max().item() < 1e-3 * cpu.abs().max().item()


def test_compiled_training_and_evaluation_trace_one_graph_each_and_agree_with_eager(
    device, no_tf32, monkeypatch
):
    """Compiled by default on CUDA: two jobs' fresh models train on one training graph and evaluate sets of
    several lengths on one evaluation graph. (On a CPU, dynamo's cheap "eager" backend: the same tracing and
    guards without inductor's code generation, which takes minutes there.)"""
    from torch._dynamo.utils import counters

    if device == "cpu":
        monkeypatch.setattr("expertlib.runtime.COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    counters.clear()
    data = _data(48)
    runs = {}
    for compile in (False, "auto" if device == "cuda" else True):  # "auto": compiled on CUDA, eager on a CPU
        for job in range(2):
            torch.manual_seed(job)
            m = create_model("tiny", num_classes=4)
            cfg = TrainConfig(
                scaled_hyperrule(3, 0.05), batch_size=16, device=device, amp=False, compile=compile
            )
            train(m, list(m.parameters()), data, cfg, 4, progress=False)
            m.eval()
            logits = [predict(m, _data(n), 16, device, compile=compile) for n in (7, 16, 30)]
            runs[compile is not False, job] = _weights(m), logits
    assert counters["stats"]["unique_graphs"] == 2
    for job in range(2):
        (w_eager, l_eager), (w_comp, l_comp) = runs[False, job], runs[True, job]
        assert _worst(w_eager, w_comp) < 1e-3
        assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip(l_eager, l_comp, strict=True))
    torch._dynamo.reset()


def test_data_held_on_the_device_batches_as_the_cpu_path(device):
    source = _data(24, 32, precrop=36)  # resized per batch (32 -> 36), then cropped and flipped
    held = DeviceData(source, device)
    idx = np.arange(3, 19)
    for step in range(3):
        a = source.batch(idx, True, torch.Generator().manual_seed(step))
        b = held.batch(idx, True, torch.Generator().manual_seed(step))
        assert b.device.type == device and torch.allclose(a, b.cpu(), atol=1e-5)
    assert torch.allclose(source.batch(idx, False, None), held.batch(idx, False, None).cpu(), atol=1e-5)


def test_finetune_holds_its_task_on_a_gpu_and_trains_as_on_cpu(device, no_tf32):
    source = _data(32)
    assert isinstance(on_device(source, device), DeviceData) == (device == "cuda")
    weights = []
    for d in ("cpu", device):
        torch.manual_seed(0)
        m = create_model("tiny", num_classes=4)
        cfg = TrainConfig(scaled_hyperrule(4, 0.01), batch_size=16, device=d, amp=False, mixup_alpha=0.2,
                          compile=False)  # fmt: skip
        finetune(m, source, cfg, 4, progress=False)
        weights.append(_weights(m))
    assert _worst(*weights) < 1e-3


def test_streamed_jpegs_decode_on_the_device_as_pil_decodes_them(device, tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        h, w = 40 + 4 * (i % 3), 48 - 2 * (i % 4)
        yy, xx = np.meshgrid(np.linspace(0, 3, h), np.linspace(0, 3, w), indexing="ij")
        a = 127 + 100 * np.sin(yy + rng.uniform())[..., None] * np.cos(xx)[..., None] * rng.uniform(0.3, 1, 3)
        Image.fromarray(a.astype(np.uint8)).save(tmp_path / f"{i}.jpg", quality=90)
        paths.append(tmp_path / f"{i}.jpg")
    data = EncodedImageData(paths, np.zeros(12), 36, 32, True)
    reference = ImageData(paths, np.zeros(12), 36, 32, True, read=data.read)
    idx = np.arange(12)
    for train_ in (True, False):
        got = data.finish(data.stage(idx, train_, torch.Generator().manual_seed(2)), device)
        want = reference.batch(idx, train_, torch.Generator().manual_seed(2))
        assert got.device.type == device
        diff = (
            got.cpu() - want
        ).abs() * 127.5  # levels of 255: nvJPEG's IDCT and upsampling are not libjpeg's
        assert diff.mean() < 2.0 and diff.max() <= 32, (diff.mean(), diff.max())
