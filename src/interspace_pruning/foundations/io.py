"""Atomic file writes (a reader never sees a half-written file) and checked JSON reads."""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from . import claims
from .memory import available_memory, gib

#: Temp files of :func:`atomic_write_bytes` are ``.<name>.<token>.<random>.tmp`` beside the
#: target, ``<token>`` being the writer's claim token (``.<name>.<random>.tmp`` where the
#: writer holds no claim over the folder).
TEMP_SUFFIX = ".tmp"
_TOKEN_IN_TEMP = re.compile(
    r"\..+\.([0-9a-f]{12}-[0-9a-f]{8}-[0-9]+)\.[^.]+" + re.escape(TEMP_SUFFIX)
)
#: A temp file of a writer on another host (whose PID cannot be checked) is removed once it
#: is this old: a process stopped longer than that finds its temp file gone and stops with
#: a lost claim, never with a damaged file.
FOREIGN_TEMP_SECONDS = 24 * 3600.0


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, keep_previous: str | os.PathLike | None = None
) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename over ``path``.

    With ``keep_previous``, an existing ``path`` is first renamed to that name, so the last
    good version survives a file damaged later. If the disk fills up (``ENOSPC``) or the write
    fails otherwise, the temp file is removed and ``path`` is left as it was.

    Where this process holds a claim over the folder (:mod:`.claims`), the temp file carries
    its token and the claim is checked before the renames: a process whose claim was taken
    over removes its temp file and raises :class:`~.claims.ClaimLostError`, changing nothing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lease = claims.covering(path.parent)
    if lease is not None and lease.lost:
        lease.check()  # known lost already: not even a temp file
    prefix = f".{path.name}." + (f"{lease.token}." if lease is not None else "")
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; match what a plain open() makes
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if lease is not None:
            lease.check()  # the fence: only the claim's owner replaces files in its folder
        if keep_previous is not None and path.is_file():
            # between these two renames only the previous version exists: readers fall back
            os.replace(path, keep_previous)
        try:
            os.replace(tmp, path)
        except FileNotFoundError:
            if lease is not None and not Path(tmp).exists():
                lease.check()  # removed by a taker after a very long stop: a lost claim
            raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete the temp files that killed writes left in ``directory``; returns them.

    Removed: temp files without a token (written outside any claim: call this only while
    no such writer works there), this process's own, those of a dead (or zombie) process of
    this host, and those of another host's process older than :data:`FOREIGN_TEMP_SECONDS`.
    Kept: those of a live process, e.g. the previous owner of a claim that was taken over
    while it was stopped; woken, it finds its claim lost and removes its temp file itself.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    lease = claims.covering(directory)
    stale = []
    for p in directory.glob(f".*{TEMP_SUFFIX}"):
        m = _TOKEN_IN_TEMP.fullmatch(p.name)
        if m is not None and not (lease is not None and m.group(1) == lease.token):
            state = claims.writer_state(m.group(1))
            if state == "alive":
                continue
            if state == "unknown":
                try:
                    if time.time() - p.stat().st_mtime < FOREIGN_TEMP_SECONDS:
                        continue
                except FileNotFoundError:
                    continue
        if p.is_file():
            p.unlink(missing_ok=True)
            stale.append(p)
    return stale


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    """Rewrite a JSON-lines file atomically (small per-epoch logs)."""
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


class OutsideFolderError(ValueError):
    """A path to write that leads (through a symlink) outside the folder it must stay in."""


def open_for_append(path: str | os.PathLike) -> IO[str]:
    """``path`` opened to append text (a log, a lock), created if missing, never through a
    symlink: a planted link would make us write to (or, opened with "w", truncate) the file
    it leads to. A symlink is a one-line :class:`OutsideFolderError`."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError:
        if Path(path).is_symlink():
            raise OutsideFolderError(
                f"refusing to write {path}: it is a symlink (to {os.readlink(path)}); remove it"
            ) from None
        raise
    return os.fdopen(fd, "a")


def lies_in(
    path: str | os.PathLike, folder: str | os.PathLike, resolve_folder: bool = True
) -> bool:
    """Whether ``path`` (symlinks resolved) is ``folder`` or lies in it; False where it
    cannot be resolved (a symlink loop). ``folder`` is resolved too unless
    ``resolve_folder`` is false (then it must be resolved but for its own last part: a
    symlink there leading elsewhere puts everything under it outside)."""
    try:
        home = Path(folder).resolve() if resolve_folder else Path(folder)
        target = Path(path).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (before Python 3.13)
        return False
    return target == home or target.is_relative_to(home)


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """``path``, if it (symlinks resolved, also of a part that does not exist yet) lies in
    ``folder``; an :class:`OutsideFolderError` naming both otherwise. A received run folder
    may hold a symlink to anywhere: whatever is written through it must stay in the folder."""
    path = Path(path)
    if lies_in(path, folder):
        return path
    try:
        target = path.resolve()
    except (RuntimeError, OSError) as e:
        raise OutsideFolderError(
            f"refusing to write {path}: it cannot be resolved ({type(e).__name__}: a symlink "
            "loop?); remove that symlink or choose another output folder"
        ) from None
    raise OutsideFolderError(
        f"refusing to write {path}: it leads outside {folder} (to {target}); "
        "remove that symlink or choose another output folder"
    )


class CorruptFileError(ValueError):
    """A file this project wrote cannot be used: unreadable, damaged or of the wrong shape."""

    def __init__(
        self, path: str | os.PathLike, problem: str, fix: str = "", message: str | None = None
    ) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(message or f"{path} {problem}" + (f"; {fix}" if fix else ""))


#: Bounds on a JSON file read from a run folder (which may come from someone else): its
#: size, and how deep its arrays and objects nest (ours nest 3 deep; Python's parser would
#: raise RecursionError past about 1,000 and spend memory on the way).
MAX_JSON_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 32


def json_depth(obj: Any) -> int:
    """How deep ``obj``'s lists and dicts nest (a scalar: 0), without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item if isinstance(v, (list, dict)))
    return deepest


def parse_json(text: str, path: str | os.PathLike, fix: str = "", where: str = "") -> Any:
    """``json.loads(text)`` for a file's content, bounded: too deep or not JSON is a
    :class:`CorruptFileError` naming ``path`` (and ``where`` in it, e.g. a line)."""
    try:
        obj = json.loads(text)
    except RecursionError:
        obj = None
        deep = True
    except ValueError as e:
        raise CorruptFileError(path, f"{where}is not valid JSON ({e})", fix) from None
    else:
        deep = json_depth(obj) > MAX_JSON_DEPTH
    if deep:
        raise CorruptFileError(
            path, f"{where}nests deeper than {MAX_JSON_DEPTH} levels (not a file we wrote)", fix
        )
    return obj


def _read_regular(
    path: str | os.PathLike, fix: str, limit: Callable[[int], int]
) -> tuple[bytes, int]:
    """At most ``limit(size) + 1`` bytes of the regular file ``path`` and its size when
    opened. A FIFO or a device would block or never end, so anything else is refused;
    ``limit`` may refuse the size itself (a :class:`CorruptFileError`)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise CorruptFileError(path, "is not a regular file", fix)
        with open(path, "rb") as f:
            return f.read(limit(info.st_size) + 1), info.st_size
    except OSError as e:
        raise CorruptFileError(path, f"cannot be read ({_reason(e)})", fix) from None


def read_text(path: str | os.PathLike, fix: str = "", limit: int | None = None) -> str:
    """The UTF-8 text of the regular file ``path``, of at most ``limit`` bytes (default
    :data:`MAX_JSON_BYTES`); a one-line :class:`CorruptFileError` otherwise. A received
    folder's file linked to a FIFO or a device, or padded to gigabytes, must not hang or
    exhaust this machine."""
    limit = MAX_JSON_BYTES if limit is None else limit
    # not checked against the size: a metrics file may grow while a status reads it
    data, _ = _read_regular(path, fix, lambda _size: limit)
    if len(data) > limit:
        raise CorruptFileError(
            path, f"is larger than {limit / 2**20:g} MiB (not a file we wrote)", fix
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptFileError(path, f"cannot be read ({_reason(e)})", fix) from None


def read_file_bytes(path: str | os.PathLike, fix: str = "") -> bytes:
    """The bytes of ``path``, a regular file about twice whose size (read, then parsed from
    memory) fits in the memory available; a :class:`CorruptFileError` otherwise. A received
    folder's ``model.pt`` linked to a FIFO, a device or a 16 GB file elsewhere must not hang
    or exhaust this machine."""

    def fits(size: int) -> int:
        free = available_memory()
        # read once, then unpickled from memory: about twice the file's size at the peak
        if free is not None and 2 * size > free:
            raise CorruptFileError(
                path,
                f"is {gib(size)}: reading it needs about {gib(2 * size)}, more than the "
                f"{gib(free)} of memory available",
                fix,
            )
        return size

    data, size = _read_regular(path, fix, fits)
    if len(data) != size:
        raise CorruptFileError(path, "changed while it was read", fix)
    return data


def read_json(path: str | os.PathLike, kind: type = dict, fix: str = "") -> Any:
    """Parse a JSON file that must hold a ``kind``; a :class:`CorruptFileError` names the
    file otherwise (not readable, larger than :data:`MAX_JSON_BYTES`, not JSON, nested
    deeper than :data:`MAX_JSON_DEPTH`, wrong type)."""
    obj = parse_json(read_text(path, fix), path, fix)
    if not isinstance(obj, kind):
        raise CorruptFileError(
            path, f"holds a JSON {type(obj).__name__}, not a {kind.__name__}", fix
        ) from None
    return obj


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` one at a time: ``splitlines()`` of 64 MiB of short lines is a
    list of about 1 GB."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        yield text[start:end]
        start = end + 1


def read_jsonl(
    path: str | os.PathLike, fix: str = "", max_rows: int | None = None, why: str = ""
) -> list[dict]:
    """The rows of a JSON-lines file; a :class:`CorruptFileError` names the file and line.
    With ``max_rows``, a file of more rows is refused (``why`` says where the bound comes
    from) before they are parsed: a few MB of tiny rows are over ten times that in memory."""
    rows = []
    for n, line in enumerate(_lines(read_text(path, fix)), 1):
        if not line.strip():
            continue
        if max_rows is not None and len(rows) >= max_rows:
            raise CorruptFileError(path, f"has more than {max_rows} rows{why}", fix)
        row = parse_json(line, path, fix, where=f"line {n} ")
        if not isinstance(row, dict):
            raise CorruptFileError(path, f"line {n} is not a JSON object", fix)
        rows.append(row)
    return rows


def _reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e).splitlines()[0] if str(e) else type(e).__name__
