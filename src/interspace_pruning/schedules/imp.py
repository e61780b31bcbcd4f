"""Iterative magnitude pruning with rewinding: lottery tickets (Frankle & Carbin 2019;
Frankle et al. 2020).

Train; prune a fraction of the remaining entries by magnitude; rewind the unpruned entries
(and, for IP, the filter bases; and BN) to their values after ``rewind_step`` steps of the
first training (0 = initialisation); retrain with the new mask; repeat. The outer loop lives
in :func:`interspace_pruning.experiments.imp.run_imp`; this module holds its pieces.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..masks import prunable
from ..training import Callback, TrainState


def imp_levels(target: float, rounds: int | None = None, rate: float = 0.2) -> list[float]:
    """Sparsity after each pruning round.

    With ``rounds`` the levels are geometric and end exactly at ``target``; otherwise each
    round removes ``rate`` of the remaining entries until ``target`` (the last round is cut
    to land on it).
    """
    if not 0 < target < 1:
        raise ValueError(f"IMP target sparsity must be in (0, 1), got {target}")
    if rounds is not None:
        if rounds < 1:
            raise ValueError(f"IMP rounds must be >= 1, got {rounds}")
        keep = (1.0 - target) ** (1.0 / rounds)
        return [1.0 - keep**r for r in range(1, rounds)] + [target]
    if not 0 < rate < 1:
        raise ValueError(f"IMP rate must be in (0, 1), got {rate}")
    n = math.ceil(math.log(1.0 - target) / math.log(1.0 - rate) - 1e-9)
    return [min(1.0 - (1.0 - rate) ** r, target) for r in range(1, n)] + [target]


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class RewindPoint(Callback):
    """Remembers the full model state after ``step`` optimiser steps (0: before training)."""

    def __init__(self, step: int = 0) -> None:
        if step < 0:
            raise ValueError(f"rewind step must be >= 0, got {step}")
        self.step = step
        self.state: dict[str, torch.Tensor] | None = None

    def on_train_start(self, state: TrainState) -> None:
        if self.step > state.total_steps:
            raise ValueError(
                f"rewind step {self.step} is beyond the {state.total_steps} training steps"
            )
        if self.step == 0:
            self.state = state_copy(state.model)

    def on_step_end(self, state: TrainState) -> None:
        if state.step + 1 == self.step:  # state.step indexes the step just taken
            self.state = state_copy(state.model)

    def state_dict(self) -> dict:
        return {"state": self.state}

    def load_state_dict(self, state: dict) -> None:
        self.state = state["state"]


@torch.no_grad()
def rewind(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Restore ``saved`` (weights or coefficients, filter bases, BN) but keep today's masks."""
    entries = prunable(model)
    masks = [e.mask.clone() for e in entries]
    model.load_state_dict(saved)
    for e, m in zip(entries, masks, strict=True):
        e.set_mask(m)
