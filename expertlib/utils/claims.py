"""Claim files: which rank is running which job of a shared job list, on a folder every rank sees.

A rank takes a job by creating ``<folder>/<key>.claim`` with ``O_CREAT | O_EXCL`` (one creator wins, on a local
disk and on NFS alike) and releases it once the job's result is written. While it works, a heartbeat thread
touches each claim it holds every ``ttl / 4`` seconds. A claim is dead, and may be taken over, when

- it was written by another run (another ``run`` id: what a killed run left behind; a new run starts at once);
- or its modification time has not changed for ``ttl`` seconds of the watcher's own clock (the holder was
  killed or hangs). Changes are watched, never compared with the watcher's time, so clocks that differ from
  node to node do not matter.

Taking over renames the dead claim away first (one renamer wins) and checks that it renamed the claim it judged
dead, so two ranks rarely redo the same job, and when they do, both write the same result (a job's result is a
pure function of its recipe).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLAIM_TTL = (
    300.0  # seconds without a heartbeat before a claim is dead: above NFS's attribute cache (up to 60 s)
)


class Claims:
    """The claims of one run (``run``: an id every rank of the run shares) by ``rank``, in ``folder``."""

    def __init__(self, folder: str | os.PathLike, run: str, rank: int = 0, ttl: float = CLAIM_TTL) -> None:
        if ttl <= 0:
            raise ValueError(f"a claim's ttl must be positive, got {ttl}")
        self.folder, self.run, self.rank, self.ttl = Path(folder), run, rank, float(ttl)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.held: set[str] = set()
        self._seen: dict[str, tuple[int, int, float]] = {}  # key -> (inode, mtime_ns, when first seen so)
        self._lock = threading.Lock()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.claim"

    def take(self, key: str) -> bool:
        """Claim ``key``: True when this rank now holds it (it was free, or its holder is dead)."""
        for _ in range(2):  # free, or dead and taken over then free
            try:
                fd = os.open(self.path(key), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._take_over(key):
                    return False
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"run": self.run, "rank": self.rank, "host": socket.gethostname(), "pid": os.getpid(),
                           "since": time.time()}, f)  # fmt: skip
            with self._lock:
                self.held.add(key)
            return True
        return False

    def release(self, key: str) -> None:
        """Give ``key`` up (its result is written, or it will not be run here)."""
        with self._lock:
            self.held.discard(key)
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass

    def holder(self, key: str) -> dict | None:
        """What the claim of ``key`` says (run, rank, host, pid), or None when there is none or it is being
        written."""
        try:
            return json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None

    def is_dead(self, key: str) -> bool:
        """Whether the claim on ``key`` may be taken over: another run's, or its heartbeat stopped ``ttl`` ago."""
        path = self.path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return False  # nothing to take over: take() creates it
        info = self.holder(key)
        if info is not None and info.get("run") != self.run:
            return True
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is None or seen[:2] != (st.st_ino, st.st_mtime_ns):
            self._seen[key] = (st.st_ino, st.st_mtime_ns, now)
            return False
        return now - seen[2] >= self.ttl

    def _take_over(self, key: str) -> bool:
        if not self.is_dead(key):
            return False
        path = self.path(key)
        judged = path.stat().st_ino if path.exists() else None
        tomb = path.with_name(f"{path.name}.{uuid.uuid4().hex}.dead")
        try:
            os.rename(path, tomb)
        except FileNotFoundError:
            return False  # another rank took it over first
        if os.stat(tomb).st_ino != judged:  # a fresh claim replaced the dead one meanwhile: put it back
            try:
                os.link(tomb, path)
            except FileExistsError:
                pass
            os.unlink(tomb)
            return False
        os.unlink(tomb)
        self._seen.pop(key, None)
        return True

    def beat(self) -> None:
        """Touch every claim this rank holds (the heartbeat)."""
        with self._lock:
            keys = list(self.held)
        stamp = time.time_ns()
        for key in keys:
            try:
                os.utime(self.path(key), ns=(stamp, stamp))
            except FileNotFoundError:
                pass  # released meanwhile, or taken over after a stall: the result decides, not the claim

    @contextmanager
    def heartbeat(self) -> Iterator[Claims]:
        """Beat every ``ttl / 4`` seconds in a thread while the block runs; release what is still held after."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.ttl / 4):
                self.beat()

        thread = threading.Thread(target=loop, name="claims-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            for key in list(self.held):
                self.release(key)
