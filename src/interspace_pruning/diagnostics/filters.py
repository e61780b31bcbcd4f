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
    hist = torch.zeros(10, dtype=torch.long)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (3, 3):
            nnz = (spatial_filters(m) != 0).sum(dim=(1, 2))
            hist += torch.bincount(nnz, minlength=10)
    return hist.tolist()


def dense_filter_fraction(hist: list[int]) -> float:
    """Fraction of the filters with at least one nonzero entry that are fully dense."""
    alive = sum(hist[1:])
    return hist[-1] / alive if alive else 0.0
