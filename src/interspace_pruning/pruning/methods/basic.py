"""Data-free baselines: random and magnitude."""

from __future__ import annotations

import torch

from ..registry import ScoringContext, register_method


@register_method("random")
def random_scores(ctx: ScoringContext) -> list[torch.Tensor]:
    """Uniform random scores: random pruning.

    Drawn from torch's global *CPU* generator and then moved, so a seed gives the same
    masks on every device (a run keeps its identity across devices).
    """
    return [torch.rand(p.shape, dtype=p.dtype).to(p.device) for p in ctx.params]


@register_method("magnitude")
def magnitude_scores(ctx: ScoringContext) -> list[torch.Tensor]:
    """``|theta|``: keep the largest weights (SP) or coefficients (IP)."""
    return [p.detach().abs() for p in ctx.params]
