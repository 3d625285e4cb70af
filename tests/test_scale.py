import json

import pytest

from expertlib.run.presets import get_scale


def test_scale_serialises():
    assert json.loads(json.dumps(get_scale("smoke").to_dict(), default=str))["name"] == "smoke"


@pytest.mark.parametrize(
    "field, value, accepted",
    [("upstream_loss", "softmx", "did you mean 'softmax'"), ("upstream_schedule", "BiT", "'cosine', 'bit'"),
     ("oracle_on", "val", "'test_seed0', 'val200'"), ("task_resolution", "hyper", "'fixed', 'hyperrule'"),
     ("knn_metric", "cos", "'cosine', 'euclidean'"), ("data", "imagenet", "'embedded'")],
)  # fmt: skip
def test_a_mistyped_setting_is_refused_not_read_as_another(field, value, accepted):
    with pytest.raises(ValueError, match=rf"{field}='{value}' is not one of .*{accepted}"):
        get_scale("cpu", **{field: value})
    with pytest.raises(ValueError, match="seeds=0 must be a whole number >= 1"):
        get_scale("cpu", seeds=0)
    with pytest.raises(ValueError, match="oracle_pool=-1"):
        get_scale("released", oracle_pool=-1)


def test_the_parts_say_which_settings_change_results():
    """Every setting outside Runtime enters some step's recipe, except those that only add work (more tasks,
    seeds, few-shot regimes); of Runtime's, micro_batch and stack_finetunes do (they change the order of float
    sums: passes accumulated, models stacked)."""
    from expertlib.pipeline.recipes import STEP_FIELDS
    from expertlib.run.scale import SETTINGS

    in_recipes = {f for fields in STEP_FIELDS.values() for f in fields}
    runtime = {k for k, (part, _) in SETTINGS.items() if part == "runtime"}
    assert runtime & in_recipes == {"micro_batch", "stack_finetunes"}
    assert set(SETTINGS) - runtime - in_recipes == {"tasks", "seeds", "few_shot", "unpicked_seeds"}
    sc = get_scale("cpu")
    assert sc.setting("expert_lr") == sc.expert.lr and sc.override(expert_lr=0.5).expert.lr == 0.5
    assert sc.override(expert_lr=0.5).upstream == sc.upstream  # other parts untouched
    with pytest.raises(ValueError, match="unknown scale setting 'expert_lrs'.*did you mean 'expert_lr'"):
        sc.override(expert_lrs=(0.1,))


def test_domain_prediction_reads_b_s_head_as_it_was_trained_unless_told():
    """ "auto": the upstream loss that trained B's head (cpu: softmax; BiT-M at the released scale: sigmoid)."""
    assert (
        get_scale("cpu").domain_activation == "softmax"
        and get_scale("released").domain_activation == "sigmoid"
    )
    assert get_scale("released", domain_activation="softmax").domain_activation == "softmax"
    with pytest.raises(ValueError, match="domain_activation='tanh' is not one of"):
        get_scale("cpu", domain_activation="tanh")
