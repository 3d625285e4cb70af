"""VTAB tasks from TFDS TFRecord shards (written here by the tfrecord package, the format TFDS writes)."""

import io

import numpy as np
import pytest
from PIL import Image
from tfrecord.writer import TFRecordWriter

from expertlib.datasets.folders import CorruptImageError, DatasetNotFoundError
from expertlib.datasets.tfrecords import TFRecordSplit, shards
from expertlib.datasets.vtab import load_vtab, targets


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _shard(path, values, key="label_x_position"):
    path.parent.mkdir(parents=True, exist_ok=True)
    w = TFRecordWriter(str(path))
    for v in values:
        w.write({"image": (_png(v), "byte"), key: (v, "int")})
    w.close()


def test_shards_in_tfds_order_with_vtab_labels(tmp_path):
    base = tmp_path / "vtab" / "dsprites_location"
    _shard(base / "dsprites-train.tfrecord-00000-of-00002", range(0, 32))
    _shard(base / "dsprites-train.tfrecord-00001-of-00002", range(32, 64))
    _shard(base / "dsprites-validation.tfrecord-00000-of-00001", [5, 6, 7])
    _shard(base / "dsprites-test.tfrecord-00000-of-00001", [31, 0])
    assert [p.name[-8:] for p in shards(base, "train")] == ["00000-of-00002"[-8:], "00001-of-00002"[-8:]]
    s = load_vtab("dsprites_location", tmp_path)
    assert (len(s.train800), len(s.val200), len(s.test)) == (64, 3, 2)
    # labels: VTAB bins 32 x positions into 16; order: shard by shard, record by record
    assert targets(s.train800)[:4] == [0, 0, 1, 1] and targets(s.test) == [15, 0]
    img, y = s.train800[33]
    assert img.size == (8, 8) and np.asarray(img)[0, 0, 0] == 33 and y == 33 // 2


def test_missing_val_is_carved_and_errors_are_named(tmp_path):
    base = tmp_path / "vtab" / "smallnorb_azimuth"
    _shard(base / "smallnorb-train.tfrecord", range(18), key="label_azimuth")
    _shard(base / "smallnorb-test.tfrecord", range(4), key="label_azimuth")
    s = load_vtab("smallnorb_azimuth", tmp_path)
    assert len(s.train800) + len(s.val200) == 18
    with pytest.raises(KeyError, match="no feature 'label_x_position'.*label_azimuth"):
        _ = TFRecordSplit(shards(base, "train"), "dsprites_location").targets
    with pytest.raises(DatasetNotFoundError, match="clevr_count.*object annotations"):
        TFRecordSplit(shards(base, "train"), "clevr_count")
    broken = base / "smallnorb-test.tfrecord"
    broken.write_bytes(broken.read_bytes()[:-7])
    with pytest.raises(CorruptImageError, match="runs past the end"):
        TFRecordSplit([broken], "smallnorb_azimuth")
