"""Data-free baselines: random and magnitude."""

from __future__ import annotations

import torch

from ..registry import ScoringContext, register_method


@register_method("random")
def random_scores(ctx: ScoringContext) -> list[torch.Tensor]:
    """Uniform random scores (torch's global RNG): random pruning."""
    return [torch.rand_like(p) for p in ctx.params]


@register_method("magnitude")
def magnitude_scores(ctx: ScoringContext) -> list[torch.Tensor]:
    """``|theta|``: keep the largest weights (SP) or coefficients (IP)."""
    return [p.detach().abs() for p in ctx.params]
