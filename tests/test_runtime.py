"""Atomic writes (the whole new file or the old one, with the permissions a plain open() would give), and the
compile setting."""

import os
import stat

import pytest

from expertlib.runtime import atomic_write, atomic_write_text


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
    from expertlib.runtime import compiled, resolve_compile

    assert resolve_compile("auto", "cuda") and resolve_compile("auto", "cuda:1")
    assert not resolve_compile("auto", "cpu") and not resolve_compile("auto", "mps")
    assert resolve_compile(True, "cpu") and not resolve_compile(False, "cuda")
    with pytest.raises(ValueError, match="compile must be True, False or 'auto', got 'on'"):
        resolve_compile("on", "cuda")

    def fn(x):
        return x

    assert compiled(fn, "auto", "cpu") is fn and compiled(fn, False, "cuda") is fn
    assert compiled(fn, True, "cpu") is not fn
