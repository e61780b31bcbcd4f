"""Trainability: gradient norms of the loss at a fixed batch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..bases import filter_bases
from ..foundations.batchnorm import frozen_batchnorm_stats
from ..masks import no_gradient_capture, prunable


def _norm(tensors: list[torch.Tensor]) -> float:
    """The L2 norm of all of ``tensors`` together (summed on their device, one sync)."""
    return float(torch.sqrt(sum((t.detach().double() ** 2).sum() for t in tensors)))


def gradient_norms(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> dict[str, float]:
    """L2 norms of ``dL/d theta`` for the trainable prunable tensors (IP coefficients or SP
    weights; pruned entries contribute zero), of ``dL/dW`` for the resulting spatial
    weights, and of ``dL/dF`` for the filter bases (0 without any).

    One forward/backward in the model's current mode; BN statistics are left as they were
    and parameter ``.grad`` fields are untouched.
    """
    entries = prunable(model)  # a pure query: dense layers list their own weights
    modules = [e.module for e in entries]
    params = [e.param for e in entries]
    bases = [fb.weight for fb in filter_bases(model) if fb.weight.requires_grad]
    with (
        frozen_batchnorm_stats(model),
        torch.enable_grad(),
        parametrize.cached(),
        no_gradient_capture(),  # not a training step: pruners must not see this gradient
    ):
        weights = [m.weight for m in modules]
        loss = loss_fn(model(inputs), targets)
        targets_ = [*weights, *params, *bases]
        grads = torch.autograd.grad(loss, targets_, allow_unused=True)
    n = len(modules)
    fill = [g if g is not None else loss.new_zeros(1) for g in grads]
    return {
        "spatial_grad_norm": _norm(fill[:n]),
        "grad_norm": _norm(fill[n : 2 * n]),
        "basis_grad_norm": _norm(fill[2 * n :]) if bases else 0.0,
        "loss": float(loss.detach()),
    }
