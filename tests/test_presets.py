import pytest

from expertlib.presets import SCALES, get_scale


def test_scales_exist_and_unknown_is_clear():
    assert set(SCALES) == {"smoke", "cpu", "paper", "paper-smoke", "released", "released-smoke"}
    assert get_scale("cpu").data.embedded is not None and get_scale("paper").upstream.arch == "R50x1"
    ps, paper = get_scale("paper-smoke"), get_scale("paper")
    # paper-smoke runs the paper's code paths: same data kind, architecture, loss, schedule and expert rule
    assert (ps.data.source, ps.upstream.arch, ps.upstream.loss, ps.upstream.schedule) == (
        paper.data.source,
        paper.upstream.arch,
        "sigmoid",
        "bit",
    )
    assert (
        ps.data.writes_fixture
        and not paper.data.writes_fixture
        and paper.upstream.weights == "BiT-M-R50x1.npz"
    )
    # the released scales: the paper's downstream half, the same tasks and transfer recipe shape, nothing upstream
    rs, rel = get_scale("released-smoke"), get_scale("released")
    assert not rel.trains_upstream and not rs.trains_upstream and paper.trains_upstream
    assert (
        rel.data.tasks == paper.data.tasks
        and rel.upstream.arch == "R50x1"
        and rel.data.task_resolution == "hyperrule"
    )
    assert (
        rel.study.oracle_on == "val200"
        and rel.study.random_experts > 0
        and rel.study.oracle_pool > 0
        and rel.expert.names == paper.expert.names
    )
    assert (rs.data.source, rs.data.released_experts, rs.data.writes_fixture) == (
        "vtab",
        "released_experts",
        True,
    )
    with pytest.raises(ValueError, match="did you mean 'smoke'"):
        get_scale("smoek")


def test_the_parts_say_which_settings_change_results():
    """Every setting outside Runtime enters some step's recipe, except those that only add work (more tasks,
    seeds, few-shot regimes); of Runtime's, only micro_batch does (it changes the order of float sums)."""
    from expertlib.pipeline.recipes import STEP_FIELDS
    from expertlib.scale import SETTINGS

    in_recipes = {f for fields in STEP_FIELDS.values() for f in fields}
    runtime = {k for k, (part, _) in SETTINGS.items() if part == "runtime"}
    assert runtime & in_recipes == {"micro_batch"}
    assert set(SETTINGS) - runtime - in_recipes == {"tasks", "seeds", "few_shot", "unpicked_seeds"}
    sc = get_scale("cpu")
    assert sc.setting("expert_lr") == sc.expert.lr and sc.override(expert_lr=0.5).expert.lr == 0.5
    assert sc.override(expert_lr=0.5).upstream == sc.upstream  # other parts untouched
    with pytest.raises(ValueError, match="unknown scale setting 'expert_lrs'.*did you mean 'expert_lr'"):
        sc.override(expert_lrs=(0.1,))


def test_the_paper_scales_fine_tune_with_bit_hyperrule_as_published():
    """Batch 512 at lr 0.003, 500 steps for VTAB-1k, resolution by image area; upstream trainings at 224 px."""
    for name in ("paper", "released"):
        sc = get_scale(name)
        assert (sc.transfer.batch, sc.transfer.lrs, sc.transfer.steps) == (512, (0.003,), (500,))
        assert sc.data.task_resolution == "hyperrule" and sc.runtime.micro_batch == 64  # 8 passes of 64
    assert (get_scale("paper").data.precrop, get_scale("paper").data.crop) == (256, 224)
    assert get_scale("cpu").transfer.batch == 32  # the embedded scales keep their own recipes
