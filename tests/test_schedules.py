import pytest

from expertlib.train.schedules import (
    Schedule,
    bit_hyperrule,
    bit_mixup_alpha,
    finetune_steps,
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


# bit_hyperrule.py (google-research/big_transfer): get_schedule(dataset_size) -> [warm-up, decays..., total]
BIT_CODE = {1_000: (100, (200, 300, 400), 500), 100_000: (500, (3_000, 6_000, 9_000), 10_000),
            1_000_000: (500, (6_000, 12_000, 18_000), 20_000)}  # fmt: skip


@pytest.mark.parametrize("n", list(BIT_CODE))
def test_bit_code_is_bit_hyperrule_py(n):
    warmup, decays, total = BIT_CODE[n]
    s = bit_hyperrule(n, 0.003, "bit-code")
    assert (s.warmup_steps, s.boundaries, s.total_steps, s.base_lr) == (warmup, decays, total, 0.003)


@pytest.mark.parametrize("n", list(BIT_CODE))
def test_bit_paper_is_the_papers_text(n):
    """The BiT paper, section 3.3: the same lengths, x0.1 at 30%, 60% and 90% of the steps, no warm-up stated."""
    total = BIT_CODE[n][2]
    s = bit_hyperrule(n, 0.003, "bit-paper")
    assert (s.warmup_steps, s.total_steps) == (0, total)
    assert s.boundaries == (3 * total // 10, 6 * total // 10, 9 * total // 10)
    assert learning_rate(s, 0) == 0.003 and learning_rate(s, 150 * total // 500 + 1) == pytest.approx(0.0003)
    if total == 500:
        assert s.boundaries == (150, 300, 450) and learning_rate(s, 499) == pytest.approx(0.000003)


def test_the_regimes_switch_at_20k_and_500k_examples():
    """BiT's size regimes at their switch points: length and mixup, at BiT's 500 and at a scaled-down 50 (the
    larger regimes keep their ratio to it); the cap for VTAB-1k's 1,000 images stays 500."""
    lengths = {n: finetune_steps(n) for n in (1_000, 19_999, 20_000, 499_999, 500_000)}
    assert lengths == {1_000: 500, 19_999: 500, 20_000: 10_000, 499_999: 10_000, 500_000: 20_000}
    assert [finetune_steps(n, 50) for n in (19_999, 20_000, 499_999, 500_000)] == [50, 1_000, 1_000, 2_000]
    assert [bit_mixup_alpha(n) for n in (19_999, 20_000, 499_999, 500_000)] == [0.0, 0.1, 0.1, 0.1]
    for recipe in ("bit-paper", "bit-code"):
        assert [bit_hyperrule(n, recipe=recipe).total_steps for n in lengths] == list(lengths.values())
    assert bit_hyperrule(20_000, recipe="bit-code", small_steps=50) == Schedule(
        1_000, 50, 0.003, (300, 600, 900)
    )
    assert scaled_hyperrule(50, 0.1, "bit-paper") == Schedule(50, 0, 0.1, (15, 30, 45))
    with pytest.raises(ValueError, match="unknown BiT-HyperRule recipe 'paper'"):
        bit_hyperrule(1_000, recipe="paper")
