"""A job list spread over every process of a run: one file per job, rank 0 merges.

The paper's sweep is thousands of independent fine-tunes. Under ``torchrun`` (any number of GPUs and nodes)
each rank takes its share of the job list, balanced by each job's cost (a 480-px fine-tune costs about 14
times a 128-px one), and writes every result atomically to its own file, named by a hash of the job's recipe
(everything that determines its result). After a barrier every rank reads all the files; rank 0 alone writes
the tables. A rank that dies leaves its unfinished jobs without files: the next call redoes exactly those, and
a file whose recipe differs from its job's (a changed setting) is refused, never reused. Without torchrun
the same code runs every job in this process, or in :func:`expertlib.parallel.run_jobs`'s CPU pool, with the
same results.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expertlib.distributed import barrier, rank_and_world
from expertlib.parallel import run_jobs
from expertlib.runtime import atomic_write_json


class JobsMissingError(RuntimeError):
    """After every rank finished, some jobs have no result file (a rank died): run the step again."""


class StaleJobError(RuntimeError):
    """A job's result file was written under another recipe."""


@dataclass(frozen=True)
class Job:
    """One independent piece of work: ``recipe`` (JSON-able) says everything that determines its result;
    ``cost`` is its relative price, used only to balance the ranks' shares."""

    recipe: dict[str, Any]
    cost: float = 1.0
    key: str = field(init=False)

    def __post_init__(self) -> None:
        blob = json.dumps(self.recipe, sort_keys=True, default=str).encode()
        object.__setattr__(self, "key", hashlib.sha256(blob).hexdigest()[:20])


def share(jobs: Sequence[Job], rank: int, world: int) -> list[int]:
    """The indices of ``jobs`` that ``rank`` of ``world`` runs: longest first, each to the least-loaded rank
    (ties: the lower rank), so every rank's total cost is within one job of the others'. Deterministic: every
    rank computes every share alike."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in a world of {world}")
    load = [0.0] * world
    mine = []
    for i in sorted(range(len(jobs)), key=lambda i: (-jobs[i].cost, jobs[i].key)):
        r = min(range(world), key=lambda r: (load[r], r))
        load[r] += jobs[i].cost
        if r == rank:
            mine.append(i)
    return sorted(mine)


def chunks(jobs: Sequence[Job], group: Callable[[Job], Hashable], size: int) -> list[list[Job]]:
    """``jobs`` by ``group(job)`` (groups in order of first appearance, jobs in their order), each group cut
    into chunks of at most ``size``."""
    if size < 1:
        raise ValueError(f"group_size must be at least 1, got {size}")
    by: dict[Hashable, list[Job]] = {}
    for job in jobs:
        by.setdefault(group(job), []).append(job)
    return [g[i : i + size] for g in by.values() for i in range(0, len(g), size)]


def result_path(folder: Path, job: Job) -> Path:
    return Path(folder) / f"{job.key}.json"


def read_result(folder: Path, job: Job) -> Any:
    """The stored result of ``job``, or None when it has none; raises :class:`StaleJobError` if the file was
    written for another recipe (a hash collision or a hand-edited file)."""
    p = result_path(folder, job)
    if not p.is_file():
        return None
    try:
        stored = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a file cut short by a crash outside atomic_write: the job is simply redone
    if stored.get("recipe") != json.loads(json.dumps(job.recipe, sort_keys=True, default=str)):
        raise StaleJobError(
            f"{p} holds the result of another recipe than job {job.recipe}: delete it or use a new results folder"
        )
    return stored["result"]


def run_sharded(
    jobs: Sequence[Job],
    fn: Callable[..., Any],
    build: Callable[[Job], tuple],
    folder: str | os.PathLike,
    workers: int = 0,
    on_result: Callable[[Job, Any], None] | None = None,
    together: Callable[[list[Job]], list[Any]] | None = None,
    group: Callable[[Job], Hashable] | None = None,
    group_size: int = 64,
) -> list[Any]:
    """Run this rank's share of ``jobs`` that has no result file yet (``fn(*build(job))``, in a CPU pool of
    ``workers`` processes when > 0), write each result to its own file as it finishes, wait for every rank, and
    return every job's result in the order of ``jobs``. ``fn``'s result must be JSON-able.

    ``together`` (with ``group``): the jobs of one group (equal ``group(job)``), in chunks of at most
    ``group_size``, run as one call that returns one result per job (many small models trained in one pass);
    each job's result still gets its own file, so a resume redoes exactly the jobs without one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rank, world = rank_and_world()

    def save(job: Job, result: Any) -> None:
        atomic_write_json(result_path(folder, job), {"recipe": job.recipe, "result": result})  # sorted keys
        if on_result is not None:
            on_result(job, result)

    if together is not None and group is not None:
        # the chunks are cut from the whole list, then shared whole: the same stacks for any number of ranks and
        # after any kill (a chunk with a job left runs whole again; its other results come out the same)
        stacks = chunks(jobs, group, group_size)
        units = [Job({"stack": [j.key for j in g]}, sum(j.cost for j in g)) for g in stacks]
        for i in share(units, rank, world):
            missing = {j.key for j in stacks[i] if read_result(folder, j) is None}
            if missing:
                for job, result in zip(stacks[i], together(stacks[i]), strict=True):
                    if job.key in missing:
                        save(job, result)
        todo: list[Job] = []
    else:
        todo = [jobs[i] for i in share(jobs, rank, world) if read_result(folder, jobs[i]) is None]

    def args() -> Iterable[tuple]:  # built as the pool asks: a job's model is made only when it runs
        for job in todo:
            yield build(job)

    for i, result in run_jobs(fn, args(), workers):
        save(todo[i], result)
    barrier()
    results = [read_result(folder, job) for job in jobs]
    missing = [job.recipe for job, r in zip(jobs, results, strict=True) if r is None]
    if missing:
        raise JobsMissingError(
            f"{len(missing)} of {len(jobs)} jobs have no result in {folder} (a process died?), e.g. {missing[0]}; "
            "run the step again: finished jobs are kept"
        )
    return results
