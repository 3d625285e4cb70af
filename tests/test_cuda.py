"""CUDA behaviour, written so that it cannot rot: every test's body is a function of ``device`` and runs on
``cpu`` in `make test` (so an API change fails there too); only its ``cuda`` parameter, marked ``cuda``, needs a
GPU (`make gpu-check` runs those: ``pytest -m cuda tests/test_cuda.py``)."""

import warnings
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from PIL import Image

from expertlib.datasets.batches import ArrayData, ImageData
from expertlib.datasets.device import DeviceData, on_device
from expertlib.datasets.encoded import EncodedImageData
from expertlib.models.candidates import from_model
from expertlib.models.resnet import Pooled, create_model
from expertlib.train.evaluation import predict
from expertlib.train.schedules import scaled_hyperrule
from expertlib.train.training import TrainConfig, finetune, train
from expertlib.utils.parallel import single_thread

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
    here = predict(Pooled(c), data, 4, device, workers=1, compile=False, amp=False)
    assert (cpu - here).abs().max().item() < 1e-3 * cpu.abs().max().item()
    bf16 = predict(Pooled(c), data, 4, device, compile=False)  # the default on CUDA: bf16 autocast
    assert bf16.dtype == torch.float32 and (cpu - bf16).abs().max().item() < 5e-2 * cpu.abs().max().item()


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


# -- no host sync in the steady state (item 2 of #40) ----------------------------------------------------------
def _sync_mode(device, mode):
    if device == "cuda":
        torch.cuda.set_sync_debug_mode(mode)


def test_training_steps_never_wait_for_the_gpu(device, monkeypatch):
    """From the third step on, training on a task held on the device (the fine-tunes' path, mixup included) runs
    with CUDA's sync debug mode set to "error": no step copies, reads or waits, but the reads of the losses every
    log_every steps (allowed, and counted on CPU by tests/test_training.py); the evaluation after it neither."""
    import expertlib.train.evaluation as E
    import expertlib.train.training as T

    held = DeviceData(_data(32, 16, precrop=18), device)
    real_lr, real_read, real_host = T.learning_rate, T.LossLog.read, E._on_host

    def lr(schedule, step):
        _sync_mode(device, "error" if step >= 2 else "default")
        return real_lr(schedule, step)

    def read(self, ckpt=None, params=()):
        _sync_mode(device, "default")
        return real_read(self, ckpt, params)

    monkeypatch.setattr(T, "learning_rate", lr)
    monkeypatch.setattr(T.LossLog, "read", read)
    monkeypatch.setattr(E, "_on_host", lambda parts: (_sync_mode(device, "default"), real_host(parts))[1])
    try:
        m = create_model("tiny", num_classes=4)
        cfg = TrainConfig(scaled_hyperrule(8, 0.05), batch_size=8, device=device, mixup_alpha=0.2, log_every=4,
                          compile=False)  # fmt: skip
        with single_thread() if device == "cpu" else nullcontext():
            res = train(m, list(m.parameters()), held, cfg, 4, progress=False)
            _sync_mode(device, "error")
            out = predict(m.eval(), held, 12, device)  # 3 batches, one transfer at the end
    finally:
        _sync_mode(device, "default")
    assert np.isfinite(res.final_loss) and out.shape == (32, 4)


def test_a_held_stack_replays_its_step_as_a_cuda_graph_without_syncs(device, no_tf32, monkeypatch):
    """A stack over a task held on the GPU builds every step there and, after its warm-up steps, replays the step
    as one CUDA graph (on a CPU: eager, the same step). The graph's weights equal the eager stack's; the replays
    run under sync debug mode "error"."""
    import expertlib.train.stacked as S
    from expertlib.utils.runtime import WARMUP_STEPS, GraphedSteps

    held = DeviceData(_data(32, 16, precrop=18), device)
    real_run = GraphedSteps.run

    def run(self):  # strict from the second step on, but for the capture itself (which synchronises, once)
        capturing = self.enabled and self.graph is None and self.calls >= WARMUP_STEPS
        _sync_mode(device, "error" if self.calls >= 1 and not capturing else "default")
        try:
            real_run(self)
        finally:
            _sync_mode(device, "default")

    monkeypatch.setattr(GraphedSteps, "run", run)
    weights = []
    for graphs in (False, True):
        monkeypatch.setattr(S, "CUDA_GRAPHS", graphs)
        torch.manual_seed(0)
        nets = [create_model("tiny", num_classes=4) for _ in range(2)]
        cfgs = [TrainConfig(scaled_hyperrule(6, lr), batch_size=8, seed=s, device=device, amp=False, log_every=3,
                            mixup_alpha=0.2) for s, lr in ((0, 0.05), (1, 0.1))]  # fmt: skip
        with warnings.catch_warnings(), single_thread() if device == "cpu" else nullcontext():
            warnings.simplefilter("error", RuntimeWarning)  # a failed capture warns: fail here instead
            S.finetune_stacked(nets, held, cfgs, 4, progress=False)
        weights.append({i: _weights(n) for i, n in enumerate(nets)})
    assert max(_worst(weights[0][i], weights[1][i]) for i in range(2)) < 1e-5


def test_back_to_back_staged_batches_decode_as_pil_under_memory_pressure(device, tmp_path):
    """The same files decoded in back-to-back staged batches, one ahead of another in the decode thread, with most
    of the GPU's memory taken so that freed blocks are reused at once: every batch equals the first (no batch's
    images overwritten by the next one's decode) and agrees with PIL within a JPEG decoder's rounding."""
    from expertlib.train.batching import finished_ahead

    rng = np.random.default_rng(1)
    paths = []
    for i in range(16):
        h, w = 40 + 6 * (i % 4), 52 - 4 * (i % 3)  # mixed sizes: the batched resize runs
        yy, xx = np.meshgrid(np.linspace(0, 3, h), np.linspace(0, 3, w), indexing="ij")
        a = 127 + 100 * np.sin(yy + rng.uniform())[..., None] * np.cos(xx)[..., None] * rng.uniform(0.3, 1, 3)
        Image.fromarray(a.astype(np.uint8)).save(tmp_path / f"{i}.jpg", quality=90)
        paths.append(tmp_path / f"{i}.jpg")
    data = EncodedImageData(paths, np.zeros(16), 36, 32, True)
    want = ImageData(paths, np.zeros(16), 36, 32, True, read=data.read).batch(np.arange(16), False, None)
    hog = None
    if device == "cuda":
        torch.cuda.empty_cache()
        hog = torch.empty(int(torch.cuda.mem_get_info()[0] * 0.85), dtype=torch.uint8, device=device)
    try:
        staged = [data.stage(np.arange(16), False, torch.Generator()) for _ in range(16)]
        got = [
            x.cpu() for x in finished_ahead(iter(staged), lambda st: data.finish(st, device), device, depth=3)
        ]
    finally:
        del hog
    for x in got:
        assert torch.equal(x, got[0])
        diff = (x - want).abs() * 127.5
        assert diff.mean() < 2.0 and diff.max() <= 32, (diff.mean(), diff.max())


# last: it compiles with inductor on CUDA, the check's longest CUDA test
def test_compiled_training_and_evaluation_trace_one_graph_each_and_agree_with_eager(
    device, no_tf32, monkeypatch
):
    """Compiled: two jobs' fresh models train on one training graph and evaluate sets of several lengths on one
    evaluation graph, and agree with eager. (On a CPU, dynamo's cheap "eager" backend: the same tracing and
    guards without inductor's code generation, which takes minutes there.) "auto" compiles R50x1 alone
    (expertlib.train.evaluation.COMPILE_PAYS): here the small model is compiled by asking for it."""
    from torch._dynamo.utils import counters

    if device == "cpu":
        monkeypatch.setattr("expertlib.utils.runtime.COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    counters.clear()
    data = _data(48)
    runs = {}
    for compile in (False, True):
        for job in range(2):
            torch.manual_seed(job)
            m = create_model("tiny", num_classes=4)
            cfg = TrainConfig(
                scaled_hyperrule(3, 0.05), batch_size=16, device=device, amp=False, compile=compile
            )
            train(m, list(m.parameters()), data, cfg, 4, progress=False)
            m.eval()
            logits = [predict(m, _data(n), 16, device, compile=compile, amp=False) for n in (7, 16, 30)]
            runs[compile is not False, job] = _weights(m), logits
    assert counters["stats"]["unique_graphs"] == 2
    for job in range(2):
        (w_eager, l_eager), (w_comp, l_comp) = runs[False, job], runs[True, job]
        assert _worst(w_eager, w_comp) < 1e-3
        assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip(l_eager, l_comp, strict=True))
    torch._dynamo.reset()
