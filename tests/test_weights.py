from functools import partial

import numpy as np
import pytest
import torch
from timm.layers import GroupNormAct
from timm.layers import StdConv2d as TimmStdConv2d
from timm.models.resnetv2 import ResNetV2 as TimmResNetV2

from expertlib.models.adapters import AdapterConfig, AdapterExperts, FullExperts
from expertlib.models.resnet import create_model, pooled_features
from expertlib.models.weights import (
    CheckpointError,
    WeightMismatchError,
    load_bank,
    load_bit_npz,
    load_expert,
    load_model,
    load_timm_checkpoint,
    save_bank,
    save_expert,
    save_model,
    state_dict_to_bit,
    to_timm_state_dict,
)


def _randomised(name="tiny", classes=5, **overrides):
    m = create_model(name, num_classes=classes, **overrides)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p))
    return m.eval()


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bit_npz_round_trip_r50x1(tmp_path):
    src = _randomised("R50x1", classes=21843 // 100)  # a smaller head keeps the file small
    arrays = state_dict_to_bit(src)
    assert len(arrays) == 153
    assert arrays["resnet/root_block/standardized_conv2d/kernel"].shape == (7, 7, 3, 64)  # HWIO
    assert "resnet/block1/unit01/a/proj/standardized_conv2d/kernel" in arrays
    assert "resnet/block4/unit03/c/group_norm/gamma" in arrays
    path = tmp_path / "BiT-M-R50x1.npz"
    np.savez(path, **arrays)
    dst = load_bit_npz(create_model("R50x1", num_classes=218), path)
    assert _same(src, dst)
    headless = load_bit_npz(create_model("R50x1", num_classes=10), path, head=False)
    assert torch.equal(headless.stem.conv.weight, src.stem.conv.weight)
    assert torch.equal(headless.head.fc.weight, torch.zeros(10, 2048, 1, 1))


def test_bit_npz_errors_name_the_problem(tmp_path):
    arrays = state_dict_to_bit(_randomised("tiny", 5))
    path = tmp_path / "w.npz"
    np.savez(path, **arrays)
    with pytest.raises(WeightMismatchError, match="5-way head but the model has 7"):
        load_bit_npz(create_model("tiny", num_classes=7), path)
    with pytest.raises(WeightMismatchError, match="missing BiT keys"):
        load_bit_npz(create_model("small", num_classes=5, layers=(3, 2, 2)), path)
    with pytest.raises(WeightMismatchError, match="shape mismatches"):
        load_bit_npz(create_model("small", num_classes=5), path)
    arrays.pop("resnet/group_norm/gamma")
    np.savez(path, **arrays)
    with pytest.raises(WeightMismatchError, match="resnet/group_norm/gamma"):
        load_bit_npz(create_model("tiny", num_classes=5), path)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="bad.npz"):
        load_bit_npz(create_model("tiny"), tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_bit_npz(create_model("tiny"), tmp_path / "missing.npz")


def test_timm_state_dict_both_ways(tmp_path):
    ours = _randomised("small_bottleneck", 4, stem="bit")
    theirs = TimmResNetV2(
        layers=[2, 2, 2],
        channels=(64, 128, 256),
        stem_type="fixed",
        stem_chs=32,
        conv_layer=partial(TimmStdConv2d, eps=1e-10),
        norm_layer=partial(GroupNormAct, num_groups=8),
        num_classes=4,
    )
    theirs.load_state_dict(to_timm_state_dict(ours))  # strict: every key and shape fits
    path = tmp_path / "timm.pth"
    torch.save({"state_dict": theirs.state_dict()}, path)
    back = load_timm_checkpoint(create_model("small_bottleneck", num_classes=4, stem="bit"), path)
    assert _same(ours, back)
    with pytest.raises(WeightMismatchError, match="only the head differs"):
        load_timm_checkpoint(create_model("small_bottleneck", num_classes=9, stem="bit"), path)
    assert (
        load_timm_checkpoint(create_model("small_bottleneck", num_classes=9, stem="bit"), path, head=False)
        is not None
    )


def test_model_safetensors_round_trip(tmp_path):
    m = _randomised("tiny", 3)
    save_model(m, tmp_path / "m.safetensors")
    back = load_model(tmp_path / "m.safetensors")
    assert back.cfg == m.cfg and _same(m, back)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_model(tmp_path / "junk.safetensors")


@pytest.mark.parametrize("kind", ["adapter", "full"])
def test_bank_and_single_expert_round_trip(tmp_path, kind):
    base = _randomised("tiny", 6)
    bank = AdapterExperts(base, AdapterConfig(width=0.5)) if kind == "adapter" else FullExperts(base)
    bank.add_expert("animal", num_classes=3)
    bank.add_expert("digit", num_classes=0)
    with torch.no_grad():
        for p in bank.experts["animal"].parameters():
            p.add_(torch.randn_like(p))
    save_bank(bank, tmp_path / "bank.safetensors")
    back = load_bank(tmp_path / "bank.safetensors")
    assert back.kind == kind and back.expert_names == ["animal", "digit"] and _same(bank, back)
    save_expert(bank, "animal", tmp_path / "animal.safetensors")
    other = AdapterExperts(base, AdapterConfig(width=0.5)) if kind == "adapter" else FullExperts(base)
    assert load_expert(other, tmp_path / "animal.safetensors", name="animal2") == "animal2"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(
            pooled_features(other, x, expert="animal2"), pooled_features(bank, x, expert="animal")
        )


def test_expert_from_another_bank_is_refused(tmp_path):
    bank = AdapterExperts(_randomised("tiny", 6), AdapterConfig(width=0.5))
    bank.add_expert("a")
    save_expert(bank, "a", tmp_path / "a.safetensors")
    with pytest.raises(WeightMismatchError, match="adapter="):
        load_expert(
            AdapterExperts(_randomised("tiny", 6), AdapterConfig(width=1.0)), tmp_path / "a.safetensors"
        )
    with pytest.raises(WeightMismatchError, match="kind="):
        load_expert(FullExperts(_randomised("tiny", 6)), tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="expected 'expertlib.expert_bank'"):
        load_bank(tmp_path / "a.safetensors")


def test_timm_bit_weights_reproduce_timms_own_model_with_timms_eps(tmp_path):
    import timm

    from expertlib.models.weights import BIT_STD_EPS, set_std_eps

    theirs = timm.create_model("resnetv2_50x1_bit", pretrained=False, num_classes=10).eval()
    with torch.no_grad():
        for p in theirs.parameters():  # give the zero-initialised head and the norms some values
            p.add_(torch.randn_like(p) * 0.02)
    path = tmp_path / "resnetv2_50x1_bit.pth"
    torch.save(theirs.state_dict(), path)  # float32 weights, as released; both models then run in float64
    theirs = theirs.double()
    ours = load_timm_checkpoint(create_model("R50x1", num_classes=10), path).double().eval()
    assert ours.cfg.std_eps == 1e-8
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        want = theirs(x)
        err = (ours(x) - want).abs().max().item()
        set_std_eps(ours, BIT_STD_EPS)  # BiT's eps on timm's weights: measurably off
        err_bit_eps = (ours(x) - want).abs().max().item()
    assert err < 1e-10 and err_bit_eps > 1e3 * max(err, 1e-15)
    saved = tmp_path / "ours.safetensors"
    save_model(set_std_eps(ours, 1e-8).float(), saved)
    assert load_model(saved).cfg.std_eps == 1e-8  # the eps travels with the weights


def test_the_same_model_saves_to_the_same_bytes(tmp_path):
    """safetensors writes its metadata map in a random (hash) order; our files sort it."""
    model = create_model("tiny", num_classes=3)
    blobs = {save_model(model, tmp_path / f"{i}.safetensors", extra={"a": "1", "b": "2", "c": "3"}).read_bytes()
             for i in range(6)}  # fmt: skip
    assert len(blobs) == 1
    again = load_model(tmp_path / "0.safetensors")
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.state_dict().values(), model.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize(
    "fmt, meta, message",
    [
        ("expertlib.expert_bank", {}, "lacks 'kind', 'config', 'base_classes', 'experts'"),
        ("expertlib.expert_bank", {"kind": "full", "base_classes": "3", "experts": "{}"}, "lacks 'config' "),
        ("expertlib.resnetv2", {"num_classes": "3"}, "lacks 'config' "),
        (
            "expertlib.resnetv2",
            {"num_classes": "3", "config": "{not json"},
            "field 'config' is not valid JSON",
        ),
    ],
)
def test_a_file_claiming_a_format_without_its_metadata_is_named(tmp_path, fmt, meta, message):
    from safetensors.torch import save_file

    path = tmp_path / "claims.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": fmt, **meta})
    with pytest.raises(CheckpointError, match=f"{path}.*{message}"):
        (load_bank if "bank" in fmt else load_model)(path)
