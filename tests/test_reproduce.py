"""reproduce's options and --param values: every one checked against its declared type before anything runs, and
none overwritten (#35). Papermill is replaced by a recorder, so nothing executes."""

import pytest

from expertlib.parameters import ParameterError
from expertlib.reproduce import main, run


@pytest.fixture()
def executed(monkeypatch):
    """The (notebook, parameters, progress bar) papermill was asked to run, instead of running it."""
    import papermill

    calls = []
    monkeypatch.setattr(papermill, "execute_notebook",
                        lambda nb, out, parameters, progress_bar, **kw: calls.append((nb, parameters, progress_bar)))  # fmt: skip
    return calls


@pytest.mark.parametrize(
    "args, message",
    [
        (["--param", "progress=yes"], "parameter 'progress' of 01_data.ipynb must be bool .*got str 'yes'"),
        (["--param", "progress=True", "--no-progress"], "--param progress=True disagrees with --no-progress"),
        (["--param", "seed=1.5"], "parameter 'seed' of 01_data.ipynb must be int"),
        (["--param", "device='gpu'"], "parameter 'device' must be 'auto', 'cpu' or 'cuda"),
        (["--param", "seeds=1"], "unknown parameter 'seeds'.*Did you mean 'seed'"),
    ],
)
def test_a_mistyped_value_is_refused_before_anything_runs(tmp_path, capsys, executed, args, message):
    import re

    assert main(["--scale", "smoke", "--results-dir", str(tmp_path / "r"), "--only", "01", *args]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not executed and not (tmp_path / "r").exists()


def test_a_repeated_param_is_refused_not_overwritten(tmp_path, capsys, executed):
    with pytest.raises(SystemExit) as e:
        main(["--scale", "smoke", "--results-dir", str(tmp_path), "--param", "seed=1", "--param", "seed=2"])
    assert e.value.code == 2 and "--param seed is given twice (1 and 2)" in capsys.readouterr().err
    assert not executed


def test_values_reach_the_notebooks_as_given(tmp_path, executed):
    run("smoke", str(tmp_path), only=["01"], extra={"progress": False, "seed": 3})
    (_, params, bar), = executed  # fmt: skip
    assert params["progress"] is False and bar is False and params["seed"] == 3
    executed.clear()
    main(
        [
            "--scale",
            "smoke",
            "--results-dir",
            str(tmp_path),
            "--only",
            "01",
            "--param",
            "progress=False",
            "--no-progress",
        ]
    )
    assert executed[0][1]["progress"] is False  # the two ways agree
    executed.clear()
    run("smoke", str(tmp_path), only=["01"])
    assert executed[0][1]["progress"] is True  # the default


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"progress": "yes"}, "progress must be True or False, got str 'yes'"),
        ({"record_times": 1}, "record_times must be True or False"),
        ({"only": "01"}, "only must be a list of notebook name prefixes"),
        ({"results_dir": 7}, "parameter 'results_dir' of 01_data.ipynb must be str"),
    ],
)
def test_every_option_of_run_is_checked(tmp_path, executed, kwargs, message):
    kwargs = {"results_dir": str(tmp_path), "only": ["01"], **kwargs}
    with pytest.raises(ParameterError, match=message):
        run("smoke", **kwargs)
    assert not executed
