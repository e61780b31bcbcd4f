"""Worker processes of the DDP tests (importable so that ``spawn`` can find them)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

import interspace_pruning as ip
from interspace_pruning import data, models
from interspace_pruning.experiments import ModelConfig, PruneConfig, RunConfig, run
from interspace_pruning.training import Callback, TrainConfig


class TinyNoBN(nn.Module):
    """No BatchNorm: on CPU, BN statistics are per rank, everything else must match."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.mean(dim=(2, 3)))


models.register("tiny-nobn", TinyNoBN)


class MaskLog(Callback):
    def __init__(self):
        self.masks: list[list[torch.Tensor]] = []

    def on_train_start(self, state):
        self.masks.append([e.mask.clone() for e in ip.prunable(state.model)])

    def on_step_end(self, state):
        self.masks.append([e.mask.clone() for e in ip.prunable(state.model)])


def config(representation: str, method: str) -> RunConfig:
    return RunConfig(
        model=ModelConfig(model="tiny-nobn"),
        prune=PruneConfig(representation=representation, method=method, sparsity=0.9),
        train=TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=3),
        options={"dst": {"interval": 3, "stop_fraction": 1.0}},
    )


def train_and_dump(representation: str, method: str, path: str) -> None:
    torch.set_num_threads(1)
    ds = data.get("digits", train_subset=256, test_subset=64)
    log = MaskLog()
    result = run(config(representation, method), None, dataset=ds, progress=False, callbacks=[log])
    torch.save(
        {"masks": log.masks, "state": result.model.state_dict(), "history": result.history},
        path,
    )


def worker(rank: int, world: int, port: int, out: str, representation: str, method: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        train_and_dump(representation, method, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
