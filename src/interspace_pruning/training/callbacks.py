"""The training loop's extension points: :class:`Callback` and :class:`TrainState` live in
:mod:`interspace_pruning.callbacks` (below ``schedules`` and ``training`` alike); these are
the same objects."""

from ..callbacks import Callback, TrainState

__all__ = ["Callback", "TrainState"]
