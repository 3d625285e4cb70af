"""The sharded job list: balanced shares, one file per job, resume after a kill, refusal of stale results, and
2 gloo ranks giving what 1 process gives."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from expertlib.jobs import (
    Job,
    JobsMissingError,
    StaleJobError,
    chunks,
    read_result,
    result_path,
    run_sharded,
    share,
)


def square(x: int) -> dict:
    return {"x": x, "y": x * x}


def _jobs(n=7):
    return [Job({"x": i, "what": "square"}, cost=1.0 + (i % 3) * 13) for i in range(n)]


def test_shares_cover_every_job_once_and_balance_cost():
    jobs = _jobs(40)
    shares = [share(jobs, r, 3) for r in range(3)]
    assert sorted(i for s in shares for i in s) == list(range(40))
    loads = [sum(jobs[i].cost for i in s) for s in shares]
    assert max(loads) - min(loads) <= max(j.cost for j in jobs)
    assert share(jobs, 0, 1) == list(range(40))
    with pytest.raises(ValueError, match="rank 3 is not in a world of 3"):
        share(jobs, 3, 3)


def test_keys_follow_the_recipe():
    assert Job({"a": 1, "b": 2}).key == Job({"b": 2, "a": 1}).key != Job({"a": 1, "b": 3}).key
    assert Job({"a": 1}, cost=5).key == Job({"a": 1}).key  # cost balances, it does not change the result


def test_results_in_job_order_and_resume_redoes_only_missing(tmp_path):
    jobs = _jobs()
    seen = []
    out = run_sharded(
        jobs, square, lambda j: (j.recipe["x"],), tmp_path, on_result=lambda j, r: seen.append(j.key)
    )
    assert out == [square(i) for i in range(7)] and len(seen) == 7
    result_path(tmp_path, jobs[3]).unlink()  # as if the process had died before this job finished
    seen.clear()
    assert (
        run_sharded(
            jobs, square, lambda j: (j.recipe["x"],), tmp_path, on_result=lambda j, r: seen.append(j.key)
        )
        == out
    )
    assert seen == [jobs[3].key]


def test_pool_workers_give_the_same_results(tmp_path):
    jobs = _jobs()
    assert run_sharded(jobs, square, lambda j: (j.recipe["x"],), tmp_path / "a", workers=2) == run_sharded(
        jobs, square, lambda j: (j.recipe["x"],), tmp_path / "b"
    )


def test_a_result_of_another_recipe_is_refused(tmp_path):
    job = Job({"x": 2})
    path = result_path(tmp_path, job)
    path.write_text(json.dumps({"recipe": {"x": 3}, "result": 9}))
    with pytest.raises(StaleJobError, match="another recipe"):
        read_result(tmp_path, job)
    path.write_text('{"recipe": ')  # cut short: redone, not an error
    assert read_result(tmp_path, job) is None


def test_missing_results_after_the_barrier_are_named(tmp_path, monkeypatch):
    import expertlib.jobs as J

    monkeypatch.setattr(J, "share", lambda jobs, rank, world: [0])  # a rank that never ran the other jobs
    with pytest.raises(JobsMissingError, match="6 of 7 jobs have no result"):
        run_sharded(_jobs(), square, lambda j: (j.recipe["x"],), tmp_path)


@pytest.mark.slow
def test_two_gloo_ranks_write_each_job_once(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, os, sys
        import torch.distributed as dist
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from test_jobs import _jobs, square
        from expertlib.jobs import run_sharded
        dist.init_process_group("gloo")
        ran = []
        out = run_sharded(_jobs(), square, lambda j: (j.recipe["x"],), {str(tmp_path / "jobs")!r},
                          on_result=lambda j, r: ran.append(j.recipe["x"]))
        json.dump({{"ran": ran, "out": out}}, open({str(tmp_path)!r} + f"/rank{{dist.get_rank()}}.json", "w"))
        dist.destroy_process_group()
    """)
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert sorted(r0["ran"] + r1["ran"]) == list(range(7)) and r0["ran"] and r1["ran"]  # each job once
    assert r0["out"] == r1["out"] == [square(i) for i in range(7)]


def test_jobs_of_one_group_run_together_in_chunks_each_with_its_own_file(tmp_path):
    """Many small models in one pass: the jobs of a group, at most ``group_size`` at a time, run as one call;
    each job's result still has its own file, so a resume redoes only the jobs without one."""
    jobs = _jobs(7)
    parity = lambda j: j.recipe["x"] % 2  # noqa: E731
    assert [[j.recipe["x"] for j in c] for c in chunks(jobs, parity, 3)] == [[0, 2, 4], [6], [1, 3, 5]]
    calls = []

    def together(js):
        calls.append([j.recipe["x"] for j in js])
        return [square(j.recipe["x"]) for j in js]

    got = run_sharded(
        jobs, square, lambda j: (j.recipe["x"],), tmp_path, together=together, group=parity, group_size=3
    )
    assert got == [square(i) for i in range(7)] and sorted(map(len, calls)) == [1, 3, 3]
    assert all(result_path(tmp_path, j).is_file() for j in jobs)
    result_path(tmp_path, jobs[3]).unlink()
    calls.clear()
    again = run_sharded(jobs, square, lambda j: (j.recipe["x"],), tmp_path, together=together, group=parity,
                        group_size=3)  # fmt: skip
    assert again == got and calls == [[1, 3, 5]]  # the whole chunk again: the same stack as before the loss
    with pytest.raises(ValueError, match="group_size must be at least 1"):
        chunks(jobs, parity, 0)
