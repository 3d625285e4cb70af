import nbformat
import pytest

from expertlib.parameters import ParameterError, notebook_parameters, validate_parameters


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
    with pytest.raises(ValueError, match="unknown scale 'tpu'"):
        validate_parameters(nb, {"scale": "tpu"})


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
