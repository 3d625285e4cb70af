import pandas as pd
import pytest

from expertlib.pipeline import selection as S
from expertlib.pipeline import transfer as T
from expertlib.pipeline import upstream as U


def test_planned_runs_cover_every_candidate_at_every_seed(smoke):
    ws, _ = smoke
    cands = U.candidates(ws)
    cands = {**cands, "dat:t1": cands["base"], "dat:t2": cands["base"]}  # one DAT-style model per task
    runs = T.planned_runs(ws, cands, "t1", "digit")
    every = {n for n in cands if n != "dat:t2"}
    assert set(runs) == {(n, s) for n in every for s in range(ws.scale.seeds)} and len(runs) == len(set(runs))
    assert ("full:digit", ws.scale.seeds - 1) in runs
    elsewhere = T.planned_runs(ws, cands, "t2", None)  # full experts only run where their subtree is related
    assert not any(n.startswith("full:") for n, _ in elsewhere) and ("base", 1) in elsewhere
    assert ("dat:t2", 0) in elsewhere and ("dat:t1", 0) not in elsewhere


def test_pool_gives_the_same_bits_as_one_process(smoke):
    """Fine-tunes in two worker processes equal those run here: the pool size is a speed setting only."""
    from dataclasses import replace

    ws, bench = smoke
    cands = U.candidates(ws)
    task = ws.scale.tasks[0]
    splits, k = bench.task_splits(task), bench.task_info(task).num_classes
    specs = [
        (cands[n], splits["train800"], splits["test"], k, 8, 0.1, s)
        for n in ("base", "full:digit")
        for s in (0, 1)
    ]
    here = dict(T.finetunes(ws, specs))
    pooled = dict(T.finetunes(replace(ws, scale=replace(ws.scale, transfer_workers=2)), specs))
    assert sorted(pooled) == [0, 1, 2, 3]
    assert [here[i][0] for i in range(4)] == [pooled[i][0] for i in range(4)]
    assert len({here[i][0] for i in range(4)}) > 1  # different candidates and seeds do differ


@pytest.mark.slow
def test_transfer_runs_resume_to_the_same_numbers(smoke):
    ws, bench = smoke
    cands = U.candidates(ws)
    S.run_selection(ws, bench, *S.selection_candidates(cands))
    runs = T.run_transfer(ws, bench, cands)
    ft = runs[runs["mode"] == "finetune"]
    assert ft.accuracy.between(0, 1).all() and set(runs["mode"]) == {"finetune", "linear"}
    # the DAT-style baseline: one model per task, fine-tuned on that task alone, at every seed
    dat = ft[ft.model.str.startswith("dat:")]
    assert set(zip(dat.task, dat.model, strict=True)) == {(t, f"dat:{t}") for t in ws.scale.tasks}
    assert len(dat) == len(ws.scale.tasks) * ws.scale.seeds
    assert len(pd.read_csv(ws.path("tables", "dat_training.csv"))) == len(ws.scale.tasks)
    out = ws.path("tables", "transfer_runs.csv")
    pd.read_csv(out).iloc[:-3].to_csv(out, index=False)  # as if killed three runs before the end
    again = T.run_transfer(ws, bench, cands)
    key = ["task", "model", "mode", "seed"]
    merged = runs.merge(again, on=key, suffixes=("", "_again"))
    assert len(merged) == len(runs) and (merged.accuracy == merged.accuracy_again).all()
    sweep = T.run_schedule_sweep(ws, bench, cands)
    related = [t for t in ws.scale.tasks if f"adapter:{bench.task_info(t).relates_to}" in cands]
    assert set(sweep.steps) == (set(ws.scale.schedule_sweep) if related else set())
