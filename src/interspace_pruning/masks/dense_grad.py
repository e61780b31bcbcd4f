"""Gradients with respect to whole prunable tensors, pruned entries included.

The masked forward pass gives pruned entries zero gradient. Growth criteria (RigL) need the
gradient they *would* get if they were unpruned: ``dL/dW`` for SP and, for IP, the gradient
with respect to the full coefficient tensor, ``dL/d(Lambda*M) = dL/dW_flat @ F^T``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from .prunable import PrunableTensor


def dense_gradients(
    model: nn.Module,
    entries: Sequence[PrunableTensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> list[torch.Tensor]:
    """One forward/backward on ``(inputs, targets)``; returns one gradient per entry.

    The spatial weights are computed once and cached for the forward pass so that the loss
    can be differentiated with respect to them; parameter ``.grad`` fields are untouched.
    """
    with parametrize.cached():
        weights = [e.module.weight for e in entries]
        loss = loss_fn(model(inputs), targets)
        grads = torch.autograd.grad(loss, weights)
    out = []
    for e, g in zip(entries, grads, strict=True):
        if e.kind == "ip":
            basis = e.parametrization.basis().detach()  # (n, kh*kw)
            g = torch.matmul(g.reshape(*e.param.shape[:2], -1), basis.T)
        out.append(g.detach())
    return out
