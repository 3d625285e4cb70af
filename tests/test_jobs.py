"""The shared job list: one file per job, resume after a kill, refusal of stale results, claims that a dead rank's
heartbeat lets expire, 2 gloo ranks giving what 1 process gives, and a slow rank that no longer holds the run."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from expertlib.utils.jobs import (
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


def test_a_result_lost_before_the_end_is_redone_and_one_lost_after_it_is_named(tmp_path, monkeypatch):
    import expertlib.utils.jobs as J

    jobs, lost, ran = _jobs(), [], []

    def lose_once(job, result):  # a file removed behind the run's back while it runs: redone
        ran.append(job.recipe["x"])
        if job.recipe["x"] == 2 and not lost:
            lost.append(job)
            result_path(tmp_path, job).unlink()

    out = run_sharded(jobs, square, lambda j: (j.recipe["x"],), tmp_path, on_result=lose_once)
    assert out == [square(i) for i in range(7)] and sorted(ran) == [0, 1, 2, 2, 3, 4, 5, 6]
    monkeypatch.setattr(
        J, "barrier", lambda: result_path(tmp_path, jobs[4]).unlink()
    )  # lost after the last check
    with pytest.raises(JobsMissingError, match="1 of 7 jobs have no result"):
        run_sharded(jobs, square, lambda j: (j.recipe["x"],), tmp_path)


def test_a_killed_runs_claims_are_taken_over_at_once(tmp_path):
    """A claim another run left (a run killed mid-job) does not hold the next run: the job is redone at once."""
    from expertlib.utils.claims import Claims

    jobs = _jobs()
    assert Claims(tmp_path / "claims", run="killed-run").take(jobs[3].key)
    t0 = time.monotonic()
    out = run_sharded(jobs, square, lambda j: (j.recipe["x"],), tmp_path, claim_ttl=60)
    assert out == [square(i) for i in range(7)] and time.monotonic() - t0 < 30
    assert not list((tmp_path / "claims").iterdir())  # every claim released


def _holder(tmp_path, job, beat_for: float, result=None):
    """Another rank of this run (run id "R") holding ``job``: it beats for ``beat_for`` seconds, then either
    writes ``result`` and releases the claim, or stops beating without one (killed)."""
    from expertlib.utils.claims import Claims
    from expertlib.utils.runtime import atomic_write_json

    other = Claims(tmp_path / "claims", run="R", rank=1, ttl=0.4)
    assert other.take(job.key)

    def live() -> None:
        end = time.monotonic() + beat_for
        while time.monotonic() < end:
            other.beat()
            time.sleep(0.05)
        if result is not None:
            atomic_write_json(result_path(tmp_path, job), {"recipe": job.recipe, "result": result})
            other.release(job.key)

    thread = threading.Thread(target=live)
    thread.start()
    return thread


def test_a_live_rank_keeps_its_job_and_a_killed_ranks_job_is_redone_once_its_claim_expires(
    tmp_path, monkeypatch
):
    import expertlib.utils.jobs as J

    monkeypatch.setattr(J, "run_id", lambda: "R")  # this process and the holder are ranks of one run
    jobs = _jobs()
    # alive: the holder finishes its job (after this rank ran out of others) and this rank waits for its result
    holder = _holder(tmp_path / "a", jobs[3], beat_for=1.0, result=square(3))
    ran: list[int] = []
    out = run_sharded(jobs, square, lambda j: (j.recipe["x"],), tmp_path / "a", claim_ttl=0.4,
                      on_result=lambda j, r: ran.append(j.recipe["x"]))  # fmt: skip
    holder.join()
    assert out == [square(i) for i in range(7)] and 3 not in ran and len(ran) == 6
    # killed: the heartbeat stops after 0.6 s and nothing is written; 0.4 s later the claim is dead and redone here
    holder = _holder(tmp_path / "k", jobs[3], beat_for=0.6)
    ran.clear()
    t0 = time.monotonic()
    out = run_sharded(jobs, square, lambda j: (j.recipe["x"],), tmp_path / "k", claim_ttl=0.4,
                      on_result=lambda j, r: ran.append(j.recipe["x"]))  # fmt: skip
    holder.join()
    assert out == [square(i) for i in range(7)] and sorted(ran) == list(range(7))
    assert time.monotonic() - t0 >= 0.9  # it waited for the expiry, not for a share


def test_claims_are_exclusive_and_expire_only_when_the_heartbeat_stops(tmp_path):
    from expertlib.utils.claims import Claims

    a, b = Claims(tmp_path, "R", 0, ttl=0.3), Claims(tmp_path, "R", 1, ttl=0.3)
    assert a.take("k") and not b.take("k") and b.holder("k")["rank"] == 0
    for _ in range(6):  # 0.6 s of heartbeats: never dead
        time.sleep(0.1)
        a.beat()
        assert not b.take("k")
    time.sleep(0.15)  # a stopped beating; b saw its last beat 0.15 s ago: not yet dead
    assert not b.take("k")
    time.sleep(0.2)  # unchanged for more than ttl: dead, taken over
    assert b.take("k") and b.holder("k")["rank"] == 1
    b.release("k")
    assert a.take("k")  # released: free again
    with pytest.raises(ValueError, match="ttl must be positive"):
        Claims(tmp_path, "R", ttl=0)


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


SLOW_RANK = """
import json, sys, time
import torch.distributed as dist
from expertlib.utils.jobs import Job, run_sharded

def work(x, rank):
    time.sleep(0.15 * (3 if rank == 1 else 1))  # rank 1 is 3x slower
    return {"x": x, "rank": rank}

dist.init_process_group("gloo")
rank = dist.get_rank()
jobs = [Job({"x": i, "what": "sleep"}) for i in range(16)]
dist.barrier()
t0, ran = time.monotonic(), []
out = run_sharded(jobs, work, lambda j: (j.recipe["x"], rank), sys.argv[1] + "/jobs",
                  on_result=lambda j, r: ran.append(j.recipe["x"]))
json.dump({"seconds": time.monotonic() - t0, "ran": ran, "out": out}, open(f"{sys.argv[1]}/rank{rank}.json", "w"))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_a_slow_rank_takes_fewer_jobs_and_the_run_follows_the_total_work(tmp_path):
    """16 equal jobs on 2 gloo ranks, rank 1 three times slower (0.45 s a job, rank 0 0.15 s). Static halves
    would take 8 x 0.45 = 3.6 s; taking the next job as each rank is free, rank 0 runs about 12 and rank 1
    about 4, and the run takes about 16 / (1/0.15 + 1/0.45) jobs/s = 1.8 s. Every job runs once, on one rank,
    and both ranks return every result, in the list's order."""
    script = tmp_path / "slow.py"
    script.write_text(SLOW_RANK)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tmp_path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["out"] == r1["out"] and sorted(r0["ran"] + r1["ran"]) == list(range(16))  # each job once
    assert [o["x"] for o in r0["out"]] == list(range(16)) and len(
        list((tmp_path / "jobs").glob("*.json"))
    ) == 16
    assert sorted(r0["ran"]) == [o["x"] for o in r0["out"] if o["rank"] == 0]  # what each rank ran, it wrote
    print(
        f"2 ranks, one 3x slower: {len(r0['ran'])} + {len(r1['ran'])} jobs in "
        f"{max(r0['seconds'], r1['seconds']):.2f} s (static halves: 3.6 s of sleep)"
    )
    assert len(r0["ran"]) >= 10 and len(r1["ran"]) <= 6, (r0["ran"], r1["ran"])
    assert max(r0["seconds"], r1["seconds"]) < 3.4  # below the static share's 3.6 s of sleep alone
