"""Iterative magnitude pruning with rewinding: lottery tickets (Frankle & Carbin 2019;
Frankle et al. 2020).

Train; prune a fraction of the remaining entries by magnitude; rewind the unpruned entries
(and, for IP, the filter bases; and BN) to their values after ``rewind_step`` steps of the
first training (0 = initialisation); retrain with the new mask; repeat.

:func:`lottery_ticket` is the outer loop around a training function of your own;
``interspace train --method imp`` (:func:`interspace_pruning.experiments.imp.run_imp`) runs
the same pieces with resumable rounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..callbacks import Callback, TrainState
from ..foundations.checkpoint import load_tensors, save_tensors
from ..foundations.io import CorruptFileError
from ..masks import SparsityReport, attach_masks, prunable, sparsity_report
from ..pruning import prune
from .base import STATE_FIX, Pruner, PrunerStateError


def imp_levels(target: float, rounds: int | None = None, rate: float = 0.2) -> list[float]:
    """Sparsity after each pruning round.

    With ``rounds`` the levels are geometric and end exactly at ``target``; otherwise each
    round removes ``rate`` of the remaining entries until ``target`` (the last round is cut
    to land on it).
    """
    if not 0 < target < 1:
        raise ValueError(f"IMP target sparsity must be in (0, 1), got {target}")
    if rounds is not None:
        if rounds < 1:
            raise ValueError(f"IMP rounds must be >= 1, got {rounds}")
        keep = (1.0 - target) ** (1.0 / rounds)
        return [1.0 - keep**r for r in range(1, rounds)] + [target]
    if not 0 < rate < 1:
        raise ValueError(f"IMP rate must be in (0, 1), got {rate}")
    n = math.ceil(math.log(1.0 - target) / math.log(1.0 - rate) - 1e-9)
    return [min(1.0 - (1.0 - rate) ** r, target) for r in range(1, n)] + [target]


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s state dict (weights or coefficients, filter bases,
    masks, BN statistics): a rewind point."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


#: Marks a rewind-state file written with its run's identity (older files: a bare state dict).
REWIND_FORMAT = "interspace-pruning rewind state"


class RewindPoint(Callback):
    """Remembers the full model state after ``step`` optimiser steps (0: before training).

    ``path``: a file that holds the remembered state instead of every checkpoint. It is
    written (checksummed, atomically) when the state is taken, and a checkpoint then records
    only that the state is in the file, so each checkpoint of the round stays the size of the
    model and its optimiser. ``save=False``: another process writes the file (the other ranks
    of a distributed run); this one only reads it. ``tag``: the run the file belongs to (a
    configuration hash), written into it and checked when it is read back, so that another
    run's rewind state copied into the folder is refused rather than silently rewound to.
    """

    def __init__(
        self,
        step: int = 0,
        path: str | Path | None = None,
        save: bool = True,
        tag: str | None = None,
    ) -> None:
        if step < 0:
            raise ValueError(f"rewind step must be >= 0, got {step}")
        self.step = step
        self.path = None if path is None else Path(path)
        self.save = save
        self.tag = tag
        self.state: dict[str, torch.Tensor] | None = None

    def _take(self, state: dict[str, torch.Tensor]) -> None:
        self.state = state
        if self.path is not None and self.save:
            save_tensors(
                self.path, {"format": REWIND_FORMAT, "config_hash": self.tag, "state": state}
            )

    def on_train_start(self, state: TrainState) -> None:
        if self.step > state.total_steps:
            raise ValueError(
                f"rewind step {self.step} is beyond the {state.total_steps} training steps"
            )
        if self.step == 0:
            self._take(state_copy(state.model))

    def on_step_end(self, state: TrainState) -> None:
        if state.step + 1 == self.step:  # state.step indexes the step just taken
            self._take(state_copy(state.model))

    def state_dict(self) -> dict:
        if self.path is not None and self.state is not None:
            return {"state": None, "file": self.path.name}
        return {"state": self.state}

    def load_state_dict(self, state: dict) -> None:
        """Restore the remembered model state: ``{"state": None}`` (not reached yet), a dict
        of tensors, or ``{"state": None, "file": name}`` (in the file ``path``); anything
        else raises a one-line :class:`PrunerStateError`."""
        if isinstance(state, dict) and "file" in state:
            self._load_file(state["file"])
            return
        saved = state.get("state", ...) if isinstance(state, dict) else ...
        ok = saved is None or (
            isinstance(saved, dict)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in saved.items())
        )
        if not ok:
            raise PrunerStateError(
                "saved state of the rewind point: 'state' must be None or the model's "
                f"state_dict (names to tensors); {STATE_FIX}"
            )
        if saved is None:
            self.state = None
        else:  # a checkpoint that carries the state itself (written without ``path``)
            self._take(saved)

    def _load_file(self, name: object) -> None:
        if self.path is None or name != self.path.name:
            raise PrunerStateError(
                f"saved state of the rewind point: it is in the file {str(name)[:80]!r}, but "
                f"this rewind point keeps its state in {self.path}; pass "
                "RewindPoint(path=<that file>), or start the run over"
            )
        self.read_file()

    def read_file(self) -> None:
        """Restore the remembered state from ``path`` (written when it was taken); a file
        of another run (``tag``) or not a state dict is a one-line error."""
        if self.path is None:
            raise ValueError("this rewind point keeps its state in no file (path=None)")
        fix = "the rewind state is taken once, at the rewind step: start the run over"
        obj = load_tensors(self.path, what="rewind state", fix=fix)
        saved: object = obj  # files written before the format field: the bare state dict
        if obj.get("format") == REWIND_FORMAT:
            theirs, saved = obj.get("config_hash"), obj.get("state")
            if None not in (theirs, self.tag) and theirs != self.tag:
                raise CorruptFileError(
                    self.path,
                    f"was written by run {theirs}, not by this run ({self.tag}): it was "
                    "copied or moved here from another run",
                    fix,
                )
        if not isinstance(saved, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in saved.items()
        ):
            raise PrunerStateError(f"rewind state {self.path} is not a model's state_dict; {fix}")
        self.state = saved


@torch.no_grad()
def rewind(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Restore ``saved`` (weights or coefficients, filter bases, BN) but keep today's masks.
    A state of another model is a one-line ``ValueError`` and changes nothing."""
    entries = prunable(model)
    masks = [e.mask.clone() for e in entries]
    mine = model.state_dict()
    wrong = sorted(set(mine) ^ set(saved)) or [
        k for k, v in saved.items() if v.shape != mine[k].shape
    ]
    if wrong:
        raise ValueError(
            f"the rewind state is not this model's ({len(wrong)} entries differ, e.g. "
            f"{wrong[0][:80]!r}): it was taken from another model or run; start the run over"
        )
    model.load_state_dict(saved)
    for e, m in zip(entries, masks, strict=True):
        e.set_mask(m)


class TicketRound(Pruner):
    """What :func:`lottery_ticket` hands your ``train`` function each round.

    Call ``step()`` after every ``optimizer.step()``: it keeps pruned entries at zero and,
    in round 0, records the rewind state after ``rewind_step`` steps (``rewind_step > 0``
    needs these calls).
    """

    def __init__(self, round: int, level: float, rewind_step: int) -> None:
        super().__init__()
        self.round, self.level, self.rewind_step = round, level, rewind_step
        self.saved: dict[str, torch.Tensor] | None = None

    def update(self, t: int) -> None:
        if self.round == 0 and t + 1 == self.rewind_step:
            self.saved = state_copy(self.model)


def lottery_ticket(
    model: nn.Module,
    train: Callable[[nn.Module, TicketRound], object],
    sparsity: float,
    **options,
) -> list[SparsityReport]:
    """Iterative magnitude pruning with rewinding around your own ``train(model, round)``.

    ``options`` are those of :class:`~interspace_pruning.schedules.ImpOptions` (``rounds``,
    ``rate=0.2``, ``rewind_step=0``, ``criterion="magnitude"``, and the allocation options).
    Round 0 trains the unpruned model; round ``r`` prunes to level ``r`` of
    :func:`imp_levels` (by ``criterion``), rewinds the unpruned entries, filter bases and BN
    to their state after ``rewind_step`` steps of round 0 (0: the state when this function
    was called, i.e. a lottery ticket at initialisation) and trains again. ``train`` builds
    its own optimiser each round and calls ``round.step()`` after each ``optimizer.step()``
    (required for ``rewind_step > 0``). A plain model is prepared in SP. Returns the
    sparsity report after each round (round 0 included); the model ends trained at the
    target sparsity.
    """
    from .registry import make_options  # the registry imports this module

    o = make_options("imp", **options)
    levels = imp_levels(sparsity, o.rounds, o.rate)
    rewind_step, criterion, allocation_kwargs = o.rewind_step, o.criterion, o.allocation_kwargs()
    attach_masks(model)
    saved = state_copy(model) if rewind_step == 0 else None
    reports = []
    for r, level in enumerate([0.0, *levels]):
        if r > 0:
            prune(model, criterion, level, **allocation_kwargs)
            rewind(model, saved)
        handle = TicketRound(r, level, rewind_step).bind(model, None, 0)
        train(model, handle)
        if r == 0 and saved is None:
            if handle.saved is None:
                raise ValueError(
                    f"rewind_step={rewind_step} needs train() to call round.step() after each "
                    f"optimizer step, and to take at least {rewind_step} steps"
                )
            saved = handle.saved
        reports.append(sparsity_report(model))
    return reports
