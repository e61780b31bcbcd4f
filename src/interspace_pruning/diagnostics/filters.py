"""Filter statistics and pictures: how dense are the spatial filters, what do the bases learn."""

from __future__ import annotations

import torch
from torch import nn


def spatial_filters(module: nn.Conv2d) -> torch.Tensor:
    """The layer's KxK filters as ``(out*in, kh, kw)`` (masks and bases applied)."""
    w = module.weight.detach()
    return w.reshape(-1, *w.shape[2:])


def filter_nnz_histogram(model: nn.Module) -> list[int]:
    """``hist[k]`` = number of 3x3 filters (over all 3x3 conv layers) with ``k`` nonzero
    spatial entries, ``k = 0..9``.

    An SP filter keeps only its unpruned positions; an IP filter with any unpruned
    coefficient is a combination of dense basis filters and so is spatially dense.
    """
    hist = None  # counted on the layers' device, read back once
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (3, 3):
            nnz = (spatial_filters(m) != 0).sum(dim=(1, 2))
            counts = torch.bincount(nnz, minlength=10)
            hist = counts if hist is None else hist + counts
    return hist.tolist() if hist is not None else [0] * 10


def dense_filter_fraction(hist: list[int]) -> float:
    """Fraction of the filters with at least one nonzero entry that are fully dense."""
    alive = sum(hist[1:])
    return hist[-1] / alive if alive else 0.0
