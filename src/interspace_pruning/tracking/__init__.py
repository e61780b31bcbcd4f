"""Experiment trackers: TensorBoard, Weights & Biases, MLflow (``--log``).

Each is an optional extra (``pip install -e ".[tensorboard]"`` in the repository, or
``[wandb]``, ``[mlflow]``) imported only when used, and
local by default: TensorBoard event files in the run folder, W&B offline, MLflow on a
SQLite file. :class:`TrackingSession` feeds them from the training loop;
:func:`log_sparsity` logs a model's pruning state from any loop. :func:`check_trackers`
checks settings and what the trackers would reuse in a run folder before anything is
written (see :mod:`.stores`).
"""

from __future__ import annotations

from .base import (
    MissingTrackerError,
    TrackedRun,
    Tracker,
    TrackerRefused,
    TrackerUnavailable,
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
    check_trackers,
    log_group,
    open_group,
    read_record,
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
    "TrackerRefused",
    "TrackerUnavailable",
    "TrackingCallback",
    "TrackingScope",
    "TrackingSession",
    "check_names",
    "check_trackers",
    "flat_params",
    "log_group",
    "log_sparsity",
    "open_group",
    "read_record",
    "register_tracker",
    "sparsity_values",
    "tracker_class",
    "tracker_names",
]
