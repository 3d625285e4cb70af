import pytest
import torch

from expertlib.pipeline import upstream as U


@pytest.mark.slow
def test_expert_training_resumes_from_per_expert_files(smoke):
    ws, bench = smoke
    base, record = U.train_generic(ws, bench)
    assert record["steps"] == ws.scale.upstream_steps
    bank, log = U.train_experts(ws, bench, base, "adapter")
    ws.path("models", "adapter_experts.safetensors").unlink()  # as if killed before the bank was saved
    again, log2 = U.train_experts(ws, bench, base, "adapter")
    assert log2.seconds.isna().all()  # nothing retrained
    x = torch.randn(2, 3, 32, 32)
    for name in bank.expert_names:
        assert torch.equal(bank.features(x, name), again.features(x, name))


def test_candidates_and_specialisation(smoke):
    ws, bench = smoke
    cands = U.candidates(ws)
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
    acc = U.generic_upstream_accuracy(ws, bench, *U.load_generic(ws))
    assert set(acc.model) == {"base", "base+extra"} and acc.accuracy.between(0, 1).all()
