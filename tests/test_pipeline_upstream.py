import pytest
import torch

from expertlib.models.resnet import pooled_features
from expertlib.pipeline import models as M
from expertlib.pipeline import upstream as U


@pytest.mark.slow
def test_expert_training_resumes_from_per_expert_files(smoke):
    ws, bench = smoke
    base, record = U.train_generic(ws, bench)
    assert record["steps"] == ws.scale.upstream.steps
    bank, log = U.train_experts(ws, bench, base, "adapter")
    ws.path("models", "adapter_experts.safetensors").unlink()  # as if killed before the bank was saved
    again, log2 = U.train_experts(ws, bench, base, "adapter")
    assert log2.seconds.isna().all()  # nothing retrained
    x = torch.randn(2, 3, 32, 32)
    for name in bank.expert_names:
        assert torch.equal(pooled_features(bank, x, expert=name), pooled_features(again, x, expert=name))


def test_candidates_and_specialisation(smoke):
    ws, bench = smoke
    cands = M.candidates(ws)
    assert list(cands)[:2] == ["base", "base+extra"] and "full:digit" in cands
    spec, figs = U.write_specialisation(ws, bench, cands)
    experts = [c for c in cands.values() if c.expert is not None]
    assert len(spec) == len(experts) * 3 * 2 and len(figs) == 2
    assert spec.knn.between(0, 1).all() and set(spec.model) == {
        "adapter_expert",
        "full_expert",
        "base",
        "base+extra",
    }
    acc = U.generic_upstream_accuracy(ws, bench, *M.load_generic(ws))
    assert set(acc.model) == {"base", "base+extra"} and acc.accuracy.between(0, 1).all()


def test_released_generic_weights_replace_training(tmp_path):
    from dataclasses import replace

    import numpy as np

    from expertlib.models.resnet import ResNetV2
    from expertlib.models.weights import state_dict_to_bit
    from expertlib.pipeline import Workspace

    ws = Workspace.create("smoke", tmp_path / "r", tmp_path / "d", progress=False)
    src = ResNetV2("tiny", num_classes=7)
    (tmp_path / "d").mkdir(exist_ok=True)
    np.savez(tmp_path / "d" / "B.npz", **state_dict_to_bit(src))
    ws = replace(ws, scale=ws.scale.override(generic_weights="B.npz"))
    model, record = M.load_released_generic(ws, ResNetV2("tiny", num_classes=7))
    assert record["upstream_head_loaded"] and record["steps"] == 0 and record["weights"].endswith("B.npz")
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), src.state_dict().values(), strict=True)
    )
    _, other = M.load_released_generic(
        ws, ResNetV2("tiny", num_classes=3)
    )  # another label set: head not loaded
    assert not other["upstream_head_loaded"]
    from safetensors.torch import save_file

    from expertlib.models.weights import to_timm_state_dict

    save_file(to_timm_state_dict(src), str(tmp_path / "d" / "B.safetensors"))  # a timm checkpoint, read once
    timm_ws = replace(ws, scale=ws.scale.override(generic_weights="B.safetensors"))
    model, record = M.load_released_generic(timm_ws, ResNetV2("tiny", num_classes=7))
    assert record["upstream_head_loaded"] and model.cfg.std_eps == 1e-8
    assert torch.equal(model.head.fc.weight, src.head.fc.weight)
    with pytest.raises(FileNotFoundError, match="BiT-M-R50x1.npz"):
        M.load_released_generic(replace(ws, scale=ws.scale.override(generic_weights="missing.npz")), src)


def test_specialisation_on_a_sample_of_held_out_images(smoke):
    from dataclasses import replace

    ws, bench = smoke
    cands = M.candidates(ws)
    experts = [n for n, c in cands.items() if c.expert is not None][:1]
    small = replace(ws, scale=ws.scale.override(specialisation_images=40))
    spec = U.specialisation(small, bench, cands, experts)
    assert len(spec) == 6 and spec.knn.notna().any()


def test_full_experts_recipe_is_chosen_on_held_out_upstream_images(smoke):
    import pandas as pd

    ws, _ = smoke
    trials = pd.read_csv(ws.path("tables", "full_expert_recipes.csv"))
    grid = {(s, lr) for s in ws.scale.expert.full_steps for lr in ws.scale.expert.full_lrs}
    for _, g in trials.groupby("expert"):
        assert set(zip(g.steps, g.lr, strict=True)) == grid and g.chosen.sum() == 1
        chosen = g[g.chosen].iloc[0]
        assert chosen.heldout_accuracy == g.heldout_accuracy.max()
        ties = g[g.heldout_accuracy == chosen.heldout_accuracy]  # ties go to fewer steps, then the lower lr
        assert (chosen.steps, chosen.lr) == min(zip(ties.steps, ties.lr, strict=True))
    assert set(trials.expert) == set(ws.scale.expert.full)
