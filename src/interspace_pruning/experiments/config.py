"""Hyperparameters of one run: data, model, pruning and training."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from torch import nn

from .. import data as data_mod
from .. import models
from ..bases import basis_names
from ..foundations.hparams import hp
from ..interspace.convert import SHARE_MODES
from ..pruning import ALLOCATIONS, method_names
from ..pruning.allocation import check_sparsity, parse_pattern
from ..schedules import pruner_names
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
    image_size: int | None = hp(None, "image folders: crop size (default 224; Tiny-ImageNet 64)")
    workers: int = hp(4, "image folders: DataLoader processes decoding images")


def all_methods() -> list[str]:
    """Criteria (pruning at initialisation or of a trained model), pruning schedules and
    ``imp``, read from the registries each time (so methods registered later count)."""
    return pruner_names() + ["imp"]


@dataclass
class ModelConfig:
    model: str = hp(
        "convnet",
        f"architecture: one of {', '.join(models.names())}, or package.module:callable "
        "(e.g. torchvision.models:resnet18, timm:create_model, mypkg.nets:build)",
    )
    model_args: tuple[str, ...] = hp(
        (),
        "argument for a package.module:callable model: key=value (int/float/bool/none/str "
        "parsed; quote to force a string), e.g. --model-arg name=resnet50",
        flag="--model-arg",
        identity="non-default",
    )
    init_from: str | None = hp(
        None, "start from a trained dense checkpoint (a model.pt or its run directory)"
    )

    def __post_init__(self) -> None:
        models.check_name(self.model)
        args = self.model_args
        if args is None:
            args = ()
        elif isinstance(args, str):
            args = (args,)
        elif isinstance(args, dict):  # YAML: model_args: {name: resnet50, pretrained: false}
            args = tuple(f"{k}={_arg_text(v)}" for k, v in args.items())
        self.model_args = tuple(str(a) for a in args)
        models.parse_model_args(self.model_args)  # one-line error now, not at build time

    def build(self, num_classes: int, in_channels: int) -> nn.Module:
        """The model, freshly initialised (seed first for reproducible weights)."""
        return models.from_spec(self.model, num_classes, in_channels, self.model_args)


def _arg_text(value: object) -> str:
    """A YAML value as ``--model-arg`` text that parses back to the same value."""
    if isinstance(value, str) and models.parse_value(value) != value:
        return repr(value)  # a string that looks like a number or bool stays a string
    return "none" if value is None else str(value)


@dataclass
class PruneConfig:
    representation: str = hp(
        "ip", "ip (filter-basis coefficients), sp (spatial), dense", REPRESENTATIONS
    )
    method: str = hp(
        "snip",
        "a criterion (prune at init, or the --init-from model, once) or a pruning schedule: "
        "imp, gmp, rigl, set",
        all_methods,
    )
    sparsity: float = hp(0.98, "fraction of prunable entries set to zero, in [0, 1)")
    allocation: str | None = hp(
        None,
        "how sparsity is spread over layers (default: erk for rigl/set, else global)",
        ALLOCATIONS,
    )
    criterion: str = hp("magnitude", "score used by imp and gmp", method_names)
    basis: str = hp("dct", "IP filter-basis initialisation", tuple(basis_names()))
    share: str = hp("layer", "IP: one filter basis per layer or per network", SHARE_MODES)
    trainable_basis: bool = hp(True, "IP: train the filter bases")
    normalize_basis: bool = hp(True, "IP: unit-norm basis filters in the forward pass")
    keep_first_dense: bool = hp(False, "do not prune the first conv layer")
    keep_last_dense: bool = hp(False, "do not prune the classifier")
    min_density: float | None = hp(None, "every layer keeps at least this fraction")
    prune_batches: int = hp(10, "training batches given to data-driven criteria")
    rounds: int | None = hp(None, "prune-score rounds (default: per method, synflow 100)")
    pattern: str | None = hp(
        None,
        "N:M sparsity, e.g. 2:4: at most N of every M consecutive input entries per layer",
        identity="non-default",
    )

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise ValueError(
                f"unknown representation {self.representation!r}; choose one of {REPRESENTATIONS}"
            )
        if self.method not in all_methods():
            raise ValueError(
                f"unknown pruning method {self.method!r}; choose one of {all_methods()}"
            )
        if self.criterion not in method_names():
            raise ValueError(
                f"unknown criterion {self.criterion!r}; choose one of {method_names()}"
            )
        if self.allocation is not None and self.allocation not in ALLOCATIONS:
            raise ValueError(f"unknown allocation {self.allocation!r}; choose one of {ALLOCATIONS}")
        if self.basis not in basis_names():
            raise ValueError(f"unknown basis {self.basis!r}; choose one of {basis_names()}")
        if self.share not in SHARE_MODES:
            raise ValueError(f"unknown share mode {self.share!r}; choose one of {SHARE_MODES}")
        check_sparsity(self.sparsity)
        parse_pattern(self.pattern)
        if self.prune_batches < 1:
            raise ValueError(f"--prune-batches must be >= 1, got {self.prune_batches}")

    def resolved_allocation(self) -> str:
        if self.allocation is not None:
            return self.allocation
        return "erk" if self.method in ("rigl", "set") else "global"

    def allocation_kwargs(self) -> dict:
        return {
            "allocation": self.resolved_allocation(),
            "keep_first_dense": self.keep_first_dense,
            "keep_last_dense": self.keep_last_dense,
            "min_density": self.min_density,
            "pattern": self.pattern,
        }


@dataclass
class ImpConfig:
    imp_rounds: int | None = hp(
        None, "IMP: rounds to reach --sparsity on geometric levels (default: as --imp-rate needs)"
    )
    imp_rate: float = hp(0.2, "IMP: fraction of the remaining entries pruned per round")
    rewind_step: int = hp(
        0, "IMP: rewind unpruned entries and filter bases to this training step (0 = init)"
    )


@dataclass
class GmpConfig:
    gmp_initial_sparsity: float = hp(0.0, "GMP: sparsity at the first pruning step")
    gmp_start: float = hp(0.1, "GMP: start pruning at this fraction of training")
    gmp_end: float = hp(0.75, "GMP: reach --sparsity at this fraction of training")
    gmp_interval: int = hp(50, "GMP: prune every this many steps")

    def __post_init__(self) -> None:
        if not 0 <= self.gmp_start <= self.gmp_end <= 1:
            raise ValueError(
                "GMP needs 0 <= --gmp-start <= --gmp-end <= 1, "
                f"got {self.gmp_start}, {self.gmp_end}"
            )


@dataclass
class DstConfig:
    dst_interval: int = hp(100, "SET/RigL: steps between mask updates")
    dst_drop_fraction: float = hp(0.3, "SET/RigL: initial drop fraction (cosine-annealed)")
    dst_stop: float = hp(0.75, "SET/RigL: stop updating masks at this fraction of training")


@dataclass
class RunConfig:
    """Everything that determines one training run (hashable into its run directory)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    imp: ImpConfig = field(default_factory=ImpConfig)
    gmp: GmpConfig = field(default_factory=GmpConfig)
    dst: DstConfig = field(default_factory=DstConfig)


def config_from_dict(d: dict) -> RunConfig:
    """Inverse of ``dataclasses.asdict`` for :class:`RunConfig` (missing sections: defaults)."""
    fresh = RunConfig()
    parts = {}
    for f in dataclasses.fields(RunConfig):
        cls = type(getattr(fresh, f.name))
        known = {g.name for g in dataclasses.fields(cls)}
        parts[f.name] = cls(**{k: v for k, v in d.get(f.name, {}).items() if k in known})
    return RunConfig(**parts)
