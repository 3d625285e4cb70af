"""``download vtab``: VTAB-1k tasks linked from a TFDS data folder in TFDS's own layout
(``<name>/[<config>/]<version>/`` with ``dataset_info.json`` and shards) without TensorFlow, and built first by
``tensorflow_datasets`` where it is installed (a stand-in module here), manual downloads named."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from test_tfrecords import _split

from expertlib.datasets import tfds_dir as T
from expertlib.datasets.fixtures import write_dsprites_shards
from expertlib.datasets.vtab import load_vtab
from expertlib.pipeline import download as D


def tfds_version(
    root: Path, spec: str, splits: dict[str, list[int]] | None = None, dsprites: bool = False
) -> Path:
    """``<root>/<name>/[<config>/]<version>/`` as TFDS leaves a built dataset (``name/config:version``)."""
    path, version = spec.split(":")
    folder = root / path / version
    folder.mkdir(parents=True)
    (folder / "dataset_info.json").write_text(json.dumps({"name": path.split("/")[0], "version": version}))
    name = path.split("/")[0]
    if dsprites:
        write_dsprites_shards(folder, np.random.default_rng(0))
    for split, sizes in (splits or {}).items():
        _split(folder, name, split, sizes)
    return folder


def test_shards_are_linked_from_the_newest_allowed_version_and_a_missing_dataset_is_named(tmp_path, capsys):
    tfds, root = tmp_path / "tensorflow_datasets", tmp_path / "data"
    new = tfds_version(tfds, "dsprites:2.0.0", dsprites=True)
    tfds_version(tfds, "resisc45:2.0.0", {"train": [5]})  # outside the registry's 3.*.*
    resisc = tfds_version(tfds, "resisc45:3.0.0", {"train": [700, 700]})
    tfds_version(tfds, "resisc45:3.0.1", {"train": [10]}).joinpath(
        "dataset_info.json"
    ).unlink()  # unfinished build
    got = T.link_tasks(
        tfds, root, ["dsprites_location", "dsprites_orientation", "resisc45", "diabetic_retinopathy"]
    )
    assert [g.status for g in got] == ["linked", "linked", "linked", "missing"]
    assert (
        got[2].source == resisc and got[0].source == new and got[0].files == 5
    )  # 4 shards + dataset_info.json
    link = root / "vtab" / "resisc45" / "resisc45-train.tfrecord-00001-of-00002"
    assert link.is_symlink() and link.resolve() == (resisc / link.name).resolve()
    assert "diabetic_retinopathy_detection/btgraham-300/3.*.*" in got[3].message
    splits = load_vtab("dsprites_location", root)  # read through the links: VTAB's splits
    assert splits.vtab_splits and len(splits.train800) == 800
    assert len(load_vtab("resisc45", root).train800) == 800
    again = T.link_tasks(tfds, root, ["resisc45"])
    assert again[0].status == "present"
    # copies instead of links; the command reports what it could not link and exits 1
    assert D.main(["vtab", "--data-root", str(tmp_path / "copy"), "--from-tfds-dir", str(tfds), "--copy",
                   "--tasks", "resisc45", "diabetic_retinopathy", "--no-check"]) == 1  # fmt: skip
    copied = tmp_path / "copy" / "vtab" / "resisc45" / "resisc45-train.tfrecord-00000-of-00002"
    assert copied.is_file() and not copied.is_symlink()
    assert "diabetic_retinopathy" in capsys.readouterr().err


def test_an_incomplete_copy_or_another_versions_shards_are_refused_per_task(tmp_path):
    tfds, root = tmp_path / "tfds", tmp_path / "data"
    folder = tfds_version(tfds, "resisc45:3.0.0", {"train": [3, 3, 3]})
    (folder / "resisc45-train.tfrecord-00001-of-00003").unlink()
    got = T.link_task(tfds, root, "resisc45")
    assert got.status == "missing" and "2 of its 3 shards" in got.message
    tfds_version(tfds, "cifar100:3.0.2", {"train": [5]})  # no test split: VTAB reads cifar100's test
    assert "no test shards" in T.link_task(tfds, root, "cifar100").message
    other = root / "vtab" / "dsprites_location"
    other.mkdir(parents=True)
    (other / "dsprites-train.tfrecord-00000-of-00009").write_bytes(b"")
    tfds_version(tfds, "dsprites:2.0.0", dsprites=True)
    assert "already holds other shards" in T.link_task(tfds, root, "dsprites_location").message
    with pytest.raises(FileNotFoundError, match="--from-tfds-dir .* is not a folder"):
        T.link_tasks(tmp_path / "nowhere", root, ["resisc45"])


def test_build_with_tensorflow_datasets_names_manual_downloads_and_goes_on(tmp_path, monkeypatch, capsys):
    tfds_root, root = tmp_path / "tfds", tmp_path / "data"
    built = []

    class Builder:
        def __init__(self, spec, data_dir):
            self.spec, self.data_dir = spec, Path(data_dir)
            if spec.startswith("resisc45"):
                self.MANUAL_DOWNLOAD_INSTRUCTIONS = "Download NWPU-RESISC45.rar and extract it in manual_dir."

        def download_and_prepare(self, download_config):
            built.append((self.spec, download_config.manual_dir))
            if self.spec.startswith("dsprites"):
                tfds_version(self.data_dir, "dsprites:2.0.0", dsprites=True)
            else:
                tfds_version(self.data_dir, "resisc45:3.0.0", {"train": [1000, 1000]})

    fake = types.SimpleNamespace(builder=Builder, download=types.SimpleNamespace(DownloadConfig=lambda **kw:
                                 types.SimpleNamespace(**kw)))  # fmt: skip
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    got = T.build_tasks(root, ["dsprites_location", "dsprites_orientation", "resisc45"], tfds_root)
    assert [g.status for g in got] == ["linked", "linked", "missing"]
    assert built == [
        ("dsprites:2.*.*", str(tfds_root / "downloads" / "manual" / "dsprites"))
    ]  # built once, for both
    manual = tfds_root / "downloads" / "manual" / "resisc45"
    assert "put NWPU-RESISC45.rar" in got[2].message and str(manual) in got[2].message
    assert "TFDS says: Download NWPU-RESISC45.rar" in capsys.readouterr().out
    manual.mkdir(parents=True)
    (manual / "NWPU-RESISC45.rar").write_bytes(b"x")  # now present: TFDS is asked to build it
    assert [g.status for g in T.build_tasks(root, ["resisc45", "dsprites_location"], tfds_root)] == [
        "linked",
        "present",
    ]
    assert built[-1] == ("resisc45:3.*.*", str(manual)) and len(built) == 2  # dsprites was built already
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'expertlib\[vtab\]'.*--from-tfds-dir"):
        T.build_tasks(root, ["resisc45"], tfds_root)
