"""Training on several processes with torch DistributedDataParallel.

    torchrun --standalone --nproc_per_node 4 -m gnn_market.train --store DIR --device cuda

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
:func:`init_distributed` joins the process group (NCCL on GPUs, gloo on
CPUs) and every helper here reads ``torch.distributed``'s global state, so a
plain run (world size 1) takes exactly the single-process code path.

What is split across the K processes:

- **training**: each global batch of ``batch_hours`` hours is cut into K
  contiguous parts, one per process; gradients are averaged by DDP with the
  loss scaled so that the update equals the single-process one on the whole
  batch (the class-weighted mean over all K parts);
- **prediction** (validation every epoch, then validation and test): each
  process predicts a contiguous block of hours and the blocks are gathered, so
  every process sees the same scores and takes the same early-stopping step.

Baselines, calibration, metrics and the artefacts are computed once, by rank 0.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from ..errors import DataError

#: How long a process waits for the others at a collective: rank 0 fits the baselines and writes the
#: artefacts while the others wait (minutes on a large universe).
TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        """``metrics.json``'s ``distributed`` entry."""
        return {"world_size": self.size, "backend": self.backend}


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (``torchrun``, ``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str) -> tuple[World, str]:
    """Join the process group when launched with more than one process.

    Returns the :class:`World` and the device name this process trains on
    (``cuda:<LOCAL_RANK>`` on GPUs). A plain run returns ``World()`` and ``device`` unchanged.
    """
    if not launched_by_torchrun():
        return World(), device
    try:
        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError) as exc:
        raise DataError(f"WORLD_SIZE > 1 but RANK/LOCAL_RANK are missing or not integers ({exc}); "
                        f"launch with torchrun") from None
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise DataError("--device cuda: no CUDA device is available (use cpu or auto)")
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    else:
        device = "cpu"
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    return World(rank, size, local_rank, backend), device


def shutdown() -> None:
    """Leave the process group (after a last barrier, so rank 0's artefacts are written before anyone exits)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def world() -> World:
    """The current :class:`World` (``World()`` outside a process group)."""
    if not dist.is_initialized():
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_backend())


def shard(hours: np.ndarray) -> np.ndarray:
    """This process's contiguous block of ``hours`` (all of them in a plain run)."""
    w = world()
    return hours if w.size == 1 else np.array_split(np.asarray(hours), w.size)[w.rank]


def gather_blocks(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Concatenate every process's ``arrays`` in rank order (the inverse of :func:`shard`); every process
    gets the result. A plain run returns ``arrays`` unchanged."""
    w = world()
    if w.size == 1:
        return arrays
    parts: list = [None] * w.size
    dist.all_gather_object(parts, arrays)
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(len(arrays)))


def sum_over_processes(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over all processes (unchanged in a plain run)."""
    if world().size > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value


def broadcast(obj):
    """Rank 0's ``obj`` on every process."""
    if world().size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
