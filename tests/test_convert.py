"""Released experts (TF SavedModels) into expertlib: the converted fixture reproduces TensorFlow's outputs."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from expertlib.models.candidates import from_bank, from_model
from expertlib.models.convert import (
    ConversionError,
    bit_arrays,
    convert_saved_model,
    expert_name,
    infer_config,
    main,
)
from expertlib.models.resnet import create_model, pooled_features
from expertlib.models.tfcheckpoint import read_saved_model
from expertlib.models.weights import load_bank, load_model, read_metadata, state_dict_to_bit

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
        got = pooled_features(model, x).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_command_line_single_expert_and_bank(tmp_path, capsys):
    out = tmp_path / "animal.safetensors"
    assert main([str(SAVED), "--out", str(out)]) == 0
    meta = read_metadata(out)
    assert meta["name"] == "animal" and meta["subtree"] == "animal" and str(SAVED) in meta["source"]
    x, want = _tf_outputs()
    cand = from_model(load_model(out), "animal")
    with torch.no_grad():
        assert np.abs(pooled_features(cand, x).numpy() - want).max() < 1e-4
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
            assert np.abs(pooled_features(c, x).numpy() - want).max() < 1e-4


def test_unmapped_and_missing_variables_are_named():
    from expertlib.models.tfcheckpoint import read_saved_model

    v = read_saved_model(SAVED)
    with pytest.raises(ConversionError, match=r"1 variables have no BiT name: \['model/extra_scale'\]"):
        bit_arrays({**v, "model/extra_scale": np.ones(1)})
    assert "resnet/group_norm/gamma" in bit_arrays({**v, "global_step": np.zeros(())})
    arrays = bit_arrays(v)
    del arrays["resnet/block2/unit01/b/group_norm/beta"]
    model = create_model(infer_config(arrays))
    from expertlib.models.weights import WeightMismatchError, bit_to_state_dict

    with pytest.raises(WeightMismatchError, match="block2/unit01/b/group_norm/beta"):
        bit_to_state_dict(arrays, model, head=False)
    with pytest.raises(ConversionError, match="not a BiT ResNet-v2"):
        infer_config({"resnet/group_norm/gamma": np.ones(4)})


def test_names_from_paths():
    assert expert_name("downloads/experts/bit/r50x1/in21k/animal/1") == "animal"
    assert expert_name("bit-r50x1-in21k-vascular_plant-v1.tar.gz") == "vascular_plant"
    assert expert_name("x/bit_m-r50x1-in21k-woody_plant.tgz") == "woody_plant"
    assert expert_name("downloads/1.tar.gz") is None  # a download named by number names no expert


RELEASED = Path(__file__).parent / "fixtures" / "released_experts"


def _corrupt_copy(tmp_path):
    bad = tmp_path / "bird" / "1"
    shutil.copytree(RELEASED / "bird" / "1", bad)
    data = bad / "variables" / "variables.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit, as a damaged download would have
    data.write_bytes(bytes(raw))
    return bad


def test_a_corrupt_download_is_refused_naming_the_tensor(tmp_path, capsys):
    from expertlib.models.tfcheckpoint import CorruptTensorError, read_saved_model

    bad = _corrupt_copy(tmp_path)
    with pytest.raises(CorruptTensorError) as e:
        read_saved_model(bad)
    assert e.value.tensors == ["resnet/block2/unit01/a/standardized_conv2d/kernel"]
    assert main([str(bad), "--out", str(tmp_path / "b.safetensors")]) == 1
    err = capsys.readouterr().err
    assert (
        "block2/unit01/a/standardized_conv2d/kernel" in err and "CRC32C" in err and "download it again" in err
    )
    assert not (tmp_path / "b.safetensors").exists()
    assert len(read_saved_model(RELEASED / "bird" / "1")) == 23  # the intact file reads, every tensor checked


def test_string_tensor_checksum_matches_tensorflow():
    from expertlib.models.tfcheckpoint import OBJECT_GRAPH_KEY, _crc_of_string_tensor, _first, read_table

    prefix = RELEASED / "food" / "1" / "variables" / "variables"
    entry = read_table(f"{prefix}.index")[OBJECT_GRAPH_KEY.encode()]
    raw = Path(f"{prefix}.data-00000-of-00001").read_bytes()
    offset, size = _first(entry, 4, 0), _first(entry, 5, 0)
    assert _crc_of_string_tensor(raw[offset : offset + size], 1) == _first(entry, 6)


def test_architecture_is_named_and_a_mixed_bank_refused(tmp_path, capsys, monkeypatch):
    out = tmp_path / "bank.safetensors"
    assert (
        main(
            [
                f"animal={SAVED}",
                str(RELEASED / "bird"),
                "--out",
                str(out),
                "--base",
                str(RELEASED / "base.npz"),
            ]
        )
        == 0
    )
    assert "bit_fixture" in capsys.readouterr().out and read_metadata(out)["architecture"] == "bit_fixture"
    import expertlib.models.convert as C

    named = C.sources([str(RELEASED / "food"), f"vehicle={SAVED}"])
    assert sorted(named) == ["food", "vehicle"]
    real = C.convert_saved_model  # one expert as an R50x1, as if a download of another model slipped in
    monkeypatch.setattr(C, "convert_saved_model",
                        lambda src, *a: create_model("R50x1") if "food" in str(src) else real(src, *a))  # fmt: skip
    with pytest.raises(
        ConversionError, match=r"do not share one architecture.*R50x1: food.*bit_fixture: vehicle"
    ):
        C.convert_bank(named, tmp_path / "mixed.safetensors", RELEASED / "base.npz", log=lambda *_: None)


def test_unnamed_download_and_a_model_that_is_not_bit(tmp_path, capsys):
    download = tmp_path / "downloads" / "1"
    shutil.copytree(SAVED, download)
    assert main([str(download), "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "names no released expert" in capsys.readouterr().err
    assert main([f"animal={download}", "--out", str(tmp_path / "x.safetensors")]) == 0
    assert read_metadata(tmp_path / "x.safetensors")["name"] == "animal"
    with pytest.raises(ConversionError, match="not a BiT ResNet-v2: none of its 2 variables"):
        bit_arrays({"dense/kernel": np.ones((2, 2)), "global_step": np.zeros(())})
    with pytest.raises(ConversionError, match="1 bookkeeping variables"):
        bit_arrays({**bit_arrays(read_saved_model(SAVED)),
                    "global_step": np.zeros(()), "dense/kernel": np.ones(2)})  # fmt: skip


def test_infer_config_of_r50x1():
    r50 = create_model("R50x1")
    cfg = infer_config(state_dict_to_bit(r50))
    assert (cfg.layers, cfg.widths, cfg.stem_width, cfg.block) == (
        (3, 4, 6, 3),
        (256, 512, 1024, 2048),
        64,
        "bottleneck",
    )


def _tar(path: Path, members: list[tuple[str, str | None]]) -> Path:
    """A .tar.gz of (name, link target or None: a one-byte file) members, written as given (no checks)."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, link in members:
            info = tarfile.TarInfo(name)
            if link is None:
                info.size = 1
                tar.addfile(info, io.BytesIO(b"x"))
            else:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
    return path


@pytest.mark.parametrize(
    "members, message",
    [
        (
            [("saved_model.pb", None), ("/etc/escape.txt", None)],
            "member '/etc/escape.txt' has an absolute path",
        ),
        ([("../../escape.txt", None)], r"member '../../escape.txt' climbs out .* with '\.\.'"),
        ([("ok/../../x", None)], r"member 'ok/../../x' climbs out"),
        ([("variables/link", "/etc/passwd")], "member 'variables/link' is a link to /etc/passwd"),
    ],
)
def test_archive_members_that_would_land_outside_are_refused_naming_archive_and_member(
    tmp_path, capsys, members, message
):
    archive = _tar(tmp_path / "animal.tar.gz", members)
    with pytest.raises(ConversionError, match=f"archive {archive}: {message}"):
        convert_saved_model(archive)
    assert main([str(archive), "--out", str(tmp_path / "o.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "animal.tar.gz: member" in err and "tmp" not in err.replace(
        str(tmp_path), ""
    )  # no temporary folder


@pytest.mark.parametrize(
    "content, message",
    [
        (b"<!DOCTYPE html><html>Not Found</html>", "a web page"),
        (b"", "empty: 0 bytes"),
        (
            __import__("gzip").compress(b"not a tar", mtime=0),
            "gzip-compressed data with no tar archive inside",
        ),
        (b"PK\x03\x04zip", "a zip archive: unzip it"),
    ],
)
def test_a_file_named_tar_gz_that_is_no_tar_archive_says_so(tmp_path, capsys, content, message):
    fake = tmp_path / "animal.tar.gz"
    fake.write_bytes(content)
    assert main([str(fake), "--out", str(tmp_path / "o.safetensors")]) == 1
    err = capsys.readouterr().err
    assert (
        f"{fake} is not a tar archive of a SavedModel" in err
        and message in err
        and "saved_model.pb not found" not in err
    )


def test_an_archive_cut_short_is_refused_as_incomplete(tmp_path):
    shutil.make_archive(str(tmp_path / "animal"), "gztar", FIXTURES / "animal")
    raw = (tmp_path / "animal.tar.gz").read_bytes()
    (tmp_path / "animal.tar.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ConversionError, match="cannot be read to its end.*download it again"):
        convert_saved_model(tmp_path / "animal.tar.gz")
