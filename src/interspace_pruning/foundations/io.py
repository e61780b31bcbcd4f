"""Atomic file writes (a reader never sees a half-written file) and checked JSON reads."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

#: Temp files of :func:`atomic_write_bytes` are ``.<name>.<random>.tmp`` beside the target.
TEMP_SUFFIX = ".tmp"


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, keep_previous: str | os.PathLike | None = None
) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename over ``path``.

    With ``keep_previous``, an existing ``path`` is first renamed to that name, so the last
    good version survives a file damaged later. If the disk fills up (``ENOSPC``) or the write
    fails otherwise, the temp file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; match what a plain open() makes
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.is_file():
            # between these two renames only the previous version exists: readers fall back
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete the temp files that killed writes left in ``directory``; returns them.

    Call only while no other process writes there (e.g. holding the run directory's claim).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
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


class CorruptFileError(ValueError):
    """A file this project wrote cannot be used: unreadable, damaged or of the wrong shape."""

    def __init__(
        self, path: str | os.PathLike, problem: str, fix: str = "", message: str | None = None
    ) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(message or f"{path} {problem}" + (f"; {fix}" if fix else ""))


def read_json(path: str | os.PathLike, kind: type = dict, fix: str = "") -> Any:
    """Parse a JSON file that must hold a ``kind``; a :class:`CorruptFileError` names the
    file otherwise (not readable, not JSON, wrong type)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptFileError(path, f"cannot be read ({_reason(e)})", fix) from None
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise CorruptFileError(path, f"is not valid JSON ({e})", fix) from None
    if not isinstance(obj, kind):
        raise CorruptFileError(
            path, f"holds a JSON {type(obj).__name__}, not a {kind.__name__}", fix
        ) from None
    return obj


def read_jsonl(path: str | os.PathLike, fix: str = "") -> list[dict]:
    """The rows of a JSON-lines file; a :class:`CorruptFileError` names the file and line."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise CorruptFileError(path, f"line {n} is not valid JSON ({e})", fix) from None
                if not isinstance(row, dict):
                    raise CorruptFileError(path, f"line {n} is not a JSON object", fix)
                rows.append(row)
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptFileError(path, f"cannot be read ({_reason(e)})", fix) from None
    return rows


def _reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e).splitlines()[0] if str(e) else type(e).__name__
