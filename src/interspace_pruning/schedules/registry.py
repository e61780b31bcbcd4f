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
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..foundations.hparams import coerce
from ..pruning import ALLOCATIONS, method_names
from ..pruning.allocation import allocation_options, check_sparsity, parse_pattern
from ..pruning.registry import Batch, LossFn
from .base import Pruner
from .dst import DynamicSparseTraining
from .gmp import GradualMagnitudePruning
from .oneshot import OneShot


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


@dataclass
class GmpOptions(AllocationOptions):
    """Gradual magnitude pruning: from ``initial_sparsity`` at ``start`` to the target at
    ``end`` (fractions of ``total_steps``), every ``interval`` steps (default: about ten
    pruning steps), ranking by ``criterion``."""

    start: float = 0.1
    end: float = 0.75
    interval: int | None = None
    initial_sparsity: float = 0.0
    criterion: str = "magnitude"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.start <= self.end <= 1:
            raise ValueError(f"GMP needs 0 <= start <= end <= 1, got {self.start}, {self.end}")
        if self.criterion not in method_names():
            raise ValueError(
                f"unknown criterion {self.criterion!r}; choose one of {method_names()}"
            )


@dataclass
class DstOptions(AllocationOptions):
    """SET/RigL: start from a random mask (ERK by default); every ``interval`` steps
    (default: about ten updates) until ``stop_fraction`` of training, drop the
    ``drop_fraction`` (cosine-annealed) smallest active entries and regrow as many."""

    allocation: str = "erk"
    interval: int | None = None
    drop_fraction: float = 0.3
    stop_fraction: float = 0.75
    seed: int = 0


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


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    options: type
    build: Builder


_SCHEDULES: dict[str, ScheduleSpec] = {}


def register_schedule(name: str, options: type = AllocationOptions) -> Callable[[Builder], Builder]:
    """Decorator registering ``build(options, sparsity, total_steps) -> Pruner`` as ``name``.

    ``options`` is a dataclass of the schedule's typed hyperparameters (subclass
    :class:`AllocationOptions`); ``ip.pruner(name, ..., **options)`` fills it.
    """
    if not dataclasses.is_dataclass(options):
        raise ValueError(f"options of schedule {name!r} must be a dataclass")
    if name in method_names():
        raise ValueError(f"{name!r} is already a pruning criterion; choose another name")

    def wrap(build: Builder) -> Builder:
        _SCHEDULES[name] = ScheduleSpec(name, options, build)
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


register_schedule("rigl", DstOptions)(_build_dst("gradient"))
register_schedule("set", DstOptions)(_build_dst("random"))


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
