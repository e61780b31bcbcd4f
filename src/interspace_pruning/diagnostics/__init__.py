"""Diagnostics behind the paper's explanation: trainability (gradient norms), generalisation
(train-test gaps, see ``experiments.results.summarise``) and filter density."""

from .callback import Diagnostics
from .filters import dense_filter_fraction, filter_nnz_histogram, spatial_filters
from .gradients import gradient_norms

__all__ = [
    "Diagnostics",
    "dense_filter_fraction",
    "filter_nnz_histogram",
    "gradient_norms",
    "spatial_filters",
]
