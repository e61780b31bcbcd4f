"""Claims on run directories: one process trains a run, however many sweeps share the folder.

A claim is a file ``.claim`` created atomically (``O_CREAT | O_EXCL``, atomic on local
filesystems and on NFSv3+) holding the owner's host, PID, start time and a random token. While
the owner trains, a heartbeat thread touches the file (its mtime) every
:func:`heartbeat_seconds` (``INTERSPACE_CLAIM_HEARTBEAT``, default 30). A claim is taken over
when its owner is gone: a dead (or zombie) PID on this host, or no heartbeat for
:func:`stale_after` seconds (``INTERSPACE_CLAIM_TIMEOUT``, default 600, at least three
heartbeats; other hosts' PIDs cannot be checked). Take-overs are serialised by a second atomic
file, so two processes never both take over one stale claim.

A claim is a lease: an owner that was stopped (``kill -STOP``, a suspended VM, a frozen NFS
mount) for longer than the timeout may have been taken over while it could not beat. So the
owner re-checks it before every write into the run directory (:func:`ensure_held`, called by
:func:`..io.atomic_write_bytes` before its rename) and the heartbeat marks it lost as soon as
the process runs again (the training loop stops at its next step); a process that lost its
claim raises :class:`ClaimLostError` and writes nothing more there. Its temp files carry its
token (which names its host and PID), so the taker never deletes a temp file whose writer may
still be alive (see :func:`..io.remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import interrupts

CLAIM = ".claim"
DEFAULT_HEARTBEAT_SECONDS = 30.0
DEFAULT_STALE_SECONDS = 600.0
#: A timeout must span this many heartbeats, so that a live owner is never taken over.
MIN_HEARTBEATS = 3
#: A token: random part, this host's id, the PID (temp files carry it; see writer_state).
_TOKEN = re.compile(r"[0-9a-f]{12}-([0-9a-f]{8})-([0-9]+)")


class RunClaimedError(ValueError):
    """The run directory is being trained by another live process."""

    def __init__(self, path: Path, owner: dict) -> None:
        self.path, self.owner = path, owner
        started = owner.get("started", 0)
        try:  # a claim file is data: a planted "started" must not raise here
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        except (TypeError, ValueError, OverflowError, OSError):
            since = "an unreadable time"
        super().__init__(
            f"{path.parent} is being trained by another process (host {owner.get('host')}, "
            f"pid {owner.get('pid')}, since {since}); wait for it, or stop it first"
        )


class ClaimLostError(RunClaimedError):
    """This process's claim was taken over (it was stopped or silent past the timeout)."""

    def __init__(self, path: Path, owner: dict) -> None:
        self.path, self.owner = path, owner
        who = f" (host {owner.get('host')}, pid {owner.get('pid')})" if owner.get("pid") else ""
        ValueError.__init__(
            self,
            f"{path.parent} was taken over by another process{who} while this one was stopped "
            "or silent for longer than the claim timeout (INTERSPACE_CLAIM_TIMEOUT); this one "
            "stops and writes nothing more there, the run goes on in the other",
        )


def _seconds(var: str, default: float) -> float:
    value = os.environ.get(var, "")
    try:
        seconds = float(value) if value.strip() else default
    except ValueError:
        raise ValueError(f"{var} must be a number of seconds, got {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{var} must be a positive number of seconds, got {value!r}")
    return seconds


def heartbeat_seconds() -> float:
    """How often an owner touches its claim (``INTERSPACE_CLAIM_HEARTBEAT``, default 30 s)."""
    return _seconds("INTERSPACE_CLAIM_HEARTBEAT", DEFAULT_HEARTBEAT_SECONDS)


def stale_after() -> float:
    """Seconds without a heartbeat after which any claim counts as abandoned
    (``INTERSPACE_CLAIM_TIMEOUT``, default 600 s; at least three heartbeats)."""
    timeout = _seconds("INTERSPACE_CLAIM_TIMEOUT", DEFAULT_STALE_SECONDS)
    beat = heartbeat_seconds()
    if timeout < MIN_HEARTBEATS * beat:
        raise ValueError(
            f"INTERSPACE_CLAIM_TIMEOUT={timeout:g} is shorter than {MIN_HEARTBEATS} heartbeats: "
            f"set it to at least {MIN_HEARTBEATS * beat:g} seconds (heartbeat every {beat:g} s, "
            "INTERSPACE_CLAIM_HEARTBEAT), or a live run would be taken over"
        )
    return timeout


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    except (OverflowError, ValueError):
        return False
    try:  # Linux: a zombie still has a PID, and signal 0 reaches it
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS), or it just ended: judged alive, as before
    state = stat.rpartition(")")[2].split()[:1]
    return state not in (["Z"], ["X"], ["x"])


def _host_id(host: str | None = None) -> str:
    return hashlib.sha256((host or socket.gethostname()).encode()).hexdigest()[:8]


def new_token() -> str:
    """A claim token: random, naming this host (hashed) and this PID."""
    return f"{secrets.token_hex(6)}-{_host_id()}-{os.getpid()}"


def writer_state(token: str) -> str:
    """Whether the process that made ``token`` runs: "alive", "dead", or "unknown" (another
    host's, or a token of an older version)."""
    m = _TOKEN.fullmatch(token)
    if m is None or m.group(1) != _host_id():
        return "unknown"
    return "alive" if _pid_alive(int(m.group(2))) else "dead"


#: A claim file is a small JSON object; more than this is not one of ours.
MAX_CLAIM_BYTES = 64 * 1024


def read_owner(path: Path) -> dict | None:
    """The owner recorded in a claim file; ``{}`` if unreadable (half-written), None if absent."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a planted FIFO would block the read
            return {}
        with open(path, "rb") as f:
            owner = json.loads(f.read(MAX_CLAIM_BYTES))  # ours are ~200 bytes
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError):  # RecursionError: planted deep nesting
        return {}
    return owner if isinstance(owner, dict) else {}


def is_stale(path: Path, owner: dict) -> bool:
    """Whether the claim at ``path`` (with ``owner`` read from it) is abandoned."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    # silent too long, or dated further ahead than clocks drift (touch -d 2035 would
    # otherwise hold the run until 2035)
    if abs(age) > stale_after():
        return True
    if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        return not _pid_alive(owner["pid"])
    return False


#: Claims this process holds, by path, with how many times each was taken (re-entrant).
_HELD: dict[Path, list] = {}
_HELD_LOCK = threading.Lock()


@dataclass
class Claim:
    """A held claim; release it (or use it as a context manager) when the run is done.

    ``lost`` turns True once the claim is found to belong to another process (by the
    heartbeat, or by :meth:`check`); it never turns back.
    """

    path: Path
    token: str
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _nested: bool = field(default=False, repr=False)

    def start_heartbeat(self, interval: float | None = None) -> None:
        interval = heartbeat_seconds() if interval is None else interval

        def beat() -> None:
            # after a SIGSTOP longer than ``interval`` the wait ends at once on SIGCONT
            while not self._stop.wait(interval):
                if self._ownership() == "lost":
                    self.lost = True  # the training loop stops at its next step check
                    return
                with contextlib.suppress(OSError):  # a full or read-only disk: it just ages
                    os.utime(self.path)

        self._thread = threading.Thread(target=beat, name="interspace-claim", daemon=True)
        self._thread.start()

    def _ownership(self) -> str:
        """ "held", "lost" (the file is gone or another's), or "unknown" (cannot be read)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return "lost"
        except OSError:
            return "unknown"  # e.g. a network filesystem's hiccup: not a reason to stop
        try:
            owner = json.loads(text)
        except ValueError:  # ours was complete before we began: this is another's, half-made
            return "lost"
        return "held" if isinstance(owner, dict) and owner.get("token") == self.token else "lost"

    def held(self) -> bool:
        return self._ownership() == "held"

    def check(self) -> None:
        """Raise :class:`ClaimLostError` if the claim is no longer this process's."""
        if not self.lost and self._ownership() == "lost":
            self.lost = True
        if self.lost:
            raise ClaimLostError(self.path, read_owner(self.path) or {})

    def release(self) -> None:
        with interrupts.deferred():  # a stop signal must not leave the claim file behind
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
    token = new_token()
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
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(owner))
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # e.g. a full disk: no half-written claim stays behind
        path.unlink(missing_ok=True)
        raise
    return Claim(path, token)


def try_claim(run_dir: str | Path, heartbeat: bool = True) -> Claim:
    """Claim ``run_dir`` (created if needed), taking over an abandoned claim.

    Raises :class:`RunClaimedError` if another live process holds it, and ``ValueError``
    for a bad ``INTERSPACE_CLAIM_TIMEOUT``/``INTERSPACE_CLAIM_HEARTBEAT``.
    """
    stale_after()  # checks both settings before anything is claimed
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM
    with _HELD_LOCK:
        entry = _HELD.get(path.resolve())
    if entry is not None:  # this process holds it already, or did until it was taken over
        entry[0].check()
        with _HELD_LOCK:
            entry[1] += 1
        return Claim(path, entry[0].token, _nested=True)
    for _ in range(5):
        claim = None
        try:
            with interrupts.deferred():  # created, registered and beating, or not created
                claim = _create(path)
                if claim is not None:
                    if heartbeat:
                        claim.start_heartbeat()
                    with _HELD_LOCK:
                        _HELD[path.resolve()] = [claim, 1]
        except BaseException:  # e.g. a stop signal that came meanwhile, raised on leaving
            if claim is not None:
                claim.release()
            raise
        if claim is not None:
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
    with interrupts.deferred():
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


def covering(path: str | Path) -> Claim | None:
    """The claim this process holds on ``path`` or on a folder above it, if any."""
    if not _HELD:
        return None
    p = Path(path).resolve()
    with _HELD_LOCK:
        for d in (p, *p.parents):
            entry = _HELD.get(d / CLAIM)
            if entry is not None:
                return entry[0]
    return None


def ensure_held(path: str | Path) -> None:
    """Before writing into ``path``: raise :class:`ClaimLostError` if this process claimed it
    (or a folder above it) and the claim has since been taken over. Nothing to check (and no
    error) where this process holds no claim over ``path``."""
    claim = covering(path)
    if claim is not None:
        claim.check()


def claim_owner(run_dir: str | Path) -> dict | None:
    """The live owner of ``run_dir``'s claim, or None if it is free or abandoned."""
    path = Path(run_dir) / CLAIM
    owner = read_owner(path)
    if owner is None:
        return None
    if is_stale(path, owner or {"host": None}):
        return None
    return owner
