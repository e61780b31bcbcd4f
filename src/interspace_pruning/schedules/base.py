"""Pruners: objects that change masks while a model trains, called from any training loop.

A pruner is bound to a model and its optimiser. Call :meth:`Pruner.step` once per training
step, right after ``optimizer.step()``::

    pruner = ip.pruner("rigl", model, optimizer, sparsity=0.9, total_steps=T)
    for x, y in batches:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
        pruner.step()

It keeps the optimiser consistent with the masks: pruned entries are exactly zero in the
parameter and in the optimiser state (momentum, Adam moments), regrown entries start at zero
without history, and after every step the pruned entries are re-zeroed (so decoupled weight
decay or stale state cannot move them). ``state_dict``/``load_state_dict`` hold what a
resumed run needs beyond the model's and optimiser's own state dicts (which carry the masks),
and the number of training steps the schedule was planned over: resuming with another
``total_steps`` (e.g. Lightning's ``max_epochs`` raised) raises ``ValueError`` instead of
silently stretching the schedule; build the pruner with the recorded ``total_steps`` to keep
the plan (steps beyond it keep the masks fixed).
A pruner is also a training :class:`~interspace_pruning.callbacks.Callback` (the protocol
below both pruners and the training loop), which is how ``interspace train`` runs the very
same objects.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..callbacks import Callback, TrainState
from ..foundations import distributed
from ..foundations.optim_state import reset_state_entries
from ..interspace import basis_parameters
from ..masks import PrunableTensor, attach_masks, no_gradient_capture, prunable
from ..pruning.allocation import allocation_options

__all__ = [
    "Pruner",
    "PrunerStateError",
    "check_pruner_state",
    "no_gradient_capture",
    "settle_after_mask_change",
    "snapshot_masks",
]


def snapshot_masks(entries: Sequence[PrunableTensor]) -> list[torch.Tensor]:
    """A copy of each entry's mask as booleans (to tell later which entries changed)."""
    return [e.mask.detach().bool().clone() for e in entries]


@torch.no_grad()
def settle_after_mask_change(
    optimizer: torch.optim.Optimizer | None,
    model: nn.Module,
    entries: Sequence[PrunableTensor],
    before: Sequence[torch.Tensor],
) -> int:
    """Keep the optimiser consistent with new masks; returns how many entries changed.

    Pruned entries are already zero in the parameter (``set_mask``); here their pending
    gradient is masked and the optimiser history of every changed entry is cleared, so a
    dropped entry is not pushed off zero and a regrown one starts fresh.
    """
    changed_total = 0
    for e, old in zip(entries, before, strict=True):
        changed = old ^ e.mask.bool()
        n = int(changed.sum())
        if n == 0:
            continue
        changed_total += n
        if e.param.grad is not None:
            e.param.grad.mul_(e.mask)
        if optimizer is not None:
            reset_state_entries(optimizer, e.param, changed)
    # Under DDP every rank decided alike; rank 0's copy is the reference all the same.
    distributed.broadcast_module(model)
    return changed_total


class PrunerStateError(ValueError):
    """A saved pruner state that cannot be restored: a field missing, of the wrong type or out
    of range. Raised before anything is changed; the message is one line."""


#: What every state error suggests.
STATE_FIX = "load the state that this pruner's state_dict() saved, or start without one"


def _whole(value: Any, where: str, field: str, low: int, high: int | None, why: str) -> int:
    """``value`` as an int in ``low..high``, or a one-line :class:`PrunerStateError`."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and low <= value and (high is None or value <= high):
        return int(value)
    span = f">= {low}" if high is None else f"from {low} to {high}{why}"
    raise PrunerStateError(
        f"{where}: {field!r} must be a whole number {span}, got {value!r:.60}; {STATE_FIX}"
    )


def check_pruner_state(
    state: Any,
    where: str = "saved pruner state",
    name: str = "",
    max_step: int | None = None,
    require_step: bool = False,
) -> dict[str, Any]:
    """Check a state saved by :meth:`Pruner.state_dict`, the way a file is checked, and
    return its fields (``step``, ``events`` as tuples, ``total_steps``, ``name``).

    ``step`` must be a whole number >= 0 (at most ``max_step``, the optimiser steps the
    training run had taken when it was saved, where the caller knows it; a pruner may be
    stepped past its planned ``total_steps``, which keeps its masks fixed, so that is no
    bound), each event ``(step, sparsity, entries changed)`` with its step in ``0..step``
    and its sparsity in ``[0, 1]``, and ``name`` (if saved) the pruner's ``name``. States
    saved before ``step``, ``total_steps`` or ``name`` were recorded load without them,
    unless ``require_step``. Raises :class:`PrunerStateError` (a ``ValueError``) naming
    the field.
    """
    if not isinstance(state, Mapping):
        raise PrunerStateError(f"{where} must be a dict, got {type(state).__name__}; {STATE_FIX}")
    saved_name = state.get("name")
    if saved_name is not None and not isinstance(saved_name, str):
        raise PrunerStateError(
            f"{where}: 'name' must be a pruner name, got {saved_name!r:.60}; {STATE_FIX}"
        )
    if saved_name and name and saved_name != name:
        raise PrunerStateError(
            f"{where} is of the {saved_name!r} pruner, not of {name!r}; resume with "
            f"{saved_name!r}, or start without the saved state"
        )
    if "events" not in state or (require_step and "step" not in state):
        missing = "events" if "events" not in state else "step"
        raise PrunerStateError(f"{where} has no {missing!r}; {STATE_FIX}")
    bound = "" if max_step is None else " (the optimiser steps the run had taken)"
    step = None
    if "step" in state:
        step = _whole(state["step"], where, "step", 0, max_step, bound)
    total = state.get("total_steps")
    if total is not None:
        total = _whole(total, where, "total_steps", 0, None, "")
    events = state["events"]
    if not isinstance(events, list | tuple):
        raise PrunerStateError(
            f"{where}: 'events' must be a list of [step, sparsity, changed], got "
            f"{type(events).__name__}; {STATE_FIX}"
        )
    checked = []
    for i, event in enumerate(events):
        field = f"events[{i}]"
        if not isinstance(event, list | tuple) or len(event) != 3:
            raise PrunerStateError(
                f"{where}: {field!r} must be [step, sparsity, changed], got {event!r:.60}; "
                f"{STATE_FIX}"
            )
        at = _whole(event[0], where, f"{field}[0] (step)", 0, step, " (the pruner's step)")
        sparsity = event[1]
        if (
            isinstance(sparsity, bool)
            or not isinstance(sparsity, numbers.Real)
            or not (math.isfinite(sparsity) and 0 <= sparsity <= 1)
        ):
            raise PrunerStateError(
                f"{where}: '{field}[1]' (sparsity) must be a number from 0 to 1, got "
                f"{sparsity!r:.60}; {STATE_FIX}"
            )
        changed = _whole(event[2], where, f"{field}[2] (entries changed)", 0, None, "")
        checked.append((at, float(sparsity), changed))
    return {"step": step, "events": checked, "total_steps": total, "name": saved_name}


class Pruner(Callback):
    """Base class of the pruners: binding, allocation options, the step counter, state.

    Subclasses implement :meth:`initialize` (the mask before training) and :meth:`update`
    (what happens after optimiser step ``t``; ``t`` counts from 0).
    """

    #: Registry name, set by :func:`~interspace_pruning.schedules.register_schedule`.
    name: str = ""

    def __init__(
        self,
        allocation: str = "global",
        keep_first_dense: bool = False,
        keep_last_dense: bool = False,
        min_density: float | None = None,
        pattern: str | None = None,
    ) -> None:
        self.allocation = allocation
        self.pattern = pattern  # N:M, e.g. "2:4" (see pruning.allocation)
        self.keep_first_dense = keep_first_dense
        self.keep_last_dense = keep_last_dense
        self.min_density = min_density
        #: ``(step, sparsity, entries changed)`` of every mask update, for logs and tests.
        self.events: list[tuple[int, float, int]] = []
        #: Optimiser steps seen so far (the index of the next step).
        self.step_count = 0
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.total_steps = 0
        self.entries: list[PrunableTensor] = []
        #: ``total_steps`` of a loaded state, checked against the one this pruner is bound for.
        self._planned_steps: int | None = None
        self._warned_for: int | None = None

    # -- binding -------------------------------------------------------------------------
    def bind(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        total_steps: int,
        initialize: bool = True,
    ) -> Pruner:
        """Attach to ``model`` (prepared in SP first if it has no masks) and ``optimizer``.

        With ``initialize`` the starting mask is set now (RigL/SET: random at the target
        sparsity unless the model already is that sparse; a one-shot criterion: prunes).
        """
        if total_steps < 0:
            raise ValueError(f"total_steps must be >= 0, got {total_steps}")
        if self.model is not None and self.model is not model:
            raise ValueError("this pruner is already bound to another model")
        self.model = model
        self.optimizer = optimizer
        self.total_steps = int(total_steps)
        self.entries = prunable(attach_masks(model))
        self._check_optimizer()
        self.on_bind()
        self._check_plan()
        if initialize:
            self.initialize()
        return self

    def _check_optimizer(self) -> None:
        if self.optimizer is None:
            return
        held = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        for e in self.entries:
            if e.param.requires_grad and id(e.param) not in held:
                raise ValueError(
                    f"the optimiser does not hold the prunable tensor of {e.name!r}; pass the "
                    "optimiser that trains this model"
                )
        if any(p.requires_grad and id(p) not in held for p in basis_parameters(self.model)):
            warnings.warn(
                "the optimiser does not train the filter bases; build it after "
                "ip.prepare(model, 'ip') (or prepare with trainable_basis=False)",
                stacklevel=3,
            )

    def on_bind(self) -> None:
        """Resolve defaults that depend on ``total_steps``; install hooks."""

    def planned_updates(self) -> tuple[int, int] | None:
        """``(mask updates the schedule makes, most it could make)`` over ``total_steps``
        (the most: with an update every step); ``None`` if it has no update interval."""
        return None

    def _check_plan(self) -> None:
        """Warn when the interval leaves fewer than two mask updates; refuse a state saved
        for another number of training steps."""
        if self._planned_steps is not None and self._planned_steps != self.total_steps:
            raise ValueError(
                f"this {self.name or type(self).__name__} pruner's saved state was planned "
                f"over {self._planned_steps} training steps, but it is now bound for "
                f"{self.total_steps}: the schedule would stretch. Resume with the same number "
                f"of steps, or build the pruner with total_steps={self._planned_steps} to keep "
                "its plan (later steps keep the masks fixed)"
            )
        planned = self.planned_updates()
        if planned is None or self._warned_for == self.total_steps:
            return
        made, possible = planned
        if made < 2 <= possible:
            self._warned_for = self.total_steps
            warnings.warn(
                f"{self.name or type(self).__name__}: an update interval of "
                f"{getattr(self, 'interval', '?')} steps gives {made} mask update"
                f"{'' if made == 1 else 's'} in {self.total_steps} training steps; choose a "
                "smaller interval, or leave it unset (about ten updates)",
                stacklevel=4,
            )

    def initialize(self) -> None:
        """The mask before training (default: leave the model as it is)."""

    def prune_kwargs(self) -> dict:
        return allocation_options(self)

    # -- stepping ------------------------------------------------------------------------
    def step(self) -> None:
        """Call once per training step, right after ``optimizer.step()``."""
        if self.model is None:
            raise ValueError("the pruner is not bound; build it with ip.pruner(...)")
        t = self.step_count
        self.update(t)
        self.enforce()
        self.step_count = t + 1

    def update(self, t: int) -> None:
        """Change masks after optimiser step ``t`` if the schedule says so."""

    @torch.no_grad()
    def enforce(self) -> None:
        """Re-zero every pruned entry (a no-op unless something moved one)."""
        for e in self.entries:
            e.param.mul_(e.mask)

    def sparsity(self) -> float:
        total = sum(e.numel() for e in self.entries)
        return 1.0 - sum(e.num_kept() for e in self.entries) / total

    def change_masks(self, t: int, target: float, change) -> None:
        """Run ``change()`` (which sets masks), then settle the optimiser and log."""
        before = snapshot_masks(self.entries)
        change()
        changed = settle_after_mask_change(self.optimizer, self.model, self.entries, before)
        self.events.append((t, target, changed))

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The pruner's own state (masks live in the model's state dict), the number of
        training steps its schedule is planned over, and its registry name."""
        return {
            "step": self.step_count,
            "events": [list(e) for e in self.events],
            "total_steps": self.total_steps,
            "name": self.name,
        }

    def validate_state(self, state: Any, max_step: int | None = None) -> dict[str, Any]:
        """Check ``state`` (see :func:`check_pruner_state`) without changing this pruner;
        subclasses with more state extend it. Returns the checked base fields."""
        return check_pruner_state(state, self._state_where(), self.name, max_step)

    def _state_where(self) -> str:
        return f"saved state of the {self.name or type(self).__name__} pruner"

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved state, checked first as a file would be (nothing changes if it
        is refused): :class:`PrunerStateError` for a field that is missing, mistyped or out
        of range, or saved by another pruner; ``ValueError`` if it was planned over another
        number of training steps than this pruner is bound for (states saved without
        ``total_steps``: unchecked)."""
        checked = self.validate_state(state)
        planned, self._planned_steps = self._planned_steps, checked["total_steps"]
        if self.model is not None:
            try:
                self._check_plan()
            except ValueError:
                self._planned_steps = planned  # refused: this pruner stays as it was
                raise
        self._load_checked(state, checked)

    def _load_checked(self, state: dict[str, Any], checked: dict[str, Any]) -> None:
        """Apply a state :meth:`validate_state` accepted (subclasses: their own fields)."""
        step = checked["step"]
        self.step_count = 0 if step is None else step  # saved before steps were recorded
        self.events = list(checked["events"])

    # -- as a callback of the training loop ----------------------------------------------
    def setup(self, state: TrainState) -> None:
        if self.model is None:
            self.bind(state.model, state.optimizer, state.total_steps)
        else:  # built before the loop made its optimiser (interspace train)
            self.optimizer = state.optimizer
            self.total_steps = state.total_steps
            self._check_optimizer()
            self.on_bind()
            self._check_plan()

    def on_step_end(self, state: TrainState) -> None:
        self.step_count = state.step  # the loop's count is authoritative (old checkpoints)
        self.step()

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        epoch_of = [step // state.steps_per_epoch for step, _, _ in self.events]
        metrics["mask_updates"] = epoch_of.count(state.epoch)


#: Kept for code written against the callback-only schedules.
MaskSchedule = Pruner
