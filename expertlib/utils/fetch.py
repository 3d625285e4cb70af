"""Files over HTTP(S), with the standard library alone: resumable, several at a time, retried, written atomically.

Each file is streamed into ``<dest>.part`` and renamed onto ``dest`` only once it is complete and its checks
pass, so ``dest`` is never half a file. A ``.part`` left by a dropped connection, a kill or a full disk is
kept, and the next try asks the server for the rest (an HTTP ``Range`` request; a server that ignores it sends
the whole file again, which is taken from the start). Network errors and 5xx answers are retried with
exponential back-off; 4xx answers (404, 403, ...) are not. An HTML or XML page served in place of the file (a
login or error page) is refused, naming its ``<title>``. Every failure is one line that names the file, the
URL and the ``--mirror`` option.
"""

from __future__ import annotations

import errno
import html
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 20
USER_AGENT = "expertlib-download/0.1 (+python urllib)"
MIRROR_HINT = "or fetch it from a mirror with --mirror URL (a server holding the data root's layout)"


class DownloadError(RuntimeError):
    """A file that could not be fetched or was refused; the message is one line naming the file and the URL."""


@dataclass(frozen=True)
class Remote:
    """One file to fetch: ``url`` into ``dest``; ``name`` shows it in bars and messages; ``check(path)`` raises
    :class:`DownloadError` (or ``ValueError``) when a landed file is not what it should be."""

    name: str
    url: str
    dest: Path
    check: Callable[[Path], None] | None = field(default=None, compare=False)

    @property
    def part(self) -> Path:
        return self.dest.with_name(self.dest.name + ".part")


def _write_chunk(f, data: bytes) -> None:
    """Every byte goes to disk here (one place for a full disk to be caught, and for tests to simulate one)."""
    f.write(data)


def page_title(head: bytes) -> str | None:
    """The title of an HTML/XML page, from its first bytes; None when they are not a page."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:65536]
    if not re.match(rb"(?i)<(!doctype|html|\?xml|head|body|!--)", text):
        return None
    m = re.search(rb"(?is)<title[^>]*>(.*?)</title>", text)
    if m:
        return html.unescape(" ".join(m[1].decode("utf-8", "replace").split()))[:120] or "(an empty title)"
    m = re.search(rb"(?is)<(?:Code|Message)>(.*?)</(?:Code|Message)>", text)  # a cloud storage error document
    return html.unescape(m[1].decode("utf-8", "replace").strip())[:120] if m else "(no title)"


def refuse_page(remote: Remote, path: Path) -> None:
    """Refuse a landed file that is an HTML or XML page (a login, consent or error page saved in its place)."""
    with open(path, "rb") as f:
        title = page_title(f.read(65536))
    if title is not None:
        raise DownloadError(f"{remote.name}: {remote.url} sent a web page titled {title!r}, not the file (a login or "
                            f"error page?); open the URL in a browser to see why, {MIRROR_HINT}")  # fmt: skip


def _retryable(e: BaseException) -> bool:
    if isinstance(e, urllib.error.HTTPError):
        return e.code >= 500 or e.code in (408, 429)
    return isinstance(e, urllib.error.URLError | http.client.HTTPException | ConnectionError | socket.timeout
                      | TimeoutError)  # fmt: skip


def _describe(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"answered HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"cannot be reached ({e.reason}): no network?"
    return f"failed ({type(e).__name__}: {e})"


def _once(remote: Remote, bar: tqdm | None, timeout: float) -> None:
    """One attempt: resume ``remote.part`` from its size (or start it), stream to its end."""
    have = remote.part.stat().st_size if remote.part.exists() else 0
    request = urllib.request.Request(
        remote.url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    )
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs we build
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing past what we have: the partial file is the whole file
            return
        raise
    with response:
        if have and response.status != 206:  # the server ignored the range: the whole file again
            have = 0
        elif have:
            start = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not start or int(start[1]) != have:
                have = 0
        length = response.headers.get("Content-Length")
        if bar is not None:
            bar.reset(total=have + int(length) if length else None)
            bar.update(have)
        got = have
        with open(remote.part, "ab" if have else "wb") as f:
            while True:
                data = response.read(CHUNK)
                if not data:
                    break
                try:
                    _write_chunk(f, data)
                except OSError as e:
                    if e.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise DownloadError(f"{remote.name}: the disk is full after {got:,} bytes "
                                            f"({remote.dest.parent}, {e.strerror}); the partial file {remote.part} is "
                                            "kept: free some space and run the same command again to resume "
                                            "it") from None  # fmt: skip
                    raise
                got += len(data)
                if bar is not None:
                    bar.update(len(data))
        if length and got - have != int(length):
            raise http.client.IncompleteRead(b"", int(length) - (got - have))


def fetch(remote: Remote, retries: int = 5, backoff: float = 1.0, timeout: float = 60.0,
          bar: tqdm | None = None) -> Path:  # fmt: skip
    """Download ``remote`` (resuming its ``.part``), check it, and move it onto ``remote.dest``. Raises
    :class:`DownloadError` with one line naming the file, the URL and ``--mirror``."""
    remote.dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        try:
            _once(remote, bar, timeout)
            break
        except DownloadError:
            raise
        except Exception as e:  # noqa: BLE001 - sorted into retried and final below
            if not _retryable(e) or attempt == retries:
                tries = f" after {attempt + 1} tries" if attempt else ""
                kept = (
                    f"; the partial file {remote.part} is kept for a resume" if remote.part.exists() else ""
                )
                raise DownloadError(f"{remote.name}: {remote.url} {_describe(e)}{tries}{kept}; run the same "
                                    f"command again, {MIRROR_HINT}, or put the file at {remote.dest} by "
                                    "hand") from None  # fmt: skip
            time.sleep(backoff * 2**attempt)
    try:
        refuse_page(remote, remote.part)
        if remote.check is not None:
            remote.check(remote.part)
    except (DownloadError, ValueError) as e:
        remote.part.unlink(missing_ok=True)  # not the file: a later try starts afresh
        raise DownloadError(
            str(e) if isinstance(e, DownloadError) else f"{remote.name}: from {remote.url}: {e}"
        ) from None
    os.replace(remote.part, remote.dest)
    return remote.dest


def fetch_all(
    remotes: Sequence[Remote], jobs: int = 4, progress: bool = True, **kwargs
) -> list[DownloadError]:
    """Fetch ``remotes`` ``jobs`` at a time, a bar per file in flight and one overall; every file is tried
    (one failure does not stop the others). Returns the failures."""
    failures: list[DownloadError] = []
    slots = list(range(1, max(1, jobs) + 1))
    with tqdm(total=len(remotes), unit="file", desc="downloads", disable=not progress, position=0) as overall:

        def one(remote: Remote) -> None:
            slot = slots.pop()
            try:
                with tqdm(desc=remote.name, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                          position=slot, disable=not progress) as bar:  # fmt: skip
                    fetch(remote, bar=bar, **kwargs)
            finally:
                slots.append(slot)

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = {pool.submit(one, r): r for r in remotes}
            for future in as_completed(futures):
                try:
                    future.result()
                except DownloadError as e:
                    failures.append(e)
                    overall.write(f"failed: {e}")
                overall.update()
    return failures
