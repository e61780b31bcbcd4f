"""Hyperparameters of one run: data, model, pruning, training and the pruning schedule's own
options.

The schedule options are not defined here: each registered schedule's options dataclass
(:mod:`..schedules.registry`) is its section (``gmp``, ``dst``, ``imp``, a user's), with the
same defaults in the library, on the command line and in sweep files. A run's
``config.json`` keeps the layout of the runs named before that (flat keys such as
``representation``, ``basis``, ``gmp_interval``, ``dst_stop``), and :meth:`RunConfig.__identity__`
hashes them as before, so committed run folders keep their names.
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import data as data_mod
from .. import models
from ..foundations.hparams import (
    add_arguments,
    build,
    coerce,
    from_dict,
    from_namespace,
    hp,
    identity_dict,
)
from ..interspace import Representation
from ..pruning import ALLOCATIONS, method_names
from ..pruning.allocation import check_sparsity, parse_pattern
from ..schedules import pruner_names, schedule_sections, section_of
from ..schedules.registry import default_allocation, section_schedules
from ..training import TrainConfig


@dataclass
class DataConfig:
    dataset: str = hp("digits", "dataset", data_mod.NAMES)
    root: str | None = hp(None, "folder with the dataset files (default: per dataset)")
    download: bool = hp(False, "download missing files (needs a network)")
    train_subset: int | None = hp(None, "use a fixed class-balanced subset of the training set")
    test_subset: int | None = hp(None, "use a fixed class-balanced subset of the test set")
    augment: bool = hp(True, "standard augmentation (random crop + flip on CIFAR)")
    image_size: int | None = hp(
        None, "image folders: crop size (default 224; Tiny-ImageNet 64; Imagewoof 128)"
    )
    workers: int = hp(4, "image folders: DataLoader processes cropping the images")


def all_methods() -> list[str]:
    """Criteria (pruning at initialisation or of a trained model) and pruning schedules
    (``imp`` among them), read from the registries each time (so methods registered later
    count)."""
    return pruner_names()


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

    def count_parameters(self, num_classes: int, in_channels: int) -> int:
        """How many parameters :meth:`build` would give, counted on the meta device: nothing
        is allocated and the global RNG is left as it was (lazy layers count as 0). Raises
        what the builder raises."""
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")  # e.g. "Initializing zero-element tensors"
            model = self.build(num_classes, in_channels)
        return sum(
            p.numel()
            for p in model.parameters()
            if not isinstance(p, nn.parameter.UninitializedParameter)
        )


def _arg_text(value: object) -> str:
    """A YAML value as ``--model-arg`` text that parses back to the same value."""
    if isinstance(value, str) and models.parse_value(value) != value:
        return repr(value)  # a string that looks like a number or bool stays a string
    return "none" if value is None else str(value)


@dataclass
class PruneConfig:
    #: The representation pruned, a value (its fields are the flags and config keys
    #: ``representation``, ``basis``, ``share``, ``trainable_basis``, ``normalize_basis``);
    #: a name (``"ip"``, ``"sp"``, ``"dense"``) gives its defaults.
    representation: Representation = hp(Representation(), "the representation", flatten=True)
    method: str = hp(
        "snip",
        "a criterion (prune at init, or the --init-from model, once) or a pruning schedule: "
        "imp, gmp, rigl, set",
        all_methods,
    )
    sparsity: float = hp(0.98, "fraction of prunable entries set to zero, in [0, 1)")
    allocation: str | None = hp(
        None,
        "how sparsity is spread over layers (default: the method's own: erk for rigl/set, "
        "else global)",
        ALLOCATIONS,
    )
    criterion: str = hp("magnitude", "score used by imp and gmp", method_names)
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
    param_matched: bool = hp(
        False,
        "SP only, the parameter-matched control: prune to the sparsity at which SP keeps as "
        "many weights as IP at --sparsity trains (its nonzero coefficients plus its filter-"
        "basis entries, with this config's basis options)",
        identity="non-default",
    )

    def __post_init__(self) -> None:
        self.representation = Representation.parse(self.representation)
        if self.param_matched and self.representation.kind != "sp":
            raise ValueError(
                "--param-matched is the SP control of an IP run: use it with "
                f"--representation sp, not {self.representation.kind}"
            )
        if self.param_matched and self.method == "imp":
            raise ValueError("--param-matched supports one-shot and gradual methods, not imp")
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
        check_sparsity(self.sparsity)
        parse_pattern(self.pattern)
        if self.prune_batches < 1:
            raise ValueError(f"--prune-batches must be >= 1, got {self.prune_batches}")

    def resolved_allocation(self) -> str:
        """``allocation``, else the default of the method's options (erk for rigl/set)."""
        if self.allocation is not None:
            return self.allocation
        return default_allocation(self.method)

    def allocation_kwargs(self) -> dict:
        return {
            "allocation": self.resolved_allocation(),
            "keep_first_dense": self.keep_first_dense,
            "keep_last_dense": self.keep_last_dense,
            "min_density": self.min_density,
            "pattern": self.pattern,
        }


#: The sections every run has; each registered schedule adds its own (``gmp``, ``dst``, ...).
FIXED_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "prune": PruneConfig,
    "train": TrainConfig,
}

#: How the runs named before issue 26 hashed the sections of the schedules their method did
#: not use (the defaults of that time, reset by ``grid.canonical``). A constant now: an unused
#: section does not change a run, and committed run folders keep their names. Never edit.
V1_UNUSED_SECTIONS: dict[str, dict] = {
    "imp": {"imp_rate": 0.2, "imp_rounds": None, "rewind_step": 0},
    "gmp": {"gmp_end": 0.75, "gmp_initial_sparsity": 0.0, "gmp_interval": 50, "gmp_start": 0.1},
    "dst": {"dst_drop_fraction": 0.3, "dst_interval": 100, "dst_stop": 0.75},
}


def section_names() -> list[str]:
    """The sections of a run configuration: the fixed ones, then one per schedule section."""
    return [*FIXED_SECTIONS, *schedule_sections()]


def _section_value(section: str, cls: type, value: Any) -> Any:
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # an options object (GmpOptions, ...) or a section made before: its own options
        own = {f.name for f in dataclasses.fields(cls)}
        fields = dataclasses.fields(value)
        value = {f.name: getattr(value, f.name) for f in fields if f.name in own}
    if isinstance(value, Mapping):
        return build(cls, value)
    raise ValueError(
        f"options[{section!r}] must be a mapping of option: value, got {type(value).__name__}"
    )


@dataclass
class RunConfig:
    """Everything that determines one training run (hashable into its run directory).

    ``options`` maps each schedule section (``gmp``, ``dst`` for rigl/set, ``imp``, those of
    schedules registered later) to its options; give a mapping (``{"dst": {"interval":
    20}}``) or leave sections out for their defaults. Only the section of ``prune.method``
    is used; read it as ``cfg.options["gmp"]`` or ``cfg.gmp``.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    options: dict[str, Any] = field(default_factory=dict, metadata={"flatten": True})

    def __post_init__(self) -> None:
        given = dict(self.options or {})
        sections = schedule_sections()
        unknown = sorted(set(given) - set(sections))
        if unknown:
            raise ValueError(
                f"no schedule has the option section {unknown[0]!r}; sections are "
                f"{sorted(sections)}"
            )
        self.options = {s: _section_value(s, cls, given.get(s)) for s, cls in sections.items()}

    def __getattr__(self, name: str) -> Any:  # cfg.gmp, cfg.dst, cfg.imp, ...
        options = self.__dict__.get("options")
        if options is None or name.startswith("__") or name not in options:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return options[name]

    def used_section(self) -> str | None:
        """The section of options this run's method uses (``None``: none, or dense)."""
        if self.prune.representation.is_dense:
            return None
        return section_of(self.prune.method)

    def with_options(self, section: str, **values: Any) -> RunConfig:
        """A copy with options of ``section`` changed (by name or config key)."""
        return set_values(self, section, values)

    def __identity__(self) -> dict:
        """What names the run: every fixed section, the options of the method's own section,
        and, for the sections of the first schedules (gmp, dst, imp) that the method does
        not use, the constant :data:`V1_UNUSED_SECTIONS` (as before)."""
        out = {name: identity_dict(getattr(self, name)) for name in FIXED_SECTIONS}
        used = self.used_section()
        for name, values in self.options.items():
            if name == used:
                out[name] = identity_dict(values)
            elif name in V1_UNUSED_SECTIONS:
                out[name] = V1_UNUSED_SECTIONS[name]
        return out


def section_class(cfg: RunConfig, section: str) -> type:
    if section in FIXED_SECTIONS:
        return FIXED_SECTIONS[section]
    if section in cfg.options:
        return type(cfg.options[section])
    raise ValueError(f"unknown section {section!r}; sections are {section_names()}")


def set_values(
    cfg: RunConfig, section: str, values: Mapping[str, Any], where: str | None = None
) -> RunConfig:
    """A copy of ``cfg`` with hyperparameters of ``section`` changed: keys or attribute
    names, each type-checked (``where``: how the keys are named in errors)."""
    cls = section_class(cfg, section)
    prefix = section if where is None else where
    checked = {k: coerce(cls, k, v, where=f"{prefix}.{k}") for k, v in values.items()}
    if section in FIXED_SECTIONS:
        return dataclasses.replace(cfg, **{section: build(cls, checked, getattr(cfg, section))})
    new = build(cls, checked, cfg.options[section])
    return dataclasses.replace(cfg, options={**cfg.options, section: new})


def config_from_dict(d: Mapping, check: bool = False) -> RunConfig:
    """Inverse of :func:`~..foundations.hparams.to_dict` for :class:`RunConfig`, also for the
    files of older versions (missing sections and fields: defaults; unknown ones: ignored;
    ``check``: every value type-checked)."""
    parts = {
        name: from_dict(cls, d.get(name) or {}, name, check) for name, cls in FIXED_SECTIONS.items()
    }
    options = {
        name: from_dict(cls, d[name] or {}, name, check)
        for name, cls in schedule_sections().items()
        if name in d
    }
    return RunConfig(**parts, options=options)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of a :class:`RunConfig`: data, model, pruning (with the representation),
    training, and each schedule section's (``--gmp-interval``, ``--dst-interval``, ...)."""
    titles = {"data": "data", "model": "model", "prune": "pruning", "train": "training"}
    for name, cls in FIXED_SECTIONS.items():
        add_arguments(parser, cls, titles[name])
    for section, cls in schedule_sections().items():
        methods = " / ".join(section_schedules(section))
        add_arguments(parser, cls, f"{section} options (--method {methods})")


def config_from_namespace(ns: argparse.Namespace) -> RunConfig:
    """The :class:`RunConfig` of parsed :func:`add_run_arguments` flags."""
    return RunConfig(
        **{name: from_namespace(cls, ns) for name, cls in FIXED_SECTIONS.items()},
        options={s: from_namespace(cls, ns) for s, cls in schedule_sections().items()},
    )


#: Prune fields that follow the representation (IP's basis options) or only resize it: the
#: fields in which the two runs of a pair (SP and IP, or SP at IP's parameter count) differ.
REPRESENTATION_FIELDS = (
    "representation",
    "basis",
    "share",
    "trainable_basis",
    "normalize_basis",
    "param_matched",
)


def comparable_fields(cfg: RunConfig, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """``cfg``'s identity as ``{"section.field": value}``, without the fields a pair differs
    in (:data:`REPRESENTATION_FIELDS`) and those named in ``without`` (e.g. ``train.seed``).
    Training without pruning (dense, or IP at sparsity 0) ignores the pruning method and the
    schedules' options: its prune section is ``prune.dense`` and it has no option sections."""
    d = identity_dict(cfg)
    if cfg.prune.representation.is_dense or cfg.prune.sparsity == 0:
        d = {name: d[name] for name in FIXED_SECTIONS if name in d}
        d["prune"] = {"dense": True}
    flat: dict[str, Any] = {}
    for section, values in d.items():
        for name, value in values.items() if isinstance(values, dict) else [("", values)]:
            key = f"{section}.{name}" if name else section
            if section == "prune" and name in REPRESENTATION_FIELDS or key in without:
                continue
            flat[key] = value
    return flat
