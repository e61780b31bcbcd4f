"""One-shot pruning by any registered criterion, then (optionally) training with fixed masks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..pruning import prune
from ..pruning.registry import Batch, LossFn
from .base import Pruner


class OneShot(Pruner):
    """Prunes once to ``sparsity`` by ``criterion`` when bound; every later ``step()`` only
    keeps the pruned entries at zero (fine-tuning, or training a model pruned at init)."""

    def __init__(
        self,
        criterion: str,
        sparsity: float,
        data: Iterable[Batch] | None = None,
        loss_fn: LossFn | None = None,
        rounds: int | None = None,
        input_shape: Sequence[int] | None = None,
        **allocation_kwargs,
    ) -> None:
        super().__init__(**allocation_kwargs)
        self.criterion = criterion
        self.sparsity_target = sparsity
        self.data, self.loss_fn = data, loss_fn
        self.rounds, self.input_shape = rounds, input_shape

    def initialize(self) -> None:
        prune(
            self.model,
            self.criterion,
            self.sparsity_target,
            data=self.data,
            rounds=self.rounds,
            loss_fn=self.loss_fn,
            input_shape=self.input_shape,
            **self.prune_kwargs(),
        )
        self.data = None  # the batches are not needed any more

    def on_epoch_end(self, state, metrics: dict) -> None:
        """Masks never change during training: nothing to log."""
