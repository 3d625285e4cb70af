"""The ``released`` scale on a SLURM cluster through submitit, or on this machine through submitit's local executor::

    python -m expertlib.launch --scale released --data-root /data --slurm-partition gpu --nodes 4 \\
        --gpus-per-node 8 --time 180
    python -m expertlib.launch ... --dry-run        # print the three sbatch scripts, submit nothing
    python -m expertlib.launch --scale released-smoke --local --gpus-per-node 0 --tasks-per-node 2

Three jobs, each waiting for the one before (``--dependency=afterok``): ``prepare`` (notebooks 01 and 04: the data
check and selection, one GPU), ``finetune`` (the fine-tunes' job list over ``nodes x tasks-per-node`` ranks, one
per GPU) and ``report`` (notebooks 05-07, which read the fine-tunes' results). Every job runs the entry points one
would type by hand: ``python -m expertlib.reproduce`` and ``python -m expertlib.pipeline.torchrun transfer``, its
ranks and rendezvous taken from SLURM's environment (submitit's ``TorchDistributedEnvironment``). A preempted or
timed-out job is requeued (submitit's checkpointing) and resumes: notebooks reuse their outputs, and the ranks
take the jobs of the list that have no result yet (:mod:`expertlib.utils.jobs`). Locally the stages run one
after the other, each as its tasks on this machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expertlib.run.presets import get_scale

STAGES = ("prepare", "finetune", "report")
CLUSTER_EXTRA = "pip install 'expertlib[cluster]' (submitit)"


class LaunchError(RuntimeError):
    """A launch that cannot go ahead (no submitit, no SLURM, a scale it does not run); one line says why."""


@dataclass
class StageJob:
    """One stage as a submitit job: ``entry`` ('module:function', called with ``argv``, returning an exit code).
    ``distributed``: every task is a rank of one run (rendezvous from the job's environment). submitit calls
    :meth:`checkpoint` on preemption or timeout and requeues what it returns: the same stage, which resumes."""

    name: str
    entry: str
    argv: list[str] = field(default_factory=list)
    distributed: bool = False
    gpus: bool = True

    def __call__(self) -> str:
        if self.distributed:
            self._export_rendezvous()
        module, _, function = self.entry.partition(":")
        code = getattr(importlib.import_module(module), function)(list(self.argv))
        if code:
            raise RuntimeError(f"stage {self.name} failed: {self.entry} {' '.join(self.argv)} exited {code}")
        return f"stage {self.name} done"

    def _export_rendezvous(self) -> None:
        """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT from the job's environment (SLURM's, or the
        local executor's), as torchrun would set them."""
        from submitit.helpers import TorchDistributedEnvironment

        env = TorchDistributedEnvironment()
        if os.environ.get("SUBMITIT_EXECUTOR") == "local":
            env.master_addr = "127.0.0.1"  # one machine: no need for its hostname to resolve
        env.export(set_cuda_visible_devices=self.gpus, overwrite=True)

    def checkpoint(self, *args: Any, **kwargs: Any):
        """What submitit requeues after a preemption or timeout: this stage again (it resumes from its outputs)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def stage_jobs(scale: str, data_root: str, results_dir: str, device: str = "auto", gpus: bool = True
               ) -> dict[str, StageJob]:  # fmt: skip
    """The three stages of a scale that trains nothing upstream, as the commands one would type."""
    sc = get_scale(scale)
    if sc.trains_upstream:
        raise LaunchError(f"launch runs the scales that train nothing upstream (released, released-smoke), not "
                          f"{scale!r}: its upstream trainings are laid out in docs/paper_scale.md")  # fmt: skip
    where = ["--scale", scale, "--results-dir", results_dir, "--data-root", data_root]
    notebooks = ["--no-progress", *(["--param", f"device={device}"] if device != "auto" else [])]
    return {
        "prepare": StageJob(
            "prepare", "expertlib.reproduce:main", [*where, "--only", "01", "04", *notebooks], gpus=gpus
        ),
        "finetune": StageJob(
            "finetune",
            "expertlib.pipeline.torchrun:main",
            ["transfer", *where, "--device", device],
            distributed=True,
            gpus=gpus,
        ),  # fmt: skip
        "report": StageJob(
            "report", "expertlib.reproduce:main", [*where, "--only", "05", "06", "07", *notebooks], gpus=gpus
        ),  # fmt: skip
    }


def resources(stage: str, args: argparse.Namespace) -> dict[str, Any]:
    """submitit's SLURM parameters for ``stage``: the fine-tunes over every node and GPU, the rest on one GPU."""
    tasks = args.tasks_per_node or max(1, args.gpus_per_node)
    wide = stage == "finetune"
    out: dict[str, Any] = {
        "job_name": f"expertlib-{args.scale}-{stage}",
        "time": args.time,
        "nodes": args.nodes if wide else 1,
        "ntasks_per_node": tasks if wide else 1,
        "cpus_per_task": args.cpus_per_task,
        "signal_delay_s": 120,  # the warning before the time limit: enough for a job to write what it has
    }
    if args.gpus_per_node:
        out["gpus_per_node"] = args.gpus_per_node if wide else 1
    for key, value in (("partition", args.slurm_partition), ("account", args.slurm_account),
                       ("qos", args.slurm_qos)):  # fmt: skip
        if value:
            out[key] = value
    if args.setup:
        out["setup"] = list(args.setup)
    return out


def _submitit():
    try:
        import submitit
    except ImportError:
        raise LaunchError(f"launch needs submitit, which is not installed: {CLUSTER_EXTRA}; without it, use the plain "
                          "sbatch template in docs/paper_scale.md (section 'SLURM cluster')") from None  # fmt: skip
    return submitit


def sbatch_scripts(args: argparse.Namespace, folder: Path) -> dict[str, str]:
    """The sbatch script submitit writes for each stage (a dependency on the stage before, by placeholder id)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder))}"  # as submitit's
    scripts, before = {}, None
    for stage in args.stages:
        params = resources(stage, args)
        if before:
            params["dependency"] = f"afterok:<job id of {before}>"
        scripts[stage] = _make_sbatch_string(command=command, folder=folder, **params)
        before = stage
    return scripts


def launch(args: argparse.Namespace, log=print) -> list[Any]:
    """Submit the stages (SLURM, with dependencies) or run them one after the other (``args.local``)."""
    submitit = _submitit()
    folder = Path(args.log_dir or Path(args.results_dir) / args.scale / "slurm").resolve()
    jobs = stage_jobs(args.scale, args.data_root, args.results_dir, args.device, gpus=args.gpus_per_node > 0)
    if args.dry_run:
        for stage, text in sbatch_scripts(args, folder).items():
            runs = jobs[stage].entry.removesuffix(":main")
            log(
                f"# ---- {stage}: each task runs python -m {runs} {shlex.join(jobs[stage].argv)} ----\n{text}"
            )
        return []
    if not args.local and shutil.which("sbatch") is None:
        raise LaunchError("no SLURM here (sbatch not found): run this on the cluster's login node, add --local to run "
                          "the stages on this machine through submitit's local executor, or --dry-run to print the "
                          "sbatch scripts")  # fmt: skip
    submitted, before = [], None
    for stage in args.stages:
        params = resources(stage, args)
        if args.local:
            executor = submitit.LocalExecutor(folder, max_num_timeout=args.max_requeues)
            executor.update_parameters(timeout_min=params["time"], tasks_per_node=params["ntasks_per_node"],
                                       gpus_per_node=params.get("gpus_per_node", 0))  # fmt: skip
        else:
            executor = submitit.SlurmExecutor(folder, max_num_timeout=args.max_requeues)
            executor.update_parameters(
                **params, **({"dependency": f"afterok:{before.job_id}"} if before else {})
            )
        job = executor.submit(jobs[stage])
        log(
            f"{stage}: job {job.job_id} ({params['nodes']} node(s) x {params['ntasks_per_node']} task(s)); logs in {folder}"
        )
        if args.local:  # no scheduler to hold the next stage back: wait here
            try:
                job.results()
            except Exception as e:  # noqa: BLE001 - submitit's error carries the task's traceback
                last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                raise LaunchError(
                    f"stage {stage} failed (job {job.job_id}): {last}; its logs: {folder}"
                ) from None
            log(f"{stage}: done")
        submitted.append(job)
        before = job
    return submitted


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m expertlib.launch", description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="released")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--results-dir", default="results", help="on a filesystem every node sees")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="default: all three")
    ap.add_argument("--slurm-partition")
    ap.add_argument("--slurm-account")
    ap.add_argument("--slurm-qos")
    ap.add_argument("--nodes", type=int, default=1, help="nodes for the fine-tunes")
    ap.add_argument("--gpus-per-node", type=int, default=8, help="one rank per GPU; 0: CPU ranks")
    ap.add_argument("--tasks-per-node", type=int, default=None, help="ranks per node (default: one per GPU)")
    ap.add_argument("--cpus-per-task", type=int, default=8, help="data-loading workers' cores per rank")
    ap.add_argument(
        "--time", type=int, default=240, help="minutes per job before it is requeued (default 240)"
    )
    ap.add_argument("--max-requeues", type=int, default=5, help="timeouts a job may be requeued after")
    ap.add_argument("--setup", nargs="+", help="shell lines run before each job (e.g. 'module load cuda')")
    ap.add_argument("--log-dir", help="submitit's folder (default <results-dir>/<scale>/slurm)")
    ap.add_argument("--local", action="store_true", help="run here, through submitit's local executor")
    ap.add_argument("--dry-run", action="store_true", help="print the sbatch scripts; submit nothing")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        launch(args)
    except (LaunchError, ValueError) as e:
        print(f"launch failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
