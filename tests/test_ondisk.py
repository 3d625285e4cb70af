"""The on-disk benchmark (ImageNet-21k + VTAB-1k folder layouts), proven on the embedded benchmark exported to
those layouts: the same examples, labels and augmented batches, and the same trained model."""

import numpy as np
import pytest
import torch

from expertlib.datasets.embedded import build
from expertlib.datasets.folders import DatasetNotFoundError
from expertlib.datasets.ondisk import FolderBenchmark, export_benchmark
from expertlib.run.presets import get_scale


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("ondisk")
    emb = build(get_scale("smoke").data.embedded, cache_dir=root / "cache")
    export_benchmark(emb, root / "data")
    return emb, FolderBenchmark(root / "data", emb.task_names, resolution=emb.resolution), root / "data"


def _same(a, b, seed=3):
    assert np.array_equal(a.labels, b.labels)
    idx = np.arange(len(a))[:64]
    for train in (True, False):
        ga, gb = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        assert torch.equal(a.batch(idx, train, ga), b.batch(idx, train, gb))


def test_export_round_trip_gives_identical_data(pair):
    emb, disk, _ = pair
    assert len(disk.classes) == len(emb.classes) and disk.class_counts() == dict(
        zip(disk.classes, emb.class_counts().values(), strict=True)
    )
    for split in ("train", "test"):
        _same(emb.upstream_subset(split), disk.upstream_subset(split))
    node = disk.hierarchy.resolve("digit")
    assert disk.expert_labels(node) == emb.expert_labels("digit")
    _same(
        emb.upstream_subset("train", emb.expert_labels("digit")),
        disk.upstream_subset("train", disk.expert_labels(node)),
    )
    for t in emb.task_names:
        assert disk.task_info(t) == emb.task_info(t)
        for s in ("train800", "val200", "train800val200", "test"):
            _same(emb.task(t, s), disk.task(t, s))


def test_a_pipeline_step_trains_the_same_model_from_disk(pair, tmp_path):
    from expertlib.pipeline import Workspace
    from expertlib.pipeline import upstream as U

    emb, disk, _ = pair
    models = []
    for name, bench in (("emb", emb), ("disk", disk)):
        ws = Workspace.create("smoke", tmp_path / name, tmp_path / "d", progress=False)
        models.append(U.train_generic(ws, bench)[0])
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_summary_samples_and_domains(pair):
    _, disk, _ = pair
    assert disk.domain_names == ["geometric", "natural_image", "symbol"]
    rows = disk.samples(per_row=4)
    assert all(v.shape[1:] == (32, 32, 3) and v.dtype == np.uint8 for v in rows.values())
    s = disk.summary({"digit_mirror": 0.5})
    assert s[s.kind == "task"].set_index("name").loc["digit_mirror", "generic_finetuned_accuracy"] == 0.5


def test_missing_or_wrong_data_is_named(tmp_path, pair):
    _, _, root = pair
    with pytest.raises(DatasetNotFoundError, match=f"{tmp_path}/imagenet21k not found.*wordnet.is_a.txt"):
        FolderBenchmark(tmp_path, ["cifar100"])
    (tmp_path / "imagenet21k" / "n99999999").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="wordnet.is_a.txt not found"):
        FolderBenchmark(tmp_path, ["cifar100"])
    for f in ("wordnet.is_a.txt", "words.txt"):
        (tmp_path / "imagenet21k" / f).write_text((root / "imagenet21k" / f).read_text())
    with pytest.raises(DatasetNotFoundError, match=r"\['n99999999'\].*not in wordnet.is_a.txt"):
        FolderBenchmark(tmp_path, ["cifar100"])
    with pytest.raises(DatasetNotFoundError, match="task 'my_task' is not a VTAB-1k task"):
        FolderBenchmark(root, ["my_task"])
    with pytest.raises(DatasetNotFoundError, match="VTAB task 'resisc45'.*vtab/resisc45"):
        FolderBenchmark(root, ["resisc45"])


def test_paper_fixture_reads_as_imagenet21k_and_vtab(tmp_path):
    from expertlib.datasets.fixtures import CLASSES, write_paper_fixture

    root = write_paper_fixture(tmp_path / "paper")
    bench = FolderBenchmark(root, ["resisc45", "dsprites_location"], resolution=(36, 32), heldout_per_class=2)
    assert bench.classes == sorted(CLASSES) and len(bench.upstream_labels("test")) == 2 * len(CLASSES)
    animal = bench.hierarchy.resolve("animal", bench.class_counts())
    assert animal == "n00015388" and len(bench.expert_labels(animal)) == 6
    assert sorted(bench.domain_names) == ["animal", "artifact", "plant"]
    assert (
        bench.task_info("resisc45").num_classes == 45
        and bench.task_info("dsprites_location").group == "structured"
    )
    y = bench.task("dsprites_location", "train800val200").labels
    assert len(y) == 32 and y.min() >= 0 and y.max() <= 15
    assert (
        not bench.task_info("dsprites_location").vtab_splits and not bench.task_info("resisc45").vtab_splits
    )
    x = bench.upstream_subset("train").batch(np.arange(8), True, torch.Generator().manual_seed(0))
    assert x.shape == (8, 3, 32, 32)  # JPEGs of mixed sizes, resized to the precrop then cropped


def test_released_fixture_reads_dsprites_from_tfds_train_shards(tmp_path):
    """released-smoke's data: dSprites as TFDS writes it (a train split alone, in 4 shards) read through
    VTAB-1k's expressions at the fixture's 2,000 examples (VTAB's splits, counts not the published 737,280);
    resisc45 in folders (not VTAB's splits). Both marked on the task and in the data summary."""
    from expertlib.datasets.fixtures import write_released_fixture
    from expertlib.datasets.ondisk import VtabBenchmark

    root = write_released_fixture(tmp_path / "released")
    assert sorted(p.name for p in (root / "vtab" / "dsprites_location").iterdir()) == [
        f"dsprites-train.tfrecord-0000{k}-of-00004" for k in range(4)
    ]
    bench = VtabBenchmark(root, ["resisc45", "dsprites_location"], resolution=(36, 32))
    dsprites, resisc = bench.task_info("dsprites_location"), bench.task_info("resisc45")
    assert (dsprites.vtab_splits, dsprites.tfds_counts_match) == (True, False)
    assert (resisc.vtab_splits, resisc.tfds_counts_match) == (False, None)
    sizes = [
        len(bench.task("dsprites_location", s)) for s in ("train800", "val200", "train800val200", "test")
    ]
    assert sizes == [800, 200, 1000, 200]  # train[:800], train[1600:1800], train[1800:]
    y = bench.task("dsprites_location", "test").labels
    assert y.min() >= 0 and y.max() <= 15 and len(set(y.tolist())) > 8
    rows = bench.summary().set_index("name")
    assert rows.loc["dsprites_location", "vtab_splits"] and not rows.loc["resisc45", "vtab_splits"]
    # BiT's Supplementary F, from the registry: dSprites-location neither flips nor crops, RESISC45 does both
    assert (dsprites.flip, dsprites.crop, resisc.flip, resisc.crop) == (False, False, True, True)
    train = bench.task("dsprites_location", "train800")
    assert (train.flip, train.random_crop) == (False, False) and bench.task(
        "resisc45", "train800"
    ).random_crop
    idx = np.arange(8)
    assert torch.equal(
        train.batch(idx, True, torch.Generator().manual_seed(0)), train.batch(idx, False, None)
    )


def test_hyperrule_resolution_per_task(tmp_path):
    from PIL import Image

    for task, size in (("resisc45", (256, 256)), ("dsprites_location", (64, 64))):
        for split in ("train", "val", "test"):
            folder = tmp_path / "vtab" / task / split / "0"
            folder.mkdir(parents=True)
            Image.new("RGB", size).save(folder / "000000.png")
    up = tmp_path / "imagenet21k"
    (up / "n1").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(up / "n1" / "a.png")
    (up / "wordnet.is_a.txt").write_text("n0 n1\n")
    (up / "words.txt").write_text("n0\troot\nn1\tleaf\n")
    bench = FolderBenchmark(
        tmp_path, ["resisc45", "dsprites_location"], task_resolution="hyperrule", heldout_per_class=0
    )
    assert bench.resolution_of("resisc45") == (512, 480) and bench.resolution_of("dsprites_location") == (
        160,
        128,
    )
    assert bench.task("resisc45", "test").batch(np.arange(1), False, torch.Generator()).shape[-1] == 480
    paper = FolderBenchmark(tmp_path, ["resisc45", "dsprites_location"], task_resolution="hyperrule",
                            heldout_per_class=0, hyperrule="bit-paper")  # fmt: skip
    assert paper.resolution_of("resisc45") == (448, 384) and paper.resolution_of("dsprites_location") == (
        160,
        128,
    )
    assert paper.resolution_of("resisc45", "bit-code") == (512, 480)  # what a plan prices beside it
    with pytest.raises(ValueError, match="task_resolution"):
        FolderBenchmark(tmp_path, [], task_resolution="native")


def test_the_upstream_file_index_is_listed_once_cached_by_tree_and_read_alike(tmp_path):
    """The cached index gives the very paths and labels of a fresh listing, is reused while the tree is
    unchanged, and is rebuilt when a class folder changes."""
    import os
    import time

    from expertlib.datasets.fixtures import write_paper_fixture
    from expertlib.datasets.ondisk import FolderBenchmark

    root = write_paper_fixture(tmp_path / "d")
    fresh = FolderBenchmark(root, ["resisc45"])
    cached = FolderBenchmark(root, ["resisc45"], index_dir=tmp_path / "cache")
    for split in ("train", "test"):
        a, b = fresh.upstream_data(split), cached.upstream_data(split)
        assert list(a.dataset) == list(b.dataset) and (a.labels == b.labels).all()
    made = sorted((tmp_path / "cache").glob("index-*.npz"))
    assert len(made) == 1
    again = FolderBenchmark(root, ["resisc45"], index_dir=tmp_path / "cache")
    assert sorted((tmp_path / "cache").glob("index-*.npz")) == made  # reused
    folder = root / "imagenet21k" / cached.classes[0]
    extra = folder / f"{cached.classes[0]}_99.JPEG"
    extra.write_bytes(next(folder.iterdir()).read_bytes())
    os.utime(folder, ns=(time.time_ns(), time.time_ns() + 10**9))  # a file added: the folder's mtime moves
    grown = FolderBenchmark(root, ["resisc45"], index_dir=tmp_path / "cache")
    assert len(sorted((tmp_path / "cache").glob("index-*.npz"))) == 2
    assert len(grown.upstream_data("train")) == len(again.upstream_data("train")) + 1


def test_a_fixture_written_by_an_older_version_is_not_taken_as_current(tmp_path):
    """The smoke scales rewrite their fixture when it predates the current layout (dSprites as TFDS shards), rather
    than misread it."""
    from expertlib.datasets.fixtures import STAMP, fixture_current

    assert not fixture_current(tmp_path)
    (tmp_path / "COMPLETE").write_text("written by expertlib.datasets.fixtures.write_released_fixture\n")
    assert not fixture_current(tmp_path)
    (tmp_path / "COMPLETE").write_text(
        f"written by expertlib.datasets.fixtures.write_released_fixture\n{STAMP}\n"
    )
    assert fixture_current(tmp_path)
