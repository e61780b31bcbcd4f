"""Shared machinery of schedules that change masks while the model trains."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..masks import PrunableTensor
from ..training import Callback, TrainState, distributed, reset_state_entries


def snapshot_masks(entries: Sequence[PrunableTensor]) -> list[torch.Tensor]:
    return [e.mask.detach().bool().clone() for e in entries]


@torch.no_grad()
def settle_after_mask_change(
    state: TrainState, entries: Sequence[PrunableTensor], before: Sequence[torch.Tensor]
) -> int:
    """Keep the optimiser consistent with new masks; returns how many entries changed.

    Pruned entries are already zero in the parameter (``set_mask``); here their pending
    gradient is masked and the optimiser history of every changed entry is cleared, so a
    dropped entry is not pushed off zero and a regrown one starts fresh.
    """
    changed_total = 0
    for e, old in zip(entries, before, strict=True):
        changed = old ^ e.mask.bool()
        n = int(changed.sum())
        if n == 0:
            continue
        changed_total += n
        if e.param.grad is not None:
            e.param.grad.mul_(e.mask)
        reset_state_entries(state.optimizer, e.param, changed)
    # Under torchrun every rank decided alike; rank 0's copy is the reference all the same.
    distributed.broadcast_module(state.model)
    return changed_total


class MaskSchedule(Callback):
    """Base of the pruning schedules: common allocation options."""

    def __init__(
        self,
        allocation: str = "global",
        keep_first_dense: bool = False,
        keep_last_dense: bool = False,
        min_density: float | None = None,
        pattern: str | None = None,
    ) -> None:
        self.allocation = allocation
        self.pattern = pattern  # N:M, e.g. "2:4" (see pruning.allocation)
        self.keep_first_dense = keep_first_dense
        self.keep_last_dense = keep_last_dense
        self.min_density = min_density
        #: ``(step, sparsity, entries changed)`` of every mask update, for logs and tests.
        self.events: list[tuple[int, float, int]] = []

    def prune_kwargs(self) -> dict:
        return {
            "allocation": self.allocation,
            "keep_first_dense": self.keep_first_dense,
            "keep_last_dense": self.keep_last_dense,
            "min_density": self.min_density,
            "pattern": self.pattern,
        }

    def state_dict(self) -> dict:
        return {"events": [list(e) for e in self.events]}

    def load_state_dict(self, state: dict) -> None:
        self.events = [tuple(e) for e in state["events"]]

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        epoch_of = [step // state.steps_per_epoch for step, _, _ in self.events]
        metrics["mask_updates"] = epoch_of.count(state.epoch)
