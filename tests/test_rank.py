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
