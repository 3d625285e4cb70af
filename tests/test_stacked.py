"""The stacked path against separate runs: in float64 on CPU the same weights, losses and predictions."""

import copy

import numpy as np
import pytest
import torch

from expertlib.models.adapters import AdapterConfig, AdapterExperts
from expertlib.models.resnet import create_model
from expertlib.train.evaluation import predicted_classes
from expertlib.train.schedules import Schedule, scaled_hyperrule
from expertlib.train.stacked import (
    StackError,
    finetune_stacked,
    predicted_classes_stacked,
    stack_key,
    train_stacked,
)
from expertlib.train.training import ArrayData, NonFiniteLossError, TrainConfig, finetune, train
from expertlib.utils.parallel import single_thread

TOL = 1e-10


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread, as the pipeline's fine-tunes run (expertlib.utils.parallel): fast on a busy 2-core
    machine."""
    with single_thread():
        yield


class Float64Data:
    """An ArrayData whose batches are float64, for float64 models."""

    def __init__(self, data: ArrayData) -> None:
        self.data, self.labels, self.crop = data, data.labels, data.crop

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, indices, train, generator, part=None):
        return self.data.batch(indices, train, generator, part).double()


def _data(n=40, classes=4, seed=0, flip=True):
    """16-px images (the tiny network is convolutional: a quarter of 32 px's work) with a bright quadrant per
    class, cropped from 18 px: float64 batches."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 60, (n, 16, 16, 3), dtype=np.uint8)
    for c in range(classes):
        images[labels == c, (c // 2) * 8 : (c // 2) * 8 + 8, (c % 2) * 8 : (c % 2) * 8 + 8] += 150
    return Float64Data(ArrayData(images, labels, 18, 16, flip=flip))


def _base(seed=0, classes=4):
    """A generic tiny model (a stand-in for B or B+extra) with a fresh zero ``classes``-way head, in float64."""
    torch.manual_seed(seed)
    return create_model("tiny", num_classes=classes).double()


def _adapter_bank():
    bank = AdapterExperts(
        _base(7, classes=0), AdapterConfig(placement="unit_end", width=1.0, train_norms=True)
    )
    for i, name in enumerate(("a", "b")):
        expert = bank.add_expert(name, num_classes=0)
        torch.manual_seed(10 + i)
        with torch.no_grad():  # a trained expert's adapters and norms are not B's: make each its own
            for p in expert.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return bank


def _distance(a, b) -> float:
    """The largest difference between two models' corresponding parameters."""
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


def _cfgs(lrs, seeds, steps=4, **kw):
    return [TrainConfig(scaled_hyperrule(steps, lr), batch_size=8, seed=s, log_every=1, **kw)
            for lr, s in zip(lrs, seeds, strict=True)]  # fmt: skip


def _assert_same_runs(nets, data, cfgs, classes=4):
    """Stacked fine-tunes of copies of ``nets`` against separate ones: weights, losses, metrics within TOL."""
    apart = [copy.deepcopy(n) for n in nets]
    together = [copy.deepcopy(n) for n in nets]
    ones = [finetune(m, data, c, classes, progress=False) for m, c in zip(apart, cfgs, strict=True)]
    stacked = finetune_stacked(together, data, cfgs, classes, progress=False)
    for a, b, ra, rb in zip(apart, together, ones, stacked, strict=True):
        for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
            assert (pa - pb).abs().max().item() <= TOL, name
        assert abs(ra.final_loss - rb.final_loss) <= TOL and ra.steps == rb.steps
        assert [m["step"] for m in ra.metrics] == [m["step"] for m in rb.metrics]
        assert np.allclose([m["loss"] for m in ra.metrics], [m["loss"] for m in rb.metrics], rtol=0, atol=TOL)
        assert [m["lr"] for m in ra.metrics] == [m["lr"] for m in rb.metrics]
    # the models trained: each moved, and each differently (its own seed and learning rate)
    assert _distance(nets[0], together[0]) > 1e-3
    assert all(_distance(together[0], t) > 1e-4 for t in together[1:])
    return together


def test_b_like_models_equal_separate_runs_in_float64():
    nets = [_base(0), _base(0), _base(1)]  # B twice (two seeds), and another generic model (B+extra-like)
    _assert_same_runs(nets, _data(), _cfgs((0.05, 0.1, 0.2), (0, 1, 2)))


def test_adapter_expert_transfer_models_equal_separate_runs_in_float64():
    bank = _adapter_bank()
    nets = [bank.transfer_model(e, 4).double() for e in ("a", "b", "a")]
    _assert_same_runs(nets, _data(), _cfgs((0.1, 0.1, 0.03), (3, 4, 5)))


def test_micro_batches_mixup_sigmoid_loss_weight_decay_and_own_data_equal_separate_runs():
    nets = [_base(0), _base(2)]
    cfgs = _cfgs((0.1, 0.05), (0, 1), micro_batch=4, mixup_alpha=0.2, loss="sigmoid", weight_decay=1e-3)
    apart = [copy.deepcopy(n) for n in nets]
    datas = [_data(seed=0), _data(seed=1)]  # each model its own task at the same resolution
    ones = [finetune(m, d, c, 4, progress=False) for m, d, c in zip(apart, datas, cfgs, strict=True)]
    nets[1].eval()
    stacked = finetune_stacked(nets, datas, cfgs, 4, progress=False)
    assert nets[0].training and not nets[1].training  # each back in the mode it came in
    for a, b, ra, rb in zip(apart, nets, ones, stacked, strict=True):
        assert _distance(a, b) <= TOL
        assert abs(ra.final_loss - rb.final_loss) <= TOL


def test_stacked_predictions_equal_separate_ones():
    bank = _adapter_bank()
    nets = [bank.transfer_model(e, 4).double() for e in ("a", "b")]
    finetune_stacked(nets, _data(), _cfgs((0.2, 0.1), (0, 1), steps=6), 4, progress=False)
    test = _data(n=24, seed=3, flip=False)
    together = predicted_classes_stacked(nets, test, batch_size=10)
    apart = np.stack([predicted_classes(n, test, batch_size=10) for n in nets])
    assert together.shape == (2, 24) and np.array_equal(together, apart)
    assert len(np.unique(apart)) > 1  # trained heads: not the fresh zero head's constant class


def test_float32_stack_trains_each_model_close_to_its_separate_run():
    nets = [create_model("tiny", num_classes=4) for _ in range(2)]
    data = _data().data  # the float32 batches every scale trains on
    cfgs = _cfgs((0.1, 0.05), (0, 1), steps=3)
    apart = [copy.deepcopy(n) for n in nets]
    for m, c in zip(apart, cfgs, strict=True):
        finetune(m, data, c, 4, progress=False)
    finetune_stacked(nets, data, cfgs, 4, progress=False)
    for a, b in zip(apart, nets, strict=True):
        assert all(p.dtype == torch.float32 for p in b.parameters())
        assert _distance(a, b) < 1e-3


def test_what_cannot_stack_is_refused_naming_the_problem():
    bank = _adapter_bank()
    b = _base(0)
    adapted = bank.transfer_model("a", 4).double()
    data = _data()
    with pytest.raises(StackError, match="another structure"):
        finetune_stacked([b, adapted], data, _cfgs((0.1, 0.1), (0, 1)), 4, progress=False)
    other_head = _base(0, classes=5)
    with pytest.raises(StackError, match="another structure"):
        finetune_stacked([b, other_head], data, _cfgs((0.1, 0.1), (0, 1)), 4, progress=False)
    steps = _cfgs((0.1,), (0,), steps=4) + _cfgs((0.1,), (1,), steps=6)
    with pytest.raises(StackError, match="steps must be equal"):
        finetune_stacked([b, copy.deepcopy(b)], data, steps, 4, progress=False)
    batch = [_cfgs((0.1,), (0,))[0], TrainConfig(scaled_hyperrule(4, 0.1), batch_size=16, seed=1)]
    with pytest.raises(StackError, match="batch_size 16 differs"):
        finetune_stacked([b, copy.deepcopy(b)], data, batch, 4, progress=False)
    with pytest.raises(StackError, match="compile"):
        finetune_stacked(
            [b, copy.deepcopy(b)], data, _cfgs((0.1, 0.1), (0, 1), compile=True), 4, progress=False
        )
    with pytest.raises(StackError, match="got 2 configs"):
        finetune_stacked([b], data, _cfgs((0.1, 0.1), (0, 1)), 4, progress=False)
    assert stack_key(b, _cfgs((0.1,), (0,))[0], data) == stack_key(
        copy.deepcopy(b), _cfgs((0.3,), (5,))[0], data
    )
    assert stack_key(b, _cfgs((0.1,), (0,))[0], data) != stack_key(adapted, _cfgs((0.1,), (0,))[0], data)


def test_training_only_some_parameters_equals_separate_train_calls():
    nets = [_base(0), _base(1)]
    heads = [list(n.head.parameters()) for n in nets]  # the backbone frozen: a linear-probe-like training
    for n in nets:
        n.requires_grad_(False)
        n.head.requires_grad_(True)
    apart = [copy.deepcopy(n) for n in nets]
    cfgs = _cfgs((0.1, 0.2), (0, 1))
    ones = [train(m, list(m.head.parameters()), _data(), c, 4, progress=False)
            for m, c in zip(apart, cfgs, strict=True)]  # fmt: skip
    stacked = train_stacked(nets, heads, _data(), cfgs, 4, progress=False)
    for a, b, ra, rb in zip(apart, nets, ones, stacked, strict=True):
        assert _distance(a, b) <= TOL and abs(ra.final_loss - rb.final_loss) <= TOL
        assert torch.equal(a.stem.conv.weight, b.stem.conv.weight)  # frozen: untouched
    assert nets[0].head.fc.weight.abs().max() > 0


@pytest.mark.parametrize("flip, random_crop", [(True, True), ("per example", False)])
def test_a_task_held_on_the_device_trains_the_stack_from_draws_made_once_with_the_same_batches(
    monkeypatch, flip, random_crop
):
    """On a GPU ``finetune_stacked`` holds the task there (``DeviceData``) and builds every step's K batches there
    from draws made when the stack starts (no DataLoader, whatever ``workers`` says: a worker cannot touch device
    memory); on CPU that path gives the bits of the ordinary one, mixup included, with a task's random crop off
    and a per-example flip rule too."""
    import expertlib.train.stacked as S
    from expertlib.datasets.device import DeviceData

    asked, real = [], S.batches
    monkeypatch.setattr(
        S, "batches", lambda items, workers, *a: asked.append(workers) or real(items, workers, *a)
    )
    data = ArrayData(np.random.default_rng(0).integers(0, 255, (32, 32, 32, 3), dtype=np.uint8),
                     np.arange(32) % 4, 36, 32, np.arange(32) % 3 > 0 if flip == "per example" else flip,
                     random_crop)  # fmt: skip
    weights, results = [], []
    each = [
        DeviceData(data, "cpu") for _ in range(3)
    ]  # one held set per model: the ordinary path, in-process
    for held, workers in ((data, 0), (DeviceData(data, "cpu"), 2), (each, 2)):
        torch.manual_seed(0)
        ms = [create_model("tiny", num_classes=4) for _ in range(3)]
        cfgs = [TrainConfig(scaled_hyperrule(3, lr), batch_size=8, seed=s, workers=workers, mixup_alpha=0.2,
                            log_every=2) for s, lr in ((0, 0.1), (1, 0.05), (2, 0.1))]  # fmt: skip
        results.append(finetune_stacked(ms, held, cfgs, 4, progress=False))
        weights.append([p.detach().clone() for m in ms for p in m.parameters()])
    for other in weights[1:]:
        assert all(torch.equal(a, b) for a, b in zip(weights[0], other, strict=True))
    assert (
        [r.metrics for r in results[0]] == [r.metrics for r in results[1]] == [r.metrics for r in results[2]]
    )
    assert asked == [0, 0]  # the ordinary path's feeds in this process (workers cannot touch device memory)


def test_a_held_stack_equals_separate_runs_in_float64():
    """The held path's draws, gathered and mixed for K models at once, are each model's own: in float64 the stack
    equals separate fine-tunes on the same held task to rounding."""
    from expertlib.datasets.device import DeviceData

    held = DeviceData(_data(flip=True).data, "cpu")
    nets = [_base(0), _base(1)]
    cfgs = _cfgs((0.1, 0.05), (0, 1), mixup_alpha=0.2, micro_batch=4)
    apart = [copy.deepcopy(n) for n in nets]
    ones = [finetune(m, _data(), c, 4, progress=False) for m, c in zip(apart, cfgs, strict=True)]
    stacked = finetune_stacked(nets, held, cfgs, 4, progress=False)
    for a, b, ra, rb in zip(apart, nets, ones, stacked, strict=True):
        assert _distance(a, b) <= TOL and abs(ra.final_loss - rb.final_loss) <= TOL


def test_a_non_finite_loss_stops_the_stack_at_the_next_read_naming_the_model_and_step():
    """Losses stay on the device and are read every log_every steps: an exploding learning rate stops the stack at
    the first read after it, naming the model and the first step whose loss was not finite."""
    nets = [create_model("tiny", num_classes=4) for _ in range(2)]
    cfgs = [TrainConfig(Schedule(12, 0, 0.01, boundaries=(2,), decay=1e12), batch_size=8, seed=s, log_every=4)
            for s in range(2)]  # fmt: skip
    with pytest.raises(
        NonFiniteLossError, match=r"model \d: loss became (nan|inf) at step [3-9] \(lr 1e\+10\)"
    ):
        finetune_stacked(nets, _data().data, cfgs, 4, progress=False)


def test_a_held_stack_reads_the_device_every_log_every_steps_only(host_reads):
    """Every step's K losses stay on the device; the host reads them once every log_every steps (12 steps at
    log_every 4: 3 reads), and the draws for every step were copied once, when the stack started."""
    from expertlib.datasets.device import DeviceData

    held = DeviceData(_data().data, "cpu")
    nets = [create_model("tiny", num_classes=4) for _ in range(3)]
    cfgs = [TrainConfig(scaled_hyperrule(12, 0.05), batch_size=8, seed=s, log_every=4) for s in range(3)]
    res = finetune_stacked(nets, held, cfgs, 4, progress=False)
    assert host_reads == ["tolist"] * 3
    assert [m["step"] for m in res[0].metrics] == [4, 8, 12] and [t[0] for t in res[0].timeline] == [4, 8, 12]
