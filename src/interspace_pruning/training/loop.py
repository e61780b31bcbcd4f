"""The training loop: epochs of SGD/AdamW with per-epoch evaluation and JSON-lines metrics.

:func:`train` puts together the pieces beside it: :mod:`.device` (where and how it runs,
resolved once per call), :mod:`.checkpointing` (writing and resuming), :mod:`.signals`
(stopping cleanly) and :mod:`..foundations.distributed` (several processes). What it calls
back is the protocol of :mod:`..callbacks`.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..callbacks import Callback, TrainState
from ..data import ImageDataset
from ..foundations import claims, distributed, interrupts
from ..foundations.io import remove_stale_temps, write_jsonl
from ..foundations.modes import eval_mode
from ..masks import sparsity_report
from . import device as dev
from .checkpointing import (
    CHECKPOINT,
    CHECKPOINT_VERSION,
    PREVIOUS_CHECKPOINT,
    Position,
    checkpoints,
    disk_full_is_an_error,
    last_good,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from .config import TrainConfig
from .device import Placement, compile_model, to_device
from .errors import DivergedError, TrainingError
from .optim import build_optimizer, build_scheduler
from .signals import StopOnSignals, StopRequests, TrainingStopped

__all__ = [
    # defined here
    "SYNC_EVERY",
    "evaluate",
    "train",
    # kept importable from here: they lived in this module before
    "CHECKPOINT",
    "CHECKPOINT_VERSION",
    "PREVIOUS_CHECKPOINT",
    "read_checkpoint",
    "DivergedError",
    "Placement",
    "StopOnSignals",
    "TrainingError",
    "TrainingStopped",
    "compile_model",
    "to_device",
]

#: On accelerators the non-finite-loss and stop-request checks run every this many steps
#: (and at each epoch's end), not every step: each check waits for the device to finish.
#: On the CPU they run every step, where waiting costs nothing.
SYNC_EVERY = 50


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: ImageDataset,
    batch_size: int = 1000,
    split: str = "test",
    limit: int | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict[str, float]:
    """Loss and accuracy on ``split`` ("test" or "train", at most ``limit`` images), in
    eval mode without augmentation, on the model's device (``precision``: autocast as in
    training); restores every module's previous train/eval mode, also on an error. Sums stay
    on the device until the end."""
    with eval_mode(model):
        device = dev.model_device(model)
        if split == "test":
            batches = dataset.test_batches(batch_size)
        else:
            batches = dataset.train_eval_batches(batch_size, limit)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        count = 0
        for batch in batches:
            x, y = to_device(*batch, device, channels_last)
            with dev.autocast(device, precision):
                out = model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
            count += len(y)
    return {f"{split}_loss": float(loss_sum) / count, f"{split}_acc": int(correct) / count}


def _sparsity(model: nn.Module) -> float:
    """Global sparsity (a pure query: a plain model reads as dense and stays plain)."""
    return sparsity_report(model).sparsity


def _start(
    state: TrainState,
    callbacks: list[Callback],
    ckpt_path: Path | None,
    resume: bool,
    tag: str,
    scaler,
) -> Position:
    """Bind the callbacks, then continue from a checkpoint (``resume``) or start fresh."""
    for cb in callbacks:
        cb.setup(state)  # pruners bind to the optimiser (fresh start and resume alike)
    # a kill between the two renames of a checkpoint write leaves only the previous one
    found = [p for p in checkpoints(ckpt_path) if p.is_file()] if ckpt_path else []
    if resume and found:
        try:
            return load_checkpoint(found[0], state, callbacks, tag, scaler)
        except (KeyError, TypeError, AttributeError, RuntimeError) as e:  # hand-made/old files
            raise ValueError(
                f"checkpoint {found[0]} is incomplete or malformed ({e!r:.80})"
            ) from None
    for cb in callbacks:
        cb.on_train_start(state)
    return Position()


def _diverged(loss: torch.Tensor, epoch: int, state: TrainState, sync_every: int, ckpt) -> None:
    what, where = loss.item(), ""
    if sync_every > 1:  # the bad step may lie before this one
        what, where = "non-finite", f" (or up to {sync_every - 1} before)"
    raise DivergedError(
        f"loss became {what} at epoch {epoch + 1}, step {state.step}{where}; lower the "
        f"learning rate (--lr {state.config.lr}) or check the data" + last_good(ckpt)
    )


def _stopped(
    stop: StopRequests, epoch: int, state: TrainState, ckpt_path: Path | None
) -> TrainingStopped:
    """The stop a signal asked for, once its checkpoint (if any) is written."""
    signum = stop.requested or signal.SIGTERM
    interrupts.begin_stop(signum)
    return TrainingStopped(
        f"stopped by signal {signum} ({interrupts.name(signum)}) at epoch "
        f"{epoch + 1}, step {state.step}" + (f"; resume from {ckpt_path}" if ckpt_path else ""),
        signum,
    )


def train(
    model: nn.Module,
    dataset: ImageDataset,
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    desc: str = "train",
    resume: bool = False,
    tag: str = "",
    placement: Placement | None = None,
) -> list[dict]:
    """Train ``model`` on ``dataset`` and return the per-epoch metrics (``test_loss`` and
    ``test_acc`` after every ``cfg.eval_every``-th epoch and the last).

    The data order and augmentation come from a generator seeded with ``cfg.seed``, so two
    runs with one seed see identical batches. With ``out_dir`` the metrics are rewritten to
    ``out_dir/metrics.jsonl`` and a checkpoint (model with masks and filter bases,
    optimiser, LR schedule, callbacks, RNG states, position) to ``out_dir/checkpoint.pt``
    after every epoch, both atomically; SIGTERM/SIGINT/SIGHUP write one at the end of the
    current step and stop (raising :class:`TrainingStopped`). With ``resume`` an existing
    checkpoint is continued from, and the result equals that of an uninterrupted run. ``tag``
    identifies the configuration: a checkpoint written under another tag is refused. If
    ``out_dir``'s claim (held by this process) is taken over meanwhile, training stops at the
    next step check with :class:`~..foundations.claims.ClaimLostError`, writing nothing.
    ``placement``: ``cfg``'s device, precision and layout if its caller resolved them
    already (default: ``Placement.of(cfg)``, resolved here, once).

    Under ``torchrun`` (see :mod:`.distributed`) ``cfg.batch_size`` is the global batch.
    """
    callbacks = list(callbacks)
    d = distributed.info()
    if d.enabled and cfg.batch_size % d.world_size:
        raise ValueError(
            f"--batch-size {cfg.batch_size} (the global batch) must be divisible by the "
            f"{d.world_size} processes"
        )
    where = placement if placement is not None else Placement.of(cfg)
    device, precision, channels_last = where.device, where.precision, where.channels_last
    dataset = dev.place(model, dataset, where, sync_bn=cfg.sync_bn)
    steps = dataset.steps_per_epoch(cfg.batch_size)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps * cfg.epochs)
    scaler = dev.grad_scaler(device, precision)
    state = TrainState(model, optimizer, scheduler, dataset, cfg, steps, steps * cfg.epochs)

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)

    state.loss_fn = loss_fn
    generator = torch.Generator().manual_seed(cfg.seed)
    out = Path(out_dir) if out_dir is not None else None
    writes = out is not None and d.is_main
    ckpt_path = out / CHECKPOINT if out is not None else None
    ours = ckpt_path if writes else None  # the checkpoint this process writes, if any
    lease = claims.covering(out) if writes else None  # the run directory's claim, if held
    if lease is not None:
        lease.check()  # taken over while this process was stopped: touch nothing
    if writes:
        remove_stale_temps(out)  # left by writes a kill interrupted
    pos = _start(state, callbacks, ckpt_path, resume, tag, scaler)
    net = distributed.wrap(model, device)
    if cfg.compile:
        net = compile_model(net)
    sync_every = 1 if device.type == "cpu" else SYNC_EVERY
    elapsed0 = state.history[-1]["elapsed"] if state.history else 0.0
    start = time.perf_counter() - elapsed0
    # disable=None: bars only on a terminal, so logs and CI output stay clean
    bar = tqdm(
        total=cfg.epochs,
        initial=pos.epoch,
        desc=desc,
        disable=None if (progress and d.is_main) else True,
        leave=False,
        unit="ep",
    )
    with StopRequests(ours) as stop:
        for epoch in range(pos.epoch, cfg.epochs):
            state.epoch = epoch
            if pos.epoch_generator is not None and pos.epoch == epoch:
                generator.set_state(pos.epoch_generator)  # replay the epoch's order...
            else:
                pos = Position(epoch=epoch, epoch_generator=generator.get_state())
            model.train()
            t0 = time.perf_counter() - pos.epoch_time
            # Per-step sums stay on the device (no host sync per step): loss, correct, and
            # whether any loss was non-finite since the last check.
            sums = torch.tensor([pos.loss_sum, pos.correct], dtype=torch.float64, device=device)
            nonfinite = torch.zeros((), dtype=torch.bool, device=device)
            batches = dataset.train_batches(cfg.batch_size, generator)
            for i, batch in enumerate(batches):
                if i < pos.batches_done:
                    continue  # ...and skip what was done before the interruption
                x, y = to_device(*distributed.shard(batch, d), device, channels_last)
                state.batch = (x, y)
                optimizer.zero_grad(set_to_none=True)
                with dev.autocast(device, precision):
                    logits = net(x)
                    loss = loss_fn(logits.float(), y)
                state.loss = loss.detach()
                nonfinite |= ~torch.isfinite(state.loss)
                stopping = False
                if (i + 1) % sync_every == 0 or i + 1 == steps:
                    lost = lease is not None and lease.lost  # seen by the claim's heartbeat
                    flags = [float(nonfinite), float(stop.requested is not None), float(lost)]
                    bad, stopping, lost = distributed.all_reduce_sum(flags, device)
                    if lost:  # another process trains this run now: stop, write nothing
                        if lease is not None:
                            lease.check()
                        raise claims.ClaimLostError(out / claims.CLAIM, {})
                    if bad:
                        _diverged(loss, epoch, state, sync_every, ours)
                scaler.scale(loss).backward()
                if scaler.is_enabled():
                    scaler.unscale_(optimizer)  # callbacks see true gradients
                for cb in callbacks:
                    cb.on_after_backward(state)
                scaler.step(optimizer)  # skipped (parameters untouched) on inf/NaN gradients
                scaler.update()
                scheduler.step()
                for cb in callbacks:
                    cb.on_step_end(state)
                state.step += 1
                pos.batches_done = i + 1
                sums[0] += loss.detach().double() * len(y)
                sums[1] += (logits.detach().argmax(1) == y).sum()
                pos.seen += len(y)
                if stopping:
                    pos.epoch_time = time.perf_counter() - t0
                    pos.loss_sum, pos.correct = float(sums[0]), int(sums[1])
                    if writes:
                        save_checkpoint(ckpt_path, state, pos, callbacks, tag, scaler)
                    raise _stopped(stop, epoch, state, ours)
            pos.loss_sum, pos.correct = float(sums[0]), int(sums[1])
            loss_sum, correct, seen = distributed.all_reduce_sum(
                [pos.loss_sum, float(pos.correct), float(pos.seen)], device
            )
            metrics = {
                "epoch": epoch + 1,
                "step": state.step,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": loss_sum / max(seen, 1),
                "train_acc": correct / max(seen, 1),
                **(
                    evaluate(model, dataset, precision=precision, channels_last=channels_last)
                    if cfg.evaluates_after(epoch + 1)
                    else {}
                ),
                "sparsity": _sparsity(model),
                "epoch_time": time.perf_counter() - t0,
                "elapsed": time.perf_counter() - start,
            }
            for cb in callbacks:
                cb.on_epoch_end(state, metrics)
            state.history.append(metrics)
            pos = Position(epoch=epoch + 1, epoch_generator=generator.get_state())
            if writes:
                with disk_full_is_an_error(ckpt_path):
                    write_jsonl(out / "metrics.jsonl", state.history)
                save_checkpoint(ckpt_path, state, pos, callbacks, tag, scaler)
            bar.update(1)
            shown = {"loss": f"{metrics['train_loss']:.3f}"}
            if "test_acc" in metrics:  # epochs between evaluations have no test numbers
                shown["acc"] = f"{metrics['test_acc']:.3f}"
            bar.set_postfix(shown)
    bar.close()
    for cb in callbacks:
        cb.on_train_end(state)
    return state.history
