"""The training loop: epochs of SGD/AdamW with per-epoch evaluation and JSON-lines metrics."""

from __future__ import annotations

import errno
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import ImageDataset
from ..foundations import claims, interrupts
from ..foundations.checkpoint import load_tensors, save_tensors
from ..foundations.io import remove_stale_temps, write_jsonl
from ..masks import sparsity_report
from . import device as dev
from . import distributed
from .callbacks import Callback, TrainState
from .config import TrainConfig
from .optim import build_optimizer, build_scheduler

CHECKPOINT = "checkpoint.pt"
#: The checkpoint before the last one, kept so that a damaged checkpoint loses one epoch only.
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
#: Checkpoints since version 2 always carry a checksum; a later one without it is refused.
CHECKPOINT_VERSION = 2
#: On accelerators the non-finite-loss and stop-request checks run every this many steps
#: (and at each epoch's end), not every step: each check waits for the device to finish.
#: On the CPU they run every step, where waiting costs nothing.
SYNC_EVERY = 50


class TrainingError(ValueError):
    """Training cannot go on (e.g. the loss diverged)."""


class DivergedError(TrainingError):
    """The loss became NaN or infinite."""


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def to_device(
    x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on ``device`` (asynchronously from pinned memory), in the model's layout."""
    if x.device != device:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


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
    training); restores the previous mode. Sums stay on the device until the end."""
    was_training = model.training
    model.eval()
    device = _model_device(model)
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
    model.train(was_training)
    return {f"{split}_loss": float(loss_sum) / count, f"{split}_acc": int(correct) / count}


def _sparsity(model: nn.Module) -> float:
    """Global sparsity (a pure query: a plain model reads as dense and stays plain)."""
    return sparsity_report(model).sparsity


@dataclass
class _Position:
    """Where training stands: resumable at any step, not just at epoch ends."""

    epoch: int = 0  # current epoch (0-based)
    batches_done: int = 0  # optimiser steps already taken in this epoch
    epoch_generator: torch.Tensor | None = None  # data-order RNG state at the epoch's start
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    epoch_time: float = 0.0


def _save_checkpoint(
    path: Path, state: TrainState, pos: _Position, callbacks, tag: str, scaler=None
) -> None:
    with _disk_full_is_an_error(path):
        _write_checkpoint(path, state, pos, callbacks, tag, scaler)


class _disk_full_is_an_error:
    """Turn ENOSPC/EDQUOT while writing into a one-line :class:`TrainingError` saying which
    checkpoint survived (writes are atomic: a failed one leaves the previous file intact)."""

    def __init__(self, ckpt: Path) -> None:
        self.ckpt = ckpt

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, e, tb) -> None:
        if not isinstance(e, OSError) or e.errno not in (errno.ENOSPC, errno.EDQUOT):
            return
        kept = next((p for p in _checkpoints(self.ckpt) if p.is_file()), None)
        where = (
            f"the last good checkpoint {kept} is kept; free some space and continue with --resume"
            if kept is not None
            else "no checkpoint had been written yet; free some space and start the run again"
        )
        raise TrainingError(f"no space left on the device writing to {self.ckpt.parent}; {where}")


def _checkpoints(ckpt: Path) -> list[Path]:
    """The checkpoint, then the previous one (the fallback)."""
    return [ckpt, ckpt.with_name(PREVIOUS_CHECKPOINT)]


def _write_checkpoint(
    path: Path, state: TrainState, pos: _Position, callbacks, tag: str, scaler=None
) -> None:
    extra = {"scaler": scaler.state_dict()} if scaler is not None and scaler.is_enabled() else {}
    save_tensors(
        path,
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
        },
        keep_previous=path.with_name(PREVIOUS_CHECKPOINT),
    )


def _load_checkpoint(path: Path, state: TrainState, callbacks, tag: str, scaler=None) -> _Position:
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
    # checkpoints before version 2 were written without a checksum (and without a version)
    ckpt = load_tensors(path, fix=fix, legacy=lambda c: "format_version" not in c)
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
    return _Position(**ckpt["position"], epoch_generator=ckpt["epoch_generator"])


def _last_good(ckpt: Path | None) -> str:
    """Where a diverged run can be continued from, if anywhere."""
    kept = next((p for p in _checkpoints(ckpt) if p.is_file()), None) if ckpt else None
    if kept is not None:
        return f" (last good checkpoint: {kept})"
    return " (it diverged before its first checkpoint: nothing to resume from)" if ckpt else ""


class _StopRequests:
    """SIGTERM/SIGINT/SIGHUP set a flag; training checkpoints at the end of the current step.

    A second signal before that checkpoint is written stops at once, with the first signal's
    number (its exit status): the checkpoint being written is dropped, the one before stays.
    An ignored SIGHUP (``nohup``) stays ignored.
    """

    SIGNALS = interrupts.STOP_SIGNALS

    def __init__(self, ckpt: Path | None = None) -> None:
        self.requested: int | None = None
        self.ckpt = ckpt
        self._raised = False
        self._old: dict = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if interrupts.handled(sig):
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested is None:
            self.requested = signum
            return
        if self._raised:  # a third one: the stop is under way already
            return
        self._raised = True  # a second signal: stop now
        interrupts.begin_stop(self.requested)
        kept = (
            next((p for p in _checkpoints(self.ckpt) if p.is_file()), None) if self.ckpt else None
        )
        where = f"; resume from {kept}" if kept else ""
        raise TrainingStopped(
            f"stopped by signal {self.requested} ({interrupts.name(self.requested)}), and by "
            f"signal {signum} again before its checkpoint was written{where}",
            self.requested,
        )

    def __exit__(self, exc_type, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        if self.requested is not None and exc_type is None and self._old:
            # it came after the last check (during the last evaluation): training is over and
            # checkpointed, so pass it on rather than lose it, e.g. a sweep between its runs
            signal.raise_signal(self.requested)


class StopOnSignals:
    """For a whole command: a stop signal (SIGTERM, SIGINT, SIGHUP) outside training steps
    (loading data, pruning, the final evaluation, writing results, a sweep between runs or
    waiting) raises :class:`TrainingStopped` at once, so claims are released on the way out;
    inside :func:`train` its own handlers checkpoint at the end of the step instead. Later
    signals never change the first one's exit status. ``hint`` ends the message."""

    def __init__(self, hint: str = "") -> None:
        self.hint = hint
        self.armed = True
        self._old: dict = {}

    def disarm(self) -> None:
        """From now on signals are ignored (the command is over, its result being reported)."""
        self.armed = False

    def __enter__(self) -> StopOnSignals:
        interrupts.reset()
        if threading.current_thread() is threading.main_thread():
            for sig in interrupts.STOP_SIGNALS:
                if interrupts.handled(sig):
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if interrupts.defer(signum):  # inside a claim update: handled when it is done
            return
        if not self.armed or interrupts.stopping() is not None:  # the first stop's status stands
            return
        interrupts.begin_stop(signum)
        raise TrainingStopped(
            f"stopped by signal {signum} ({interrupts.name(signum)}) outside a training step"
            + (f"; {self.hint}" if self.hint else ""),
            signum,
        )

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()
        interrupts.reset()


def compile_model(net: nn.Module) -> nn.Module:
    """``torch.compile`` a model (or its DDP wrapper) with parametrisations.

    Masks are buffers changed in place, which compiled graphs read as inputs: a mask
    update (RigL, GMP, IMP) neither recompiles nor leaves a stale mask. Under DDP, dynamo's
    bucket-splitting optimiser fails on parametrised modules (pytorch#113415), so it is
    switched off: gradients are then all-reduced after the backward instead of overlapped.
    """
    if isinstance(net, nn.parallel.DistributedDataParallel):
        import torch._dynamo as dynamo

        dynamo.config.optimize_ddp = False
    return torch.compile(net)


class TrainingStopped(KeyboardInterrupt):
    """Stopped by a signal (SIGTERM, SIGINT, SIGHUP): in training after writing a
    checkpoint (see :class:`_StopRequests`), elsewhere at once (see :class:`StopOnSignals`)."""

    def __init__(self, message: str, signum: int = signal.SIGTERM) -> None:
        super().__init__(message)
        self.signum = int(signum)  # the shell convention: exit with 128 + signum


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
) -> list[dict]:
    """Train ``model`` on ``dataset`` and return the per-epoch metrics.

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

    Under ``torchrun`` (see :mod:`.distributed`) ``cfg.batch_size`` is the global batch.
    """
    callbacks = list(callbacks)
    d = distributed.info()
    if d.enabled and cfg.batch_size % d.world_size:
        raise ValueError(
            f"--batch-size {cfg.batch_size} (the global batch) must be divisible by the "
            f"{d.world_size} processes"
        )
    device = dev.resolve_device(cfg.device)
    precision = dev.resolve_precision(cfg.precision, device)
    channels_last = dev.resolve_channels_last(cfg.channels_last, device)
    dev.configure_backends(device, precision)
    model.to(device)  # before the optimiser is built: its state follows the parameters
    if channels_last:
        dev.set_channels_last(model, True)
    if cfg.sync_bn and d.enabled:
        distributed.convert_sync_batchnorm(model, device)
    dataset = dataset.to(device)
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
    pos = _Position()
    lease = claims.covering(out) if writes else None  # the run directory's claim, if held
    if lease is not None:
        lease.check()  # taken over while this process was stopped: touch nothing
    if writes:
        remove_stale_temps(out)  # left by writes a kill interrupted
    for cb in callbacks:
        cb.setup(state)  # pruners bind to the optimiser (fresh start and resume alike)
    # a kill between the two renames of a checkpoint write leaves only the previous one
    found = [p for p in _checkpoints(ckpt_path) if p.is_file()] if ckpt_path else []
    if resume and found:
        try:
            pos = _load_checkpoint(found[0], state, callbacks, tag, scaler)
        except (KeyError, TypeError, AttributeError, RuntimeError) as e:  # hand-made/old files
            raise ValueError(
                f"checkpoint {found[0]} is incomplete or malformed ({e!r:.80})"
            ) from None
    else:
        for cb in callbacks:
            cb.on_train_start(state)
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
    with _StopRequests(ckpt_path if writes else None) as stop:
        for epoch in range(pos.epoch, cfg.epochs):
            state.epoch = epoch
            if pos.epoch_generator is not None and pos.epoch == epoch:
                generator.set_state(pos.epoch_generator)  # replay the epoch's order...
            else:
                pos = _Position(epoch=epoch, epoch_generator=generator.get_state())
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
                nonfinite |= ~torch.isfinite(loss.detach())
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
                        what, where = loss.item(), ""
                        if sync_every > 1:  # the bad step may lie before this one
                            what, where = "non-finite", f" (or up to {sync_every - 1} before)"
                        raise DivergedError(
                            f"loss became {what} at epoch {epoch + 1}, step "
                            f"{state.step}{where}; lower the learning rate (--lr {cfg.lr}) or "
                            "check the data" + _last_good(ckpt_path if writes else None)
                        )
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
                        _save_checkpoint(ckpt_path, state, pos, callbacks, tag, scaler)
                    signum = stop.requested or signal.SIGTERM
                    interrupts.begin_stop(signum)
                    raise TrainingStopped(
                        f"stopped by signal {signum} ({interrupts.name(signum)}) at epoch "
                        f"{epoch + 1}, step {state.step}"
                        + (f"; resume from {ckpt_path}" if writes else ""),
                        signum,
                    )
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
                **evaluate(model, dataset, precision=precision, channels_last=channels_last),
                "sparsity": _sparsity(model),
                "epoch_time": time.perf_counter() - t0,
                "elapsed": time.perf_counter() - start,
            }
            for cb in callbacks:
                cb.on_epoch_end(state, metrics)
            state.history.append(metrics)
            pos = _Position(epoch=epoch + 1, epoch_generator=generator.get_state())
            if writes:
                with _disk_full_is_an_error(ckpt_path):
                    write_jsonl(out / "metrics.jsonl", state.history)
                _save_checkpoint(ckpt_path, state, pos, callbacks, tag, scaler)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", acc=f"{metrics['test_acc']:.3f}")
    bar.close()
    for cb in callbacks:
        cb.on_train_end(state)
    return state.history
