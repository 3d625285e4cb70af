"""reproduce's options and --param values: every one checked against its declared type before anything runs, and
none overwritten (#35); relative folders start at the repository root wherever the command runs, and a run with
other values never overwrites the default run's executed notebooks (#38). Papermill is replaced by a recorder,
so nothing executes (but for one kernel that checks it starts without the plain-TCP warning)."""

import pytest

from expertlib.run.parameters import ParameterError
from expertlib.run.reproduce import main, run


@pytest.fixture()
def executed(monkeypatch):
    """The (notebook, parameters, progress bar) papermill was asked to run, instead of running it; each "run"
    writes the input notebook as its output, and the kernel's working directory is kept in ``calls.cwd``."""
    import nbformat
    import papermill

    calls = []

    def record(nb, out, parameters, progress_bar, cwd=None, **kw):
        calls.append((nb, parameters, progress_bar))
        calls.cwd = cwd
        book = nbformat.read(nb, 4)
        book.metadata["papermill"] = {"input_path": nb, "output_path": out}  # as papermill records them
        nbformat.write(book, out)

    calls = type("Calls", (list,), {})()
    monkeypatch.setattr(papermill, "execute_notebook", record)
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


def test_help_lists_every_scale_of_the_registry(capsys):
    from expertlib.run.presets import SCALES

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert e.value.code == 0 and all(name in text for name in SCALES) and len(SCALES) >= 7


def test_relative_folders_start_at_the_repository_root_from_anywhere_in_it(tmp_path, monkeypatch, executed):
    root = tmp_path / "clone"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "expertlib"\n')
    monkeypatch.chdir(root / "notebooks")  # e.g. a terminal opened beside the notebooks
    (out,) = run("smoke", "results", "data", only=["01"])
    assert out == root.resolve() / "results" / "smoke" / "notebooks" / "01_data.ipynb" and out.is_file()
    assert executed.cwd == str(root.resolve())  # the kernel works at the root too
    assert [p.name for p in (root / "notebooks").iterdir()] == []  # nothing written beside the notebooks
    import nbformat

    # the executed notebook names its place as the checkout does, the same in every clone
    assert nbformat.read(out, 4).metadata.papermill.output_path == "results/smoke/notebooks/01_data.ipynb"


def test_a_run_with_other_values_keeps_its_notebooks_apart_from_the_default_run(tmp_path, executed, capsys):
    (default,) = run("smoke", str(tmp_path), only=["07"])
    kept = default.read_bytes()
    (other,) = run("smoke", str(tmp_path), only=["07"], extra={"k": 1, "progress": False})
    assert other == tmp_path / "smoke" / "notebooks" / "k=1" / "07_your_task.ipynb" and other.is_file()
    assert default.read_bytes() == kept and "executed notebooks go to" in capsys.readouterr().out
    (same,) = run(
        "smoke", str(tmp_path), only=["07"], extra={"k": 0, "progress": False}
    )  # the defaults, given
    assert same == default


def test_a_kernel_starts_without_the_plain_tcp_warning(tmp_path, capfd):
    import nbformat

    from expertlib.run.reproduce import execute

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    execute(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {}, False, tmp_path)
    assert nbformat.read(tmp_path / "out.ipynb", 4).cells[0].outputs[0]["text"] == "42\n"
    assert "without encryption" not in capfd.readouterr().err


def test_a_timed_run_resumed_with_only_keeps_the_times_it_measured_before(tmp_path, executed, monkeypatch):
    import json

    from expertlib.run import reproduce

    def stop_at_02(nb, *a, **kw):  # the run stops in 02 (a session ending), after 01 has finished
        if nb.name.startswith("02"):
            raise KeyboardInterrupt
        executed_one(nb, *a, **kw)

    executed_one = reproduce.execute
    monkeypatch.setattr(reproduce, "execute", stop_at_02)
    with pytest.raises(KeyboardInterrupt):
        run("smoke", str(tmp_path), only=["01", "02"], record_times=True, progress=False)
    summary = tmp_path / "smoke" / "summary.json"
    first = json.loads(summary.read_text())["run_seconds"]
    assert set(first) == {"01_data", "total", "machine"}
    monkeypatch.setattr(reproduce, "execute", executed_one)
    run("smoke", str(tmp_path), only=["02"], record_times=True, progress=False)
    times = json.loads(summary.read_text())["run_seconds"]
    assert times["01_data"] == first["01_data"] and "02_generic" in times
    assert times["total"] == pytest.approx(times["01_data"] + times["02_generic"])
