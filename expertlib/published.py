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


def beside_published(vtab: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Our VTAB-style table (method, label, group columns and mean, accuracies in [0, 1]) in % beside the
    published rows; a ``who`` column says "ours (<scale> scale)" or "published"."""
    groups = ["natural", "specialized", "structured", "mean"]
    ours = vtab.assign(**{g: vtab[g] * 100 if g in vtab else float("nan") for g in groups})
    ours = ours.assign(
        model=ours["label"], source=f"this repository, {scale} scale", who=f"ours ({scale} scale)"
    )
    theirs = published_table().assign(who="published")
    cols = ["who", "model", *groups, "source"]
    return pd.concat([ours[cols], theirs[cols]], ignore_index=True)
