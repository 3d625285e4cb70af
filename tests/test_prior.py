import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from expertlib.analysis.stats import tau_b_rows
from expertlib.select.prior import (
    hybrid_scores,
    nested_weight,
    normalised_ranks,
    past_transfer_rankings,
    read_prior_table,
    task_accuracies,
    transfer_prior,
)

MODELS = ["e0", "e1", "e2", "e3", "e4"]


def _world(tasks=("t0", "t1", "t2", "t3", "t4", "t5"), seeds=3, seed=0):
    """Runs where e4 transfers best everywhere and e0 worst (plus noise), and a proxy that is half noise;
    every task also has a 5-shot version with its own runs and scores."""
    rng = np.random.default_rng(seed)
    names = [*tasks, *(f"{t}@5shot" for t in tasks)]
    runs = pd.DataFrame([{"task": t, "model": m, "mode": "finetune", "seed": s,
                          "accuracy": 0.5 + 0.02 * i + rng.normal(0, 0.02)}
                         for t in names for i, m in enumerate(MODELS) for s in range(seeds)])  # fmt: skip
    rankings = pd.DataFrame([{"task": t, "model": m, "proxy": "knn_resampled", "score": 0.01 * i + rng.normal(0, 0.03),
                              "seconds": 0.1, "flops": 1e6} for t in names for i, m in enumerate(MODELS)])  # fmt: skip
    return runs, rankings


def _regime(t: str) -> str:
    return t.split("@")[1] if "@" in t else "1k"


def _rank(rankings, runs):
    return past_transfer_rankings(rankings, runs, same_task=lambda t: t.split("@")[0], comparable=_regime)


def test_prior_is_the_mean_normalised_rank_on_other_tasks():
    acc = pd.DataFrame({"task": ["a", "a", "a", "b", "b"], "model": ["x", "y", "z", "x", "y"],
                        "accuracy": [0.1, 0.3, 0.2, 0.9, 0.5]})  # fmt: skip
    prior = transfer_prior(acc, ["a", "b"], ["x", "y", "z", "w"])
    assert prior["x"] == pytest.approx((0.0 + 1.0) / 2) and prior["y"] == pytest.approx((1.0 + 0.0) / 2)
    assert prior["z"] == pytest.approx(0.5) and np.isnan(prior["w"])  # w never ran: the prior knows nothing
    assert normalised_ranks(pd.Series([3.0, 3.0])).tolist() == [0.5, 0.5]
    rng = np.random.default_rng(0)
    for x in (rng.random(9), rng.integers(0, 3, 9).astype(float)):  # with and without ties
        assert np.allclose(normalised_ranks(pd.Series(x)), (sps.rankdata(x) - 1) / 8)
        y = rng.integers(0, 4, 9).astype(float)
        assert tau_b_rows(x, y) == pytest.approx(sps.kendalltau(x, y).statistic)
    assert np.isnan(tau_b_rows(np.ones(4), np.arange(4.0)))


def test_hybrid_weights_the_two_rankings_and_is_neutral_where_the_prior_is_silent():
    prior = pd.Series({"a": 0.9, "b": 0.1, "c": np.nan})
    score = pd.Series({"a": 0.0, "b": 0.5, "c": 1.0})
    assert hybrid_scores(prior, score, 1.0).to_dict() == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert hybrid_scores(prior, score, 0.0).to_dict() == {"a": 0.0, "b": 0.5, "c": 1.0}
    assert hybrid_scores(prior, score).to_dict() == {"a": 0.5, "b": 0.25, "c": 0.75}


def test_the_evaluated_task_s_runs_never_reach_its_own_scores():
    runs, rankings = _world()
    table, weights = _rank(rankings, runs)
    assert set(table.proxy) == {"prior", "hybrid", "hybrid_nested"} and len(table) == 12 * 5 * 3
    rng = np.random.default_rng(9)
    mine = runs.task.str.startswith("t2")  # t2 and its 5-shot version: the same images
    shaken = runs.assign(accuracy=np.where(mine, rng.random(len(runs)), runs.accuracy))
    again, weights_again = _rank(rankings, shaken)
    cols = ["task", "model", "proxy", "score"]  # the seconds are timed, so they differ from run to run
    for task in ("t2", "t2@5shot"):
        assert table[table.task == task][cols].equals(again[again.task == task][cols]), task
        assert (
            weights.set_index("task").nested_weight[task]
            == weights_again.set_index("task").nested_weight[task]
        )
    # while another task's runs do reach it: the test can fail
    moved = runs.assign(accuracy=np.where(runs.task == "t3", rng.random(len(runs)), runs.accuracy))
    other, _ = _rank(rankings, moved)
    assert not table[table.task == "t2"].score.equals(other[other.task == "t2"].score.reset_index(drop=True))
    # and a few-shot version's past is its own regime: 1k runs never reach a 5-shot task's prior
    full_moved = runs.assign(
        accuracy=np.where(~runs.task.str.contains("@"), rng.random(len(runs)), runs.accuracy)
    )
    few, _ = _rank(rankings, full_moved)
    assert table[table.task == "t2@5shot"][cols].equals(few[few.task == "t2@5shot"][cols])


def test_the_prior_finds_the_expert_that_transfers_everywhere():
    runs, rankings = _world()
    table, _ = _rank(rankings, runs)
    prior = table[(table.task == "t0") & (table.proxy == "prior")].set_index("model").score
    assert prior.idxmax() == "e4" and prior.idxmin() == "e0"


def test_nested_weight_follows_what_ranked_the_other_tasks():
    runs, rankings = _world(seeds=2)
    acc = task_accuracies(runs)
    past = ["t0", "t1", "t2", "t3"]
    noise = {t: pd.Series(np.random.default_rng(i).random(5), index=MODELS) for i, t in enumerate(past)}
    assert nested_weight(acc, noise, past, MODELS) >= 0.75  # a consistent prior beats a noisy proxy
    perfect = {t: acc[acc.task == t].set_index("model").accuracy for t in past}
    flipped = acc.assign(accuracy=np.where(acc.task.isin(past[1:]), -acc.accuracy, acc.accuracy))
    assert nested_weight(flipped, {t: flipped[flipped.task == t].set_index("model").accuracy for t in past}, past,
                         MODELS) <= 0.25  # a prior that misleads loses to a proxy that is right  # fmt: skip
    assert nested_weight(acc, perfect, past, MODELS) in (0.0, 0.25, 0.5, 0.75, 1.0)


def test_a_user_prior_table_is_checked_before_it_is_used(tmp_path):
    runs, _ = _world()
    path = tmp_path / "past.csv"
    runs.assign(kind="adapter").to_csv(path, index=False)
    acc = read_prior_table(path, MODELS, exclude_task="t0")
    assert "t0" not in set(acc.task) and set(acc.model) == set(MODELS)
    with pytest.raises(ValueError, match=r"lacks the columns \['accuracy'\]"):
        read_prior_table(runs.drop(columns="accuracy"), MODELS)
    with pytest.raises(ValueError, match="names models that are not being ranked: e4"):
        read_prior_table(path, MODELS[:4])
    with pytest.raises(ValueError, match="no past runs of extra"):
        read_prior_table(path, [*MODELS, "extra"])
    with pytest.raises(ValueError, match="no task 'mine' to leave out"):
        read_prior_table(path, MODELS, exclude_task="mine")
    lonely = pd.DataFrame({"task": ["a", "b"], "model": ["e0", "e1"], "accuracy": [0.5, 0.6]})
    with pytest.raises(ValueError, match="no task with runs of two or more"):
        read_prior_table(lonely, ["e0", "e1"])
    with pytest.raises(ValueError, match="non-numeric"):
        read_prior_table(lonely.assign(accuracy=["x", 0.6]), ["e0", "e1"])
    probes = pd.concat([runs, runs.assign(mode="linear", accuracy=0.0)])  # linear probes are not fine-tunes
    assert read_prior_table(probes, MODELS).accuracy.min() > 0.3


def test_a_prior_table_may_name_b_by_any_of_its_names_in_the_banks():
    """rank ranks B once (as ``B``) however many banks hold it; a past-transfer table that names it as one bank's
    base, or as another's, scores B, and a name that is no model's is still refused."""
    past = pd.DataFrame({"task": ["a", "a", "b", "b"], "model": ["adapter_experts:base", "x", "full_experts:base", "x"],
                         "accuracy": [0.5, 0.6, 0.7, 0.4]})  # fmt: skip
    aliases = {"adapter_experts:base": "B", "full_experts:base": "B", "generic": "B"}
    acc = read_prior_table(past, ["B", "x"], aliases=aliases)
    assert set(acc.model) == {"B", "x"} and acc.set_index(["task", "model"]).accuracy[("b", "B")] == 0.7
    with pytest.raises(ValueError, match="not being ranked: adapter_experts:base"):
        read_prior_table(past, ["B", "x"])
