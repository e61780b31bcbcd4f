"""Data-parallel training across processes (``torchrun``), with masks kept identical.

Every rank holds the whole model. Each global batch (``--batch-size``) is drawn from one
shared, seeded order and split into equal contiguous shards, so the averaged gradient
equals that of a single process on the global batch. DDP averages gradients (filter bases
included) and broadcasts buffers (masks, BN statistics) from rank 0; whenever a pruning
schedule changes masks it decides from gradients reduced across ranks and then
broadcasts all parameters and buffers from rank 0, so masks can never drift apart. Only
rank 0 writes files.

On GPUs the processes talk over NCCL and each uses the GPU of its ``LOCAL_RANK``;
``--sync-bn`` then computes BatchNorm statistics over the global batch. On CPUs they use
gloo and BN statistics are per rank.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def info() -> DistInfo:
    """The current process group, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size())
    return DistInfo()


def backend_for(device: str) -> str:
    """``nccl`` when training runs on CUDA (``--device auto|cuda...`` with a GPU), else gloo
    (nccl takes CUDA tensors only)."""
    spec = str(device).lower()
    cuda = spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available())
    return "nccl" if cuda and dist.is_nccl_available() else "gloo"


def init_from_env(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    With ``device`` on CUDA each process is bound to the GPU of its ``LOCAL_RANK`` first.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = backend_for(device)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return info()


def shard(batch: tuple[torch.Tensor, torch.Tensor], d: DistInfo):
    """This rank's contiguous, equal share of a global batch."""
    x, y = batch
    if not d.enabled:
        return x, y
    b = len(y) // d.world_size
    return x[d.rank * b : (d.rank + 1) * b], y[d.rank * b : (d.rank + 1) * b]


def _comm_device(device: torch.device | None) -> torch.device:
    """Where collective tensors must live: the GPU for nccl, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return device if device is not None and device.type == "cuda" else torch.device("cuda")
    return torch.device("cpu")


def all_reduce_sum(values: list[float], device: torch.device | None = None) -> list[float]:
    """Sum numbers over ranks (one collective; ``device``: the training device)."""
    if not info().enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device(device))
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_mean_(tensors: list[torch.Tensor]) -> None:
    """Average tensors across ranks, in place."""
    d = info()
    if not d.enabled:
        return
    for t in tensors:
        dist.all_reduce(t)
        t.div_(d.world_size)


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Make every rank's parameters and buffers (masks included) equal to rank 0's."""
    if not info().enabled:
        return
    for t in itertools.chain(module.parameters(), module.buffers()):
        dist.broadcast(t.data, 0)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> None:
    """Replace ``model``'s BatchNorm layers by SyncBatchNorm, in place (CUDA only)."""
    if device.type != "cuda":
        raise ValueError("--sync-bn needs training on GPUs (--device cuda under torchrun)")
    for name, child in list(model.named_children()):
        setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))


def wrap(model: nn.Module, device: torch.device | None = None) -> nn.Module:
    """The module to run forward/backward through: DDP when distributed, else ``model``."""
    if not info().enabled:
        return model
    ids = [device] if device is not None and device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=True)
