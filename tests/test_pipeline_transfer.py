import pandas as pd
import pytest

from expertlib.pipeline import selection as S
from expertlib.pipeline import transfer as T
from expertlib.pipeline import upstream as U


def test_planned_runs(smoke):
    ws, _ = smoke
    cands = U.candidates(ws)
    runs = T.planned_runs(ws, cands, {"knn": cands["adapter:digit"].expert if "adapter:digit" in cands else
                                      next(c.expert for c in cands.values() if c.kind == "adapter"), "domain": "x"})  # fmt: skip
    assert ("base", ws.scale.seeds - 1) in runs and ("full:digit", 0) in runs
    assert ("adapter:x", 1) in runs and len(runs) == len(set(runs))


@pytest.mark.slow
def test_transfer_runs_resume_to_the_same_numbers(smoke):
    ws, bench = smoke
    cands = U.candidates(ws)
    S.run_selection(ws, bench, *S.selection_candidates(cands))
    runs = T.run_transfer(ws, bench, cands)
    ft = runs[runs["mode"] == "finetune"]
    assert ft.accuracy.between(0, 1).all() and set(runs["mode"]) == {"finetune", "linear"}
    out = ws.path("tables", "transfer_runs.csv")
    pd.read_csv(out).iloc[:-3].to_csv(out, index=False)  # as if killed three runs before the end
    again = T.run_transfer(ws, bench, cands)
    key = ["task", "model", "mode", "seed"]
    merged = runs.merge(again, on=key, suffixes=("", "_again"))
    assert len(merged) == len(runs) and (merged.accuracy == merged.accuracy_again).all()
    sweep = T.run_schedule_sweep(ws, bench, cands)
    related = [t for t in ws.scale.tasks if f"adapter:{bench.task_info(t).relates_to}" in cands]
    assert set(sweep.steps) == (set(ws.scale.schedule_sweep) if related else set())
