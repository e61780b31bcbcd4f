"""Stop signals in training: SIGTERM, SIGINT and SIGHUP end a run cleanly.

Inside :func:`~.loop.train` (:class:`StopRequests`) a signal asks for a checkpoint at the end
of the current step, then a stop; around a whole command (:class:`StopOnSignals`) it stops
at once. Both raise :class:`TrainingStopped`, whose ``signum`` is the exit status's source.
What they share across the process lives in :mod:`..foundations.interrupts`.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from ..foundations import interrupts
from .checkpointing import checkpoints


class TrainingStopped(KeyboardInterrupt):
    """Stopped by a signal (SIGTERM, SIGINT, SIGHUP): in training after writing a
    checkpoint (see :class:`StopRequests`), elsewhere at once (see :class:`StopOnSignals`)."""

    def __init__(self, message: str, signum: int = signal.SIGTERM) -> None:
        super().__init__(message)
        self.signum = int(signum)  # the shell convention: exit with 128 + signum


class StopRequests:
    """SIGTERM/SIGINT/SIGHUP set a flag; training checkpoints at the end of the current step.

    A second signal before that checkpoint is written stops at once, with the first signal's
    number (its exit status): the checkpoint being written is dropped, the one before stays.
    A first signal inside a :func:`~..foundations.interrupts.blocking_call` (a tracker
    waiting on its server) also gives that call up at once
    (:class:`~..foundations.interrupts.CallAbandoned`), so the step ends and checkpoints
    without waiting for it. An ignored SIGHUP (``nohup``) stays ignored.
    """

    SIGNALS = interrupts.STOP_SIGNALS

    def __init__(self, ckpt: Path | None = None) -> None:
        self.requested: int | None = None
        self.ckpt = ckpt
        self._raised = False
        self._old: dict = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if interrupts.handled(sig):
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested is None:
            self.requested = signum
            if interrupts.in_blocking_call():  # e.g. a tracker waiting on its server:
                raise interrupts.CallAbandoned(signum)  # give it up, checkpoint, stop
            return
        if self._raised:  # a third one: the stop is under way already
            return
        self._raised = True  # a second signal: stop now
        interrupts.begin_stop(self.requested)
        kept = next((p for p in checkpoints(self.ckpt) if p.is_file()), None) if self.ckpt else None
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
