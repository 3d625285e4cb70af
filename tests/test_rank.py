import numpy as np
import pandas as pd
import pytest
import torch

from expertlib.datasets.fixtures import write_image_folder
from expertlib.rank import main, rank_models
from expertlib.resnet import create_model
from expertlib.weights import save_model


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
    assert pd.read_csv(out / "ranking.csv").columns.tolist()[:3] == ["model", "source", "resolution"]


def test_finetune_top_adds_test_accuracy(task):
    from expertlib.datasets.user_images import load_images

    root, models = task
    images = load_images(root / "images", min_per_class=4)
    table = rank_models(images, models[1:], root / "out", k=3, finetune_top=1, finetune_steps=4, finetune_batch=8,
                        finetune_lr=0.01, progress=False)  # fmt: skip
    assert table.finetune_accuracy.between(0, 1).all() and (table.finetune_seconds > 0).all()


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
    assert "left out 1 files or folders (1 an output folder" in capsys.readouterr().err
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
