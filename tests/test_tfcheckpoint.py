"""The TensorFlow checkpoint reader on a SavedModel that TensorFlow itself wrote (tests/fixtures/tf_expert,
made by tools/make_tf_expert_fixture.py)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from expertlib.models.tfcheckpoint import (
    TFCheckpointError,
    fields,
    read_checkpoint,
    read_saved_model,
    read_table,
)

FIXTURE = Path(__file__).parent / "fixtures" / "tf_expert" / "animal" / "1"


def test_index_table_and_bundle_header():
    table = read_table(FIXTURE / "variables" / "variables.index")
    header = dict(fields(table[b""]))
    assert header.get(1, 1) == 1 and header.get(2, 0) == 0  # one shard, little-endian
    assert any(k.endswith(b"VARIABLE_VALUE") for k in table) and b"_CHECKPOINTABLE_OBJECT_GRAPH" in table
    assert list(table) == sorted(table)  # a sorted-string table


def test_variables_by_recorded_name_with_shapes_and_dtypes():
    v = read_saved_model(FIXTURE)
    assert len(v) == 23
    k = v["resnet/root_block/standardized_conv2d/kernel"]
    assert k.shape == (7, 7, 3, 32) and k.dtype == np.float32
    assert v["resnet/block2/unit01/c/standardized_conv2d/kernel"].shape == (1, 1, 64, 256)
    raw = read_checkpoint(FIXTURE / "variables" / "variables")
    assert sum(isinstance(a, np.ndarray) for a in raw.values()) == 23


def test_archives_and_bad_inputs(tmp_path):
    archive = shutil.make_archive(str(tmp_path / "bit-r50x1-in21k-animal"), "gztar", FIXTURE.parent.parent)
    v = read_saved_model(archive)
    assert np.array_equal(v["resnet/group_norm/gamma"], read_saved_model(FIXTURE)["resnet/group_norm/gamma"])
    with pytest.raises(TFCheckpointError, match="is not a SavedModel.*saved_model.pb"):
        read_saved_model(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURE, broken)
    index = broken / "variables" / "variables.index"
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(TFCheckpointError, match="not a TensorFlow checkpoint index"):
        read_saved_model(broken)
    shutil.copy(FIXTURE / "variables" / "variables.index", index)
    data = broken / "variables" / "variables.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(TFCheckpointError, match="beyond the end of its data shard"):
        read_saved_model(broken)
    data.unlink()
    with pytest.raises(TFCheckpointError, match="data shard .* not found"):
        read_saved_model(broken)
