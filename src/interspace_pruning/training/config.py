"""Training hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass

from ..foundations.hparams import hp
from ..tracking import check_names
from .device import DEVICES_HELP, LAYOUTS, PRECISIONS

OPTIMIZERS = ("sgd", "adamw")
#: Learning-rate schedules (``--schedule``). Not to be confused with pruning schedules
#: (:mod:`interspace_pruning.schedules`), which decide when masks change.
LR_SCHEDULES = ("cosine", "step", "onecycle", "constant")
SCHEDULES = LR_SCHEDULES  # the older name


@dataclass
class TrainConfig:
    epochs: int = hp(30, "training epochs")
    batch_size: int = hp(64, "training batch size")
    optimizer: str = hp("sgd", "optimiser", OPTIMIZERS)
    lr: float = hp(0.05, "peak learning rate")
    momentum: float = hp(0.9, "SGD momentum")
    nesterov: bool = hp(False, "Nesterov momentum (SGD)")
    weight_decay: float = hp(5e-4, "weight decay of weights, coefficients, BN and biases")
    basis_weight_decay: float = hp(0.0, "weight decay of the filter bases (off by default)")
    basis_lr_mult: float = hp(1.0, "learning-rate multiplier of the filter bases")
    schedule: str = hp("cosine", "learning-rate schedule", LR_SCHEDULES)
    step_gamma: float = hp(0.1, "step schedule: decay factor")
    step_milestones: str = hp("0.5,0.75", "step schedule: epochs (as fractions) to decay at")
    warmup_epochs: float = hp(
        0.0,
        "linear learning-rate warm-up over this many epochs, then the schedule (0 = none)",
        identity="non-default",
    )
    label_smoothing: float = hp(0.0, "label smoothing of the cross-entropy loss")
    seed: int = hp(0, "seed for initial weights, pruning data and data order")
    eval_every: int = hp(
        1,
        "evaluate on the test set every N epochs and after the last (evaluation changes "
        "nothing that is trained: runs keep their identity)",
        identity=False,
    )
    # Execution options. The device, layout and compilation do not change what is computed
    # (beyond float rounding), so a run keeps its identity (and directory) across them and
    # may resume on another device; precision and sync-BN do change results.
    device: str = hp("auto", DEVICES_HELP, identity=False)
    precision: str = hp(
        "fp32",
        "autocast precision: fp32, bf16, fp16 (with a gradient scaler), or auto (bf16 on GPUs "
        "that support it and CPUs with native bf16, else fp32)",
        PRECISIONS,
        identity="non-default",
    )
    channels_last: str = hp(
        "auto",
        "channels_last (NHWC) layout: on, off, or auto (on for CUDA and CPUs)",
        LAYOUTS,
        identity=False,
    )
    compile: bool = hp(False, "torch.compile the model for training", identity=False)
    log: tuple[str, ...] = hp(
        (),
        "also log to an experiment tracker: tensorboard, wandb or mlflow (offline/local "
        "by default; each an extra: pip install -e '.[NAME]' in the repository)",
        identity=False,
    )
    log_every: int = hp(
        0,
        "with --log: also log loss, learning rate and mask updates every N steps (0: per "
        "epoch only; each log waits for the device)",
        identity=False,
    )
    sync_bn: bool = hp(
        False,
        "under torchrun on GPUs: synchronise BatchNorm statistics across processes",
        identity="non-default",
    )

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.schedule not in LR_SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.schedule!r} (the learning-rate schedule); choose one "
                f"of {LR_SCHEDULES}"
            )
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.weight_decay < 0 or self.basis_weight_decay < 0 or self.basis_lr_mult < 0:
            raise ValueError("weight decays and --basis-lr-mult must be >= 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")
        if self.channels_last not in LAYOUTS:
            raise ValueError(
                f"unknown --channels-last {self.channels_last!r}; choose one of {LAYOUTS}"
            )
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(
                f"--warmup-epochs must be in [0, --epochs={self.epochs}), got {self.warmup_epochs}"
            )
        self.milestones()  # validates the string
        logs = (self.log,) if isinstance(self.log, str) else tuple(self.log or ())
        self.log = tuple(dict.fromkeys(str(n).strip().lower() for n in logs))
        check_names(self.log)  # the registry of interspace_pruning.tracking
        if self.eval_every < 1:
            raise ValueError(f"--eval-every must be >= 1, got {self.eval_every}")
        if self.log_every < 0:
            raise ValueError(f"--log-every must be >= 0, got {self.log_every}")

    def evaluates_after(self, epoch: int) -> bool:
        """Whether the test set is evaluated after ``epoch`` (counted from 1)."""
        return epoch % self.eval_every == 0 or epoch == self.epochs

    def evaluations(self) -> int:
        """How many test-set evaluations a run of this configuration makes."""
        return sum(self.evaluates_after(e) for e in range(1, self.epochs + 1))

    def milestones(self) -> list[float]:
        try:
            values = [float(v) for v in self.step_milestones.split(",") if v.strip()]
        except ValueError:
            raise ValueError(
                f"--step-milestones must be comma-separated fractions, got {self.step_milestones!r}"
            ) from None
        if any(not 0 < v < 1 for v in values):
            raise ValueError(f"--step-milestones must lie in (0, 1), got {self.step_milestones!r}")
        return values
