"""Extra forward passes that must not count: keep BN running statistics as they were."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Restore every BN buffer (running mean/var, batch count) on exit."""
    saved = [
        (t, t.detach().clone())
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for t in m.buffers(recurse=False)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for t, v in saved:
                t.copy_(v)
