"""The results-folder lock: re-entrant in a process, lent to child processes, refused to others."""

import os
import subprocess
import sys
from pathlib import Path

from expertlib.utils import runlock

ROOT = Path(__file__).resolve().parent.parent


def _other_process_takes(folder: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from expertlib.utils import runlock; runlock.hold({str(folder)!r})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_held_folders_are_refused_elsewhere_lent_to_children_and_freed_after(tmp_path):
    runlock.hold(tmp_path)
    runlock.hold(tmp_path)  # re-entrant in this process
    refused = _other_process_takes(tmp_path)
    assert (
        refused.returncode != 0
        and "ResultsInUseError" in refused.stderr
        and f"pid {os.getpid()}" in refused.stderr
    )
    runlock.release(tmp_path)
    assert _other_process_takes(tmp_path).returncode == 0


def test_locked_lends_the_lock_to_child_processes_only_inside_the_block(tmp_path):
    with runlock.locked(tmp_path):
        assert os.environ[runlock.HOLDER_ENV] == str(tmp_path.resolve())
        assert _other_process_takes(tmp_path).returncode == 0  # a notebook kernel of this run
        assert _other_process_takes(tmp_path, env={**os.environ, runlock.HOLDER_ENV: ""}).returncode != 0
    assert runlock.HOLDER_ENV not in os.environ
    assert _other_process_takes(tmp_path).returncode == 0


def test_sweep_removes_only_temporaries_of_atomic_writes(tmp_path):
    (tmp_path / "t").mkdir()
    stale, kept = tmp_path / "t" / ".a.csv.x1.tmp", tmp_path / "t" / "a.csv"
    stale.write_text("half")
    kept.write_text("whole")
    assert runlock.sweep(tmp_path) == [stale] and kept.exists() and not stale.exists()


def test_the_refusal_names_the_fix(tmp_path):
    runlock.hold(tmp_path)
    proc = _other_process_takes(tmp_path)
    assert "another results_dir" in proc.stderr
    runlock.release(tmp_path)
