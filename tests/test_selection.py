import numpy as np
import pytest
import torch
from scipy import stats as sps

from expertlib.models.adapters import AdapterExperts, FullExperts
from expertlib.models.candidates import Candidate
from expertlib.models.resnet import create_model, pooled_features
from expertlib.select.proxies import ALL_PROXIES
from expertlib.select.selection import (
    dat_sample,
    dat_weights,
    drop_third_taus,
    extract_features,
    forward_flops,
    head_logits,
    kendall_tau,
    rank_experts,
    recall_at_k,
    regret,
    tied_best,
    top_k_relative_accuracy,
    weighted_tau,
)
from expertlib.train.training import ArrayData


def _cands(bank):
    return [Candidate("base", bank), Candidate("a", bank, "a"), Candidate("b", bank, "b")]


def _bank(kind="adapter"):
    base = create_model("tiny", num_classes=6)
    torch.nn.init.normal_(base.head.fc.weight, std=0.5)
    bank = AdapterExperts(base) if kind == "adapter" else FullExperts(base)
    for name, rows in (("a", [0, 1, 2]), ("b", [3, 4, 5])):
        bank.add_expert(name, num_classes=3, head_rows=rows)
        with torch.no_grad():
            for p in bank.experts[name].parameters():
                p.add_(torch.randn_like(p) * 0.2)
    return bank.eval()


def _task(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return ArrayData(rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 3, 36, 32, False)


@pytest.mark.parametrize("kind", ["adapter", "full"])
def test_features_in_one_pass_match_single_expert_calls(kind):
    bank, data = _bank(kind), _task()
    cands = _cands(bank)
    feats = extract_features(cands, data, batch_size=25)
    logits = head_logits(cands, feats)
    x = data.batch(np.arange(len(data)), False, torch.Generator())
    with torch.no_grad():
        assert np.allclose(feats["a"], pooled_features(bank, x, expert="a").numpy(), atol=1e-5)
        for name, expert in (("base", None), ("a", "a"), ("b", "b")):  # each through its own head
            assert np.allclose(logits[name], bank(x, expert).numpy(), atol=1e-5)
    assert feats["base"].shape == (60, bank.base.num_features)
    assert list(feats) == ["base", "a", "b"] and extract_features(cands[1:], data).keys() == {"a", "b"}


def test_rank_experts_table_and_pick():
    bank, data = _bank(), _task()
    cands = _cands(bank)
    feats = extract_features(cands, data)
    table = rank_experts(
        feats, data.labels, proxies=ALL_PROXIES,
        head_logits=head_logits(cands, feats), expert_labels={"a": [0, 1, 2], "b": [3, 4, 5]}, val_split=48,
        knn_k=3, extraction_seconds={"base": 0.5, "a": 0.5, "b": 0.5},
    )  # fmt: skip
    assert set(table.proxy) == set(ALL_PROXIES)
    # only the proxy that resamples support sets reports a variance, and its score is the mean over them
    assert table[table.proxy == "knn_resampled"].score_variance.notna().all()
    assert table[table.proxy != "knn_resampled"].score_variance.isna().all()
    assert set(table[table.proxy == "pactran_dir"].model) == {"base", "a", "b"}  # through each head, as LEEP
    assert len(table[table.proxy == "knn"]) == 3 and len(table[table.proxy == "domain"]) == 2
    assert set(table[table.proxy == "leep"].model) == {"base", "a", "b"}  # every expert through its own head
    # domain prediction needs one pass of B for all experts: its 0.5 s counted once, not once per expert
    assert table[table.proxy == "domain"].seconds.sum() == pytest.approx(0.5, abs=0.05)
    assert (table.seconds >= 0).all() and (table[table.proxy == "knn"].seconds >= 0.5).all()
    assert (table.flops > 0).all()
    knn = table[table.proxy == "knn"].set_index("model").score
    assert all(knn[m] == knn.max() for m in tied_best(table, "knn"))
    with pytest.raises(ValueError, match="unknown proxies"):
        rank_experts(feats, data.labels, proxies=("magic",))


def test_quality_metrics():
    import pandas as pd

    acc = [0.5, 0.7, 0.9]
    assert kendall_tau([1, 2, 3], acc) == pytest.approx(1.0)
    assert kendall_tau([3, 2, 1], acc) == pytest.approx(-1.0)
    assert weighted_tau([1, 2, 3], acc) == pytest.approx(1.0)
    assert regret(0.7, acc) == pytest.approx(0.2) and regret(0.9, acc) == 0
    assert top_k_relative_accuracy([3, 2, 1], acc, k=1) == pytest.approx(0.5 / 0.9)
    assert top_k_relative_accuracy([3, 2, 1], acc, k=3) == pytest.approx(1.0)
    five = [0.1, 0.2, 0.3, 0.4, 0.9]
    assert recall_at_k([5, 4, 3, 2, 1], five, 3) == 0.0 and recall_at_k([1, 2, 3, 4, 5], five, 3) == 1.0
    assert recall_at_k([9, 9, 1, 1, 1], five, 3) == pytest.approx(
        1 / 3
    )  # third place shared by three: 1 in 3
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(sps.kendalltau([1, 1, 2], [1, 2, 3]).statistic)
    names = list("abcdef")
    s, a = pd.Series(np.arange(6.0), index=names), pd.Series(np.arange(6.0), index=names)
    taus = drop_third_taus(s, a, draws=5)
    assert len(taus) == 5 and np.allclose(taus, 1.0)  # a perfect ranking stays perfect on any four experts
    seen = []
    flipped = drop_third_taus(s, a, draws=3, rescore=lambda kept: seen.append(kept) or -s.reindex(kept))
    assert np.allclose(flipped, -1.0) and all(len(k) == 4 for k in seen)  # rescored on the kept four


def test_flops_and_dat():
    model = create_model("tiny", num_classes=4).eval()
    flops = forward_flops(model, (1, 3, 32, 32))
    # exactly 2 FLOPs per multiply-add of every convolution and of the head, counted from the layers' shapes
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, o.shape))
             for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]  # fmt: skip
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    want = 0
    for n, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            out = shapes[n]
            want += (
                2
                * (m.in_channels // m.groups)
                * m.kernel_size[0]
                * m.kernel_size[1]
                * out[1]
                * out[2]
                * out[3]
            )
        elif isinstance(m, torch.nn.Linear):
            want += 2 * m.in_features * m.out_features
    assert flops == want
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.2, 0.2]])
    w = dat_weights(probs, np.array([1 / 3, 1 / 3, 1 / 3]))
    assert w[0] > 1 > w[1] and (w * (1 / 3)).sum() == pytest.approx(1.0)
    idx = dat_sample(np.array([0] * 50 + [1] * 50 + [2] * 50), np.array([1.0, 0.0, 0.0]), 40, seed=0)
    assert (idx < 50).all()


def test_a_tie_at_the_top_is_kept_whole():
    import pandas as pd

    r = pd.DataFrame({"model": ["b", "a", "c", "base"], "proxy": "knn", "score": [0.5, 0.5, 0.4, 0.9]})
    assert tied_best(r, "knn", ["a", "b", "c"]) == ["a", "b"]
    assert tied_best(r, "knn") == ["base"]
