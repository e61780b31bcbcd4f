"""GraSP (Wang et al. 2020): keep what preserves gradient flow.

The score of removing ``theta`` is ``S = -theta * Hg``; GraSP removes the largest ``S``, so
the keep-score is ``theta * Hg``. As in the reference implementation the logits are divided
by a temperature (200) and ``g`` is the (detached) gradient summed over all batches.
"""

from __future__ import annotations

import torch

from ..registry import ScoringContext, register_method

TEMPERATURE = 200.0


@register_method("grasp", needs_data=True)
def grasp_scores(ctx: ScoringContext) -> list[torch.Tensor]:
    params = ctx.params
    g = [t.detach() for t in ctx.gradients(scale=TEMPERATURE)]
    hg = [torch.zeros_like(p) for p in params]
    for x, y in ctx.batches():
        loss = ctx.loss_fn(ctx.model(x) / TEMPERATURE, y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        gnorm = sum((a * b).sum() for a, b in zip(g, grads, strict=True))
        for acc, d in zip(hg, torch.autograd.grad(gnorm, params), strict=True):
            acc += d
    return [(h * p).detach() for h, p in zip(hg, params, strict=True)]
