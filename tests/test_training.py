import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from expertlib.models.adapters import AdapterConfig, AdapterExperts
from expertlib.models.resnet import create_model
from expertlib.train.batching import batch_indices
from expertlib.train.evaluation import accuracy, predict, predicted_classes
from expertlib.train.schedules import Schedule, scaled_hyperrule
from expertlib.train.training import ArrayData, NonFiniteLossError, TrainConfig, finetune, train, train_expert


def _data(n=96, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 60, (n, 32, 32, 3), dtype=np.uint8)
    for c in range(classes):  # a learnable signal: a bright quadrant per class
        sel = labels == c
        images[sel, (c // 2) * 16 : (c // 2) * 16 + 16, (c % 2) * 16 : (c % 2) * 16 + 16] += 150
    return ArrayData(images, labels, 36, 32, flip=False)


def _same_weights(a, b):
    return all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_batch_indices_cover_each_epoch_once():
    idx = np.concatenate([batch_indices(s, 10, 5, seed=1) for s in range(4)])
    assert sorted(idx[:10]) == list(range(10)) and sorted(idx[10:]) == list(range(10))
    assert not np.array_equal(idx[:10], idx[10:])
    assert np.array_equal(batch_indices(3, 10, 5, 1), batch_indices(3, 10, 5, 1))


def test_same_seed_same_numbers_and_learning_happens():
    data = _data()
    cfg = TrainConfig(scaled_hyperrule(60, 0.2), batch_size=32, seed=3)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = create_model("tiny", num_classes=4)
        res = train(m, list(m.parameters()), data, cfg, num_classes=4, progress=False)
        runs.append((m, res))
    assert _same_weights(runs[0][0], runs[1][0])
    assert runs[0][1].final_loss == runs[1][1].final_loss
    assert accuracy(runs[0][0], data) > 0.6


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    data = _data()
    exploding = Schedule(20, 0, 0.01, boundaries=(8,), decay=1e12)
    m = create_model("tiny", num_classes=4)
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(NonFiniteLossError, match="last good checkpoint") as err:
        train(
            m,
            list(m.parameters()),
            data,
            TrainConfig(exploding, batch_size=16, checkpoint_every=4),
            4,
            checkpoint=ckpt,
            progress=False,
        )
    bad = int(re.search(r"at step (\d+)", str(err.value))[1])  # where, depends on the thread count's rounding
    state = torch.load(ckpt, weights_only=False)
    assert (
        8 < bad and state["step"] % 4 == 0 and state["step"] < bad
    )  # the last checkpoint before the blow-up
    assert all(torch.isfinite(v).all() for v in state["trained"].values())


CHILD = textwrap.dedent(
    """
    import os, signal, sys, numpy as np, torch
    sys.path.insert(0, {tests!r})
    import expertlib.train.batching as B
    import expertlib.train.training as T
    from test_training import _data
    from expertlib.models.resnet import create_model
    from expertlib.train.schedules import scaled_hyperrule
    real = B.batch_indices
    def dying(step, *a, **k):
        if step == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(step, *a, **k)
    B.batch_indices = dying
    torch.manual_seed(0)
    m = create_model("tiny", num_classes=4)
    cfg = T.TrainConfig(scaled_hyperrule(24, 0.05), batch_size=16, seed=7, checkpoint_every=5, mixup_alpha=0.2)
    T.train(m, list(m.parameters()), _data(), cfg, 4, checkpoint={ckpt!r}, progress=False)
    """
)


def test_sigkill_and_resume_gives_identical_weights(tmp_path):
    ckpt = tmp_path / "run.pt"
    script = CHILD.format(tests=os.path.dirname(__file__), kill_at=13, ckpt=str(ckpt))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert torch.load(ckpt, weights_only=False)["step"] == 10
    cfg = TrainConfig(scaled_hyperrule(24, 0.05), batch_size=16, seed=7, checkpoint_every=5, mixup_alpha=0.2)
    torch.manual_seed(0)
    resumed = create_model("tiny", num_classes=4)
    res = train(resumed, list(resumed.parameters()), _data(), cfg, 4, checkpoint=ckpt, progress=False)
    assert res.resumed_from == 10
    torch.manual_seed(0)
    straight = create_model("tiny", num_classes=4)
    ref = train(straight, list(straight.parameters()), _data(), cfg, 4, progress=False)
    assert _same_weights(resumed, straight)
    assert res.metrics == ref.metrics


def test_adapter_expert_training_touches_only_its_parameters():
    base = create_model("tiny", num_classes=4)
    bank = AdapterExperts(base, AdapterConfig(width=0.5))
    bank.add_expert("a", num_classes=4)
    bank.add_expert("b", num_classes=4)
    before = {k: v.clone() for k, v in bank.state_dict().items()}
    train_expert(bank, "a", _data(), TrainConfig(scaled_hyperrule(10, 0.05), batch_size=16), progress=False)
    after = bank.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("experts.a.") for k in changed)
    assert not any(p.requires_grad for p in bank.parameters())


def test_finetune_transfer_model_learns_a_task():
    base = create_model("tiny", num_classes=4)
    bank = AdapterExperts(base)
    bank.add_expert("a")
    net = bank.transfer_model("a", num_classes=4)
    data = _data(seed=1)
    finetune(net, data, TrainConfig(scaled_hyperrule(60, 0.2), batch_size=32), num_classes=4, progress=False)
    assert accuracy(net, data) > 0.6


def test_worker_processes_give_the_same_batches_and_weights():
    data = _data()
    ref = None
    for workers in (0, 2):
        torch.manual_seed(0)
        m = create_model("tiny", num_classes=4)
        cfg = TrainConfig(scaled_hyperrule(6, 0.05), batch_size=16, seed=3, mixup_alpha=0.2, workers=workers)
        train(m, list(m.parameters()), data, cfg, 4, progress=False)
        state = {k: v.clone() for k, v in m.state_dict().items()}
        if ref is None:
            ref = state
        else:
            assert all(torch.equal(ref[k], state[k]) for k in ref)
    from expertlib.train.evaluation import predict

    a = predict(m, data, batch_size=7)
    b = predict(m, data, batch_size=7, workers=2)
    assert torch.equal(a, b) and a.shape[0] == len(data)


def test_step_batches_resume_mid_epoch_and_shard():
    from expertlib.train.batching import StepBatches

    data = _data()
    whole = StepBatches(data, 16, seed=1, start=0, end=10)
    later = StepBatches(data, 16, seed=1, start=7, end=10)
    assert torch.equal(whole[8][1], later[1][1]) and whole[8][0] == later[1][0] == 8
    halves = [StepBatches(data, 16, seed=1, start=0, end=10, rank=r, world=2)[4] for r in (0, 1)]
    assert torch.equal(torch.cat([h[1] for h in halves]), whole[4][1])
    assert torch.equal(torch.cat([h[2] for h in halves]), whole[4][2])


def test_micro_batches_accumulate_to_the_same_step():
    data = _data()
    states = []
    for micro in (0, 4):
        torch.manual_seed(0)
        m = create_model("tiny", num_classes=4)
        cfg = TrainConfig(scaled_hyperrule(3, 0.05), batch_size=16, seed=2, micro_batch=micro, loss="sigmoid")
        res = train(m, list(m.parameters()), data, cfg, 4, progress=False)
        states.append((m.state_dict(), res.final_loss))
    (a, la), (b, lb) = states
    assert abs(la - lb) < 1e-5
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_the_published_batch_of_512_in_passes_of_64_is_one_batch_of_512():
    """BiT-HyperRule's batch 512 where memory needs passes (the paper scales: 8 accumulated passes of 64) takes
    the step one batch of 512 takes, within float32 tolerance (GroupNorm has no batch statistics)."""
    data = ArrayData(np.random.default_rng(0).integers(0, 256, (600, 16, 16, 3), dtype=np.uint8),
                     np.arange(600) % 4, 18, 16, True)  # fmt: skip
    states = []
    for micro in (0, 64):
        torch.manual_seed(0)
        m = create_model("tiny", num_classes=4)
        cfg = TrainConfig(scaled_hyperrule(2, 0.003), batch_size=512, seed=4, micro_batch=micro)
        res = train(m, list(m.parameters()), data, cfg, 4, progress=False)
        states.append((m.state_dict(), res.final_loss))
    (a, la), (b, lb) = states
    assert abs(la - lb) < 1e-5 and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert any((a[k] != create_model("tiny", num_classes=4).state_dict()[k]).any() for k in a)  # it trained


def test_odd_cpu_passes_are_refused_before_they_crash():
    m = create_model("tiny", num_classes=4)
    for batch, micro in ((15, 0), (16, 5)):
        cfg = TrainConfig(scaled_hyperrule(2, 0.05), batch_size=batch, micro_batch=micro)
        with pytest.raises(ValueError, match="even number of examples.*strided 1x1 convolution"):
            train(m, list(m.parameters()), _data(), cfg, 4, progress=False)


def test_a_mistyped_loss_is_refused():
    import pytest

    from expertlib.train.schedules import Schedule
    from expertlib.train.training import TrainConfig

    with pytest.raises(ValueError, match="loss must be 'softmax' or 'sigmoid', got 'softmx'"):
        TrainConfig(Schedule(10, 1, 0.1), loss="softmx")


def test_resume_under_a_changed_recipe_is_refused_naming_what_changed(tmp_path):
    import pytest

    from expertlib.train.training import RecipeMismatchError

    ckpt = tmp_path / "run.pt"
    cfg = TrainConfig(scaled_hyperrule(12, 0.05), batch_size=16, seed=7, checkpoint_every=4)
    m = create_model("tiny", num_classes=4)
    train(m, list(m.parameters()), _data(), cfg, 4, checkpoint=ckpt, progress=False, stop_after=8)
    changed = TrainConfig(scaled_hyperrule(12, 0.1), batch_size=16, seed=7, checkpoint_every=4)
    with pytest.raises(RecipeMismatchError, match=r"another recipe \(schedule: .*0\.05.*0\.1"):
        train(create_model("tiny", num_classes=4), list(m.parameters()), _data(), changed, 4, checkpoint=ckpt,
              progress=False)  # fmt: skip
    # runtime settings may differ: more checkpoints, data workers
    runtime = TrainConfig(
        scaled_hyperrule(12, 0.05), batch_size=16, seed=7, checkpoint_every=2, workers=0, log_every=3
    )
    res = train(m, list(m.parameters()), _data(), runtime, 4, checkpoint=ckpt, progress=False)
    assert res.resumed_from == 8


def test_train_restores_the_callers_mode():
    m = create_model("tiny", num_classes=4).eval()
    train(
        m,
        list(m.parameters()),
        _data(),
        TrainConfig(scaled_hyperrule(2, 0.05), batch_size=16),
        4,
        progress=False,
    )
    assert not m.training
    m.train()
    train(
        m,
        list(m.parameters()),
        _data(),
        TrainConfig(scaled_hyperrule(2, 0.05), batch_size=16),
        4,
        progress=False,
    )
    assert m.training
    # what train() says it leaves: the model on cfg.device in channels_last, its weights trained in place
    conv = m.stem.conv.weight
    assert conv.device.type == "cpu" and conv.is_contiguous(memory_format=torch.channels_last)


def test_checkpoints_fall_due_by_steps_minutes_and_at_the_end(monkeypatch):
    import expertlib.train.training as T

    cfg = TrainConfig(scaled_hyperrule(10, 0.1), batch_size=8, checkpoint_every=4, checkpoint_minutes=1.0)
    monkeypatch.setattr(T.time, "monotonic", lambda: 100.0)
    assert [d for d in range(1, 11) if T._checkpoint_due(cfg, d, last_save=99.0)] == [4, 8, 10]
    assert T._checkpoint_due(cfg, 3, last_save=30.0)  # a minute since the last save


def test_an_expert_checkpoint_holds_that_expert_alone_and_resumes_in_another_bank(tmp_path):
    """An adapter expert's checkpoint holds its own trainable parameters by name, not the whole bank: a resume
    works in a bank that gained another expert meanwhile, and gives the weights of an uninterrupted run."""
    from expertlib.models.adapters import AdapterConfig, AdapterExperts
    from expertlib.train.training import train_expert

    def bank(extra: bool):
        torch.manual_seed(0)
        b = AdapterExperts(create_model("tiny", num_classes=4), AdapterConfig())
        torch.manual_seed(1)
        b.add_expert("a", num_classes=4)
        if extra:
            b.add_expert("b", num_classes=2)
        return b

    cfg = TrainConfig(scaled_hyperrule(12, 0.05), batch_size=16, seed=3, checkpoint_every=4)
    ckpt = tmp_path / "a.pt"
    first = bank(False)
    train_expert(first, "a", _data(), cfg, checkpoint=ckpt, progress=False, stop_after=8)
    stored = torch.load(ckpt, weights_only=False)["trained"]
    assert len(stored) == len(first.expert_parameters("a"))  # the expert's parameters, not the bank's
    grown = bank(True)
    res = train_expert(grown, "a", _data(), cfg, checkpoint=ckpt, progress=False)
    assert res.resumed_from == 8
    straight = bank(False)
    train_expert(straight, "a", _data(), cfg, progress=False)
    for p, q in zip(grown.expert_parameters("a"), straight.expert_parameters("a"), strict=True):
        assert torch.equal(p, q)


@pytest.mark.slow
def test_compiled_training_and_evaluation_agree_with_eager_on_cpu(monkeypatch):
    """The compile option (torch.compile of the training forward's backbone and of the evaluation) gives the eager
    results within float32 tolerance. Under dynamo's "aot_eager_decomp_partition" backend: the graphs inductor
    receives (decomposed, split into forward and backward by its partitioner), run without inductor's code
    generation (one to two minutes on our CPUs); inductor's own speed and numbers are the GPU check's
    (tests/test_cuda.py)."""
    monkeypatch.setattr("expertlib.utils.runtime.COMPILE_BACKEND", "aot_eager_decomp_partition")
    torch._dynamo.reset()
    data = _data(64)
    nets, accs = [], []
    for compiled in (False, True):
        torch.manual_seed(0)
        m = create_model("tiny", num_classes=4)
        cfg = TrainConfig(scaled_hyperrule(3, 0.05), batch_size=16, seed=1, compile=compiled)
        train(m, list(m.parameters()), data, cfg, 4, progress=False)
        nets.append(m)
        accs.append(accuracy(m, data, 32, "cpu", compile=compiled))
    for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-5)
    assert abs(accs[0] - accs[1]) <= 1 / 64
    torch._dynamo.reset()


# -- compiled by default on CUDA: one graph per resolution --------------------------------------------------------
@pytest.fixture
def graphs(monkeypatch):
    """Count torch.compile's graphs (dynamo's counters) under its cheapest backend: "eager" traces and guards
    exactly as inductor would, without generating code."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr("expertlib.utils.runtime.COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    counters.clear()
    yield lambda: counters["stats"]["unique_graphs"]
    torch._dynamo.reset()


def test_compiled_evaluation_runs_one_graph_over_sets_of_any_length_and_over_jobs(graphs):
    """Evaluation pads its last batch to the batch size (and trims the result): eval sets of several lengths at
    one resolution, and a fresh model per job (each fine-tune's), run on the one graph compiled first."""
    eager, padded = [], []
    for job in range(2):
        torch.manual_seed(job)
        model = create_model("tiny", num_classes=4).eval()
        for n in (5, 16, 23, 40):
            data = _data(n, seed=n)
            eager.append(predict(model, data, 16, "cpu", compile=False))
            padded.append(predict(model, data, 16, "cpu", compile=True))
            assert padded[-1].shape == (n, 4)
    assert graphs() == 1
    for a, b in zip(eager, padded, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert predicted_classes(model, _data(7), 16, "cpu", compile=True).shape == (7,) and graphs() == 1


def test_compile_auto_is_eager_on_cpu_and_compiled_training_traces_one_graph_over_jobs(graphs):
    data = _data(32)
    for _job in range(2):
        torch.manual_seed(0)
        m = create_model("tiny", num_classes=4)
        cfg = TrainConfig(scaled_hyperrule(3, 0.05), batch_size=16, seed=1, compile="auto")
        train(m, list(m.parameters()), data, cfg, 4, progress=False)
        accuracy(m, data, 16, "cpu")  # default: "auto"
    assert graphs() == 0  # "auto" on a CPU: eager, the committed results' bytes
    results = []
    for job in range(2):
        torch.manual_seed(job)
        m = create_model("tiny", num_classes=4)
        cfg = TrainConfig(scaled_hyperrule(3, 0.05), batch_size=16, seed=1, compile=True)
        results.append(train(m, list(m.parameters()), data, cfg, 4, progress=False))
    assert graphs() == 1  # the training forward, traced once for both jobs' models
    assert all(r.warmup_seconds > 0 for r in results[:1])  # the first step traced the model
    with pytest.raises(ValueError, match="compile must be True, False or 'auto'"):
        TrainConfig(scaled_hyperrule(3, 0.05), compile="yes")


def test_fine_tunes_of_every_vtab_class_count_at_two_resolutions_compile_one_graph_per_resolution_and_mode(
    graphs, caplog
):
    """The head stays out of the compiled graph (expertlib.train.evaluation.HeadAfterBackbone): fine-tunes
    over VTAB-1k's 15 class counts at 2 resolutions, each trained and evaluated compiled, trace one graph per
    resolution and mode (train, eval): 4 in all, never reaching dynamo's recompile limit (a compiled head
    traced a graph per class count and fell back to eager after 8)."""
    from expertlib.datasets.vtab import VTAB_TASKS
    from expertlib.utils.parallel import single_thread

    counts = sorted({t.num_classes for t in VTAB_TASKS.values()})
    assert len(counts) == 15
    with single_thread():  # 60 tiny calls: one thread (two spin on a busy machine)
        _fine_tunes_over(counts)
    assert graphs() == 4
    assert not [r for r in caplog.records if "limit" in r.getMessage()]


def _fine_tunes_over(counts):
    for size in (16, 20):
        images = np.random.default_rng(size).integers(0, 255, (8, size, size, 3), dtype=np.uint8)
        data = ArrayData(images, np.arange(8) % 2, size + 2, size, True)
        for k in counts:
            m = create_model("tiny", num_classes=k)
            cfg = TrainConfig(scaled_hyperrule(1, 0.05), batch_size=4, compile=True, log_every=1)
            res = train(m, list(m.parameters()), data, cfg, k, progress=False)
            logits = predict(m.eval(), data, 8, "cpu", compile=True)
            assert np.isfinite(res.final_loss) and logits.shape == (8, k)


def test_auto_compiles_where_compiling_was_measured_to_pay():
    """ "auto" on CUDA compiles R50x1 (measured: expertlib.train.evaluation.COMPILE_PAYS), not the small
    configs the gpu scale fine-tunes (stacked, as CUDA graphs), nor an adapter expert; on a CPU nothing."""
    from expertlib.models.candidates import from_bank
    from expertlib.train.evaluation import compile_here

    r50, tiny = create_model("R50x1", num_classes=10), create_model("tiny", num_classes=10)
    assert compile_here(r50, "auto", "cuda") and not compile_here(r50, "auto", "cpu")
    assert not compile_here(tiny, "auto", "cuda") and compile_here(tiny, True, "cpu")
    bank = AdapterExperts(r50)
    bank.add_expert("a", 2)
    assert not compile_here(from_bank(bank)["adapter:a"], "auto", "cuda")


def test_compiled_selection_features_share_one_graph_across_full_experts(graphs):
    from expertlib.models.adapters import FullExperts
    from expertlib.models.candidates import from_bank
    from expertlib.select.selection import extract_features

    torch.manual_seed(0)
    bank = FullExperts(create_model("tiny", num_classes=4))
    for name in ("a", "b", "c"):
        bank.add_expert(name, 2)
    cands = list(from_bank(bank).values())
    data = _data(21)
    eager = extract_features(cands, data, 8, "cpu", compile=False)
    assert graphs() == 0
    fused = extract_features(cands, data, 8, "cpu", compile=True)
    assert graphs() == 1
    for name in eager:
        assert np.allclose(eager[name], fused[name], rtol=1e-4, atol=1e-5)


def test_auto_compiles_one_network_not_a_function_over_many_nor_an_adapter_expert():
    """What "auto" compiles on CUDA: a network, whose graph every model of its architecture reuses; not a plain
    function over many networks (one giant graph) nor an adapter expert (a graph per expert name)."""
    from expertlib.models.adapters import FullExperts
    from expertlib.models.candidates import from_bank, from_model
    from expertlib.models.resnet import Pooled
    from expertlib.train.evaluation import compiles_once

    net = create_model("tiny", num_classes=4)
    adapters, full = AdapterExperts(create_model("tiny", num_classes=4)), FullExperts(net)
    adapters.add_expert("a", 2)
    full.add_expert("f", 2)
    assert compiles_once(net) and compiles_once(Pooled(from_model(net)))
    assert compiles_once(from_bank(full)["full:f"]) and compiles_once(adapters.transfer_model("a", 3))
    assert not compiles_once(from_bank(adapters)["adapter:a"]) and not compiles_once(
        Pooled(from_bank(adapters)["adapter:a"])
    )
    assert not compiles_once(lambda x: net(x))


def test_finished_ahead_keeps_the_order_and_runs_in_a_background_thread():
    import threading

    from expertlib.train.batching import finished_ahead

    threads = set()

    def finish(i):
        threads.add(threading.get_ident())
        return torch.full((2,), float(i))

    got = [int(t[0]) for t in finished_ahead(range(7), finish, "cpu", depth=3)]
    assert got == list(range(7)) and threading.get_ident() not in threads
    with pytest.raises(ValueError, match="bad batch"):
        list(finished_ahead(range(3), lambda i: (_ for _ in ()).throw(ValueError("bad batch")), "cpu"))
