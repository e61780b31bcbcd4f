"""Checkpoints of a training run: written atomically after every epoch (and when a stop
signal arrives), the one before kept as a fallback, read back on ``--resume``.

Since version 3 the mostly-zero tensors of a pruned run (weights or coefficients, momentum,
masks) are stored compactly, every value exact, zeros without their sign
(:mod:`..foundations.sparse_encoding`): a 98%-sparse ImageNet ResNet-18's checkpoint is a few
MB instead of 134, so the campaign can commit it. Versions 2 and 3 both load."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

import torch

from ..callbacks import TrainState
from ..foundations.checkpoint import load_tensors, save_tensors
from ..foundations.sparse_encoding import EncodingError, decode, encode
from .errors import TrainingError

CHECKPOINT = "checkpoint.pt"
#: The checkpoint before the last one, kept so that a damaged checkpoint loses one epoch only.
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
#: Checkpoints since version 2 always carry a checksum; a later one without it is refused.
#: Version 3 stores mostly-zero tensors compactly.
CHECKPOINT_VERSION = 3
#: A checkpoint's compact tensors may expand to this many times the file's bytes (plus
#: :data:`EXPANSION_SLACK`): a 99.9%-sparse float32 tensor, its momentum and its mask share
#: one bitmap of 1 bit per entry, about 96 times their file bytes. More is not our file.
MAX_EXPANSION = 256
EXPANSION_SLACK = 64 * 2**20


@dataclass
class Position:
    """Where training stands: resumable at any step, not just at epoch ends."""

    epoch: int = 0  # current epoch (0-based)
    batches_done: int = 0  # optimiser steps already taken in this epoch
    epoch_generator: torch.Tensor | None = None  # data-order RNG state at the epoch's start
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    epoch_time: float = 0.0


def save_checkpoint(
    path: Path, state: TrainState, pos: Position, callbacks, tag: str, scaler=None
) -> None:
    with disk_full_is_an_error(path):
        write_checkpoint(path, state, pos, callbacks, tag, scaler)


class disk_full_is_an_error:
    """Turn ENOSPC/EDQUOT while writing into a one-line :class:`TrainingError` saying which
    checkpoint survived (writes are atomic: a failed one leaves the previous file intact)."""

    def __init__(self, ckpt: Path) -> None:
        self.ckpt = ckpt

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, e, tb) -> None:
        if not isinstance(e, OSError) or e.errno not in (errno.ENOSPC, errno.EDQUOT):
            return
        kept = next((p for p in checkpoints(self.ckpt) if p.is_file()), None)
        where = (
            f"the last good checkpoint {kept} is kept; free some space and continue with --resume"
            if kept is not None
            else "no checkpoint had been written yet; free some space and start the run again"
        )
        raise TrainingError(f"no space left on the device writing to {self.ckpt.parent}; {where}")


def checkpoints(ckpt: Path) -> list[Path]:
    """The checkpoint, then the previous one (the fallback)."""
    return [ckpt, ckpt.with_name(PREVIOUS_CHECKPOINT)]


def write_checkpoint(
    path: Path, state: TrainState, pos: Position, callbacks, tag: str, scaler=None
) -> None:
    extra = {"scaler": scaler.state_dict()} if scaler is not None and scaler.is_enabled() else {}
    save_tensors(
        path,
        encode(
            {
                "format_version": CHECKPOINT_VERSION,
                "tag": tag,
                "position": {
                    "epoch": pos.epoch,
                    "batches_done": pos.batches_done,
                    "loss_sum": pos.loss_sum,
                    "correct": pos.correct,
                    "seen": pos.seen,
                    "epoch_time": pos.epoch_time,
                },
                "epoch_generator": pos.epoch_generator,
                "step": state.step,
                "model": state.model.state_dict(),
                "optimizer": state.optimizer.state_dict(),
                "scheduler": state.scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "history": state.history,
                "callbacks": [[type(cb).__name__, cb.state_dict()] for cb in callbacks],
                **extra,
            }
        ),
        keep_previous=path.with_name(PREVIOUS_CHECKPOINT),
    )


def read_checkpoint(path: Path, fix: str = "") -> dict:
    """A checkpoint's content with its tensors as they were saved (compact ones restored),
    checksum and fields checked; ``fix`` ends the one-line error of a damaged file."""
    path = Path(path)
    # checkpoints before version 2 were written without a checksum (and without a version)
    ckpt = load_tensors(path, fix=fix, legacy=lambda c: "format_version" not in c)
    try:
        return decode(ckpt, MAX_EXPANSION * path.stat().st_size + EXPANSION_SLACK)
    except EncodingError as e:
        raise ValueError(
            f"checkpoint {path} is not one this program wrote: {e}" + (f"; {fix}" if fix else "")
        ) from None


def load_checkpoint(path: Path, state: TrainState, callbacks, tag: str, scaler=None) -> Position:
    """Restore a checkpoint into ``state``; returns where to continue.

    The file is read onto the CPU and copied into the model's and optimiser's tensors
    wherever they live, so a run checkpointed on a GPU resumes on a CPU and vice versa.
    """
    prev = path.with_name(PREVIOUS_CHECKPOINT)
    fix = (
        f"continue from the previous one instead: mv {prev} {path}"
        if path != prev and prev.is_file()
        else f"delete it to start the run over (rm {path})"
    )
    ckpt = read_checkpoint(path, fix)
    if ckpt.get("tag", "") != tag:
        raise ValueError(
            f"checkpoint {path} belongs to another configuration ({ckpt.get('tag')!r}, this "
            f"run is {tag!r}); use another output folder or delete the checkpoint"
        )
    try:
        state.model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"checkpoint {path} does not match this run: {first}") from None
    state.scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and scaler.is_enabled() and "scaler" in ckpt:
        scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["torch_rng"])
    state.step = int(ckpt["step"])
    state.history = list(ckpt["history"])
    # Each callback gets the saved state of the first unused one of its class; callbacks
    # that were not there when the checkpoint was written (e.g. a user's logger) start fresh.
    saved = list(ckpt["callbacks"])
    for cb in callbacks:
        for i, (name, cb_state) in enumerate(saved):
            if name == type(cb).__name__:
                cb.load_state_dict(cb_state)
                del saved[i]
                break
    return Position(**ckpt["position"], epoch_generator=ckpt["epoch_generator"])


def last_good(ckpt: Path | None) -> str:
    """Where a diverged run can be continued from, if anywhere."""
    kept = next((p for p in checkpoints(ckpt) if p.is_file()), None) if ckpt else None
    if kept is not None:
        return f" (last good checkpoint: {kept})"
    return " (it diverged before its first checkpoint: nothing to resume from)" if ckpt else ""
