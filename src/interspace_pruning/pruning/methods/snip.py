"""SNIP (Lee et al. 2019): connection sensitivity ``|theta * dL/dtheta|``."""

from __future__ import annotations

import torch

from ..registry import ScoringContext, register_method


@register_method("snip", needs_data=True)
def snip_scores(ctx: ScoringContext) -> list[torch.Tensor]:
    """``|theta * g|`` with ``g`` the loss gradient summed over all given batches.

    For IP, ``theta`` is a coefficient and ``g`` its gradient through ``W = (Lambda*M) F``.
    """
    grads = ctx.gradients()
    return [(g * p).detach().abs() for g, p in zip(grads, ctx.params, strict=True)]
