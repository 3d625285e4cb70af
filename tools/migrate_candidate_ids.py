"""Convert a results folder's tables, once, to one candidate id per row with ``kind`` and ``expert`` columns.

Before this change the selection tables named adapter experts bare (``animal``) while the transfer runs named
them ``adapter:animal``, and code told kinds apart by parsing those strings. This one-off conversion rewrites
``selection_rankings.csv`` (column ``expert`` -> ``model``, the id), ``selection_picks.csv`` (every pick and the
``random_sample``/``oracle_pool`` lists as ids) and ``transfer_runs.csv`` (``kind`` and ``expert`` beside
``model``). Numbers are untouched. The old format's ids encoded ``kind:expert`` (a bare name was an adapter
expert), which is the one place a string is read apart, here and nowhere in the library. Idempotent.

    python tools/migrate_candidate_ids.py results/cpu/tables
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from expertlib.models.candidates import BASE, EXTRA
from expertlib.pipeline.tables import PICK_COLUMNS
from expertlib.utils.runtime import atomic_write_csv, atomic_write_json


def old_id(name: str) -> str:
    """An old table's name as a candidate id: a bare name (not B's) was an adapter expert."""
    return name if name in (BASE, EXTRA) or ":" in name else f"adapter:{name}"


def kind_and_expert(model: str) -> tuple[str, str]:
    if model in (BASE, EXTRA):
        return "generic", ""
    kind, _, expert = model.partition(":")
    return (kind, "") if kind == "dat" else (kind, expert)


def with_identity(table: pd.DataFrame) -> pd.DataFrame:
    out = table.drop(columns=[c for c in ("kind", "expert") if c in table.columns and c != "model"])
    at = list(out.columns).index("model") + 1
    pairs = [kind_and_expert(m) for m in out["model"]]
    out.insert(at, "kind", [k for k, _ in pairs])
    out.insert(at + 1, "expert", [e for _, e in pairs])
    return out


def migrate(tables: Path) -> list[Path]:
    changed = []
    rank_path, pick_path, runs_path = (tables / f"{n}.csv" for n in ("selection_rankings", "selection_picks",
                                                                     "transfer_runs"))  # fmt: skip
    if rank_path.exists():
        r = pd.read_csv(rank_path)
        if "model" not in r:
            r = r.rename(columns={"expert": "model"})
            r["model"] = r["model"].map(old_id)
            atomic_write_csv(rank_path, with_identity(r))
            changed.append(rank_path)
    if pick_path.exists():
        p = pd.read_csv(pick_path)
        cols = [c for c in PICK_COLUMNS if c in p]
        if not all(":" in str(v) or v in (BASE, EXTRA) for v in p[cols].to_numpy().ravel()):
            for c in cols:
                p[c] = p[c].map(old_id)
            for c in ("random_sample", "oracle_pool"):
                if c in p:
                    p[c] = p[c].map(lambda s: ";".join(old_id(n) for n in str(s).split(";")))
            atomic_write_csv(pick_path, p)
            changed.append(pick_path)
    if runs_path.exists():
        t = pd.read_csv(runs_path)
        if "kind" not in t:
            atomic_write_csv(runs_path, with_identity(t))
            changed.append(runs_path)
    return changed


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python tools/migrate_candidate_ids.py RESULTS/SCALE/tables")
    done = migrate(Path(sys.argv[1]))
    if done:  # the tables keep the commit that computed them; provenance notes the conversion beside it
        book = Path(sys.argv[1]) / "provenance.json"
        known = json.loads(book.read_text()) if book.exists() else {}
        for p in done:
            known.setdefault(p.name, {})["migrated"] = "candidate ids (tools/migrate_candidate_ids.py)"
        atomic_write_json(book, known)
    print("converted:", ", ".join(p.name for p in done) or "nothing (already in the new format)")
