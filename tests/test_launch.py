"""``python -m expertlib.launch``: the sbatch scripts it would submit, its refusals (no submitit, no SLURM, a
scale it does not run), a preempted job that submitit requeues and that resumes its job list, and the
released-smoke fine-tunes on 2 local tasks (submitit's local executor) equal to the one-process run."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from expertlib.run import launch as L

TESTS = Path(__file__).resolve().parent


def test_dry_run_prints_three_dependent_sbatch_scripts(capsys, tmp_path):
    argv = ["--scale", "released", "--data-root", "/data", "--results-dir", str(tmp_path), "--slurm-partition", "gpu",
            "--nodes", "4", "--gpus-per-node", "8", "--time", "180", "--dry-run"]  # fmt: skip
    assert L.main(argv) == 0
    out = capsys.readouterr().out
    parts = out.split("# ---- ")[1:]
    assert [p.split(":")[0] for p in parts] == ["prepare", "finetune", "report"]
    prepare, finetune, report = parts
    assert "python -m expertlib.reproduce --scale released" in prepare and "--only 01 04" in prepare
    assert "python -m expertlib.pipeline.torchrun transfer --scale released" in finetune
    assert "--only 05 06 07" in report
    for flag in ("--nodes=4", "--ntasks-per-node=8", "--gpus-per-node=8", "--partition=gpu", "--time=180",
                 "--signal=USR2@120", "--dependency='afterok:<job id of prepare>'"):  # fmt: skip
        assert f"#SBATCH {flag}" in finetune, flag
    assert (
        "#SBATCH --nodes=1" in prepare
        and "#SBATCH --gpus-per-node=1" in prepare
        and "dependency" not in prepare
    )
    assert "#SBATCH --dependency='afterok:<job id of finetune>'" in report
    assert "srun --unbuffered" in finetune and "-m submitit.core._submit" in finetune


def test_refusals_name_the_extra_the_local_executor_and_the_scales_it_runs(tmp_path, monkeypatch, capsys):
    base = ["--results-dir", str(tmp_path), "--data-root", str(tmp_path)]
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert L.main(base) == 1
    err = capsys.readouterr().err
    assert err.startswith("launch failed: no SLURM here (sbatch not found)") and "--local" in err
    with pytest.raises(L.LaunchError, match=r"sbatch not found.*add --local.*local executor.*--dry-run"):
        L.launch(L.parser().parse_args(base))
    with pytest.raises(L.LaunchError, match="train nothing upstream.*not 'paper'"):
        L.launch(L.parser().parse_args([*base, "--scale", "paper", "--dry-run"]))
    monkeypatch.setitem(sys.modules, "submitit", None)  # not installed
    with pytest.raises(
        L.LaunchError, match=r"needs submitit.*pip install 'expertlib\[cluster\]'.*sbatch template"
    ):
        L.launch(L.parser().parse_args([*base, "--local"]))


def test_each_stage_runs_the_command_one_would_type(monkeypatch, tmp_path):
    """prepare and report call ``python -m expertlib.reproduce``'s own entry point with the notebooks they run;
    finetune calls torchrun's ``transfer``; a failing entry point fails the stage with its exit code."""
    import expertlib.pipeline.torchrun as TR
    import expertlib.run.reproduce as R

    calls = []
    monkeypatch.setattr(R, "run", lambda *a, **k: calls.append(("reproduce", a)))
    monkeypatch.setattr(TR, "main", lambda argv: calls.append(("torchrun", tuple(argv))) or 0)
    stages = L.stage_jobs("released-smoke", str(tmp_path / "d"), str(tmp_path / "r"), device="cpu")
    assert stages["prepare"]() == "stage prepare done" and stages["report"]() == "stage report done"
    assert calls[0][1][:4] == ("released-smoke", str(tmp_path / "r"), str(tmp_path / "d"), ["01", "04"])
    assert calls[1][1][3] == ["05", "06", "07"] and calls[0][1][4] == {"device": "cpu"}
    assert not stages["prepare"].distributed and stages["finetune"].distributed
    monkeypatch.setattr(TR, "main", lambda argv: 3)
    with pytest.raises(
        RuntimeError, match="stage finetune failed: expertlib.pipeline.torchrun:main transfer .* exited 3"
    ):
        L.StageJob("finetune", "expertlib.pipeline.torchrun:main", stages["finetune"].argv)()


def test_a_preempted_stage_is_requeued_and_resumes_its_job_list(tmp_path, monkeypatch):
    """submitit's local executor runs a stage whose task is sent the preemption signal (USR2, as SLURM sends it)
    after two of its six jobs: submitit checkpoints and requeues it (:meth:`StageJob.checkpoint`), and the
    second run does only the four jobs without a result."""
    import submitit

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    executor = submitit.LocalExecutor(tmp_path / "submitit", max_num_timeout=2)
    executor.update_parameters(timeout_min=5, tasks_per_node=1)
    stage = L.StageJob("sleepy", "test_launch:sleepy", [str(tmp_path)], gpus=False)
    assert stage.checkpoint().function is stage  # what submitit requeues: the same stage
    job = executor.submit(stage)
    deadline = time.monotonic() + 120
    while len(list((tmp_path / "jobs").glob("*.json"))) < 2:
        assert time.monotonic() < deadline and job.state == "RUNNING", job.stderr()
        time.sleep(0.05)
    os.kill(int((tmp_path / "pids").read_text().split()[0]), signal.SIGUSR2)
    assert job.results() == ["stage sleepy done"]
    pids = (tmp_path / "pids").read_text().split()
    ran = [int(x) for x in (tmp_path / "ran").read_text().split()]
    assert len(pids) == 2 and len(set(pids)) == 2  # two runs: the first, and the requeued one
    assert sorted(ran) == list(range(6))  # every job once: the finished ones were not redone
    assert "Requeued" in (job.stdout() or "") + (job.stderr() or "")


def sleepy(argv: list[str]) -> int:
    """A stage of six 0.3 s jobs (the requeue test's; imported by the job's own process)."""
    from expertlib.utils.jobs import Job, run_sharded

    folder = Path(argv[0])
    with open(folder / "pids", "a") as f:
        f.write(f"{os.getpid()}\n")

    def work(x: int) -> int:
        time.sleep(0.3)
        with open(folder / "ran", "a") as f:
            f.write(f"{x}\n")
        return x

    run_sharded([Job({"x": i}) for i in range(6)], work, lambda j: (j.recipe["x"],), folder / "jobs")
    return 0


@pytest.mark.slow
def test_released_smoke_fine_tunes_on_two_local_tasks_equal_the_one_process_run(released_without_transfer, tmp_path,
                                                                               monkeypatch):  # fmt: skip
    """The finetune stage through submitit's local executor, as 2 tasks (2 gloo ranks whose rendezvous comes from
    the job's environment), writes the transfer table of the one-process run, timings aside."""
    import pandas as pd

    data, ws, one = released_without_transfer
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    argv = ["--scale", "released-smoke", "--data-root", str(data), "--results-dir", str(ws.parent),
            "--local", "--stages", "finetune", "--gpus-per-node", "0", "--tasks-per-node", "2", "--device", "cpu",
            "--time", "20", "--log-dir", str(tmp_path / "submitit")]  # fmt: skip
    assert L.main(argv) == 0
    two = pd.read_csv(ws / "tables" / "transfer_runs.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(one, two)
    logs = "".join(p.read_text() for p in (tmp_path / "submitit").glob("*_log.out"))
    assert "on 2 process(es)" in logs and len(list((ws / "jobs" / "transfer").glob("*.json"))) == len(two)
    assert not list((ws / "jobs" / "transfer" / "claims").iterdir())  # every claim released
