import nbformat
import pytest

from expertlib.run.parameters import ParameterError, notebook_parameters, validate_parameters


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


def test_a_run_with_other_values_is_named_by_them_and_the_defaults_by_nothing(tmp_path):
    from expertlib.run.parameters import changed_values, declared_defaults, variant_name

    defaults = declared_defaults(_notebook(tmp_path / "n.ipynb"))
    assert defaults == {"scale": "smoke", "seed": 0, "lr": 0.1}
    assert changed_values({"seed": 0, "lr": 0.1, "progress": False}, defaults) == {}  # bars change no output
    assert variant_name({}) == ""
    assert variant_name(changed_values({"seed": 3, "lr": 0.1}, defaults)) == "seed=3"
    assert variant_name({"seed": 3, "k": 1}) == "k=1,seed=3"  # sorted: the same folder whatever the order
    assert variant_name({"proxies": ["knn", "leep"]}) == "proxies=knn+leep"
    # a value that cannot stand in a folder name as it is gets a hash of the exact values: never a shared folder
    a, b = variant_name({"images": "/home/a/pics"}), variant_name({"images": "/home/b/pics"})
    assert a != b and "/" not in a + b and a.startswith("images=_home_a_pics-")
    long = variant_name({"models": [f"timm:model_number_{i}" for i in range(20)]})
    assert len(long) <= 48 + 9 and long != variant_name(
        {"models": [f"timm:model_number_{i}" for i in range(21)]}
    )
