import numpy as np
import pandas as pd
import pytest
import torch

from expertlib.datasets.fixtures import write_image_folder
from expertlib.models.resnet import create_model
from expertlib.models.weights import save_model
from expertlib.rank import main, rank_models


@pytest.fixture()
def task(tmp_path):
    import timm

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    images = np.clip(rng.normal(60 + 70 * labels[:, None, None, None], 30, (30, 24, 24, 3)), 0, 255).astype(
        np.uint8
    )
    write_image_folder(tmp_path / "images", images, labels, ["cat", "dog", "fox"])
    torch.save(timm.create_model("test_resnet").state_dict(), tmp_path / "t.pth")
    torch.manual_seed(0)
    save_model(create_model("tiny", num_classes=7), tmp_path / "tiny.safetensors")
    return tmp_path, [f"timm:test_resnet={tmp_path / 't.pth'}", str(tmp_path / "tiny.safetensors")]


def test_ranking_table_figure_and_cached_features(task):
    from expertlib.datasets.user_images import load_images

    root, models = task
    images = load_images(root / "images", min_per_class=4)
    out = root / "out"
    table = rank_models(images, models, out, proxies=("knn", "leep"), k=3, progress=False)
    assert set(table.model) == {"timm:test_resnet", "tiny"} and table.knn_rank.min() == 1
    assert table.knn.between(0, 1).all() and (table.knn_seconds > 0).all() and (table.knn_gflops > 0).all()
    assert table.leep.notna().all()  # both have an upstream classifier
    for name in ("ranking.csv", "ranking.md", "ranking.png", "ranking.svg"):
        assert (out / name).is_file()
    cached = sorted((out / "features").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in cached]
    more = rank_models(images, models, out, proxies=("knn", "logme", "hscore"), k=3, progress=False)
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # a new proxy recomputes no features
    assert more.knn.tolist() == table.set_index("model").loc[more.model].knn.tolist()
    assert pd.read_csv(out / "ranking.csv").columns.tolist()[:4] == ["rank", "model", "source", "resolution"]


def test_finetune_top_adds_test_accuracy(task):
    from expertlib.datasets.user_images import load_images

    root, models = task
    images = load_images(root / "images", min_per_class=4)
    table = rank_models(images, models[1:], root / "out", k=3, finetune_top=1, finetune_steps=4, finetune_batch=8,
                        finetune_lr=0.01, progress=False)  # fmt: skip
    r = table.iloc[0]
    assert 0 <= r.finetune_ci_low <= r.finetune_accuracy <= r.finetune_ci_high <= 1 and r.finetune_seconds > 0
    assert r.finetune_test_images == len(images.split("test")) and r.chance == pytest.approx(1 / 3)


@pytest.mark.parametrize("n, steps, mixup", [(19_999, 500, 0.0), (20_000, 10_000, 0.1), (499_999, 10_000, 0.1),
                                              (500_000, 20_000, 0.1)])  # fmt: skip
def test_finetune_top_follows_bits_size_regimes(monkeypatch, n, steps, mixup):
    """--finetune-top fine-tunes a user's task by its size, as BiT-HyperRule does: 500 steps under 20k training
    images, 10k under 500k, else 20k, mixup 0.1 from 20k, in the recipe asked for (read from the config the
    loop is given; nothing trains here)."""
    import types

    import expertlib.rank as R
    import expertlib.train.evaluation as E
    import expertlib.train.training as T

    seen = []
    monkeypatch.setattr(
        T, "finetune", lambda net, data, cfg, *a, **k: seen.append(cfg) or types.SimpleNamespace(seconds=1.0)
    )
    labels = np.arange(n) % 2
    monkeypatch.setattr(E, "predicted_classes", lambda *a, **k: np.zeros(n, dtype=int))
    images = types.SimpleNamespace(
        classes=["a", "b"], labels=labels, split=lambda name: np.arange(n), data=lambda *a, **k: None
    )
    cand = types.SimpleNamespace(name="m", precrop=36, crop=32, transfer_net=lambda k: torch.nn.Linear(2, k))
    for recipe, warmup in (("bit-code", 100 if n < 20_000 else 500), ("bit-paper", 0)):
        out = R._finetune(
            pd.DataFrame({"model": ["m"]}), [cand], images, 1, 500, 64, 0.003, "cpu", 0, False, recipe
        )
        cfg = seen[-1]
        assert (cfg.schedule.total_steps, cfg.schedule.warmup_steps, cfg.mixup_alpha) == (
            steps,
            warmup,
            mixup,
        )
        assert out.finetune_accuracy.tolist() == [pytest.approx((labels == 0).mean())]


def test_command_line_ranks_and_reports_bad_input(task, capsys):
    root, models = task
    out = root / "cli"
    assert main([str(root / "images"), models[1], "--out", str(out), "-k", "3", "--no-progress"]) == 0
    assert (out / "ranking.md").is_file() and "tiny" in capsys.readouterr().out
    assert main([str(root / "images"), "timm:resnet19", "--out", str(root / "bad"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown timm model 'resnet19'" in err and "resnet18" in err
    assert not (root / "bad" / "ranking.csv").exists()  # nothing half-written
    assert main([str(root / "images"), models[1], "-k", "12", "--out", str(out), "--no-progress"]) == 2
    assert "too few training images" in capsys.readouterr().err


def test_its_own_output_folder_is_never_read_as_images_and_is_listed(task, capsys):
    """--out inside the image folder (and the default ./ranking, run from inside it): the second run ranks
    the same images, and ignored.csv lists the output folder."""
    import os

    root, models = task
    images = root / "images"
    out = images / "ranking"
    for _ in range(2):
        assert main([str(images), models[1], "--out", str(out), "-k", "3", "--no-progress"]) == 0
    listed = pd.read_csv(out / "ignored.csv")
    assert listed.path.tolist() == [str(out)] and "output folder" in listed.reason[0]
    assert "left out 1 files or folders (1 an output folder" in " ".join(capsys.readouterr().out.split())
    cwd = os.getcwd()
    try:
        os.chdir(images)
        assert main([".", models[1], "-k", "3", "--no-progress"]) == 0  # writes ./ranking, inside "."
        assert main([".", models[1], "-k", "3", "--no-progress"]) == 0
    finally:
        os.chdir(cwd)
    assert pd.read_csv(images / "ranking" / "ignored.csv").path.tolist() == ["ranking"]


def test_rank_models_refuses_images_inside_its_output_folder(task):
    from expertlib.datasets.user_images import load_images

    root, models = task
    images = load_images(root / "images", min_per_class=4)
    with pytest.raises(ValueError, match="lies inside the output folder.*leave_out"):
        rank_models(images, models[1:], root / "images" / "cat", k=3, progress=False)


def test_bad_images_arguments_are_named_for_what_they_are(task, capsys):
    root, models = task
    (root / "images.zip").write_bytes(b"PK\x03\x04 an archive")
    assert main([str(root / "images.zip"), models[1], "--out", str(root / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is an archive: unpack it" in err and "CSV UTF-8" not in err
    (root / "images" / "dog" / "zero.png").write_bytes(b"")
    assert main([str(root / "images"), models[1], "--out", str(root / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "zero.png" in err and "--skip-corrupt" in err and "skip_corrupt=True" not in err


def test_help_names_every_model_spec_form(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "expertlib:PATH" in text and "run_12:30.safetensors" in text and "--out" in text


# -- what the ranking says (expertlib.select.rank_table) -----------------------------------------------------
def test_the_same_weights_under_several_names_are_ranked_once_and_b_is_named_b():
    from dataclasses import dataclass

    from expertlib.select.rank_table import merge_same_weights

    @dataclass
    class C:
        name: str

    cands = [C("generic"), C("adapter_experts:base"), C("adapter_experts:digit"), C("full_experts:base")]
    kept, names = merge_same_weights(cands, ["b", "b", "d", "b"])
    assert [c.name for c in kept] == ["B", "adapter_experts:digit"]
    assert names["B"] == ["generic", "adapter_experts:base", "full_experts:base"]
    kept, _ = merge_same_weights([C("a:base"), C("r:base"), C("copy")], ["x", "y", "y"])
    assert [c.name for c in kept] == ["B (a)", "B (r)"]  # two different bases keep their banks' names


def test_ties_are_broken_by_the_stated_rule():
    from expertlib.select.rank_table import TIE_RULE, order, ties

    wide = pd.DataFrame({"model": ["d", "c", "b", "a"], "knn": [0.5, 0.9, 0.9, 0.9], "logme": [0.0, -1.0, -2.0, -1.0],
                         "knn_gflops": [1.0, 2.0, 1.0, 1.0]})  # fmt: skip
    ranked = order(wide, ["knn", "logme"])
    # knn ties among a, b, c: logme puts b last; a and c tie on logme too: fewer GFLOPs puts a first
    assert ranked.model.tolist() == ["a", "c", "b", "d"] and ranked["rank"].tolist() == [1, 2, 3, 4]
    assert ties(ranked, ["knn", "logme"]) == ["ranks 1-3 tie on knn (0.9): a, c, b"]
    assert "next proxy" in TIE_RULE and "cheaper" in TIE_RULE


def test_fine_tuned_accuracy_comes_with_its_clopper_pearson_interval_and_chance():
    from expertlib.select.rank_table import binomial_columns

    row = binomial_columns({"m": 18}, 24, 1 / 3).iloc[0]
    assert row.finetune_accuracy == 0.75 and row.chance == pytest.approx(1 / 3)
    assert (round(row.finetune_ci_low, 3), round(row.finetune_ci_high, 3)) == (0.533, 0.902)  # exact binomial


def test_the_terminal_summary_fits_100_columns_and_explains_itself():
    from expertlib.select.rank_table import order, summary_text

    proxies = ["knn", "linear", "logme", "hscore", "leep", "nce"]
    rng = np.random.default_rng(0)
    wide = pd.DataFrame({"model": [f"a_very_long_bank_name_of_experts:expert_number_{i}" for i in range(20)],
                         **{p: rng.normal(size=20) for p in proxies}, "knn_gflops": 1.0})  # fmt: skip
    wide.loc[3, "knn"] = wide.loc[4, "knn"]
    wide = order(wide, proxies)
    wide = wide.assign(finetune_accuracy=[0.75] + [np.nan] * 19, finetune_ci_low=0.53, finetune_ci_high=0.9,
                       finetune_test_images=24, chance=1 / 3)  # fmt: skip
    text = summary_text(wide, proxies, {"B": ["B", "adapter_experts:base", "full_experts:base"]})
    assert max(len(line) for line in text.splitlines()) <= 100
    for said in ("tie on knn", "B = B = adapter_experts:base", "chance", "Clopper-Pearson", "5 more models",
                 "not shown: ", "0.750 [0.53, 0.90]"):  # fmt: skip
        assert said in text, said


def test_the_opening_line_says_what_was_found(task):
    from expertlib.datasets.user_images import load_images
    from expertlib.select.rank_table import describe_images

    root, _ = task
    (root / "images" / "notes.txt").write_text("x")
    line = describe_images(
        load_images(root / "images", min_per_class=4), "images/", 0.2, 0, root / "ignored.csv"
    )
    assert line.startswith("found 3 classes (cat, dog, fox) in images/: 24 train, 6 test images (test: 20% of each "
                           "class, seed 0; 8 training images per class); left out 1 files or folders")  # fmt: skip


def test_a_longer_bar_is_a_better_score_for_every_proxy():
    from expertlib.select.rank_table import ranking_plot

    wide = pd.DataFrame({"model": ["a", "b", "c"], "knn": [0.9, 0.5, 0.1], "leep": [-0.5, -1.0, -3.0]})
    fig = ranking_plot(wide, ["knn", "leep"])
    for ax in fig.axes:
        bars = ax.patches
        assert len({round(b.get_x(), 9) for b in bars}) == 1  # every bar starts at the panel's worst end
        assert [b.get_width() for b in bars] == sorted((b.get_width() for b in bars), reverse=True)
        assert all(b.get_width() > 0 for b in bars)


def test_the_readme_example_runs_offline_on_a_committed_model(task, capsys, monkeypatch):
    """The command line in the README, as written, on a small generated image folder."""
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = re.search(r"^\.venv/bin/python -m expertlib\.rank (.+)$", readme, re.M)[1]
    args = shlex.split(line)
    root, _ = task
    assert args[0] == "my_images/" and all(Path(a).is_file() for a in args[1:] if a.endswith(".safetensors"))
    args = [str(root / "images"), *args[1:]]
    args[args.index("--out") + 1] = str(root / "ranking")
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the README's paths are from the repository root
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("found 3 classes") and "\n   1  " in out and max(map(len, out.splitlines())) <= 100
    table = pd.read_csv(root / "ranking" / "ranking.csv")
    assert (table.model == "B").sum() == 1 and not table.model.str.endswith(":base").any()


def test_a_prior_from_past_fine_tunes_ranks_beside_the_proxies_and_bad_tables_are_named(task, capsys):
    root, models = task
    names = ["timm:test_resnet", "tiny"]
    past = pd.DataFrame({"task": ["a", "a", "b", "b", "mine", "mine"], "model": names * 3, "mode": "finetune",
                         "seed": 0, "accuracy": [0.9, 0.5, 0.8, 0.6, 0.1, 0.9]})  # fmt: skip
    past.to_csv(root / "past.csv", index=False)
    out = root / "with_prior"
    args = [
        str(root / "images"),
        *models,
        "--out",
        str(out),
        "-k",
        "3",
        "--no-progress",
        "--prior",
        str(root / "past.csv"),
    ]
    assert main([*args, "--prior-task", "mine"]) == 0
    table = pd.read_csv(out / "ranking.csv").set_index("model")
    # the test_resnet beat tiny on both other tasks; "mine" (this task's own runs) is left out
    assert table.loc[names[0], "prior"] == 1.0 and table.loc[names[1], "prior"] == 0.0
    assert (
        table.prior_rank.tolist() != [] and table.hybrid.between(0, 1).all() and "knn_resampled" not in table
    )
    assert main([*args, "--proxy", "hybrid", "--proxy", "knn_resampled"]) == 0
    table = pd.read_csv(out / "ranking.csv")
    assert table.hybrid_rank.tolist() == [1, 2] and table.knn_resampled_variance.notna().all()
    capsys.readouterr()
    bad = {"unknown model": (past.replace("tiny", "tiny2"), "names models that are not being ranked: tiny2"),
           "no runs": (past[past.model != "tiny"], "has no past runs of tiny"),
           "no overlap": (past.iloc[[0, 3]], "no task with runs of two or more"),
           "columns": (past.drop(columns="accuracy"), "lacks the columns ['accuracy']")}  # fmt: skip
    for case, (frame, message) in bad.items():
        frame.to_csv(root / "bad.csv", index=False)
        assert main([*args[:-1], str(root / "bad.csv")]) == 2, case
        assert message in capsys.readouterr().err, case
    assert main([*args, "--prior-task", "theirs"]) == 2 and "no task 'theirs'" in capsys.readouterr().err
    assert main([*args[:-2], "--proxy", "prior"]) == 2 and "needs --prior TABLE" in capsys.readouterr().err
