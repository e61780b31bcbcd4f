"""Pruning: criteria (scores), allocation across layers, and the ``prune`` entry point."""

from . import methods  # noqa: F401  (registers the built-in criteria)
from .allocation import ALLOCATIONS, LayerCollapseWarning, allocate, distribute, erk_weights
from .prune import prune, round_sparsities
from .registry import (
    PruningMethod,
    ScoringContext,
    get_method,
    method_names,
    register_method,
)

__all__ = [
    "ALLOCATIONS",
    "LayerCollapseWarning",
    "PruningMethod",
    "ScoringContext",
    "allocate",
    "distribute",
    "erk_weights",
    "get_method",
    "method_names",
    "prune",
    "register_method",
    "round_sparsities",
]
