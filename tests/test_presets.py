import json

import nbformat
import pytest

from expertlib.presets import SCALES, ParameterError, get_scale, notebook_parameters, validate_parameters


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
    assert get_scale("cpu").embedded is not None and get_scale("paper").arch == "R50x1"
    ps, paper = get_scale("paper-smoke"), get_scale("paper")
    # paper-smoke runs the paper's code paths: same data kind, architecture, loss, schedule and expert rule
    assert (ps.data, ps.arch, ps.upstream_loss, ps.upstream_schedule) == (
        paper.data,
        paper.arch,
        "sigmoid",
        "bit",
    )
    assert ps.writes_fixture and not paper.writes_fixture and paper.generic_weights == "BiT-M-R50x1.npz"
    # the released scales: the paper's downstream half, the same tasks and transfer recipe shape, nothing upstream
    rs, rel = get_scale("released-smoke"), get_scale("released")
    assert not rel.trains_upstream and not rs.trains_upstream and paper.trains_upstream
    assert rel.tasks == paper.tasks and rel.arch == "R50x1" and rel.task_resolution == "hyperrule"
    assert (
        rel.oracle_on == "val200"
        and rel.random_experts > 0
        and rel.oracle_pool > 0
        and rel.experts == paper.experts
    )
    assert (rs.data, rs.released_experts, rs.writes_fixture) == ("vtab", "released_experts", True)
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
