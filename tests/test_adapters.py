import pytest
import torch

from expertlib.models.adapters import (
    AdaptedResNet,
    AdapterConfig,
    AdapterExperts,
    FullExperts,
    UnknownExpertError,
    parameter_summary,
)
from expertlib.models.resnet import create_model, pooled_features


def _base(name="tiny", classes=6):
    m = create_model(name, num_classes=classes)
    torch.nn.init.normal_(m.head.fc.weight, std=0.1)  # a trained-looking head
    return m.eval()


def _perturb(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)


@pytest.mark.parametrize("placement", ["unit_end", "parallel"])
@pytest.mark.parametrize("arch", ["tiny", "small_bottleneck"])
def test_fresh_adapters_compute_exactly_b(placement, arch):
    base = _base(arch)
    bank = AdapterExperts(base, AdapterConfig(placement=placement, width=0.5))
    bank.add_expert("animals", num_classes=6, head_rows=range(6))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(pooled_features(bank, x, expert="animals"), pooled_features(base, x))
        assert torch.equal(bank(x, "animals"), base(x))


def test_trained_adapter_changes_only_its_expert():
    base = _base()
    bank = AdapterExperts(base)
    bank.add_expert("a")
    bank.add_expert("b")
    _perturb(bank.experts["a"])
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        feats = {e: pooled_features(bank, x, expert=e) for e in (None, "a", "b")}
    assert not torch.allclose(feats["a"], feats[None])
    assert torch.equal(feats["b"], feats[None])
    assert torch.allclose(feats[None], pooled_features(base, x))


def test_frozen_backbone_gradients_reach_only_the_chosen_expert():
    bank = AdapterExperts(_base())
    bank.add_expert("a", num_classes=3)
    bank.add_expert("b", num_classes=3)
    _perturb(bank.experts["a"])
    params = bank.train_only("a")
    loss = (
        bank(torch.randn(4, 3, 32, 32), "a").pow(2).sum()
        + pooled_features(bank, torch.randn(2, 3, 32, 32), expert="a").sum()
    )
    loss.backward()
    ids = {id(p) for p in params}
    for name, p in bank.named_parameters():
        if id(p) in ids:
            assert p.requires_grad
        else:
            assert not p.requires_grad and p.grad is None, name
    assert all(p.grad is not None for p in bank.experts["a"].adapters.parameters())
    assert all(p.grad is not None for p in bank.experts["a"].head.parameters())
    assert len(bank.experts["a"].norms) > 0 and all(
        p.grad is not None for p in bank.experts["a"].norms.values()
    )


def test_train_norms_off_keeps_backbone_norms():
    bank = AdapterExperts(_base(), AdapterConfig(train_norms=False))
    e = bank.add_expert("a")
    assert len(e.norms) == 0


def test_unknown_expert_and_bad_names():
    bank = AdapterExperts(_base())
    bank.add_expert("animal")
    with pytest.raises(UnknownExpertError, match="unknown expert 'animl'.*holds: animal"):
        pooled_features(bank, torch.randn(1, 3, 32, 32), expert="animl")
    with pytest.raises(ValueError, match="reserved"):
        bank.add_expert("base")
    with pytest.raises(ValueError, match="already exists"):
        bank.add_expert("animal")


def test_transfer_model_matches_expert_features_and_is_independent():
    for bank in (AdapterExperts(_base()), FullExperts(_base())):
        bank.add_expert("a", num_classes=6)
        _perturb(bank.experts["a"])
        net = bank.transfer_model("a", num_classes=4)
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert torch.allclose(pooled_features(net, x), pooled_features(bank, x, expert="a"), atol=1e-5)
            assert torch.equal(net(x), torch.zeros(2, 4))  # fresh zero head
        _perturb(net)
        with torch.no_grad():
            assert not torch.allclose(pooled_features(net, x), pooled_features(bank, x, expert="a"))
        base_net = bank.transfer_model(None, 4)
        assert not isinstance(base_net, AdaptedResNet)


def test_full_experts_same_interface():
    base = _base()
    bank = FullExperts(base)
    bank.add_expert("a", num_classes=2, head_rows=[0, 3])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(bank(x, "a"), base(x)[:, [0, 3]])
    assert bank.num_expert_parameters("a", exclude_head=True) == sum(
        p.numel() for n, p in base.named_parameters() if not n.startswith("head.")
    )
    params = bank.train_only("a")
    assert not any(p.requires_grad for p in base.parameters())
    assert all(p.requires_grad for p in params)


def test_adapter_parameter_budget_r50x1_48_experts():
    bank = AdapterExperts(create_model("R50x1"), AdapterConfig(width=1 / 16))
    bank.add_expert("one")
    s = parameter_summary(bank)
    adapter_total = s["backbone"] + 48 * s["expert:one"]
    full_total = 48 * s["backbone"]
    assert adapter_total <= 0.15 * full_total


def test_one_forward_contract_for_every_network():
    """B, an adapted transfer net, both banks and a candidate answer timm's three calls the same way: forward is
    forward_head(forward_features), pre_logits pools, and the head takes pooled features as well as a map."""
    from expertlib.models.candidates import Candidate

    base = _base()
    adapters, full = AdapterExperts(base), FullExperts(base)
    adapters.add_expert("a", num_classes=6, head_rows=range(6))
    full.add_expert("f", num_classes=6, head_rows=range(6))
    _perturb(adapters.experts["a"])
    _perturb(full.experts["f"])
    nets = {
        "B": (base, {}),
        "adapted": (adapters.transfer_model("a", 3), {}),
        "adapter bank": (adapters, {"expert": "a"}),
        "full bank": (full, {"expert": "f"}),
        "candidate": (Candidate("adapter:a", adapters, "a"), {}),
    }
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for what, (net, kw) in nets.items():
            fmap = net.forward_features(x, **kw)
            assert fmap.ndim == 4, what
            logits = net(x, *kw.values())
            assert torch.equal(net.forward_head(fmap, **kw), logits), what
            pooled = net.forward_head(fmap, pre_logits=True, **kw)
            assert torch.equal(pooled, fmap.mean(dim=(2, 3))), what
            assert torch.allclose(net.forward_head(pooled, **kw), logits, atol=1e-6), what
            for gone in ("features", "features_many", "logits", "forward_stem", "forward_body"):
                assert not hasattr(net, gone), (what, gone)
    # the adapter bank's expert, the candidate and the transfer net are one network underneath
    with torch.no_grad():
        want = pooled_features(adapters, x, expert="a")
        assert torch.allclose(pooled_features(nets["candidate"][0], x), want)
        assert torch.allclose(pooled_features(nets["adapted"][0], x), want, atol=1e-5)
