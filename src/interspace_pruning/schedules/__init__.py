"""Pruning schedules: when masks change during training, as pruner objects.

Scoring lives in :mod:`interspace_pruning.pruning` and allocation in its ``allocation``
module; a pruning schedule only decides *when* to call them: gradual magnitude pruning
(GMP), dynamic sparse training (SET, RigL), one-shot criteria, and the rewinding pieces of
lottery tickets (IMP). Build any of them with :func:`pruner` (``ip.pruner``) and call
``step()`` after every ``optimizer.step()``.
"""

from .base import (
    MaskSchedule,
    Pruner,
    PrunerStateError,
    check_pruner_state,
    no_gradient_capture,
    settle_after_mask_change,
    snapshot_masks,
)
from .dst import DynamicSparseTraining
from .gmp import GradualMagnitudePruning
from .imp import RewindPoint, TicketRound, imp_levels, lottery_ticket, rewind, state_copy
from .oneshot import OneShot
from .registry import (
    AllocationOptions,
    DstOptions,
    GmpOptions,
    ImpOptions,
    OneShotOptions,
    make_options,
    pruner,
    pruner_names,
    register_schedule,
    schedule_names,
    schedule_sections,
    section_of,
)


def RigL(**kwargs) -> DynamicSparseTraining:  # noqa: N802 - reads like a class
    """RigL: drop by magnitude, regrow where the dense gradient is largest."""
    return DynamicSparseTraining(growth="gradient", **kwargs)


def SET(**kwargs) -> DynamicSparseTraining:  # noqa: N802
    """SET: drop by magnitude, regrow at random."""
    return DynamicSparseTraining(growth="random", **kwargs)


__all__ = [
    "SET",
    "AllocationOptions",
    "DstOptions",
    "DynamicSparseTraining",
    "GmpOptions",
    "GradualMagnitudePruning",
    "ImpOptions",
    "MaskSchedule",
    "OneShot",
    "OneShotOptions",
    "Pruner",
    "PrunerStateError",
    "RewindPoint",
    "RigL",
    "TicketRound",
    "check_pruner_state",
    "imp_levels",
    "lottery_ticket",
    "make_options",
    "no_gradient_capture",
    "pruner",
    "pruner_names",
    "register_schedule",
    "rewind",
    "schedule_names",
    "schedule_sections",
    "section_of",
    "settle_after_mask_change",
    "snapshot_masks",
    "state_copy",
]
