"""Optimiser state kept consistent with masks that change during training."""

from __future__ import annotations

import torch


@torch.no_grad()
def reset_state_entries(
    optimizer: torch.optim.Optimizer, param: torch.Tensor, where: torch.Tensor
) -> None:
    """Zero the optimiser state (momentum, Adam moments) of ``param`` where ``where`` is true.

    Used when masks change during training: a regrown entry must start from zero with no
    history, and a dropped one must not be pushed off zero by stale momentum.
    """
    state = optimizer.state.get(param, {})
    for value in state.values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            value.masked_fill_(where, 0)
