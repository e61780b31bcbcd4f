"""Stop signals (SIGTERM, SIGINT, SIGHUP): one stop per process, never inside a claim update.

The training loop and the command line install handlers for :data:`STOP_SIGNALS`; this module
holds what they share: whether a stop is already under way (a later signal then changes
neither what happens nor the exit status), and short sections a stop must not cut in two
(creating, taking over or releasing a claim): a signal that arrives inside one is handled
when it ends; and calls into code that may block for long (an experiment tracker waiting on
its server, :func:`blocking_call`), which a first stop signal cuts short instead of waiting
for them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

#: The signals that stop a run cleanly: exit status 128 + the signal's number.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)

_depth = 0  # nesting of deferred() sections in the main thread
_pending: int | None = None  # a signal that arrived inside one
_stopping: int | None = None  # the signal a stop under way was started by
_blocking = 0  # nesting of blocking_call() sections in the main thread


class CallAbandoned(KeyboardInterrupt):
    """Raised by a stop signal's handler inside a :func:`blocking_call`: the call is given up
    at once (its caller drops what it was calling) and the stop goes on as the handler
    decided (training: a checkpoint at the end of the step). A ``KeyboardInterrupt``, so that
    the blocked library's ``except Exception`` does not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"given up on signal {signum} ({name(signum)})")
        self.signum = int(signum)


def name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def handled(sig: int) -> bool:
    """Whether to handle ``sig``: not a SIGHUP that is ignored (``nohup``: a closed terminal
    must not stop the process)."""
    return not (sig == getattr(signal, "SIGHUP", None) and signal.getsignal(sig) is signal.SIG_IGN)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A section that a stop signal's exception must not interrupt: a signal whose handler
    calls :func:`defer` is handled when the outermost such section ends."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only: nothing to put off here
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            signal.raise_signal(signum)  # its handler runs now


def defer(signum: int) -> bool:
    """For a handler: True if ``signum`` arrived inside a :func:`deferred` section and will
    be raised again when it ends (the handler should then return at once)."""
    global _pending
    if _depth == 0:
        return False
    if _pending is None:
        _pending = signum
    return True


@contextlib.contextmanager
def blocking_call() -> Iterator[None]:
    """A call that may block for long on something outside this process (a tracker's
    server): a stop handler that sees :func:`in_blocking_call` raises :class:`CallAbandoned`
    rather than wait for it to return."""
    global _blocking
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only
        return
    _blocking += 1
    try:
        yield
    finally:
        _blocking -= 1


def in_blocking_call() -> bool:
    """For a handler: whether the main thread is inside a :func:`blocking_call` (and no
    :func:`deferred` section, which a signal must never cut)."""
    return _blocking > 0 and _depth == 0


def stopping() -> int | None:
    """The signal that started the stop under way, or None."""
    return _stopping


def begin_stop(signum: int) -> None:
    """Record that a stop started by ``signum`` is under way (the first one counts)."""
    global _stopping
    if _stopping is None:
        _stopping = int(signum)


def reset() -> None:
    global _stopping, _pending
    _stopping = _pending = None
