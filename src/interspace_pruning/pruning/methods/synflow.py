"""SynFlow (Tanaka et al. 2020): iterative synaptic flow, data-free.

All parameters and buffers are replaced by their absolute values (for IP this includes the
filter basis), a single all-ones input is passed through the network in eval mode, and
the score is ``|theta * dR/dtheta|`` with ``R`` the sum of the outputs. Computed in float64
to keep the products of many layers from under- or overflowing. ``prune`` repeats this for
100 rounds by default on an exponential sparsity schedule.
"""

from __future__ import annotations

import torch

from ..registry import ScoringContext, register_method


@register_method("synflow", rounds=100, mode="eval")
def synflow_scores(ctx: ScoringContext) -> list[torch.Tensor]:
    if ctx.input_shape is None:
        raise ValueError("synflow needs the input shape: pass data batches or input_shape=")
    model = ctx.model.double()
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.abs_()
    params = ctx.params
    out = model(torch.ones((1, *ctx.input_shape), dtype=torch.float64, device=ctx.device))
    grads = torch.autograd.grad(out.sum(), params)
    return [(g * p).detach().abs() for g, p in zip(grads, params, strict=True)]
