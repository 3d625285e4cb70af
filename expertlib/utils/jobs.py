"""A job list spread over every process of a run: ranks take the next job as they finish, rank 0 merges.

The paper's sweep is thousands of independent fine-tunes. Under ``torchrun`` or SLURM (any number of GPUs and
nodes) every rank walks the same list, costliest first (a 480-px fine-tune costs about 14 times a 128-px one),
and takes each job nobody holds with an atomic claim file on the shared results folder
(:mod:`expertlib.utils.claims`): a fast rank simply takes more jobs, so a slow or lost node no longer holds
the run. Each result is written atomically to its own file, named by a hash of the job's recipe (everything
that determines its result), and every job's result is a pure function of its recipe, so the results are those
of one process whoever runs what. A killed rank's claim expires (its heartbeat stops) and another rank redoes
the job; a killed run's claims are taken over at once by the next run, which redoes exactly the jobs without a
file. A file whose recipe differs from its job's (a changed setting) is refused, never reused. Once every job
has a file every rank reads them all; rank 0 alone writes the tables. Without torchrun the same code runs
every job in this process, or in :func:`expertlib.utils.parallel.run_jobs`'s CPU pool, with the same results.
:func:`share` is the split this gives when every rank runs at one speed (the plan prices runs with it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expertlib.utils.claims import CLAIM_TTL, Claims
from expertlib.utils.distributed import barrier, broadcast, rank_and_world
from expertlib.utils.parallel import run_jobs
from expertlib.utils.runtime import atomic_write_json


class JobsMissingError(RuntimeError):
    """After every rank finished, some jobs have no result file (a file removed meanwhile): run the step again."""


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
    """The indices of ``jobs`` that ``rank`` of ``world`` runs when every rank runs at one speed: longest first,
    each to the least-loaded rank (ties: the lower rank), so every rank's total cost is within one job of the
    others'. :func:`run_sharded` gives this split when the ranks' speeds are equal (the next free rank takes
    the next job of the same order); the plan prices multi-GPU runs with it."""
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


def run_id() -> str:
    """An id every rank of this run shares (rank 0's): claims of another id are a killed run's leftovers."""
    return broadcast(uuid.uuid4().hex)


def _order(units: Sequence[Sequence[Job]]) -> list[int]:
    """The order every rank walks the units in: costliest first (ties by key), as :func:`share` deals them."""
    return sorted(
        range(len(units)), key=lambda i: (-sum(j.cost for j in units[i]), [j.key for j in units[i]])
    )


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
    claim_ttl: float = CLAIM_TTL,
) -> list[Any]:
    """Run every job of ``jobs`` that has no result file yet, shared with the other ranks as each rank takes
    the next unclaimed job when it is free (``fn(*build(job))``, in a CPU pool of ``workers`` processes when
    > 0), write each result to its own file as it finishes, wait until every job has one (redoing a job whose
    holder's claim expired, ``claim_ttl`` seconds without a heartbeat), and return every job's result in the
    order of ``jobs``. ``fn``'s result must be JSON-able.

    ``together`` (with ``group``): the jobs of one group (equal ``group(job)``), in chunks of at most
    ``group_size``, run as one call that returns one result per job (many small models trained in one pass); a
    chunk is claimed whole, and each job's result still gets its own file, so a resume redoes exactly the
    chunks with a job without one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rank, _ = rank_and_world()
    stacked = together is not None and group is not None
    # the chunks are cut from the whole list: the same stacks for any number of ranks and after any kill (a chunk
    # with a job left runs whole again; its other results come out the same)
    units = chunks(jobs, group, group_size) if stacked else [[job] for job in jobs]
    keys = [Job({"stack": [j.key for j in u]}).key if stacked else u[0].key for u in units]
    for job in jobs:
        read_result(folder, job)  # a result of another recipe is refused before any work
    claims = Claims(folder / "claims", run_id(), rank, claim_ttl)
    finished: set[int] = set()

    def done(
        i: int,
    ) -> bool:  # every job of unit i has its file (once true, for good: files are never removed)
        if i not in finished and all(result_path(folder, j).is_file() for j in units[i]):
            finished.add(i)
        return i in finished

    def save(job: Job, result: Any) -> None:
        atomic_write_json(result_path(folder, job), {"recipe": job.recipe, "result": result})  # sorted keys
        if on_result is not None:
            on_result(job, result)

    taken: list[int] = []
    order = _order(units)

    def claim_pass() -> Iterator[int]:
        """The units this rank claims in one walk down the list, as it is ready for each (never waiting)."""
        for i in order:
            if not done(i) and claims.take(keys[i]):
                if done(i):  # finished by its holder between the check and the claim
                    claims.release(keys[i])
                    continue
                taken.append(i)
                yield i

    with claims.heartbeat():
        while True:
            if stacked:
                for i in claim_pass():
                    missing = {j.key for j in units[i] if not result_path(folder, j).is_file()}
                    for job, result in zip(units[i], together(units[i]), strict=True):
                        if job.key in missing:
                            save(job, result)
                    claims.release(keys[i])
            else:
                taken.clear()
                args = (build(units[i][0]) for i in claim_pass())  # a job's model is made only when it runs
                for n, result in run_jobs(fn, args, workers):
                    save(units[taken[n]][0], result)
                    claims.release(keys[taken[n]])
            if all(done(i) for i in range(len(units))):
                break
            time.sleep(
                min(0.25, claim_ttl / 10)
            )  # the rest is held by other ranks: their results, or an expiry
    barrier()
    results = [read_result(folder, job) for job in jobs]
    missing = [job.recipe for job, r in zip(jobs, results, strict=True) if r is None]
    if missing:
        raise JobsMissingError(
            f"{len(missing)} of {len(jobs)} jobs have no result in {folder} (a file removed meanwhile?), e.g. "
            f"{missing[0]}; run the step again: finished jobs are kept"
        )
    return results
