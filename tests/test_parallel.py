import pytest
import torch

from expertlib.models.resnet import create_model
from expertlib.utils.parallel import run_jobs, single_thread


def _train(seed: int) -> dict:
    """A few SGD steps of a tiny ResNet from ``seed``: its final weights."""
    torch.manual_seed(seed)
    model = create_model("tiny", num_classes=4)
    torch.nn.init.normal_(model.head.fc.weight, std=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 4
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return {"threads": torch.get_num_threads(), "state": model.state_dict()}


def _fail(x: int) -> int:
    if x == 2:
        raise ValueError("job 2 failed")
    return x


def test_pool_results_are_bit_identical_to_in_process_ones():
    here = dict(run_jobs(_train, [(0,), (1,), (2,)], workers=0))
    pooled = dict(run_jobs(_train, [(0,), (1,), (2,)], workers=2))
    assert sorted(pooled) == [0, 1, 2]
    for i in range(3):
        assert here[i]["threads"] == pooled[i]["threads"] == 1
        for k, v in here[i]["state"].items():
            assert torch.equal(v, pooled[i]["state"][k]), k
    assert not torch.equal(here[0]["state"]["stem.conv.weight"], here[1]["state"]["stem.conv.weight"])


def test_a_failing_job_raises_after_the_finished_ones_are_yielded():
    got = []
    with pytest.raises(ValueError, match="job 2 failed"):
        for _i, r in run_jobs(_fail, [(0,), (1,), (2,), (3,)], workers=0):
            got.append(r)
    assert got == [0, 1]
    with pytest.raises(ValueError, match="job 2 failed"):
        list(run_jobs(_fail, [(0,), (1,), (2,)], workers=2))


def test_single_thread_restores_the_thread_count():
    before = torch.get_num_threads()
    with single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
