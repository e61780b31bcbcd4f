"""Claims on run directories: one process trains a run, however many sweeps share the folder.

A claim is a file ``.claim`` created atomically (``O_CREAT | O_EXCL``, atomic on local
filesystems and on NFSv3+) holding the owner's host, PID, start time and a random token. While
the owner trains, a heartbeat thread touches the file (its mtime) every
:data:`HEARTBEAT_SECONDS`. A claim is taken over when its owner is gone: a dead PID on this
host, or no heartbeat for :func:`stale_after` seconds (``INTERSPACE_CLAIM_TIMEOUT``; other
hosts' PIDs cannot be checked). Take-overs are serialised by a second atomic file, so two
processes never both take over one stale claim.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CLAIM = ".claim"
HEARTBEAT_SECONDS = 30.0
DEFAULT_STALE_SECONDS = 600.0


class RunClaimedError(ValueError):
    """The run directory is being trained by another live process."""

    def __init__(self, path: Path, owner: dict) -> None:
        self.path, self.owner = path, owner
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
        super().__init__(
            f"{path.parent} is being trained by another process (host {owner.get('host')}, "
            f"pid {owner.get('pid')}, since {since}); wait for it, or stop it first"
        )


def stale_after() -> float:
    """Seconds without a heartbeat after which any claim counts as abandoned."""
    value = os.environ.get("INTERSPACE_CLAIM_TIMEOUT", "")
    try:
        return float(value) if value else DEFAULT_STALE_SECONDS
    except ValueError:
        raise ValueError(
            f"INTERSPACE_CLAIM_TIMEOUT must be a number of seconds, got {value!r}"
        ) from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError):
        return False
    return True


def read_owner(path: Path) -> dict | None:
    """The owner recorded in a claim file; ``{}`` if unreadable (half-written), None if absent."""
    try:
        owner = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def is_stale(path: Path, owner: dict) -> bool:
    """Whether the claim at ``path`` (with ``owner`` read from it) is abandoned."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    if age > stale_after():
        return True
    if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        return not _pid_alive(owner["pid"])
    return False


#: Claims this process holds, by path, with how many times each was taken (re-entrant).
_HELD: dict[Path, list] = {}
_HELD_LOCK = threading.Lock()


@dataclass
class Claim:
    """A held claim; release it (or use it as a context manager) when the run is done."""

    path: Path
    token: str
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _nested: bool = field(default=False, repr=False)

    def start_heartbeat(self, interval: float = HEARTBEAT_SECONDS) -> None:
        def beat() -> None:
            while not self._stop.wait(interval):
                with contextlib.suppress(OSError):  # a full or read-only disk: it just ages
                    os.utime(self.path)

        self._thread = threading.Thread(target=beat, name="interspace-claim", daemon=True)
        self._thread.start()

    def held(self) -> bool:
        owner = read_owner(self.path)
        return bool(owner) and owner.get("token") == self.token

    def release(self) -> None:
        with _HELD_LOCK:
            entry = _HELD.get(self.path.resolve())
            if entry is not None:
                entry[1] -= 1
                if entry[1] > 0:
                    return  # an outer holder in this process keeps it
                del _HELD[self.path.resolve()]
        if self._nested:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.held():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _create(path: Path) -> Claim | None:
    token = secrets.token_hex(8)
    owner = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "token": token,
    }
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(owner))
        f.flush()
        os.fsync(f.fileno())
    return Claim(path, token)


def try_claim(run_dir: str | Path, heartbeat: bool = True) -> Claim:
    """Claim ``run_dir`` (created if needed), taking over an abandoned claim.

    Raises :class:`RunClaimedError` if another live process holds it.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM
    with _HELD_LOCK:
        entry = _HELD.get(path.resolve())
        if entry is not None and entry[0].held():  # this process holds it already
            entry[1] += 1
            return Claim(path, entry[0].token, _nested=True)
    for _ in range(5):
        claim = _create(path)
        if claim is not None:
            if heartbeat:
                claim.start_heartbeat()
            with _HELD_LOCK:
                _HELD[path.resolve()] = [claim, 1]
            return claim
        owner = read_owner(path)
        if owner is None:
            continue  # released meanwhile: try again
        if owner == {}:
            # being written right now, or garbage: judge it by its age only
            owner = {"host": None}
        if not is_stale(path, owner):
            raise RunClaimedError(path, owner)
        _take_over(path)
    owner = read_owner(path) or {}
    raise RunClaimedError(path, owner)


def _take_over(path: Path) -> None:
    """Remove the stale claim at ``path``, unless someone else is doing so."""
    lock = path.with_name(CLAIM + ".takeover")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:  # a take-over lock left by a process killed in the middle of one
            if time.time() - lock.stat().st_mtime > 60:
                lock.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        time.sleep(0.05)
        return
    os.close(fd)
    try:
        current = read_owner(path)
        # judged again under the lock: a fresh claim made meanwhile stays
        if current is not None and is_stale(path, current or {"host": None}):
            path.unlink(missing_ok=True)
    finally:
        lock.unlink(missing_ok=True)


def claim_owner(run_dir: str | Path) -> dict | None:
    """The live owner of ``run_dir``'s claim, or None if it is free or abandoned."""
    path = Path(run_dir) / CLAIM
    owner = read_owner(path)
    if owner is None:
        return None
    if is_stale(path, owner or {"host": None}):
        return None
    return owner
