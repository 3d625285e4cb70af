"""The benchmarks' clocks (benchmarks/_common.py) read the steady state: a pipeline with a long start-up and short
steps reports its step, not start-up spread over the run (issue #40: 1-2 s of start-up made a true 4,000 images/s
read as 1,200-2,000 with 20 steps). The pipeline is the real training loop and evaluation loop, on a fake clock:
2 s of start-up before the first batch, 10 ms per batch."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import slope, steady_seconds  # noqa: E402

from expertlib.datasets.batches import ArrayData  # noqa: E402
from expertlib.models.resnet import create_model  # noqa: E402
from expertlib.train.evaluation import predict  # noqa: E402
from expertlib.train.schedules import scaled_hyperrule  # noqa: E402
from expertlib.train.training import TrainConfig, train  # noqa: E402

START_UP, STEP = 2.0, 0.010


class FakeClock:
    """time.perf_counter and time.monotonic of a process whose data pipeline alone takes time."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now

    monotonic = perf_counter


class SlowData(ArrayData):
    """Batches that cost START_UP before the first (workers forking, a decoder initialising) and STEP each."""

    def __init__(self, clock: FakeClock, n: int = 64) -> None:
        images = np.random.default_rng(0).integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)
        super().__init__(images, np.arange(n) % 2, 18, 16, True)
        self.clock, self.started = clock, False

    def batch(self, *args, **kwargs):
        self.clock.now += STEP + (0.0 if self.started else START_UP)
        self.started = True
        return super().batch(*args, **kwargs)


@pytest.fixture
def clock(monkeypatch):
    import expertlib.train.training as T
    from expertlib.utils.parallel import single_thread

    fake = FakeClock()
    monkeypatch.setattr(T, "time", fake)
    with single_thread():  # tiny steps: one thread (two spin on a busy machine)
        yield fake


def test_training_reports_its_step_not_its_start_up(clock):
    steps, warmup = 30, 10
    m = create_model("tiny", num_classes=2)
    cfg = TrainConfig(scaled_hyperrule(steps, 0.01), batch_size=4, log_every=5)
    res = train(m, list(m.parameters()), SlowData(clock), cfg, 2, progress=False)
    assert steady_seconds(res.timeline, warmup) == pytest.approx(STEP, rel=0.1)
    assert res.seconds / steps > 5 * STEP  # what a run's mean reads: start-up spread over 30 steps
    with pytest.raises(ValueError, match="no window after 30 warm-up steps"):
        steady_seconds(res.timeline, steps)


def test_evaluation_reports_its_batch_from_the_slope_of_two_lengths_and_from_a_window(clock):
    m = create_model("tiny", num_classes=2).eval()

    def run(batches: int) -> float:  # a fresh pipeline each time: start-up paid in both
        data = SlowData(clock, n=8 * batches)
        t0 = clock.now
        predict(m, data, 8)
        return clock.now - t0

    assert slope(run, 5, 20) == pytest.approx(STEP, rel=0.1)
    times = {}
    data = SlowData(clock, n=8 * 20)
    predict(
        m, data, 8, on_batch=lambda i: times.setdefault(i, clock.now)
    )  # one pipeline, a window after warm-up
    assert (times[19] - times[4]) / 15 == pytest.approx(STEP, rel=0.1)
    assert torch.equal(predict(m, data, 8), predict(m, data, 8, on_batch=lambda i: None))
