"""Experiment trackers: TensorBoard, Weights & Biases, MLflow (``--log``).

Each is an optional extra (``pip install 'interspace-pruning[tensorboard]'``, ``[wandb]``,
``[mlflow]``) imported only when used, and local by default: TensorBoard event files in
the run folder, W&B offline, MLflow on a SQLite file. :class:`TrackingSession` feeds them
from the training loop; :func:`log_sparsity` logs a model's pruning state from any loop.
"""

from __future__ import annotations

from .base import (
    MissingTrackerError,
    TrackedRun,
    Tracker,
    check_names,
    flat_params,
    register_tracker,
    tracker_class,
    tracker_names,
)
from .native import log_sparsity, sparsity_values
from .session import (
    GROUP_DIR,
    RECORD,
    STORES,
    TrackingCallback,
    TrackingScope,
    TrackingSession,
    log_group,
    open_group,
)


def _tensorboard() -> type[Tracker]:
    from .tensorboard_tracker import TensorBoardTracker

    return TensorBoardTracker


def _wandb() -> type[Tracker]:
    from .wandb_tracker import WandbTracker

    return WandbTracker


def _mlflow() -> type[Tracker]:
    from .mlflow_tracker import MlflowTracker

    return MlflowTracker


register_tracker("tensorboard", _tensorboard)
register_tracker("wandb", _wandb)
register_tracker("mlflow", _mlflow)

__all__ = [
    "GROUP_DIR",
    "RECORD",
    "STORES",
    "MissingTrackerError",
    "TrackedRun",
    "Tracker",
    "TrackingCallback",
    "TrackingScope",
    "TrackingSession",
    "check_names",
    "flat_params",
    "log_group",
    "log_sparsity",
    "open_group",
    "register_tracker",
    "sparsity_values",
    "tracker_class",
    "tracker_names",
]
