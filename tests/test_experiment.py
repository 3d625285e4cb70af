import pytest
import torch

import expertlib.experiment as X


@pytest.mark.slow
def test_expert_training_resumes_from_per_expert_files(tmp_path):
    ws = X.Workspace.create("smoke", tmp_path / "r", tmp_path / "data", progress=False)
    bench = X.load_benchmark(ws)
    base, record = X.train_generic(ws, bench)
    assert record["steps"] == ws.scale.upstream_steps
    bank, log = X.train_experts(ws, bench, base, "adapter")
    assert log.seconds.notna().all()
    ws.path("models", "adapter_experts.safetensors").unlink()  # as if killed before the bank was saved
    again, log2 = X.train_experts(ws, bench, base, "adapter")
    assert log2.seconds.isna().all()  # nothing retrained
    x = torch.randn(2, 3, 32, 32)
    for name in bank.expert_names:
        assert torch.equal(bank.features(x, name), again.features(x, name))


def test_missing_step_names_the_notebook(tmp_path):
    ws = X.Workspace.create("smoke", tmp_path / "r", tmp_path / "data", progress=False)
    with pytest.raises(X.MissingStepError, match="run notebook 02_generic.ipynb at scale='smoke'"):
        X.load_generic(ws)


def test_plan_estimates_compute():
    p = X.plan(X.get_scale("paper"))
    assert p["experts"] == 48 and p["tasks"] == 19 and p["total_training_images"] > 1e9
