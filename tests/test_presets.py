import json

import nbformat
import pytest

from expertlib.parameters import ParameterError, notebook_parameters, validate_parameters
from expertlib.presets import SCALES, get_scale


def _notebook(
    path,
    source='scale = "smoke"  # smoke, cpu or paper\nseed = 0  # random seed\nlr = 0.1  # learning rate\n',
):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nbformat.write(nb, path)
    return path


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


def test_parameters_validated_before_compute(tmp_path):
    nb = _notebook(tmp_path / "n.ipynb")
    declared = notebook_parameters(nb)
    assert declared["seed"]["type"] == "int" and "random seed" in declared["seed"]["help"]
    assert validate_parameters(nb, {"scale": "cpu", "seed": 3, "lr": 1}) == {
        "scale": "cpu",
        "seed": 3,
        "lr": 1,
    }
    with pytest.raises(ParameterError, match="unknown parameter 'sed'.*Did you mean 'seed'"):
        validate_parameters(nb, {"sed": 1})
    with pytest.raises(ParameterError, match="'seed'.*must be int.*got str"):
        validate_parameters(nb, {"seed": "1"})
    with pytest.raises(ValueError, match="unknown scale 'gpu'"):
        validate_parameters(nb, {"scale": "gpu"})


def test_scale_serialises():
    assert json.loads(json.dumps(get_scale("smoke").to_dict(), default=str))["name"] == "smoke"


def test_union_annotations_and_equals_in_comments_are_parameters_too(tmp_path):
    """Papermill's own line patterns drop both; such a parameter could then never be set."""
    nb = _notebook(
        tmp_path / "n.ipynb",
        "images: str | None = None  # a folder; None: ours\n"
        "models: list | None = None  # timm:<name>[=ckpt]\n"
        'proxies: list = [\n    "knn",\n]  # first sorts\n',
    )
    declared = notebook_parameters(nb)
    assert declared["images"] == {"type": "str | None", "default": "None", "help": "a folder; None: ours"}
    assert declared["models"]["help"] == "timm:<name>[=ckpt]" and declared["proxies"]["help"] == "first sorts"
    assert validate_parameters(nb, {"images": "x", "models": None}) == {"images": "x", "models": None}
    with pytest.raises(ParameterError, match="'images'.*must be str [|] None.*got int"):
        validate_parameters(nb, {"images": 3})


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
