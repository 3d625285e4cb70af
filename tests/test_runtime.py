"""Atomic writes (the whole new file or the old one, with the permissions a plain open() would give), the
compile setting, and where relative paths start (the repository root, wherever in the checkout a process
runs)."""

import os
import stat
from pathlib import Path

import pytest

from expertlib.utils.runtime import atomic_write, atomic_write_text


def test_atomic_write_gives_umask_permissions_not_mkstemps_private_ones(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    path = atomic_write_text(tmp_path / "t.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "t.txt", "old")

    def half(p):
        p.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_compile_auto_means_cuda_only_and_a_bad_setting_is_named():
    from expertlib.utils.runtime import compiled, resolve_compile

    assert resolve_compile("auto", "cuda") and resolve_compile("auto", "cuda:1")
    assert not resolve_compile("auto", "cpu") and not resolve_compile("auto", "mps")
    assert resolve_compile(True, "cpu") and not resolve_compile(False, "cuda")
    with pytest.raises(ValueError, match="compile must be True, False or 'auto', got 'on'"):
        resolve_compile("on", "cuda")

    def fn(x):
        return x

    assert compiled(fn, "auto", "cpu") is fn and compiled(fn, False, "cuda") is fn
    assert compiled(fn, True, "cpu") is not fn


def _checkout(root, name="expertlib"):
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "0"\n')
    return root


def test_relative_paths_start_at_the_checkout_that_holds_the_working_directory(tmp_path):
    from expertlib.utils.runtime import repository_root

    repo = Path(__file__).resolve().parents[1]
    assert (
        repository_root(repo / "notebooks") == repo
        and repository_root(repo / "expertlib" / "pipeline") == repo
    )
    ours = _checkout(tmp_path / "clone")
    (ours / "results" / "cpu").mkdir(parents=True)
    assert repository_root(ours / "results" / "cpu") == ours.resolve()
    other = _checkout(tmp_path / "another", name="someone-else")  # a project that is not expertlib
    assert repository_root(other / "notebooks") is None
    assert (
        repository_root(tmp_path) is None
    )  # outside every checkout (an installed expertlib): the cwd's rules


def test_a_kernel_started_in_notebooks_moves_to_the_root_and_one_elsewhere_stays(
    tmp_path, monkeypatch, capsys
):
    from expertlib.utils.runtime import work_at_repository_root

    root = _checkout(tmp_path / "clone").resolve()
    monkeypatch.chdir(root / "notebooks")  # where JupyterLab starts a notebook's kernel
    assert work_at_repository_root() == root and Path.cwd() == root
    assert f"working in the repository root {root}" in capsys.readouterr().out
    assert work_at_repository_root() == root and not capsys.readouterr().out  # already there: silent
    monkeypatch.chdir(tmp_path)
    assert work_at_repository_root() == tmp_path.resolve() and not capsys.readouterr().out


def test_kernels_are_asked_for_an_encrypted_channel_where_pyzmq_can():
    import zmq

    from expertlib.utils.runtime import kernel_transport_encryption

    # jupyter_client 8.10 has the setting; pyzmq's wheels have CurveZMQ
    assert kernel_transport_encryption() == ("auto" if zmq.has("curve") else "disabled")
