from expertlib.pipeline import recipes as R
from expertlib.run.presets import get_scale
from expertlib.train.schedules import learning_rate


def test_generic_config_follows_the_scales_schedule_and_loss():
    cpu = get_scale("cpu")
    cfg = R.generic_config(cpu)
    assert cfg.loss == "softmax" and cfg.schedule.kind == "cosine" and cfg.steps == 2000
    paper = get_scale("paper")
    bit = R.generic_config(paper)
    assert bit.loss == "sigmoid" and bit.schedule.kind != "cosine" and bit.batch_size == 4096
    # BiT's step schedule decays: late steps run at a fraction of the base rate
    assert learning_rate(bit.schedule, bit.steps - 1) < 0.01 * paper.upstream.lr
    over = R.generic_config(cpu, steps=10, lr=0.5, batch=8)
    assert (over.steps, over.schedule.base_lr, over.batch_size) == (10, 0.5, 8)


def test_expert_config_is_the_budget_of_experts_extra_and_dat():
    sc = get_scale("cpu")
    cfg = R.expert_config(sc, seed=3)
    assert (cfg.steps, cfg.batch_size, cfg.seed, cfg.loss) == (
        sc.expert.steps,
        sc.expert.batch,
        3,
        sc.upstream.loss,
    )
    assert (
        R.dat_steps(sc) == 20 and R.dat_steps(get_scale("paper")) == 50
    )  # timed steps; the rest extrapolated
    assert R.dat_steps(sc.override(dat_timing_steps=None)) == sc.expert.steps


def test_transfer_config():
    cfg = R.transfer_config(get_scale("cpu"), 100, 0.03, seed=2)
    assert cfg.steps == 100 and cfg.batch_size == 32 and cfg.schedule.base_lr == 0.03 and cfg.seed == 2


def test_transfer_follows_the_scales_hyperrule_and_the_tasks_size():
    """The paper and released scales fine-tune with the BiT paper's text (no warm-up, decays at 30/60/90%), the
    embedded ones with BiT's released code's shape (their committed results' recipe); a task of 20k images or
    more trains 20x as long with mixup 0.1."""
    paper, released, cpu = get_scale("paper"), get_scale("released"), get_scale("cpu")
    assert paper.transfer.hyperrule == released.transfer.hyperrule == "bit-paper"
    assert (
        cpu.transfer.hyperrule
        == get_scale("gpu").transfer.hyperrule
        == get_scale("smoke").transfer.hyperrule
        == "bit-code"
    )
    s = R.transfer_config(paper, 500, 0.003).schedule
    assert (s.total_steps, s.warmup_steps, s.boundaries) == (500, 0, (150, 300, 450))
    s = R.transfer_config(cpu, 50, 0.03).schedule
    assert (s.total_steps, s.warmup_steps, s.boundaries) == (50, 10, (20, 30, 40))
    big = R.transfer_config(paper, 500, 0.003, dataset_size=20_000)
    assert (big.steps, big.mixup_alpha) == (10_000, 0.1)


def test_outputs_of_the_old_recipes_are_refused_where_they_changed(tmp_path):
    """Outputs recorded before ``hyperrule``, per-task crops and the expected-count sigmoid reading existed were made
    with BiT's released code's shape, every task cropped, and (for sigmoid) another statistic: refused where the
    recipe now differs; the cpu scale's selection outputs (bit-code, softmax) are not."""
    import json

    import pytest

    from expertlib.pipeline.workspace import RecipeMismatchError, check_recipe

    for scale, step, refused in (("cpu", "selection", None), ("cpu", "transfer", "task_augmentation"),
                                 ("released", "selection", "domain_activation"), ("paper", "transfer", "hyperrule")):  # fmt: skip
        recipe = R.step_recipe(get_scale(scale), step)
        old = {k: v for k, v in recipe.items() if k not in ("hyperrule", "task_augmentation")}
        if old.get("domain_activation", "").startswith("sigmoid"):
            old["domain_activation"] = "sigmoid"
        out = tmp_path / scale / step / "out.csv"
        out.parent.mkdir(parents=True)
        out.write_text("x\n")
        (out.parent / "provenance.json").write_text(json.dumps({"out.csv": {"recipe": old}}))
        if refused is None:
            check_recipe([out], recipe)
        else:
            with pytest.raises(RecipeMismatchError, match=refused):
                check_recipe([out], recipe)


def test_weight_decay_follows_bits_upstream_recipe_at_the_paper_scale():
    from expertlib.pipeline.recipes import expert_config, generic_config, transfer_config
    from expertlib.run.presets import get_scale

    paper, cpu = get_scale("paper"), get_scale("cpu")
    assert generic_config(paper).weight_decay == expert_config(paper).weight_decay == 1e-4  # BiT upstream
    assert transfer_config(paper, 500, 0.003).weight_decay == 0.0  # BiT-HyperRule: none
    assert generic_config(cpu).weight_decay == 0.0  # the embedded recipes were chosen without it
    assert all(c.mixup_alpha == 0.0 for c in (generic_config(paper), transfer_config(paper, 500, 0.003)))
