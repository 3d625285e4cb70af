from dataclasses import replace

import numpy as np
import pandas as pd

from expertlib.pipeline import dat as DAT
from expertlib.pipeline import models as M
from expertlib.pipeline import scoring as S
from expertlib.pipeline.experts import RELEASED_BANK
from expertlib.select.proxies import ALL_PROXIES


def test_selection_tables_picks_and_dat_cost(smoke):
    ws, bench = smoke
    base, experts = S.selection_candidates(M.candidates(ws))
    rankings, picks = S.run_selection(ws, bench, base, experts)
    assert list(picks.task) == list(ws.tasks) and len(ws.tasks) == 2 * len(
        ws.scale.data.tasks
    )  # 1k and 3-shot
    assert set(rankings.task) == set(ws.tasks)
    assert {m for v in picks.knn for m in v.split(";")} <= set(experts) and (picks.dat_seconds > 0).all()
    assert picks.knn.str.contains(";").any()  # ties happen at this scale: kept whole, never broken by name
    assert (picks.dat_steps_timed == ws.scale.expert.steps).all()
    knn = rankings[rankings.proxy == "knn"]
    assert set(knn.model) == {"base", *experts} and knn.score.between(0, 1).all()
    again = pd.read_csv(ws.path("tables", "selection_picks.csv"))
    assert again.knn.tolist() == picks.knn.tolist()
    # resumable per task: a run stopped after two tasks computes only the rest
    kept = list(ws.tasks[:2])
    pick_path, rank_path = (
        ws.path("tables", "selection_picks.csv"),
        ws.path("tables", "selection_rankings.csv"),
    )
    again[again.task.isin(kept)].to_csv(pick_path, index=False)
    rankings[rankings.task.isin(kept)].to_csv(rank_path, index=False)
    stamp = {t: again.set_index("task").loc[t, "dat_seconds"] for t in kept}
    _, resumed = S.run_selection(ws, bench, base, experts)
    assert list(resumed.task) == list(ws.tasks) and resumed.knn.tolist() == picks.knn.tolist()
    assert all(resumed.set_index("task").loc[t, "dat_seconds"] == v for t, v in stamp.items()), (
        "kept, not redone"
    )
    assert len(pd.read_csv(rank_path)) == len(rankings)
    # a task scored before a proxy joined the registry is scored again, with every proxy
    rankings[~((rankings.task == kept[0]) & (rankings.proxy == "knn_resampled"))].to_csv(
        rank_path, index=False
    )
    redone, _ = S.run_selection(ws, bench, base, experts)
    assert set(redone[redone.task == kept[0]].proxy) == set(ALL_PROXIES) and len(redone) == len(rankings)
    assert redone[redone.proxy == "knn_resampled"].score_variance.notna().all()


def test_dat_timing_extrapolates_from_the_measured_steps(smoke):
    ws, bench = smoke
    base, _ = S.selection_candidates(M.candidates(ws))
    ws2 = replace(ws, scale=ws.scale.override(expert_steps=8, dat_timing_steps=2))
    logits = (
        base(bench.task(ws.scale.data.tasks[0], "train800val200").batch(np.arange(8), False, None))
        .detach()
        .numpy()
    )
    secs, steps = DAT.time_dat(ws2, bench, base, logits)
    assert steps == 2 and secs > 0
    assert S.random_choice(["b", "a"], 0, "t") == S.random_choice(["a", "b"], 0, "t")


def test_released_experts_join_selection_and_transfer(smoke, tmp_path):
    """A converted released expert (the TensorFlow fixture) placed in the workspace is scored and planned."""
    import shutil
    from pathlib import Path

    from expertlib.models.convert import main as convert
    from expertlib.pipeline import finetunes as T

    ws, bench = smoke
    fixture = Path(__file__).parent / "fixtures" / "tf_expert" / "animal"
    shutil.copytree(fixture, tmp_path / "entity" / "1")
    shutil.copytree(fixture, tmp_path / "digit" / "1")
    released = ws.path("models", RELEASED_BANK)
    assert convert([str(tmp_path / "entity"), f"digit={tmp_path / 'digit'}", "--out", str(released)]) == 0
    try:
        cands = M.candidates(ws)
        assert {"released:entity", "released:digit"} <= set(cands) and cands[
            "released:digit"
        ].kind == "released"
        base, experts = S.selection_candidates(cands)
        labels = S.upstream_label_sets(ws, bench, experts)
        # the embedded hierarchy has no WordNet ids: released experts are not scored by domain prediction there
        # (no lemma lookup), adapter experts are
        assert (
            "released:digit" in experts
            and "released:entity" not in labels
            and set(labels) == {n for n, c in experts.items() if c.kind == "adapter"}
        )
        ws2 = replace(ws, results_dir=tmp_path / "results")
        for sub in ("tables", "models"):
            (ws2.results_dir / sub).mkdir(parents=True)
        rankings, picks = S.run_selection(ws2, bench, base, experts)
        assert {"released:entity", "released:digit"} <= set(rankings.model)
        runs = T.planned_runs(ws, cands, ws.scale.data.tasks[0], "digit")
        assert ("released:digit", 0) in runs and ("released:entity", 0) in runs
        net = cands["released:digit"].transfer_net(5)
        assert net(bench.task(ws.scale.data.tasks[0], "test").batch(np.arange(2), False, None)).shape == (
            2,
            5,
        )
    finally:
        released.unlink()


def test_released_experts_are_scored_by_domain_prediction_through_their_wordnet_ids(tmp_path):
    """At released-smoke (BiT-M's 21,843 classes, no upstream images) each converted expert's domain labels are
    its explicit subtree's classes, and selection scores them with every proxy the scale picks by."""
    from expertlib.datasets.hierarchy import released_experts
    from expertlib.pipeline.session import start

    ws, bench = start("released-smoke", str(tmp_path / "results"), str(tmp_path / "data"), progress=False)
    base, experts = S.selection_candidates(M.candidates(ws))
    assert sorted(experts) == ["released:bird", "released:food", "released:nutrient"]
    labels = S.upstream_label_sets(ws, bench, experts)
    truth = released_experts()
    assert {n: len(v) for n, v in labels.items()} == {
        f"released:{e}": len(truth[e].classes) for e in ("bird", "food", "nutrient")
    }
    assert set(labels["released:food"]) != set(labels["released:nutrient"])
    rankings, picks = S.run_selection(ws, bench, base, experts)
    assert set(rankings[rankings.proxy == "domain"].model) == set(experts)
    row = picks.iloc[0]
    assert (
        row.experts_scored == 3
        and len(row.oracle_pool.split(";")) == 2
        and len(row.random_sample.split(";")) == 1
    )
    knn = rankings[
        (rankings.task == row.task) & (rankings.proxy == "knn") & rankings.model.isin(list(experts))
    ]
    assert (
        row.oracle_pool.split(";")[0]
        == row.knn.split(";")[0]
        == knn.sort_values(["score", "model"], ascending=[False, True]).model.iloc[0]
    )
    assert "dat_seconds" not in picks  # DAT needs upstream images: not timed at this scale


def test_a_kill_between_rankings_and_picks_does_not_count_a_task_twice(tmp_path):
    from expertlib.pipeline.session import start

    ws, bench = start("released-smoke", str(tmp_path / "results"), str(tmp_path / "data"), progress=False)
    base, experts = S.selection_candidates(M.candidates(ws))
    rankings, picks = S.run_selection(ws, bench, base, experts)
    # as if killed after the last task's rankings were written and before its picks were
    pd.DataFrame(picks.iloc[:-1]).to_csv(ws.path("tables", "selection_picks.csv"), index=False)
    again, picks2 = S.run_selection(ws, bench, base, experts)
    assert len(again) == len(rankings) and not again.duplicated(["task", "model", "proxy"]).any()
    assert picks2.task.tolist() == picks.task.tolist()
