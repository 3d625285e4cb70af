"""The released scale's plan: the job list notebook 05 runs, priced per job at each task's HyperRule resolution."""

import pytest

from expertlib.pipeline import compute_plan as PL
from expertlib.pipeline.pricing import gpu_rates


def test_released_plan_on_vtab_prices_the_published_recipe_and_matches_an_independent_count():
    """BiT-HyperRule as published (batch 512, lr 0.003) by default, in the BiT paper's form (448/384), counted
    independently; BiT's cheaper recipe (batch 128, lr 0.001) is an option at a quarter of the fine-tuning compute,
    and BiT's released code's form (512/480) one at 1.56x the pixels of the large tasks."""
    table, options = PL.published_plan("released")
    total = table.iloc[-1]
    assert total.stage == "total" and total.picks == "upper bound (before selection)"
    assert total.hours_8gpu <= total.gpu_hours / 8 * 1.2  # the job list spreads over 8 GPUs
    assert set(table[table.stage == "fine-tunes (test)"].resolution) == {128, 384}
    # independently: 14 tasks at 384 px and 5 at 128 px; per task 10 distinct candidates (B, 5 picks, 2 random,
    # 2 more in the oracle pool) at 3 seeds and the 3-expert pool on train800 -> val200; 500 steps of 512
    # images; each test set evaluated per test fine-tune; 49 candidates embed 1,000 images per task
    from expertlib.datasets.transforms import bit_resolution
    from expertlib.datasets.vtab import PUBLISHED_TEST_SIZES

    rates = gpu_rates()
    hours = 0.0
    for size, hw in PUBLISHED_TEST_SIZES.values():
        px = (bit_resolution(*hw, "bit-paper")[1] / 224) ** 2
        hours += (30 + 3) * 500 * 512 * px / rates["train"]
        hours += (30 * size + 3 * 200 + 49 * 1000) * px / rates["inference"]
    assert sum(bit_resolution(*hw, "bit-paper")[1] == 384 for _, hw in PUBLISHED_TEST_SIZES.values()) == 14
    assert abs(total.gpu_hours - hours / 3600) / (hours / 3600) < 0.15
    assert total.jobs == 19 * 33
    by = options.set_index("variant")
    assert by.loc["default", "gpu_hours"] == pytest.approx(total.gpu_hours)
    cheaper = by.loc["batch 128, lr 0.001"]
    assert cheaper.jobs == total.jobs and 3.5 < total.gpu_hours / cheaper.gpu_hours < 4  # fine-tuning: 4x
    assert "CIFAR-10/100 only" in cheaper.buys
    code = by.loc[
        "bit-code"
    ]  # the large tasks' fine-tunes and evaluations at 1.56x the pixels, the rest as they are
    fine = table[table.stage.isin(["fine-tunes (test)", "evaluation", "oracle choice (train800 -> val200)",
                                   "evaluation (val200)", "selection features"]) & (table.resolution == 384)]  # fmt: skip
    assert code.jobs == total.jobs and "1.56x" in code.buys
    assert code.gpu_hours == pytest.approx(
        total.gpu_hours + fine.gpu_hours.sum() * ((480 / 384) ** 2 - 1), rel=1e-6
    )
    assert by.loc["oracle over every expert", "jobs"] == 19 * (
        49 * 3 + 48
    )  # every expert at 3 seeds, and on val
    assert by.loc["random: exact expectation", "jobs"] == 19 * (
        49 * 3 + 3
    )  # the pool of 3 still chooses on val
    assert by.loc["every expert, every seed", "jobs"] == 19 * (49 * 3 + 48)


def test_upper_bound_picks_make_every_method_a_different_expert():
    from pathlib import Path

    from expertlib.pipeline.workspace import Workspace
    from expertlib.run.presets import get_scale

    ws = Workspace(get_scale("released"), Path("."), Path("."))
    names = [f"released:e{i}" for i in range(48)]
    picks = PL.upper_bound_picks(ws, names)
    row = picks.iloc[0]
    chosen = [row[p] for p in ("knn", "domain", "linear", "logme", "hscore")] + row.random_sample.split(";")
    chosen += row.oracle_pool.split(";")[1:]
    assert len(set(chosen)) == len(chosen) == 5 + 2 + 2 and row.oracle_pool.split(";")[0] == row.knn


@pytest.mark.parametrize("scale", ["released", "paper"])
def test_readme_quotes_the_committed_plan_files(scale):
    """docs/paper_scale.md's plan tables are the committed plan.csv and plan_options.csv, rendered, not typed by hand;
    and those files are what the plan code gives today."""
    import re
    from pathlib import Path

    import pandas as pd

    root = Path(__file__).resolve().parents[1]
    folder = root / "results" / scale / "tables"
    table, options = pd.read_csv(folder / "plan.csv"), pd.read_csv(folder / "plan_options.csv")
    block = re.search(
        rf"<!-- plan:{scale} -->\n(.*?)\n<!-- /plan -->", (root / "docs" / "paper_scale.md").read_text(), re.S
    )
    assert block and block[1] == PL.plan_markdown(table, options)
    now, now_options = PL.published_plan(scale)
    pd.testing.assert_frame_equal(table, now, check_dtype=False)
    pd.testing.assert_frame_equal(options, now_options, check_dtype=False)


def test_the_paper_scale_plan_counts_its_stages_and_fine_tunes():
    """The paper scale on VTAB's published sizes: B loaded (no stage), B+extra, 48 adapter experts, 48 full
    experts, DAT timed per task; every candidate (B, B+extra, 48 adapters) fine-tuned on 19 tasks at 3 seeds."""
    table, options = PL.published_plan("paper")
    stages = table.set_index(["stage", "resolution"])
    assert "B" not in table.stage.tolist()  # BiT-M is loaded, not trained
    assert (
        stages.loc[("adapter experts", 224), "jobs"] == 48
        and stages.loc[("full experts (recipe grid)", 224), "jobs"] == 48
    )
    assert table.iloc[-1].jobs == 19 * 50 * 3
    fine = table[table.stage == "fine-tunes (test)"]
    assert set(fine.resolution) == {128, 384} and fine.set_index("resolution").jobs.to_dict() == {
        128: 5 * 150,
        384: 14 * 150,
    }
    assert table.iloc[-1].hours_8gpu < table.iloc[-1].gpu_hours / 7
    by = options.set_index("variant")
    cheaper, low_res = by.loc["batch 128, lr 0.001"], by.loc["upstream at 128 px"]
    trains = table[table.stage == "fine-tunes (test)"].gpu_hours.sum()  # batch 128: a quarter of their images
    assert cheaper.gpu_hours == pytest.approx(table.iloc[-1].gpu_hours - 0.75 * trains, rel=1e-6)
    assert "seeds 5" in options.variant.tolist()
    # upstream at BiT's 224 px by default: the 128 px option saves about two thirds of the upstream stages
    upstream = table[table.stage.isin(["B+extra", "adapter experts", "full experts (recipe grid)"])]
    assert set(upstream.resolution) == {224}
    saved = table.iloc[-1].gpu_hours - low_res.gpu_hours
    assert saved == pytest.approx(upstream.gpu_hours.sum() * (1 - (128 / 224) ** 2), rel=0.01)


def test_plan_candidates_are_the_pipelines_kinds(smoke):
    """The plan's stand-ins carry the kinds, experts and DAT tasks of the candidates notebook 05 loads, so both
    filter runs the same way (a DAT model runs on its own task only)."""
    from expertlib.pipeline import models as M

    ws, bench = smoke
    real = M.candidates(ws)
    refs = PL.scale_candidates(ws, [c.expert for c in real.values() if c.kind == "adapter"])
    for name, c in real.items():
        assert (refs[name].kind, refs[name].expert) == (c.kind, c.expert), name
    dat = {n: r for n, r in refs.items() if r.kind == "dat"}
    assert dat and all(r.task == n.partition(":")[2] for n, r in dat.items())


def test_both_hyperrules_are_priced_side_by_side():
    """Notebook 01's table: each BiT-HyperRule's source, resolution and schedule, and its plan's GPU-hours (the
    released scale's default first, at 384 px; BiT's code at 480 px costs 1.56x its large tasks' pixels)."""
    from pathlib import Path

    from expertlib.datasets.hierarchy import PAPER_EXPERTS
    from expertlib.pipeline.session import hyperrule_recipes
    from expertlib.pipeline.workspace import Workspace
    from expertlib.run.presets import get_scale

    sc = get_scale("released")
    ws = Workspace(sc, Path("."), Path("."))
    bench = PL.PublishedVtab(sc.data.tasks, True, (sc.data.precrop, sc.data.crop), sc.transfer.hyperrule)
    both = hyperrule_recipes(ws, bench, PL.scale_candidates(ws, list(PAPER_EXPERTS))).set_index("hyperrule")
    assert both["this scale's"].to_dict() == {"bit-paper": True, "bit-code": False}
    assert both["resolution (96x96 px or more)"].to_dict() == {"bit-paper": "448/384", "bit-code": "512/480"}
    assert both.schedule.to_dict() == {"bit-paper": "500 steps, warm-up 0, x0.1 past 150/300/450",
                                       "bit-code": "500 steps, warm-up 100, x0.1 past 200/300/400"}  # fmt: skip
    table, options = PL.published_plan("released")
    assert both.loc["bit-paper", "total GPU-hours"] == pytest.approx(table.iloc[-1].gpu_hours)
    assert both.loc["bit-code", "total GPU-hours"] == pytest.approx(
        options.set_index("variant").loc["bit-code", "gpu_hours"]
    )
    assert (
        1.4
        < both.loc["bit-code", "fine-tuning GPU-hours"] / both.loc["bit-paper", "fine-tuning GPU-hours"]
        < 1.56
    )
