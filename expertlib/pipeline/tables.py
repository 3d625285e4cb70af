"""The on-disk formats of the pipeline's tables, in one place: which columns name candidates by id, how a cell
holds several ids (a tie, a random sample, an oracle pool), how a table of candidates is read (and refused when
written the old way), the transfer runs' columns, and the archive of every fine-tune's predictions."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from expertlib.select.proxies import PICKED_BY
from expertlib.utils.runtime import atomic_write

PICK_COLUMNS = (*PICKED_BY, "random")
"""Every column of a picks table that names candidates by id (a tie: its ids in one cell, :func:`join_ids`)."""
RUN_COLUMNS = [
    "task",
    "group",
    "model",
    "kind",
    "expert",
    "mode",
    "seed",
    "accuracy",
    "seconds",
    "steps",
    "lr",
]
"""The columns of ``tables/transfer_runs.csv``: one row per fine-tune or linear probe."""


def join_ids(ids: Iterable[str]) -> str:
    """Several candidate ids in one table cell (a tie at the top, a random sample, an oracle pool)."""
    return ";".join(ids)


def split_ids(cell: object) -> list[str]:
    """The candidate ids of one table cell written by :func:`join_ids`."""
    return str(cell).split(";")


class OutdatedTableError(RuntimeError):
    """A table written before every table named candidates by one id with ``kind`` and ``expert`` columns."""


def read_candidate_table(path: Path, ids: Sequence[str] | None = None) -> pd.DataFrame:
    """A table of candidates' results (``selection_rankings``, ``transfer_runs``; ``selection_picks`` with the
    candidate ``ids`` its picks must name), refused with the way out when it names candidates the old way (bare
    adapter names, no ``kind`` column)."""
    table = pd.read_csv(path)
    old = ("proxy" in table and "model" not in table) or ("seed" in table and "kind" not in table)
    if ids is not None:
        chosen = [c for c in PICK_COLUMNS if c in table]
        named = {m for v in table[chosen].to_numpy().ravel() for m in split_ids(v)}  # a tie: several ids
        old = old or not named <= set(ids)
    if old:
        raise OutdatedTableError(
            f"{path} names candidates the old way (no 'model' id with 'kind' and 'expert' columns). Convert it "
            f"once with `python tools/migrate_candidate_ids.py {path.parent}`, or rerun from scratch "
            "(`make reproduce-fresh`)."
        )
    return table


# -- every fine-tune's predicted test classes: tables/transfer_predictions.npz ---------------------------------
def encode_predictions(pred: np.ndarray) -> str:
    """Predicted classes as base64 of little-endian uint16 (2 bytes an example: VTAB's largest task has 397
    classes), small enough to travel in a job's JSON result."""
    return base64.b64encode(np.asarray(pred, dtype="<u2").tobytes()).decode()


def decode_predictions(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u2").astype(np.int64)


def prediction_key(task: str, model: str, mode: str, seed: int) -> str:
    return f"{task}|{model}|{mode}|{seed}"


def save_predictions(path: Path, new: Mapping[str, np.ndarray]) -> None:
    """Add ``new`` (key -> predicted classes) to the compressed archive at ``path``: an ``.npz`` that
    ``np.load`` reads, written atomically with sorted members and fixed timestamps, so the same predictions
    give the same bytes (numpy's own ``savez`` stamps the time)."""
    import io
    import zipfile

    if not new:
        return
    arrays = {**load_predictions(path), **new}

    def write(p: Path) -> None:
        with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
            for key in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(
                    buf, np.ascontiguousarray(arrays[key], dtype=np.uint16), allow_pickle=False
                )
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, buf.getvalue())

    atomic_write(path, write)


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    """Every fine-tune's predicted test classes, keyed by :func:`prediction_key` ({} when none were stored)."""
    return {k: v.astype(np.int64) for k, v in np.load(path).items()} if path.exists() else {}
