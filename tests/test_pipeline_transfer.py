import json
from dataclasses import replace

import pandas as pd

from expertlib.datasets.fewshot import tasks_with_few_shot
from expertlib.models.candidates import from_model
from expertlib.pipeline import finetunes as F
from expertlib.pipeline import models as M
from expertlib.pipeline import transfer as T


def test_planned_runs_cover_every_candidate_at_every_seed(smoke):
    ws, _ = smoke
    cands = M.candidates(ws)
    b = cands["base"].bank.base
    cands = {
        **cands,
        **{f"dat:{t}": from_model(b, f"dat:{t}", "dat", t) for t in ("t1", "t2")},
    }  # one per task
    runs = F.planned_runs(ws, cands, "t1", "digit")
    every = {n for n in cands if n != "dat:t2"}
    assert set(runs) == {(n, s) for n in every for s in range(ws.scale.study.seeds)} and len(runs) == len(
        set(runs)
    )
    assert ("full:digit", ws.scale.study.seeds - 1) in runs
    elsewhere = F.planned_runs(ws, cands, "t2", None)  # full experts only run where their subtree is related
    assert not any(cands[n].kind == "full" for n, _ in elsewhere) and ("base", 1) in elsewhere
    assert ("dat:t2", 0) in elsewhere and ("dat:t1", 0) not in elsewhere


def test_pool_gives_the_same_bits_as_one_process(smoke):
    """Fine-tunes in two worker processes equal those run here: the pool size is a speed setting only."""
    from dataclasses import replace

    ws, bench = smoke
    cands = M.candidates(ws)
    task = ws.scale.data.tasks[0]
    splits, k = bench.task_splits(task), bench.task_info(task).num_classes
    specs = [
        (cands[n], splits["train800"], splits["test"], k, 8, 0.1, s)
        for n in ("base", "full:digit")
        for s in (0, 1)
    ]
    here = dict(T.finetunes(ws, specs))
    pooled = dict(T.finetunes(replace(ws, scale=ws.scale.override(transfer_workers=2)), specs))
    assert sorted(pooled) == [0, 1, 2, 3]
    assert [here[i][0] for i in range(4)] == [pooled[i][0] for i in range(4)]
    assert len({here[i][0] for i in range(4)}) > 1  # different candidates and seeds do differ


def test_transfer_tables_of_the_smoke_run(smoke_run):
    """Notebook 05's tables (its resume after a kill is in the reliability matrix): every candidate fine-tuned
    and probed, the DAT-style model of each task on that task alone at every seed, the schedule sweep."""
    from expertlib.run.presets import get_scale

    out, _, _ = smoke_run
    scale = get_scale("smoke")
    runs = pd.read_csv(out / "tables" / "transfer_runs.csv")
    ft = runs[runs["mode"] == "finetune"]
    assert ft.accuracy.between(0, 1).all() and set(runs["mode"]) == {"finetune", "linear"}
    assert len(ft) == len(ft.drop_duplicates(["task", "model", "seed"]))
    tasks = tasks_with_few_shot(scale.data.tasks, scale.study.few_shot)
    assert set(ft.task) == set(runs[runs["mode"] == "linear"].task) == set(tasks) and len(tasks) == 6
    dat = ft[ft.kind == "dat"]
    assert set(zip(dat.task, dat.model, strict=True)) == {(t, f"dat:{t}") for t in tasks}
    assert len(dat) == len(tasks) * scale.study.seeds
    assert len(pd.read_csv(out / "tables" / "dat_training.csv")) == len(tasks)
    # few-shot tasks are fine-tuned with their full task's hyper-parameters, and say so
    hps = json.loads((out / "tables" / "transfer_hyperparameters.json").read_text())
    for t in scale.data.tasks:
        assert hps[f"{t}@3shot"] == {"steps": hps[t]["steps"], "lr": hps[t]["lr"], "same_as": t}
        few = ft[ft.task == f"{t}@3shot"]
        assert (few.steps == hps[t]["steps"]).all() and (few.lr == hps[t]["lr"]).all()
    sweep = pd.read_csv(out / "tables" / "schedule_sweep.csv")
    assert set(sweep.steps) <= set(scale.study.schedule_sweep) and sweep.accuracy.between(0, 1).all()


def test_every_fine_tune_stores_its_test_predictions(smoke_run, smoke):
    """Per-example predictions of every fine-tune, in one compressed archive: the accuracy they give is the
    table's, to the bit, so analyses on other subsets of the test images need no retraining."""
    from expertlib.pipeline.tables import load_predictions, prediction_key

    out, _, _ = smoke_run
    _, bench = smoke
    runs = pd.read_csv(out / "tables" / "transfer_runs.csv")
    ft = runs[runs["mode"] == "finetune"]
    preds = load_predictions(out / "tables" / "transfer_predictions.npz")
    assert len(preds) == len(ft)
    for r in ft.itertuples():
        labels = bench.task(r.task, "test").labels
        p = preds[prediction_key(r.task, r.model, "finetune", r.seed)]
        assert len(p) == len(labels) and float((p == labels).mean()) == r.accuracy


def test_unpicked_experts_can_run_at_fewer_seeds(smoke):
    """The documented option: experts only in the random sample or the oracle pool run at fewer seeds; B and
    the proxies' picks (a tie whole) keep every seed."""
    ws, _ = smoke
    cands = {n: c for n, c in M.candidates(ws).items() if c.kind != "full"}
    experts = sorted(n for n, c in cands.items() if c.kind == "adapter")
    pick = {"knn": experts[0], "domain": f"{experts[0]};{experts[1]}", "random_sample": experts[2],
            "oracle_pool": f"{experts[0]};{experts[2]}"}  # fmt: skip
    every = F.planned_runs(ws, cands, "t", None, pick)
    fewer = F.planned_runs(
        replace(ws, scale=ws.scale.override(seeds=3, unpicked_seeds=1)), cands, "t", None, pick
    )
    assert {n for n, _ in every} == {"base", "base+extra", *experts[:3]}
    by = {n: sorted(s for m, s in fewer if m == n) for n in {m for m, _ in fewer}}
    assert by[experts[2]] == [0] and by[experts[0]] == by[experts[1]] == by["base"] == [0, 1, 2]
