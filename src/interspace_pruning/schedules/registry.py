"""The registry of pruning schedules: ``ip.pruner(name, ...)`` builds any of them.

A schedule is registered with a dataclass of its typed hyperparameters and a builder::

    from dataclasses import dataclass
    from interspace_pruning.schedules import AllocationOptions, register_schedule

    @dataclass
    class MyOptions(AllocationOptions):
        every: int = 10

    @register_schedule("mine", MyOptions)
    def build_mine(options: MyOptions, sparsity: float, total_steps: int) -> Pruner:
        return MyPruner(...)

Every criterion of :func:`~interspace_pruning.pruning.register_method` is a schedule too:
``ip.pruner("snip", ...)`` prunes once (one-shot) and then keeps the masks.

The options dataclasses are the only definition of a schedule's hyperparameters: the
command line (``interspace train --gmp-interval ...``), sweep files (``gmp.interval``) and
run configurations (:class:`~interspace_pruning.experiments.RunConfig`) are generated from
them (:func:`schedule_sections`), each with the same default. A schedule's *own* options
(all but the allocation options of :class:`AllocationOptions` and ``criterion``/``seed``,
which a run takes from ``--allocation``, ``--criterion``, ``--seed``) form its section,
named after the schedule (``register_schedule(..., section=)`` to choose; ``rigl`` and
``set`` share ``dst``). Use :func:`~interspace_pruning.foundations.hparams.hp` for a field to
give its flag help text and choices.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..foundations.hparams import base_type, coerce, hp
from ..pruning import ALLOCATIONS, method_names
from ..pruning.allocation import allocation_options, check_sparsity, parse_pattern
from ..pruning.registry import Batch, LossFn
from .base import Pruner
from .dst import DynamicSparseTraining
from .gmp import GradualMagnitudePruning
from .oneshot import OneShot


def _flag(help: str, choices: Any = None, **options: Any) -> Any:
    """The metadata :func:`hp` gives a field (help, choices, config key) without its
    default: the built-in options state theirs as a plain ``field(default=...)``, which is
    what the API reference shows (``hp(...)`` itself works the same in options of yours)."""
    return hp(None, help, choices, **options).metadata


@dataclass
class AllocationOptions:
    """How sparsity is spread over layers (every schedule has these)."""

    allocation: str = "global"
    keep_first_dense: bool = False
    keep_last_dense: bool = False
    min_density: float | None = None
    #: N:M pattern such as ``"2:4"`` (see :mod:`..pruning.allocation`); ``None``: unstructured.
    pattern: str | None = None

    def __post_init__(self) -> None:
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"unknown allocation {self.allocation!r}; choose one of {ALLOCATIONS}")
        parse_pattern(self.pattern)

    def allocation_kwargs(self) -> dict:
        return allocation_options(self)


def _check_criterion(criterion: str) -> None:
    if criterion not in method_names():
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {method_names()}")


def _check_interval(interval: int | None) -> None:
    if interval is not None and interval < 1:
        raise ValueError(f"the update interval must be >= 1 step (or unset), got {interval}")


@dataclass
class GmpOptions(AllocationOptions):
    """Gradual magnitude pruning: from ``initial_sparsity`` at ``start`` to the target at
    ``end`` (fractions of ``total_steps``), every ``interval`` steps (default: about ten
    pruning steps), ranking by ``criterion``."""

    start: float = field(
        default=0.1, metadata=_flag("GMP: start pruning at this fraction of training")
    )
    end: float = field(
        default=0.75, metadata=_flag("GMP: reach --sparsity at this fraction of training")
    )
    interval: int | None = field(
        default=None,
        metadata=_flag("GMP: prune every this many steps (default: about ten pruning steps)"),
    )
    initial_sparsity: float = field(
        default=0.0, metadata=_flag("GMP: sparsity at the first pruning step")
    )
    criterion: str = "magnitude"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.start <= self.end <= 1:
            raise ValueError(f"GMP needs 0 <= start <= end <= 1, got {self.start}, {self.end}")
        if not 0 <= self.initial_sparsity < 1:
            raise ValueError(f"GMP initial sparsity must be in [0, 1), got {self.initial_sparsity}")
        _check_interval(self.interval)
        _check_criterion(self.criterion)


@dataclass
class DstOptions(AllocationOptions):
    """SET/RigL: start from a random mask (ERK by default); every ``interval`` steps
    (default: about ten updates) until ``stop_fraction`` of training, drop the
    ``drop_fraction`` (cosine-annealed) smallest active entries and regrow as many."""

    allocation: str = "erk"
    interval: int | None = field(
        default=None,
        metadata=_flag("SET/RigL: steps between mask updates (default: about ten updates)"),
    )
    drop_fraction: float = field(
        default=0.3, metadata=_flag("SET/RigL: initial drop fraction (cosine-annealed)")
    )
    stop_fraction: float = field(
        default=0.75,
        metadata=_flag(
            "SET/RigL: stop updating masks at this fraction of training", key="dst_stop"
        ),
    )
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_interval(self.interval)
        if not 0 < self.drop_fraction < 1:
            raise ValueError(f"the drop fraction must be in (0, 1), got {self.drop_fraction}")
        if not 0 < self.stop_fraction <= 1:
            raise ValueError(f"the stop fraction must be in (0, 1], got {self.stop_fraction}")


@dataclass
class ImpOptions(AllocationOptions):
    """Lottery tickets (:func:`~interspace_pruning.lottery_ticket`): prune to the target in
    ``rounds`` geometric levels (default: as many as removing ``rate`` of the remaining
    entries per round needs) by ``criterion``, rewinding to ``rewind_step`` each round.
    IMP retrains the model in rounds, so it is not a single pruner: ``ip.lottery_ticket``
    or ``interspace train --method imp`` run it."""

    rounds: int | None = field(
        default=None,
        metadata=_flag(
            "IMP: rounds to reach --sparsity on geometric levels (default: as --imp-rate needs)"
        ),
    )
    rate: float = field(
        default=0.2, metadata=_flag("IMP: fraction of the remaining entries pruned per round")
    )
    rewind_step: int = field(
        default=0,
        metadata=_flag(
            "IMP: rewind unpruned entries and filter bases to this training step (0 = init)",
            key="rewind_step",
        ),
    )
    criterion: str = "magnitude"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rounds is not None and self.rounds < 1:
            raise ValueError(f"IMP rounds must be >= 1, got {self.rounds}")
        if not 0 < self.rate < 1:
            raise ValueError(f"IMP rate must be in (0, 1), got {self.rate}")
        if self.rewind_step < 0:
            raise ValueError(f"IMP rewind step must be >= 0, got {self.rewind_step}")
        _check_criterion(self.criterion)


@dataclass
class OneShotOptions(AllocationOptions):
    """A criterion, once: ``data`` batches ``(inputs, targets)`` for data-driven criteria,
    ``loss_fn`` (default cross-entropy), ``rounds`` (prune-score rounds), ``input_shape``
    (per-sample, for data-free criteria that need one)."""

    data: Iterable[Batch] | None = None
    loss_fn: LossFn | None = None
    rounds: int | None = None
    input_shape: Sequence[int] | None = None


Builder = Callable[[Any, float, int], Pruner]

#: Options a run gives every schedule from its pruning and training settings instead of
#: from the schedule's own section: the allocation (``--allocation``, ``--keep-first-dense``,
#: ...), ``--criterion`` and ``--seed``.
RUN_SUPPLIED = frozenset({f.name for f in dataclasses.fields(AllocationOptions)}) | {
    "criterion",
    "seed",
}
#: Names a section may not take (the other sections of a run configuration).
RESERVED_SECTIONS = frozenset({"data", "model", "prune", "train", "options"})
_SIMPLE = (int, float, str, bool)


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    options: type
    build: Builder
    #: Where its own options live in a run configuration (``None``: it has none).
    section: str | None = None


_SCHEDULES: dict[str, ScheduleSpec] = {}
_SECTION_CLASSES: dict[str, type] = {}  # generated, by section


def own_fields(options: type) -> list[dataclasses.Field]:
    """The fields of an options dataclass that form its section: not supplied by the run,
    and of a type a flag or a sweep file can hold (int, float, str, bool, or ``X | None``)."""
    hints = typing.get_type_hints(options)
    return [
        f
        for f in dataclasses.fields(options)
        if f.name not in RUN_SUPPLIED and base_type(hints[f.name])[0] in _SIMPLE
    ]


def register_schedule(
    name: str, options: type = AllocationOptions, section: str | None = None
) -> Callable[[Builder], Builder]:
    """Decorator registering ``build(options, sparsity, total_steps) -> Pruner`` as ``name``.

    ``options`` is a dataclass of the schedule's typed hyperparameters (subclass
    :class:`AllocationOptions`); ``ip.pruner(name, ..., **options)`` fills it, and its own
    fields become the flags ``--<section>-<field>`` of ``interspace train``/``compare`` and
    the keys ``<section>.<field>`` of sweep files, with the dataclass's defaults.
    ``section`` defaults to the section of a schedule registered before with the same
    options class, else to ``name`` (``-`` read as ``_``).
    """
    if not dataclasses.is_dataclass(options):
        raise ValueError(f"options of schedule {name!r} must be a dataclass")
    if name in method_names():
        raise ValueError(f"{name!r} is already a pruning criterion; choose another name")
    missing = [
        f.name
        for f in dataclasses.fields(options)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"option {missing[0]!r} of schedule {name!r} needs a default")
    if own_fields(options):
        shared = [s.section for s in _SCHEDULES.values() if s.options is options and s.section]
        section = section or (shared[0] if shared else name.replace("-", "_"))
        if not section.isidentifier() or section in RESERVED_SECTIONS:
            raise ValueError(
                f"schedule {name!r}: section name {section!r} must be an identifier other "
                f"than {sorted(RESERVED_SECTIONS)}"
            )
        for other in _SCHEDULES.values():
            if other.section == section and other.name != name and other.options is not options:
                raise ValueError(
                    f"section {section!r} holds the options of schedule {other.name!r} "
                    f"({other.options.__name__}); give {name!r} another section"
                )
    else:
        section = None

    def wrap(build: Builder) -> Builder:
        _SCHEDULES[name] = ScheduleSpec(name, options, build, section)
        if section is not None:
            _SECTION_CLASSES.pop(section, None)  # regenerated from the options now registered
        return build

    return wrap


def schedule_names() -> list[str]:
    """Registered schedules (criteria excluded)."""
    return sorted(_SCHEDULES)


def pruner_names() -> list[str]:
    """Everything :func:`pruner` builds: schedules and one-shot criteria."""
    return sorted(set(_SCHEDULES) | set(method_names()))


def _spec(name: str) -> ScheduleSpec:
    if name in _SCHEDULES:
        return _SCHEDULES[name]
    if name in method_names():
        return ScheduleSpec(name, OneShotOptions, _build_oneshot(name))
    raise ValueError(f"unknown pruner {name!r}; choose one of {pruner_names()}")


def options_class(name: str) -> type:
    """The options dataclass of pruner ``name``."""
    return _spec(name).options


def section_of(name: str) -> str | None:
    """The section holding the own options of pruner ``name`` (``None``: it has none)."""
    return _spec(name).section


def default_allocation(name: str) -> str:
    """The allocation pruner ``name`` uses unless told otherwise (its options' default)."""
    found = {f.name: f for f in dataclasses.fields(options_class(name))}.get("allocation")
    return found.default if found is not None and isinstance(found.default, str) else "global"


def schedule_sections() -> dict[str, type]:
    """Every section, in registration order, as a generated dataclass of the schedule's own
    options (same names, types, defaults and help), e.g. ``{"gmp": ..., "dst": ..., "imp":
    ...}``. In config files each option is ``<section>_<name>`` unless its ``hp(key=)`` says
    otherwise (``dst_stop``, ``rewind_step``: the names runs were written with)."""
    out: dict[str, type] = {}
    for spec in _SCHEDULES.values():
        if spec.section is not None and spec.section not in out:
            out[spec.section] = section_class(spec.section)
    return out


def section_schedules(section: str) -> list[str]:
    """The schedules whose own options live in ``section``."""
    return [s.name for s in _SCHEDULES.values() if s.section == section]


def section_class(section: str) -> type:
    """The generated dataclass of ``section`` (see :func:`schedule_sections`)."""
    if section not in _SECTION_CLASSES:
        specs = [s for s in _SCHEDULES.values() if s.section == section]
        if not specs:
            raise ValueError(f"no schedule has the section {section!r}")
        _SECTION_CLASSES[section] = _make_section(section, specs[-1].options)
    return _SECTION_CLASSES[section]


def _make_section(section: str, options: type) -> type:
    hints = typing.get_type_hints(options)
    specs = []
    for f in own_fields(options):
        m = f.metadata
        key = m.get("key") or f"{section}_{f.name}"
        primary = "--" + f"{section}-{f.name}".replace("_", "-")
        alias = "--" + key.replace("_", "-")
        meta = {
            "help": m.get("help", ""),
            "choices": m.get("choices"),
            "flag": primary,
            "aliases": () if alias == primary else (alias,),
            "identity": m.get("identity", True),
            "key": key,
            "flatten": False,
        }
        default = {"default": f.default}
        if f.default is dataclasses.MISSING:
            default = {"default_factory": f.default_factory}
        specs.append((f.name, hints[f.name], dataclasses.field(**default, metadata=meta)))

    def __post_init__(self) -> None:  # the options' own checks, at once
        options(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def __reduce__(self):  # picklable wherever the schedule is registered
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return _section_value, (section, values)

    return dataclasses.make_dataclass(
        f"{options.__name__}Section",
        specs,
        frozen=True,  # change with RunConfig.with_options (validated), never in place
        namespace={
            "__post_init__": __post_init__,
            "__reduce__": __reduce__,
            "__section__": section,
            "__options__": options,
            "__doc__": f"The own options of {options.__name__}, as section {section!r} of a run.",
        },
    )


def _section_value(section: str, values: dict) -> Any:
    return section_class(section)(**values)


def make_options(name: str, **options: Any) -> Any:
    """The typed options of schedule ``name``; unknown or mistyped ones raise ``ValueError``."""
    cls = _spec(name).options
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(
            f"pruner {name!r} has no option {unknown[0]!r}; its options are {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    checked = {}
    for k, v in options.items():
        simple = hints[k] in (int, float, bool, str) or hints[k] in (
            int | None,
            float | None,
            str | None,
        )
        checked[k] = coerce(cls, k, v, f"{name} option {k}") if simple else v
    return cls(**checked)


def pruner(
    name: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    sparsity: float,
    total_steps: int,
    **options: Any,
) -> Pruner:
    """Build the pruner ``name`` for ``model`` trained by ``optimizer`` for ``total_steps``.

    ``name`` is a schedule (``"gmp"``, ``"rigl"``, ``"set"``, or one added with
    :func:`register_schedule`) or a criterion (``"snip"``, ``"magnitude"``, ...: one-shot).
    ``options`` are the schedule's typed hyperparameters (see its options dataclass, e.g.
    :class:`GmpOptions`, :class:`DstOptions`, :class:`OneShotOptions`). A model without masks
    is prepared in SP; the starting mask is set now (RigL/SET: random at ``sparsity``; a
    criterion: prunes; GMP: dense). Then call ``pruner.step()`` after every
    ``optimizer.step()``.
    """
    sparsity = check_sparsity(sparsity)
    if int(total_steps) != total_steps or total_steps < 0:
        raise ValueError(f"total_steps must be a whole number >= 0, got {total_steps!r}")
    spec = _spec(name)
    built = spec.build(make_options(name, **options), sparsity, int(total_steps))
    built.name = name
    return built.bind(model, optimizer, int(total_steps))


@register_schedule("gmp", GmpOptions)
def _build_gmp(o: GmpOptions, sparsity: float, total_steps: int) -> Pruner:
    last = max(total_steps - 1, 0)
    start, end = min(round(o.start * total_steps), last), min(round(o.end * total_steps), last)
    interval = o.interval if o.interval is not None else max(1, (end - start) // 10)
    return GradualMagnitudePruning(
        sparsity,
        start_step=start,
        end_step=end,
        interval=interval,
        initial_sparsity=o.initial_sparsity,
        criterion=o.criterion,
        **o.allocation_kwargs(),
    )


def _build_dst(growth: str) -> Builder:
    def build(o: DstOptions, sparsity: float, total_steps: int) -> Pruner:
        return DynamicSparseTraining(
            growth=growth,
            interval=o.interval,
            drop_fraction=o.drop_fraction,
            stop_fraction=o.stop_fraction,
            seed=o.seed,
            sparsity=sparsity,
            **o.allocation_kwargs(),
        )

    return build


register_schedule("rigl", DstOptions, section="dst")(_build_dst("gradient"))
register_schedule("set", DstOptions, section="dst")(_build_dst("random"))


@register_schedule("imp", ImpOptions)
def _build_imp(o: ImpOptions, sparsity: float, total_steps: int) -> Pruner:
    raise ValueError(
        "imp retrains the model in rounds, which one pruner cannot do: run it with "
        "ip.lottery_ticket(model, train, sparsity, **options) around your training function, "
        "or `interspace train --method imp`"
    )


def _build_oneshot(criterion: str) -> Builder:
    def build(o: OneShotOptions, sparsity: float, total_steps: int) -> Pruner:
        return OneShot(
            criterion,
            sparsity,
            data=o.data,
            loss_fn=o.loss_fn,
            rounds=o.rounds,
            input_shape=o.input_shape,
            **o.allocation_kwargs(),
        )

    return build
