"""One run per results folder: an advisory lock, and the sweep of what a killed run left behind.

Two runs writing the same ``results/<scale>/`` would interleave their tables and overwrite each other's models.
The first to start holds ``results/<scale>/.lock`` (``flock``: the operating system releases it when the
process ends, SIGKILL included, so a killed run never leaves a stale lock); a second one is refused at once
with the holder's pid. The lock is re-entrant within a process, and a ``reproduce`` run lends it to the
notebook kernels it starts (through :data:`HOLDER_ENV`), so its own notebooks are not refused.

Holding the lock also means nothing else is writing here, so :func:`sweep` can remove the temporary files
that an atomic write interrupted by SIGKILL leaves behind (``.<name>.<random>.tmp``, see
``runtime.atomic_write``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOLDER_ENV = "EXPERTLIB_LOCK_HOLDER"  # the folder whose lock this process's parent holds for it
LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # folder -> open file descriptor, for this process


class ResultsInUseError(RuntimeError):
    """Another process is writing the same results folder."""


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def hold(folder: str | os.PathLike) -> None:
    """Take ``folder``'s lock for the rest of this process (no-op if this process, or the run that started
    it, already holds it). Raises :class:`ResultsInUseError` naming the holder otherwise."""
    folder = Path(folder).resolve()
    if folder in _held or os.environ.get(HOLDER_ENV) == str(folder):
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if not _try_lock(fd):
        os.close(fd)
        holder = path.read_text().strip() or "unknown"
        raise ResultsInUseError(
            f"{folder} is in use by another run ({holder}). Wait for it to finish (or shut down the Jupyter "
            "kernel that ran a notebook there), or give this run another results_dir"
        )
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
    _held[folder] = fd
    sweep(folder)


def release(folder: str | os.PathLike) -> None:
    fd = _held.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


@contextmanager
def locked(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``folder``'s lock for the block and lend it to child processes (notebook kernels)."""
    folder = Path(folder).resolve()
    mine = folder not in _held and os.environ.get(HOLDER_ENV) != str(folder)
    hold(folder)
    before = os.environ.get(HOLDER_ENV)
    os.environ[HOLDER_ENV] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HOLDER_ENV, None)
        else:
            os.environ[HOLDER_ENV] = before
        if mine:
            release(folder)


def sweep(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of atomic writes that a killed run left under ``folder``; call it only while
    holding the lock."""
    gone = [p for p in Path(folder).rglob(".*.tmp") if p.is_file()]
    for p in gone:
        p.unlink()
    return gone
