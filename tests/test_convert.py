"""Released experts (TF SavedModels) into expertlib: the converted fixture reproduces TensorFlow's outputs."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from expertlib.candidates import from_bank, from_model
from expertlib.convert import (
    ConversionError,
    bit_arrays,
    convert_saved_model,
    expert_name,
    infer_config,
    main,
)
from expertlib.resnet import create_model
from expertlib.weights import load_bank, load_model, read_metadata, state_dict_to_bit

FIXTURES = Path(__file__).parent / "fixtures" / "tf_expert"
SAVED = FIXTURES / "animal" / "1"


def _tf_outputs():
    o = np.load(FIXTURES / "outputs.npz")
    return torch.from_numpy(o["images"]).permute(0, 3, 1, 2).contiguous(), o["features"]


def test_converted_expert_matches_tensorflow():
    model = convert_saved_model(SAVED)
    assert model.cfg.layers == (1, 1) and model.cfg.widths == (128, 256) and model.cfg.stem == "bit"
    assert model.num_classes == 0
    x, want = _tf_outputs()
    with torch.no_grad():
        got = model.features(x).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_command_line_single_expert_and_bank(tmp_path, capsys):
    out = tmp_path / "animal.safetensors"
    assert main([str(SAVED), "--out", str(out)]) == 0
    meta = read_metadata(out)
    assert meta["name"] == "animal" and meta["subtree"] == "animal" and str(SAVED) in meta["source"]
    x, want = _tf_outputs()
    cand = from_model(load_model(out), "animal")
    with torch.no_grad():
        assert np.abs(cand.features(x).numpy() - want).max() < 1e-4
    # a folder of experts (one as an archive) with B becomes one bank
    folder = tmp_path / "experts"
    shutil.copytree(FIXTURES / "animal", folder / "entity" / "entity")
    shutil.make_archive(str(folder / "bit-r50x1-in21k-bird"), "gztar", FIXTURES / "animal")
    base = create_model("R50x1")  # the wrong architecture for B is named
    bad_base = tmp_path / "B.npz"
    np.savez(bad_base, **state_dict_to_bit(base))
    assert main([str(folder), "--out", str(tmp_path / "bank.safetensors"), "--base", str(bad_base)]) == 1
    assert "BiT file does not match config (1, 1)" in capsys.readouterr().err
    assert main([str(folder), "--out", str(tmp_path / "bank.safetensors")]) == 0
    bank = load_bank(tmp_path / "bank.safetensors")
    assert sorted(bank.expert_names) == ["bird", "entity"]
    assert "entity expert" in read_metadata(tmp_path / "bank.safetensors")["base_from"]
    with torch.no_grad():
        for c in from_bank(bank).values():
            assert np.abs(c.features(x).numpy() - want).max() < 1e-4


def test_unmapped_and_missing_variables_are_named():
    from expertlib.tfcheckpoint import read_saved_model

    v = read_saved_model(SAVED)
    with pytest.raises(ConversionError, match=r"1 variables have no BiT name: \['model/extra_scale'\]"):
        bit_arrays({**v, "model/extra_scale": np.ones(1)})
    assert "resnet/group_norm/gamma" in bit_arrays({**v, "global_step": np.zeros(())})
    arrays = bit_arrays(v)
    del arrays["resnet/block2/unit01/b/group_norm/beta"]
    model = create_model(infer_config(arrays))
    from expertlib.weights import WeightMismatchError, bit_to_state_dict

    with pytest.raises(WeightMismatchError, match="block2/unit01/b/group_norm/beta"):
        bit_to_state_dict(arrays, model, head=False)
    with pytest.raises(ConversionError, match="not a BiT ResNet-v2"):
        infer_config({"resnet/group_norm/gamma": np.ones(4)})


def test_names_from_paths():
    assert expert_name("downloads/experts/bit/r50x1/in21k/animal/1") == "animal"
    assert expert_name("bit-r50x1-in21k-vascular_plant-v1.tar.gz") == "vascular_plant"
    assert expert_name("x/bit_m-r50x1-in21k-woody_plant.tgz") == "woody_plant"
    assert expert_name("my model/7") == "my_model"


def test_infer_config_of_r50x1():
    r50 = create_model("R50x1")
    cfg = infer_config(state_dict_to_bit(r50))
    assert (cfg.layers, cfg.widths, cfg.stem_width, cfg.block) == (
        (3, 4, 6, 3),
        (256, 512, 1024, 2048),
        64,
        "bottleneck",
    )
