"""Published VTAB-1k numbers to put beside ours, always labelled as published (accuracy in %, mean over tasks).

Sources: BiT's repository README (its re-run of VTAB-1k with BiT-HyperRule) and papers-with-code's entry for
this paper's experts. The paper's own per-group table for R50x1 experts was not reachable offline: these are
the numbers we could cite, not the paper's table. ``None``: not published in that source.
"""

from __future__ import annotations

import pandas as pd

PUBLISHED = (
    {"model": "Experts (I21k+JFT), paper", "source": "papers-with-code, 'ScalableExperts (I21k+JFT)'",
     "natural": None, "specialized": None, "structured": None, "mean": 72.3},
    {"model": "BiT-M R152x4", "source": "BiT repository README, VTAB-1k re-run",
     "natural": 80.77, "specialized": 85.67, "structured": 61.08, "mean": 73.51},
    {"model": "BiT-M R101x3", "source": "BiT repository README, VTAB-1k re-run",
     "natural": 80.29, "specialized": 85.75, "structured": 59.40, "mean": 72.65},
)  # fmt: skip


def published_table() -> pd.DataFrame:
    return pd.DataFrame(PUBLISHED)


def beside_published(vtab: pd.DataFrame, scale: str, caveat: str = "") -> pd.DataFrame:
    """Our VTAB-style table (method, label, group columns and mean, accuracies in [0, 1]) in % beside the
    published rows; a ``who`` column says "ours (<scale> scale)" or "published". ``caveat``
    (:func:`split_caveat`) is appended to every one of our rows' ``who`` and ``source``: where our splits are not
    VTAB's, the table says so on the rows it compares."""
    groups = ["natural", "specialized", "structured", "mean"]
    ours = vtab.assign(**{g: vtab[g] * 100 if g in vtab else float("nan") for g in groups})
    tail = f"; {caveat}" if caveat else ""
    ours = ours.assign(
        model=ours["label"], source=f"this repository, {scale} scale{tail}", who=f"ours ({scale} scale{tail})"
    )
    theirs = published_table().assign(who="published")
    cols = ["who", "model", *groups, "source"]
    return pd.concat([ours[cols], theirs[cols]], ignore_index=True)


def split_caveat(tasks: dict[str, tuple[bool, bool | None]]) -> str:
    """What a comparison with published VTAB-1k numbers must say about our splits, from each task's
    ``(vtab_splits, tfds_counts_match)`` (:class:`~expertlib.datasets.benchmark.TaskInfo`): "splits not VTAB's"
    naming the tasks read from folders or torchvision, and "TFDS version differs" naming those whose shards hold
    other example counts than the registry's published TFDS version; "" when every task is VTAB's own."""
    notes = []
    other = sorted(t for t, (own, _) in tasks.items() if not own)
    if other:
        notes.append(f"splits not VTAB's ({', '.join(other)})")
    version = sorted(t for t, (own, match) in tasks.items() if own and match is False)
    if version:
        notes.append(f"TFDS version differs ({', '.join(version)})")
    return "; ".join(notes)
