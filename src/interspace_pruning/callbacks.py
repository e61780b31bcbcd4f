"""The training loop's extension points (pruners, diagnostics, ...): the protocol between
a training loop and what it calls back.

It lives below both sides: ``schedules`` and ``diagnostics`` implement it, ``training``
(and any loop of your own, see ``integrations``) calls it, and neither side imports the
other. ``interspace_pruning.training`` re-exports both names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .data import ImageDataset


@dataclass
class TrainState:
    """What callbacks see; ``step`` counts optimiser steps from 0."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    dataset: ImageDataset
    config: Any  # the loop's ``training.TrainConfig`` (which is above this layer)
    steps_per_epoch: int
    total_steps: int
    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    #: The current training batch ``(inputs, targets)`` and the loss used on it.
    batch: tuple[torch.Tensor, torch.Tensor] | None = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    #: The loss of the current batch (on the device: reading it waits for the device).
    loss: torch.Tensor | None = None


class Callback:
    """Override any hook; all default to doing nothing."""

    def setup(self, state: TrainState) -> None:
        """The loop's optimiser exists; called on a fresh start and on a resume alike,
        before a checkpoint's state is loaded (pruners bind to the optimiser here)."""

    def on_train_start(self, state: TrainState) -> None:
        """A fresh start (not called on a resume)."""

    def on_after_backward(self, state: TrainState) -> None:
        """Gradients are populated, the optimiser has not stepped yet."""

    def on_step_end(self, state: TrainState) -> None:
        """After ``optimizer.step()``; ``state.step`` is the index of the step just taken."""

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        """``metrics`` may be extended; it is written to the run's metrics file."""

    def on_train_end(self, state: TrainState) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep for this callback to resume (tensors, numbers, lists)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
