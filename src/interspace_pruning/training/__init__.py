"""Training: configuration, optimiser and learning-rate schedules, the loop and its callbacks."""

from ..callbacks import Callback, TrainState
from ..foundations import distributed
from .config import LR_SCHEDULES, OPTIMIZERS, SCHEDULES, TrainConfig
from .loop import TrainingError, TrainingStopped, evaluate, train
from .optim import (
    build_optimizer,
    build_scheduler,
    lr_factor,
    param_groups,
    reset_state_entries,
)

__all__ = [
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "SCHEDULES",
    "Callback",
    "TrainConfig",
    "TrainState",
    "TrainingError",
    "TrainingStopped",
    "build_optimizer",
    "distributed",
    "build_scheduler",
    "evaluate",
    "lr_factor",
    "param_groups",
    "reset_state_entries",
    "train",
]
