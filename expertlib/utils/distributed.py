"""Where this process stands under ``torchrun``: its rank, the world size, whether it is the primary (rank 0,
the one that writes), and the barrier. The one home of these questions (as timm's ``utils/distributed.py``):
every module asks here, and without ``torchrun`` the answers are rank 0 of a world of 1."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from expertlib.utils.runtime import resolve_device


def is_distributed() -> bool:
    """Whether a process group is initialised (``torchrun`` with more than one process)."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 without torchrun)."""
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def is_primary() -> bool:
    """Rank 0 under torchrun (or the only process): the one that writes results."""
    return rank_and_world()[0] == 0


def barrier() -> None:
    """Wait for every rank (nothing to wait for without torchrun)."""
    if is_distributed():
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself without torchrun): e.g. one id for a whole run."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def init_distributed(device: str = "auto", backend: str | None = None) -> str:
    """Under torchrun (``WORLD_SIZE`` > 1): join the process group and return this rank's device
    (``cuda:<LOCAL_RANK mod GPUs>``); otherwise the resolved ``device``. ``backend``: NCCL on GPUs and gloo on
    CPU by default (DDP's all-reduces); a job list needs only barriers, for which gloo serves on any device
    and lets several ranks share one GPU."""
    use_cuda = torch.cuda.is_available() and device != "cpu"
    local = int(os.environ.get("LOCAL_RANK", 0)) % max(1, torch.cuda.device_count() if use_cuda else 1)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"))
        if use_cuda:
            torch.cuda.set_device(local)
    resolved = resolve_device(device)
    if resolved == "cuda" and dist.is_initialized():
        resolved = f"cuda:{local}"
    return resolved


def finish_distributed() -> None:
    """Leave the process group, once every rank is done."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()
