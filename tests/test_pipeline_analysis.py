"""The analysis plan in code is the one written in docs/analysis_plan.md."""

import re
from pathlib import Path

from expertlib.pipeline.analysis import hypotheses

DOC = Path(__file__).resolve().parents[1] / "docs" / "analysis_plan.md"


def test_the_written_plan_is_the_plan_in_code():
    rows = {m[1]: (m[2].strip(), m[3].strip(), float(m[4]))
            for m in re.finditer(r"^\| ([PE]\w+) \| (.+?) \| (.+?) \| (-?[\d.]+) \|$", DOC.read_text(), re.M)}  # fmt: skip
    hs = {h.id: h for h in hypotheses((5, 25)) if h.id[0] in "PE"}
    assert set(rows) == set(hs)
    for i, h in hs.items():
        assert rows[i] == (h.claim, f"{h.a} - {h.b}", h.margin), i
        assert (h.family == "confirmatory") == i.startswith("P")


def test_the_written_selection_families_are_the_plan_in_code():
    """The plan of issue #42's proxies: its confirmatory hypothesis and exploratory family, as written."""
    from expertlib.pipeline.analysis import PROXY_TAU

    rows = {m[1]: tuple(x.strip() for x in m.groups()[1:])
            for m in re.finditer(r"^\| ([ST]\w+) \| (.+?) \| (.+?) \| (.+?) \| (\w+) \| (.+?) \|$", DOC.read_text(), re.M)}  # fmt: skip
    hs = {h.id: h for h in hypotheses((5, 25)) if h.family.startswith("selection")}
    assert set(rows) == set(hs) and hs["S1"].family == "selection-confirmatory"
    for i, h in hs.items():
        test = "two-sided" if h.alternative == "two-sided" else "A > B"
        measure = "tau" if h.measure == PROXY_TAU else "accuracy"
        assert rows[i] == (h.claim, f"{h.a} - {h.b}", h.regime, measure, test), i
        assert (h.family == "selection-confirmatory") == (i == "S1") and h.margin == 0 and not h.post_hoc
    assert (hs["S1"].a, hs["S1"].b, hs["S1"].regime) == ("hybrid", "knn", "5-shot")


def test_few_shot_hypotheses_follow_the_regimes_and_post_hoc_ones_are_exploratory():
    ids = {h.id for h in hypotheses((3,))}
    assert {"F3a", "F3j"} <= ids and not any(i.startswith("F5") for i in ids)
    assert all(h.family == "exploratory" for h in hypotheses((5, 25)) if h.post_hoc)
    assert len(ids) == len(hypotheses((3,)))


def test_verdict_gives_exactly_the_listed_vocabulary():
    """The docs sort and filter by VERDICTS: every verdict the rule gives is listed there, and each is reachable."""
    from expertlib.pipeline.analysis import VERDICTS, verdict

    nan = float("nan")
    given = {
        verdict(0.01, 0.01, 0.01, 0.03, 0.0, "greater"),  # supported
        verdict(0.01, 0.01, 0.01, 0.03, 0.0, "two-sided"),  # different: A better
        verdict(0.01, 0.01, -0.03, -0.01, 0.0, "two-sided"),  # different: B better
        verdict(0.9, 0.9, -0.03, -0.01, 0.0, "greater"),  # contradicted
        verdict(0.2, 0.4, -0.01, 0.03, 0.0, "greater"),  # not shown
        verdict(0.2, 0.4, -0.01, 0.03, 0.0, "two-sided"),  # no difference shown
        verdict(nan, nan, nan, nan, 0.0, "greater"),  # not testable
    }
    assert given == set(VERDICTS)


def test_the_report_names_the_plan_s_commit():
    """summary.json's provenance names the commit that fixed the plan (beside the commits of the tables it read)."""
    import subprocess

    from expertlib.pipeline.summary import plan_commit

    commit = plan_commit()
    assert commit is not None and re.fullmatch(r"[0-9a-f]{40}", commit)
    root = DOC.parents[1]
    message = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%s", commit], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    changed = subprocess.run(["git", "-C", str(root), "show", "--name-only", "--format=", commit], capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
    assert message.startswith("Analysis plan:") and "docs/analysis_plan.md" in changed
