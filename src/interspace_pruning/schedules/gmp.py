"""Gradual magnitude pruning (Zhu & Gupta 2017).

Sparsity rises from ``s_i`` to ``s_f`` along the cubic schedule
``s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_end - t_0))^3``, pruning every ``interval``
steps from ``t_0`` to ``t_end`` by the criterion (magnitude by default). Entries pruned once
stay pruned; for IP the coefficients are ranked, the basis keeps training.
"""

from __future__ import annotations

from typing import Any

from ..pruning import prune
from ..pruning.allocation import dense_layers, pattern_min_sparsity
from .base import Pruner


class GradualMagnitudePruning(Pruner):
    """Gradual magnitude pruning: sparsity rises along the cubic schedule of Zhu & Gupta.

    Build it with ``ip.pruner("gmp", model, optimizer, sparsity=..., total_steps=T,
    **options)`` (options: :class:`~interspace_pruning.schedules.GmpOptions`, whose
    ``start``/``end`` are fractions of ``T``) rather than directly. The model starts dense
    (or as it is); at steps ``start_step``, ``start_step + interval``, ... and at
    ``end_step`` it is pruned to
    ``s_t = final + (initial - final) * (1 - (t - start_step) / (end_step - start_step))^3``
    by ``criterion``. Pruned entries stay pruned.

    Args:
        final_sparsity: the sparsity reached at ``end_step`` (below 1).
        start_step: the first pruning step (optimiser steps from 0).
        end_step: the last pruning step (>= ``start_step``).
        interval: steps between two prunings (>= 1).
        initial_sparsity: the sparsity of the first pruning step (0 to ``final_sparsity``).
        criterion: the scoring criterion (any of ``ip.method_names()``; magnitude by
            default; data-driven criteria need data the pruner does not have).
        **allocation_kwargs: ``allocation``, ``keep_first_dense``, ``keep_last_dense``,
            ``min_density``, ``pattern`` (see :class:`~interspace_pruning.schedules.Pruner`).
    """

    def __init__(
        self,
        final_sparsity: float,
        start_step: int,
        end_step: int,
        interval: int,
        initial_sparsity: float = 0.0,
        criterion: str = "magnitude",
        **allocation_kwargs: Any,
    ) -> None:
        super().__init__(**allocation_kwargs)
        if not 0 <= start_step <= end_step:
            raise ValueError(f"GMP needs 0 <= start <= end step, got {start_step}, {end_step}")
        if interval < 1:
            raise ValueError(f"GMP interval must be >= 1 step, got {interval}")
        if not 0 <= initial_sparsity <= final_sparsity < 1:
            raise ValueError(
                f"GMP needs 0 <= initial <= final sparsity < 1, got {initial_sparsity}, "
                f"{final_sparsity}"
            )
        self.final = final_sparsity
        self.initial = initial_sparsity
        self.start, self.end, self.interval = start_step, end_step, interval
        self.criterion = criterion

    def planned_updates(self) -> tuple[int, int]:
        span = self.end - self.start
        if span == 0:
            return 1, 1
        made = span // self.interval + 1 + (1 if span % self.interval else 0)
        noop = 1 if self.initial == 0 else 0  # the first step prunes to 0%: nothing
        return made - noop, span + 1 - noop

    def sparsity_at(self, step: int) -> float | None:
        """Target sparsity if ``step`` is a pruning step, else ``None``."""
        if step < self.start or step > self.end:
            return None
        if (step - self.start) % self.interval != 0 and step != self.end:
            return None
        if self.end == self.start:
            return self.final
        frac = (step - self.start) / (self.end - self.start)
        return self.final + (self.initial - self.final) * (1.0 - frac) ** 3

    def update(self, t: int) -> None:
        target = self.sparsity_at(t)
        if target is None:
            return
        if self.pattern is not None:  # N:M can only jump to its density, not ramp up to it
            dense = dense_layers(self.entries, self.keep_first_dense, self.keep_last_dense)
            target = max(target, pattern_min_sparsity(self.entries, self.pattern, dense))
        self.change_masks(
            t, target, lambda: prune(self.model, self.criterion, target, **self.prune_kwargs())
        )
