import pytest
import torch

from expertlib.models.adapters import AdapterExperts, FullExperts, UnknownExpertError
from expertlib.models.candidates import BASE, Candidate, features_of, from_bank, from_model, identify
from expertlib.models.resnet import create_model, pooled_features


def _banks():
    base = create_model("tiny", num_classes=5)
    torch.nn.init.normal_(base.head.fc.weight, std=0.5)
    adapters, full = AdapterExperts(base), FullExperts(base)
    for bank in (adapters, full):
        bank.add_expert("e", num_classes=3, head_rows=[0, 2, 4])
        with torch.no_grad():
            for p in bank.experts["e"].parameters():
                p.add_(torch.randn_like(p) * 0.1)
    return base.eval(), adapters.eval(), full.eval()


def test_every_kind_answers_features_logits_and_transfer():
    base, adapters, full = _banks()
    x = torch.randn(4, 3, 32, 32)
    cands = {BASE: from_model(base), **from_bank(adapters), **from_bank(full)}
    assert list(cands) == ["base", "adapter:e", "full:e"]
    assert [c.kind for c in cands.values()] == ["generic", "adapter", "full"]
    with torch.no_grad():
        assert torch.allclose(pooled_features(cands[BASE], x), pooled_features(base, x))
        assert torch.allclose(cands[BASE](x), base(x))
        assert torch.allclose(
            pooled_features(cands["adapter:e"], x), pooled_features(adapters, x, expert="e")
        )
        assert cands["full:e"](x).shape == (4, 3) and cands["full:e"].num_upstream_classes == 3
        for c in cands.values():
            net = c.transfer_net(7).eval()
            assert net(x).abs().max() == 0  # fresh zero head
            assert torch.allclose(
                pooled_features(net, x), pooled_features(c, x), atol=1e-5
            )  # same network underneath
            net.requires_grad_(True)
            w = next(net.parameters())  # perturb the copy (weight standardisation ignores a constant shift)
            w.data.add_(torch.randn_like(w))  # an independent copy: the candidate is untouched
            assert not torch.allclose(pooled_features(net, x), pooled_features(c, x))


def test_features_of_many_candidates_in_one_call():
    base, adapters, full = _banks()
    x = torch.randn(3, 3, 32, 32)
    cands = [Candidate("b", adapters), Candidate("a", adapters, "e"), Candidate("f", full, "e")]
    with torch.no_grad():
        out = features_of(cands, x)
        assert list(out) == ["b", "a", "f"]
        for c in cands:
            assert torch.allclose(out[c.name], pooled_features(c, x), atol=1e-6)


def test_parameters_to_train_and_counts():
    base, adapters, _ = _banks()
    c = Candidate("a", adapters, "e")
    params = c.parameters_to_train()
    assert sum(p.numel() for p in params) == adapters.num_expert_parameters("e")
    assert not any(p.requires_grad for p in adapters.base.parameters())
    b = from_model(base)
    assert sum(p.numel() for p in b.parameters_to_train()) == sum(p.numel() for p in base.parameters())
    assert b.num_parameters() < b.num_parameters(exclude_head=False)


def test_bad_names_are_named():
    _, adapters, _ = _banks()
    with pytest.raises(UnknownExpertError, match="unknown expert 'x'.*holds: e"):
        Candidate("x", adapters, "x")


def test_upstream_logits_from_features_match_the_forward_pass():
    base, adapters, full = _banks()
    x = torch.randn(3, 3, 32, 32)
    cands = {BASE: from_model(base), **from_bank(adapters), **from_bank(full)}
    with torch.no_grad():
        for c in cands.values():
            assert torch.allclose(c.forward_head(pooled_features(c, x)), c(x), atol=1e-5), c.name


def test_identify_puts_kind_and_expert_beside_the_id():
    import pandas as pd

    base, adapters, full = _banks()
    cands = {BASE: from_model(base), **from_bank(adapters), **from_bank(full),
             "dat:t": from_model(base, "dat:t", "dat", "t")}  # fmt: skip
    table = pd.DataFrame(
        {"task": ["t"] * 4, "model": [BASE, "adapter:e", "full:e", "dat:t"], "accuracy": 0.5}
    )
    out = identify(table, cands)
    assert list(out.columns) == ["task", "model", "kind", "expert", "accuracy"]
    assert list(out.kind) == ["generic", "adapter", "full", "dat"] and list(out.expert) == ["", "e", "e", ""]
    assert identify(out, cands).equals(out)  # idempotent: stale columns are replaced, not duplicated
    with pytest.raises(KeyError, match="no candidate has the id 'e'"):
        identify(table.assign(model="e"), cands)  # a bare expert name is not an id


def test_kinds_are_checked():
    base, _, _ = _banks()
    with pytest.raises(ValueError, match="unknown candidate kind 'adaptor'"):
        from_model(base, "x", "adaptor")
    with pytest.raises(ValueError, match="names the task"):
        from_model(base, "dat:t", "dat")
