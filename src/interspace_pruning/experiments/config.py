"""Hyperparameters of one run: data, model, pruning and training."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import data as data_mod
from .. import models
from ..bases import basis_names
from ..foundations.hparams import hp
from ..interspace.convert import SHARE_MODES
from ..pruning import ALLOCATIONS, method_names
from ..pruning.allocation import check_sparsity
from ..training import TrainConfig

REPRESENTATIONS = ("ip", "sp", "dense")


@dataclass
class DataConfig:
    dataset: str = hp("digits", "dataset", data_mod.NAMES)
    root: str | None = hp(None, "folder with the dataset files (default: per dataset)")
    download: bool = hp(False, "download missing files (needs a network)")
    train_subset: int | None = hp(None, "use a fixed class-balanced subset of the training set")
    test_subset: int | None = hp(None, "use a fixed class-balanced subset of the test set")
    augment: bool = hp(True, "standard augmentation (random crop + flip on CIFAR)")


@dataclass
class ModelConfig:
    model: str = hp("convnet", "architecture", tuple(models.names()))

    def __post_init__(self) -> None:
        if self.model not in models.names():
            raise ValueError(f"unknown model {self.model!r}; choose one of {models.names()}")


@dataclass
class PruneConfig:
    representation: str = hp(
        "ip", "ip (filter-basis coefficients), sp (spatial), dense", REPRESENTATIONS
    )
    method: str = hp("snip", "pruning criterion", tuple(method_names()))
    sparsity: float = hp(0.98, "fraction of prunable entries set to zero, in [0, 1)")
    allocation: str = hp("global", "how sparsity is spread over layers", ALLOCATIONS)
    basis: str = hp("dct", "IP filter-basis initialisation", tuple(basis_names()))
    share: str = hp("layer", "IP: one filter basis per layer or per network", SHARE_MODES)
    trainable_basis: bool = hp(True, "IP: train the filter bases")
    normalize_basis: bool = hp(True, "IP: unit-norm basis filters in the forward pass")
    keep_first_dense: bool = hp(False, "do not prune the first conv layer")
    keep_last_dense: bool = hp(False, "do not prune the classifier")
    min_density: float | None = hp(None, "every layer keeps at least this fraction")
    prune_batches: int = hp(10, "training batches given to data-driven criteria")
    rounds: int | None = hp(None, "prune-score rounds (default: per method, synflow 100)")

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise ValueError(
                f"unknown representation {self.representation!r}; choose one of {REPRESENTATIONS}"
            )
        if self.method not in method_names():
            raise ValueError(
                f"unknown pruning method {self.method!r}; choose one of {method_names()}"
            )
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"unknown allocation {self.allocation!r}; choose one of {ALLOCATIONS}")
        if self.basis not in basis_names():
            raise ValueError(f"unknown basis {self.basis!r}; choose one of {basis_names()}")
        if self.share not in SHARE_MODES:
            raise ValueError(f"unknown share mode {self.share!r}; choose one of {SHARE_MODES}")
        check_sparsity(self.sparsity)
        if self.prune_batches < 1:
            raise ValueError(f"--prune-batches must be >= 1, got {self.prune_batches}")


@dataclass
class RunConfig:
    """Everything that determines one training run (hashable into its run directory)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
