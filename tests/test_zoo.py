import pickle

import pytest
import torch

from expertlib.models.resnet import create_model
from expertlib.models.weights import CheckpointError, save_model
from expertlib.select.zoo import UnknownModelError, from_spec


def test_timm_and_torchvision_models_from_local_checkpoints(tmp_path):
    import timm
    import torchvision.models as tvm

    torch.save(timm.create_model("test_resnet").state_dict(), tmp_path / "t.pth")
    torch.save(tvm.get_model("mobilenet_v3_small").state_dict(), tmp_path / "m.pth")
    (t,) = from_spec(f"timm:test_resnet={tmp_path / 't.pth'}")
    (m,) = from_spec(f"torchvision:mobilenet_v3_small={tmp_path / 'm.pth'}")
    assert (t.crop, m.crop, m.precrop) == (160, 224, 256)  # each its own pretrained config
    for c in (t, m):
        x = torch.rand(2, 3, c.crop, c.crop) * 2 - 1
        with torch.no_grad():
            f = c.features(x)
            assert f.ndim == 2 and c.head_logits(f).shape == (2, 1000)
            net = c.transfer_net(4).eval()
            assert net(x).shape == (2, 4) and net(x).abs().max() == 0  # a fresh zero head


def test_timm_features_match_timm_with_its_own_normalisation(tmp_path):
    import timm

    model = timm.create_model("test_resnet").eval()
    torch.save(model.state_dict(), tmp_path / "t.pth")
    (t,) = from_spec(f"timm:test_resnet={tmp_path / 't.pth'}")
    x01 = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        want = model.forward_head(model.forward_features((x01 - 0.5) / 0.5), pre_logits=True)
        assert torch.allclose(t.features(x01 * 2 - 1), want, atol=1e-5)


def test_expertlib_model_and_bank_files(tmp_path):
    from expertlib.models.adapters import AdapterExperts
    from expertlib.models.weights import save_bank

    base = create_model("tiny", num_classes=5)
    save_model(base, tmp_path / "b.safetensors")
    bank = AdapterExperts(base)
    bank.add_expert("e", num_classes=2, head_rows=[0, 1])
    save_bank(bank, tmp_path / "bank.safetensors")
    names = [c.name for c in from_spec(str(tmp_path / "b.safetensors"))]
    bank_names = [c.name for c in from_spec(f"expertlib:{tmp_path / 'bank.safetensors'}")]
    assert names == ["b"] and bank_names == ["bank:base", "bank:e"]


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownModelError, match="resnet18"):
        from_spec("timm:resnet19=x.pth")
    with pytest.raises(UnknownModelError, match="mobilenet_v3_small"):
        from_spec("torchvision:mobilenet_v3_smal=x.pth")
    with pytest.raises(UnknownModelError, match="cannot read model spec"):
        from_spec("keras:resnet")


def test_checkpoints_of_another_architecture_and_code_pickles_are_refused(tmp_path):
    import timm

    torch.save(timm.create_model("test_byobnet").state_dict(), tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="does not fit architecture timm:test_resnet"):
        from_spec(f"timm:test_resnet={tmp_path / 'other.pth'}")

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"w": Payload()}))
    with pytest.raises(CheckpointError, match="refused"):
        from_spec(f"timm:test_resnet={tmp_path / 'evil.pth'}")


def test_an_existing_file_is_that_file_even_with_a_colon_in_its_name(tmp_path, monkeypatch):
    save_model(create_model("tiny", num_classes=3), tmp_path / "run_12:30.safetensors")
    monkeypatch.chdir(tmp_path)
    (c,) = from_spec("run_12:30.safetensors")  # "run_12" is no model type: the file is read
    assert c.name == "run_12:30"
    (c,) = from_spec(str(tmp_path / "run_12:30.safetensors"))
    assert c.name == "run_12:30"
    with pytest.raises(
        UnknownModelError, match="cannot read model spec 'run_12:31.safetensors': no such file"
    ):
        from_spec("run_12:31.safetensors")
    torch.save(create_model("tiny", num_classes=3).state_dict(), tmp_path / "w.pth")
    with pytest.raises(
        UnknownModelError, match=r"w.pth is a checkpoint file without its architecture: .*timm:<name>=w.pth"
    ):
        from_spec("w.pth")


def test_a_bank_file_without_its_metadata_is_named(tmp_path):
    from safetensors.torch import save_file

    save_file(
        {"w": torch.zeros(2)}, str(tmp_path / "b.safetensors"), metadata={"format": "expertlib.expert_bank"}
    )
    with pytest.raises(
        CheckpointError,
        match=r"b.safetensors says it is an 'expertlib.expert_bank' file but its metadata lacks 'kind', 'config'",
    ):
        from_spec(str(tmp_path / "b.safetensors"))
