"""The numbers the README and ``docs/`` state about results, written by code from the committed tables.

A page marks each generated block ``<!-- kind:argument -->`` ... ``<!-- /kind -->``; :func:`render` gives its
content from ``results/``, :func:`refresh` rewrites every block of the pages, and :func:`stale` lists the
blocks that differ (a test asserts there are none, so no stated number outlives its table):

- ``plan:<scale>``: the compute plan and its priced options (``tables/plan.csv``, ``plan_options.csv``);
- ``claims:<scale>/<family>``: the analysis plan's hypotheses of one family, tested (``tables/claims.csv``);
  ``claims:<scale>/<family>/decided``: only those the data decide (supported, contradicted or a difference
  shown), with how many of the family they are;
- ``verdicts:<scale>/<family>``: one line per verdict naming the hypotheses that reached it;
- ``table:<scale>/<name>``: a results table as written (``tables/<name>.md``);
- ``changes:<scale>/<commit>``: the decided hypotheses of the run committed at ``<commit>`` (its ``claims.csv``,
  copied to ``docs/history/claims_<scale>_<commit>.csv``) beside the current run's, verdicts that changed named.

``python -m expertlib.pipeline.docs`` (``make docs``) refreshes the pages after a run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

from expertlib.pipeline.analysis import HOLM_FAMILIES, PROXY_TAU, UNDECIDED, VERDICTS

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("README.md", "docs/results.md", "docs/paper_scale.md")
# earlier runs' claims.csv as committed, named claims_<scale>_<commit>.csv
HISTORY = Path("docs") / "history"
BLOCK = re.compile(r"<!-- (\w+):([\w/.-]+) -->\n(.*?)<!-- /\1 -->", re.S)  # content: whole lines, maybe none


def claims_markdown(claims: pd.DataFrame, family: str, decided: bool = False) -> str:
    """One family's hypotheses: the difference in points with its 95% interval, the corrected p, the verdict;
    ``decided``: only those whose verdict is not "not shown", and a line saying how many of the family."""
    everyone = claims[claims.family == family]
    rows = everyone[~everyone.verdict.isin(UNDECIDED)] if decided else everyone
    adj = "Holm p" if family in HOLM_FAMILIES else "BH q"
    lines = [f"| id | claim | regime | difference [95% CI] | {adj} | verdict |", "|---|---|---|---|---|---|"]
    for r in rows.itertuples():
        p = "" if pd.isna(r.p_adjusted) else f"{r.p_adjusted:.3f}"
        mark = " (post hoc)" if r.post_hoc else ""
        lines.append(f"| {r.id} | {r.claim}{mark} | {r.regime} | {estimate_text(r)} | {p} | {r.verdict} |")
    if decided:
        lines = (lines if len(rows) else []) + ["", f"{len(rows)} of the {len(everyone)} {family} hypotheses decided "
                                                "by the data; the others are not shown either way."]  # fmt: skip
    return "\n".join(lines).lstrip("\n")


def estimate_text(r) -> str:
    """A hypothesis's difference with its 95% interval: accuracies in points; P9 (log10) and a tau (its fall
    across regimes, one proxy's over another's) as they are; empty when the run could not test it."""
    if pd.isna(r.estimate):
        return ""
    if r.id != "P9" and "tau" not in r.comparison and getattr(r, "measure", "") != PROXY_TAU:
        return f"{r.estimate * 100:+.1f} [{r.ci_low * 100:+.1f}, {r.ci_high * 100:+.1f}]"
    return f"{r.estimate:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"


def changes_markdown(before: pd.DataFrame, after: pd.DataFrame) -> str:
    """Two runs' claims side by side, for the hypotheses either run decided (verdict other than "not shown"):
    the difference and verdict before, and now; then how many the two runs agree on."""
    b, a = before.set_index("id", drop=False), after.set_index("id", drop=False)
    ids = list(dict.fromkeys([*a.index, *b.index]))
    decided = lambda t, i: i in t.index and t.loc[i, "verdict"] not in UNDECIDED  # noqa: E731
    shown = [i for i in ids if decided(b, i) or decided(a, i)]
    lines = ["| id | regime | before [95% CI] | verdict before | now [95% CI] | verdict now |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for i in shown:
        old, new = (t.loc[i] if i in t.index else None for t in (b, a))
        cells = [(estimate_text(r), r.verdict) if r is not None else ("", "not tested") for r in (old, new)]
        regime = (new if new is not None else old).regime
        lines.append(f"| {i} | {regime} | {cells[0][0]} | {cells[0][1]} | {cells[1][0]} | {cells[1][1]} |")
    both = [i for i in ids if i in b.index and i in a.index]
    moved = [i for i in both if b.loc[i, "verdict"] != a.loc[i, "verdict"]]
    added, gone = [i for i in a.index if i not in b.index], [i for i in b.index if i not in a.index]
    lines += ["", f"{len(both) - len(moved)} of the {len(both)} hypotheses both runs tested keep their verdict; "
              f"changed: {', '.join(moved) or 'none'}."]  # fmt: skip
    lines[-1] += f" New in this run: {len(added)} ({', '.join(added)})." if added else ""
    lines[-1] += f" Not in this run: {', '.join(gone)}." if gone else ""
    return "\n".join(lines if shown else lines[-1:])


def verdicts_markdown(claims: pd.DataFrame, family: str) -> str:
    """The family's hypotheses grouped by verdict, the decided ones first: ``- **supported**: P1, P2``."""
    rows = claims[claims.family == family]
    order = sorted(rows.verdict.unique(), key=lambda v: VERDICTS.index(v) if v in VERDICTS else len(VERDICTS))
    return "\n".join(f"- **{v}**: " + ", ".join(rows.id[rows.verdict == v]) for v in order)


def render(kind: str, arg: str, root: Path = ROOT) -> str:
    if kind == "plan":
        from expertlib.pipeline.compute_plan import plan_markdown

        folder = root / "results" / arg / "tables"
        return plan_markdown(pd.read_csv(folder / "plan.csv"), pd.read_csv(folder / "plan_options.csv"))
    scale, _, name = arg.partition("/")
    if kind == "claims":
        family, _, only = name.partition("/")
        if only not in ("", "decided"):
            raise ValueError(
                f"unknown claims filter {only!r} in claims:{arg}; use claims:<scale>/<family>[/decided]"
            )
        claims = pd.read_csv(root / "results" / scale / "tables" / "claims.csv")
        return claims_markdown(claims, family, decided=only == "decided")
    if kind == "table":
        return (root / "results" / scale / "tables" / f"{name}.md").read_text().rstrip("\n")
    # the claims of the run committed at <name>, kept in docs/history/, against the current run's
    if kind == "changes":
        before = pd.read_csv(root / HISTORY / f"claims_{scale}_{name}.csv")
        return changes_markdown(before, pd.read_csv(root / "results" / scale / "tables" / "claims.csv"))
    if kind == "verdicts":
        return verdicts_markdown(pd.read_csv(root / "results" / scale / "tables" / "claims.csv"), name)
    raise ValueError(f"unknown generated block {kind!r}; use plan, claims, verdicts, table or changes")


def _blocks(text: str):
    return list(BLOCK.finditer(text))


def stale(pages=PAGES, root: Path = ROOT) -> list[str]:
    """``page: kind:argument`` for every generated block whose text is not what the tables give."""
    out = []
    for page in pages:
        text = (root / page).read_text()
        out += [f"{page}: {m[1]}:{m[2]}" for m in _blocks(text) if m[3] != render(m[1], m[2], root) + "\n"]
    return out


def refresh(pages=PAGES, root: Path = ROOT) -> list[str]:
    """Rewrite every generated block from the tables; the pages changed."""
    from expertlib.utils.runtime import atomic_write_text

    changed = []
    for page in pages:
        path = root / page
        text = path.read_text()
        new = BLOCK.sub(
            lambda m: f"<!-- {m[1]}:{m[2]} -->\n{render(m[1], m[2], root)}\n<!-- /{m[1]} -->", text
        )
        if new != text:
            atomic_write_text(path, new)
            changed.append(page)
    return changed


if __name__ == "__main__":
    done = refresh()
    print("refreshed: " + (", ".join(done) if done else "nothing (every block is current)"))
    sys.exit(0)
