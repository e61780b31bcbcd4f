"""A PyTorch Lightning callback around the library's pruners (``pip install lightning``).

::

    import lightning as L
    import interspace_pruning as ip
    from interspace_pruning.integrations.lightning import PruningCallback

    module = MyLightningModule()
    ip.prepare(module.model, "ip")            # or "sp"; before the optimiser is built
    trainer = L.Trainer(max_epochs=10, callbacks=[PruningCallback("rigl", sparsity=0.9)])
    trainer.fit(module, train_loader)

The callback builds ``ip.pruner(name, pl_module, optimizer, sparsity=..., total_steps=...)``
when fitting starts (``total_steps`` defaults to the trainer's estimate) and calls
``pruner.step()`` after every optimiser step: the same object and the same calls as a plain
loop. Its state goes into Lightning checkpoints, so ``trainer.fit(ckpt_path=...)`` resumes
it. One optimiser is supported; gradient accumulation works (RigL sums the gradients).
A saved state is checked as a file would be before it is used: a missing field, a wrong
type, a step beyond the optimiser steps the checkpoint had taken, or the state of another
pruner raise a one-line ``ValueError`` (:class:`~interspace_pruning.schedules.PrunerStateError`)
naming the field.

With ``log_sparsity=True`` the pruning state (global and per-layer sparsity, nonzeros,
filter-basis parameters; :func:`interspace_pruning.tracking.log_sparsity`) goes to every
logger of the trainer (TensorBoard, W&B, MLflow, CSV, ...) at the end of each training
epoch, and the number of mask updates with it.
"""

from __future__ import annotations

from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as e:  # pragma: no cover - exercised only without lightning
    raise ImportError(
        "interspace_pruning.integrations.lightning needs PyTorch Lightning: pip install lightning"
    ) from e

from ..schedules import Pruner, check_pruner_state, pruner
from ..tracking import log_sparsity


class PruningCallback(pl.Callback):
    """Runs the pruner ``name`` (any of ``ip.pruner_names()``) during ``trainer.fit``."""

    def __init__(
        self,
        name: str,
        sparsity: float,
        total_steps: int | None = None,
        log_sparsity: bool = False,
        **options: Any,
    ) -> None:
        self.name, self.sparsity, self.total_steps = name, sparsity, total_steps
        self.log_sparsity = log_sparsity
        self.options = options
        self.pruner: Pruner | None = None
        self._pending_state: dict | None = None
        self._done = 0  # optimiser steps the pruner has seen
        #: Optimiser steps of the checkpoint being restored (bounds the saved pruner step).
        self._checkpoint_steps: int | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise ValueError(f"PruningCallback supports one optimiser, got {len(optimizers)}")
        total = (
            self.total_steps if self.total_steps is not None else trainer.estimated_stepping_batches
        )
        if total is None or total == float("inf"):
            raise ValueError("cannot tell the number of training steps; pass total_steps=")
        self.pruner = pruner(
            self.name, pl_module, optimizers[0], self.sparsity, int(total), **self.options
        )
        if self._pending_state is not None:
            self.pruner.validate_state(self._pending_state, self._checkpoint_steps)
            self.pruner.load_state_dict(self._pending_state)
            self._pending_state = None
        self._checkpoint_steps = None  # that checkpoint's bound is used; a later fit has its own
        self._done = self.pruner.step_count

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The trainer's step count is restored by now: a pruner ahead of it would never step.
        if self.pruner is not None and self.pruner.step_count > trainer.global_step:
            raise ValueError(
                f"the saved state of the {self.name} pruner has taken {self.pruner.step_count} "
                f"steps, but the trainer resumes at step {trainer.global_step}; resume from "
                "the checkpoint that saved this state (trainer.fit(ckpt_path=...))"
            )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        # global_step counts optimiser steps; with accumulation it moves every k batches
        while self.pruner is not None and self._done < trainer.global_step:
            self.pruner.step()
            self._done += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.log_sparsity or self.pruner is None or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            updates = {"mask_updates": float(len(self.pruner.events))}
            log_sparsity(logger, pl_module, trainer.global_step, extra=updates)

    def state_dict(self) -> dict[str, Any]:
        """The pruner's state (:meth:`~interspace_pruning.schedules.Pruner.state_dict`), or
        the one waiting to be applied when fitting starts."""
        if self.pruner is None:
            return dict(self._pending_state or {})
        return self.pruner.state_dict()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        steps = checkpoint.get("global_step")
        self._checkpoint_steps = steps if isinstance(steps, int) and steps >= 0 else None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Check the saved state now (fields, types, ranges, the pruner's name; the step at
        most the checkpoint's optimiser steps) and apply it, or keep it until fitting
        starts builds the pruner."""
        if isinstance(state_dict, dict) and not state_dict:
            return  # saved before fitting started: nothing to restore
        where = f"saved state of the {self.name} pruner (PruningCallback)"
        check_pruner_state(state_dict, where, self.name, self._checkpoint_steps, require_step=True)
        if self.pruner is None:
            self._pending_state = state_dict  # applied when fitting starts
        else:
            self.pruner.validate_state(state_dict, self._checkpoint_steps)
            self.pruner.load_state_dict(state_dict)
