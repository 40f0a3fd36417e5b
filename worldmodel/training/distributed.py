"""Process group setup for ``torchrun`` (DDP over gloo on CPU, nccl on GPU) and device choice."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

# Rank 0 runs the periodic evaluation (closed-loop episodes can take long) while the other
# ranks wait in the next collective; torch's default of 30 minutes would abort them.
COLLECTIVE_TIMEOUT = timedelta(hours=6)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's GPU if there is one, else CPU; otherwise ``name`` checked."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name}: no CUDA device here; use train.device=cpu")
    return device


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group when started by ``torchrun`` (WORLD_SIZE > 1); else one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT
        )
    return DistInfo(rank, world_size, local_rank, device)


def mean_over_processes(values: Tensor, info: DistInfo) -> Tensor:
    """The element-wise mean of ``values`` over all processes (identity for one process)."""
    if not info.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / info.world_size


def shutdown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
