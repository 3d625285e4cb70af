from functools import partial

import pytest
import timm
import torch
from timm.layers import StdConv2d as TimmStdConv2d
from timm.models.resnetv2 import ResNetV2 as TimmResNetV2

from expertlib.models.resnet import (
    CONFIGS,
    ResNetV2,
    StdConv2d,
    count_parameters,
    create_model,
    get_config,
    pooled_features,
)


def _timm_twin(cfg_name: str, num_classes: int) -> TimmResNetV2:
    cfg = CONFIGS[cfg_name]
    return TimmResNetV2(
        layers=list(cfg.layers),
        channels=tuple(cfg.widths),
        stem_type="fixed",
        stem_chs=cfg.stem_width,
        conv_layer=partial(TimmStdConv2d, eps=1e-10),
        num_classes=num_classes,
    )


def _randomise(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5 + (0.5 if p.ndim == 1 else 0.0))


@pytest.mark.slow
def test_r50x1_matches_timm_in_float64():
    ours = create_model("R50x1", num_classes=10).double()
    _randomise(ours)
    theirs = _timm_twin("R50x1", 10).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
        fa = pooled_features(ours, x)
        fb = theirs.forward_head(theirs.forward_features(x), pre_logits=True)
    assert a.shape == (2, 10)
    assert (a - b).abs().max().item() <= 1e-10
    assert (fa - fb).abs().max().item() <= 1e-10


def test_small_bottleneck_config_matches_timm_body_in_float64():
    # timm's 'fixed' stem is BiT's 7x7 one; compare a small bottleneck net with the BiT stem.
    cfg = get_config("R50x1", layers=(1, 1, 1, 1), widths=(64, 128, 256, 512), stem_width=32, norm_groups=8)
    ours = ResNetV2(cfg, num_classes=5).double()
    _randomise(ours)
    theirs = TimmResNetV2(
        layers=[1, 1, 1, 1],
        channels=(64, 128, 256, 512),
        stem_type="fixed",
        stem_chs=32,
        conv_layer=partial(TimmStdConv2d, eps=1e-10),
        norm_layer=partial(timm.layers.GroupNormAct, num_groups=8),
        num_classes=5,
    ).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 3, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() <= 1e-10


def test_std_conv_standardises_each_filter():
    conv = StdConv2d(4, 6, 3)
    w = conv.standardized_weight()
    assert torch.allclose(w.mean(dim=(1, 2, 3)), torch.zeros(6), atol=1e-6)
    assert torch.allclose(w.var(dim=(1, 2, 3), unbiased=False), torch.ones(6), atol=1e-4)
    assert conv.bias is None


def test_parameter_counts():
    r50 = create_model("R50x1")
    assert abs(count_parameters(r50, exclude_head=True) - 23.5e6) < 0.05e6
    assert count_parameters(r50, exclude_head=True) == 23_500_352  # the same count timm gives
    assert count_parameters(create_model("tiny"), exclude_head=True) < 60_000


def test_head_is_zero_initialised_and_replaceable():
    m = create_model("tiny", num_classes=7)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(m(x), torch.zeros(2, 7))
    m.reset_head(3)
    assert m(x).shape == (2, 3)
    m.reset_head(4, zero=False)
    assert m(x).abs().sum() > 0


def test_features_and_head_shapes_for_small_configs():
    for name in ("tiny", "small", "small_bottleneck"):
        m = create_model(name, num_classes=4)
        x = torch.randn(2, 3, 32, 32)
        fmap = m.forward_features(x)
        assert fmap.shape[1] == m.num_features and fmap.min() >= 0  # after GN + ReLU
        assert m.forward_head(fmap, pre_logits=True).shape == (2, m.num_features)
        assert m(x).shape == (2, 4)
        assert pooled_features(m, x).shape == (2, m.num_features)


def test_stem_pads_then_pools_without_padding():
    m = create_model("R50x1")
    out = m.stem(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 64, 56, 56)
    assert m.stem.pool.padding == 0


def test_unknown_config_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown ResNetV2 config 'R51x1'.*R50x1"):
        create_model("R51x1")


def test_adapters_length_checked():
    m = create_model("tiny")
    with pytest.raises(ValueError, match="adapters for 6 residual units"):
        m(torch.randn(1, 3, 32, 32), adapters=[None])


def test_reused_standardized_weights_give_the_same_bits_and_expire_with_the_block():
    from expertlib.models.resnet import reuse_standardized_weights

    model = create_model("tiny", num_classes=5).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        fresh = pooled_features(model, x)
        conv = model.stem.conv
        with reuse_standardized_weights():
            kept = [pooled_features(model, x), pooled_features(model, x)]
            assert conv._kept is not None and kept[0].data_ptr() != kept[1].data_ptr()
        assert all(torch.equal(fresh, k) for k in kept)
        # the block released every kept weight: nothing outlives it
        assert all(m._kept is None for m in model.modules() if hasattr(m, "_kept"))
        conv.weight.mul_(-1)  # outside the block: the change is seen at once
        after = pooled_features(model, x)
        with reuse_standardized_weights():
            again = pooled_features(model, x)
    assert not torch.equal(fresh, after) and torch.equal(after, again)
    with reuse_standardized_weights():  # with autograd the weight is standardised inside the graph
        pooled_features(model, x).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_group_norm_refuses_channels_it_cannot_split_and_adapters_honour_gn_eps():
    import pytest

    from expertlib.models.adapters import AdapterConfig, AdapterExperts
    from expertlib.models.resnet import ResNetV2, group_norm

    assert group_norm(64, 32).num_groups == 32
    with pytest.raises(ValueError, match="12 channels do not split into 8 groups"):
        group_norm(12, 8)  # a gcd would silently have used 4 groups, which BiT and timm never do
    from dataclasses import replace

    from expertlib.models.resnet import get_config

    base = ResNetV2(replace(get_config("tiny"), gn_eps=1e-3), num_classes=0)
    bank = AdapterExperts(base, AdapterConfig(placement="unit_end"))
    bank.add_expert("a", num_classes=3)
    norms = [
        m for n, m in bank.named_modules() if isinstance(m, torch.nn.GroupNorm) and "adapter" in n.lower()
    ]
    assert norms and all(m.eps == 1e-3 for m in norms)


def test_one_parameter_count_serves_models_state_dicts_and_banks():
    from expertlib.models.adapters import AdapterConfig, AdapterExperts
    from expertlib.models.candidates import from_bank, from_model
    from expertlib.models.resnet import count_parameters

    m = create_model("tiny", num_classes=7)
    head = m.head.fc.weight.numel() + m.head.fc.bias.numel() if hasattr(m.head, "fc") else 7 * 32 + 7
    assert count_parameters(m) - count_parameters(m, exclude_head=True) == head
    assert count_parameters(m.state_dict(), exclude_head=True) == count_parameters(m, exclude_head=True)
    bank = AdapterExperts(m, AdapterConfig())
    bank.add_expert("a", num_classes=3)
    cand = from_bank(bank)["adapter:a"]
    assert cand.num_parameters() == count_parameters(bank.expert_state_dict("a"), exclude_head=True)
    assert from_model(m).num_parameters() == count_parameters(m, exclude_head=True)


def test_the_small_data_hyperrule_is_the_scaled_rule_at_500_steps():
    from expertlib.train.schedules import bit_hyperrule, scaled_hyperrule

    assert bit_hyperrule(1000, 0.003) == scaled_hyperrule(500, 0.003)
    assert bit_hyperrule(1000).boundaries == (200, 300, 400) and bit_hyperrule(1000).warmup_steps == 100
