import pytest

from expertlib.schedules import (
    Schedule,
    bit_hyperrule,
    bit_mixup_alpha,
    learning_rate,
    scaled_hyperrule,
    upstream_schedule,
)


def test_bit_hyperrule_table():
    s = bit_hyperrule(1000)
    assert (s.total_steps, s.warmup_steps, s.boundaries) == (500, 100, (200, 300, 400))
    assert bit_hyperrule(100_000).total_steps == 10_000 and bit_hyperrule(1_000_000).boundaries == (
        6000,
        12000,
        18000,
    )
    assert bit_mixup_alpha(1000) == 0.0 and bit_mixup_alpha(20_000) == 0.1


def test_decay_applies_strictly_past_the_boundary():
    s = bit_hyperrule(1000)
    assert learning_rate(s, 0) == 0.0
    assert learning_rate(s, 50) == pytest.approx(0.0015)
    assert learning_rate(s, 200) == pytest.approx(0.003)
    assert learning_rate(s, 201) == pytest.approx(0.0003)
    assert learning_rate(s, 499) == pytest.approx(0.000003)


def test_scaled_and_upstream_shapes():
    s = scaled_hyperrule(100, 0.01)
    assert (s.warmup_steps, s.boundaries) == (20, (40, 60, 80))
    u = upstream_schedule(900, 0.1)
    assert u.boundaries == (300, 600, 800) and u.warmup_steps == 45
    c = Schedule(100, 10, 1.0, kind="cosine")
    assert learning_rate(c, 10) == pytest.approx(1.0) and learning_rate(c, 100) == pytest.approx(
        0.0, abs=1e-12
    )
    with pytest.raises(ValueError, match="unknown schedule kind"):
        Schedule(10, 1, 0.1, kind="linear")
