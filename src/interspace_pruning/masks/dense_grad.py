"""Gradients with respect to whole prunable tensors, pruned entries included.

The masked forward pass gives pruned entries zero gradient. Growth criteria (RigL) need the
gradient they *would* get if they were unpruned: ``dL/dW`` for SP and, for IP, the gradient
with respect to the full coefficient tensor, ``dL/d(Lambda*M) = dL/dW_flat @ F^T``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

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
    with parametrize.cached(), no_gradient_capture():
        weights = [e.module.weight for e in entries]
        loss = loss_fn(model(inputs), targets)
        grads = torch.autograd.grad(loss, weights)
    return [
        e.parametrization.full_gradient(g).detach() for e, g in zip(entries, grads, strict=True)
    ]


_capture = threading.local()


@contextlib.contextmanager
def no_gradient_capture() -> Iterator[None]:
    """Backward passes inside this block are not seen by pruners that read gradients (RigL).

    Wrap extra backward passes of your own (gradient diagnostics, a second loss) in it;
    ordinary evaluation under ``torch.no_grad()`` needs nothing.
    """
    old = getattr(_capture, "off", False)
    _capture.off = True
    try:
        yield
    finally:
        _capture.off = old


def capture_enabled() -> bool:
    return not getattr(_capture, "off", False)
