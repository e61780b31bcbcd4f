"""Pruning schedules: when masks change during training (callbacks of the training loop).

Scoring lives in :mod:`interspace_pruning.pruning` and allocation in its ``allocation``
module; a schedule only decides *when* to call them: gradual magnitude pruning (GMP),
dynamic sparse training (SET, RigL) and the rewinding pieces of lottery tickets (IMP).
"""

from .base import MaskSchedule, settle_after_mask_change, snapshot_masks
from .dst import DynamicSparseTraining
from .gmp import GradualMagnitudePruning
from .imp import RewindPoint, imp_levels, rewind, state_copy

SCHEDULED_METHODS = ("imp", "gmp", "rigl", "set")


def RigL(**kwargs) -> DynamicSparseTraining:  # noqa: N802 - reads like a class
    """RigL: drop by magnitude, regrow where the dense gradient is largest."""
    return DynamicSparseTraining(growth="gradient", **kwargs)


def SET(**kwargs) -> DynamicSparseTraining:  # noqa: N802
    """SET: drop by magnitude, regrow at random."""
    return DynamicSparseTraining(growth="random", **kwargs)


__all__ = [
    "SCHEDULED_METHODS",
    "SET",
    "DynamicSparseTraining",
    "GradualMagnitudePruning",
    "MaskSchedule",
    "RewindPoint",
    "RigL",
    "imp_levels",
    "rewind",
    "settle_after_mask_change",
    "snapshot_masks",
    "state_copy",
]
