"""What a downloaded file must be before it takes its place in the data root.

- BiT's ``.npz``: a zip archive that numpy reads, holding BiT's root convolution.
- A released expert's compressed SavedModel (``.tar.gz``): a tar archive whose members stay inside it, and whose
  every tensor matches the CRC32C its checkpoint records (the very checks ``python -m expertlib.convert`` runs).
- Every file: its size and SHA-256, recorded in the data root's lock file on its first download and verified on
  every later one; a mismatch refuses the file and prints both hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

from expertlib.models.convert import ConversionError, check_source
from expertlib.models.tfcheckpoint import TFCheckpointError, read_saved_model
from expertlib.utils.runtime import atomic_write_json

LOCK_NAME = "downloads.lock.json"
ROOT_KERNEL = "resnet/root_block/standardized_conv2d/kernel"


class LockMismatchError(ValueError):
    """A file whose size or SHA-256 differs from what the lock file recorded for it."""


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_npz(path: str | os.PathLike) -> None:
    """A BiT ``.npz``: numpy reads it and it holds BiT's root convolution kernel."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz (zip) archive: the download is not BiT's weights file")
    try:
        with np.load(path) as arrays:
            if ROOT_KERNEL not in arrays.files:
                raise ValueError(f"{path} holds no {ROOT_KERNEL}: not a BiT ResNet-v2 .npz")
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path} cannot be read as an .npz ({e}): download it again") from None


def check_saved_model(path: str | os.PathLike) -> None:
    """A compressed SavedModel: a safe, complete tar archive whose tensors pass their CRC32C checks."""
    try:
        check_source(path)
        read_saved_model(path)
    except (ConversionError, TFCheckpointError) as e:
        raise ValueError(str(e)) from None


class DownloadLock:
    """Sizes and SHA-256 of the files fetched into a data root (``<root>/downloads.lock.json``), by path
    relative to the root. Safe to share between download threads."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self._lock = threading.Lock()
        try:
            self.entries: dict[str, dict] = json.loads(self.path.read_text()) if self.path.exists() else {}
        except ValueError as e:
            raise ValueError(f"{self.path} is not valid JSON ({e}): restore it, or delete it to record the files "
                             "afresh") from None  # fmt: skip

    def verify_or_record(self, rel: str, path: str | os.PathLike, url: str = "") -> str:
        """Verify the file at ``path`` (which lands at ``<root>/<rel>``) against its entry, or record it when it
        has none. Returns 'verified' or 'recorded'; raises :class:`LockMismatchError` naming both hashes."""
        size, digest = os.path.getsize(path), sha256(path)
        with self._lock:
            entry = self.entries.get(rel)
            if entry is None:
                self.entries[rel] = {"size": size, "sha256": digest, "url": url,
                                     "recorded": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
                atomic_write_json(self.path, self.entries)
                return "recorded"
        if entry["size"] != size or entry["sha256"] != digest:
            raise LockMismatchError(
                f"{rel}: SHA-256 {digest} ({size:,} bytes) differs from {entry['sha256']} ({entry['size']:,} bytes) "
                f"recorded in {self.path} on {entry.get('recorded', '?')}; the file is refused. If the new one is "
                f"right (a re-release), delete the entry {rel!r} from the lock file and run the command again"
            )
        return "verified"
