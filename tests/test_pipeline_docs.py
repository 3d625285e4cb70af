"""Every number README.md and docs/ state about results is written by code from the committed tables."""

import pandas as pd

from expertlib.pipeline import docs as D


def test_no_stated_number_outlives_its_table():
    assert D.stale() == []
    readme = (D.ROOT / "README.md").read_text()
    assert (
        "<!-- claims:cpu/confirmatory -->" in readme and "<!-- claims:cpu/exploratory/decided -->" in readme
    )
    assert len(readme.splitlines()) <= 260


def test_a_changed_table_makes_its_block_stale_until_refreshed(tmp_path):
    tables = tmp_path / "results" / "cpu" / "tables"
    tables.mkdir(parents=True)
    claims = pd.DataFrame({"id": ["P1"], "family": ["confirmatory"], "claim": ["x"], "regime": ["1k"],
                           "comparison": ["knn - base"], "estimate": [0.01], "ci_low": [0.0], "ci_high": [0.02],
                           "p_adjusted": [0.04], "verdict": ["supported"], "post_hoc": [False]})  # fmt: skip
    claims.to_csv(tables / "claims.csv", index=False)
    page = tmp_path / "page.md"
    page.write_text("text\n<!-- claims:cpu/confirmatory -->\n| old |\n<!-- /claims -->\nmore\n")
    assert D.stale(("page.md",), tmp_path) == ["page.md: claims:cpu/confirmatory"]
    assert D.refresh(("page.md",), tmp_path) == ["page.md"] and D.stale(("page.md",), tmp_path) == []
    text = page.read_text()
    assert "| P1 | x | 1k | +1.0 [+0.0, +2.0] | 0.040 | supported |" in text and text.endswith("more\n")
    claims.assign(estimate=0.02).to_csv(tables / "claims.csv", index=False)
    assert D.stale(("page.md",), tmp_path) == ["page.md: claims:cpu/confirmatory"]


def test_the_decided_block_keeps_only_verdicts_and_counts_the_family():
    claims = pd.DataFrame({"id": ["E1", "E2", "E3"], "family": ["exploratory"] * 3, "claim": ["a", "b", "c"],
                           "regime": ["1k"] * 3, "comparison": ["x - base"] * 3, "estimate": [0.03, 0.0, -0.02],
                           "ci_low": [0.01, -0.01, -0.03], "ci_high": [0.05, 0.01, -0.01],
                           "p_adjusted": [0.01, 0.9, 0.9], "verdict": ["supported", "not shown", "contradicted"],
                           "post_hoc": [True, False, False]})  # fmt: skip
    text = D.claims_markdown(claims, "exploratory", decided=True)
    assert "| E1 | a (post hoc) | 1k | +3.0 [+1.0, +5.0] | 0.010 | supported |" in text
    assert "| E3 |" in text and "| E2 |" not in text and "2 of the 3 exploratory hypotheses" in text
    none = D.claims_markdown(claims.iloc[[1]], "exploratory", decided=True)
    assert none.startswith("0 of the 1 exploratory") and "|" not in none


def test_verdicts_name_each_hypothesis_once_decided_first():
    claims = pd.DataFrame({"id": ["P1", "P2", "P3", "P4"], "family": ["confirmatory"] * 4,
                           "verdict": ["not shown", "supported", "contradicted", "supported"]})  # fmt: skip
    assert D.verdicts_markdown(claims, "confirmatory").splitlines() == [
        "- **supported**: P2, P4", "- **contradicted**: P3", "- **not shown**: P1"]  # fmt: skip


def test_changes_show_decided_hypotheses_of_either_run_and_name_the_verdicts_that_moved(tmp_path):
    row = dict(family="confirmatory", claim="x", regime="1k", comparison="knn - base", ci_low=0.0, ci_high=0.02,
               p_adjusted=0.04, post_hoc=False)  # fmt: skip
    before = pd.DataFrame([{**row, "id": "P1", "estimate": 0.01, "verdict": "supported"},
                           {**row, "id": "P2", "estimate": 0.0, "verdict": "not shown"},
                           {**row, "id": "P3", "estimate": 0.0, "verdict": "not shown"}])  # fmt: skip
    after = pd.DataFrame([{**row, "id": "P1", "estimate": 0.01, "verdict": "supported"},
                          {**row, "id": "P2", "estimate": -0.02, "ci_low": -0.03, "ci_high": -0.01, "verdict": "contradicted"},
                          {**row, "id": "P3", "estimate": 0.0, "verdict": "not shown"},
                          {**row, "id": "S1", "estimate": 0.01, "verdict": "supported"}])  # fmt: skip
    lines = D.changes_markdown(before, after).splitlines()
    assert "| P2 | 1k | +0.0 [+0.0, +2.0] | not shown | -2.0 [-3.0, -1.0] | contradicted |" in lines
    assert "| S1 | 1k |  | not tested | +1.0 [+0.0, +2.0] | supported |" in lines
    assert not any(line.startswith("| P3 ") for line in lines)  # undecided both times
    assert (
        lines[-1]
        == "2 of the 3 hypotheses both runs tested keep their verdict; changed: P2. New in this run: 1 (S1)."
    )
    history = tmp_path / "docs" / "history"
    history.mkdir(parents=True)
    before.to_csv(history / "claims_cpu_abc1234.csv", index=False)
    (tmp_path / "results" / "cpu" / "tables").mkdir(parents=True)
    after.to_csv(tmp_path / "results" / "cpu" / "tables" / "claims.csv", index=False)
    assert D.render("changes", "cpu/abc1234", tmp_path) == "\n".join(lines)
