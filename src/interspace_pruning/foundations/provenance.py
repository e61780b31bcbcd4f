"""What a rerun needs to know about the code: its version, git commit and whether the
checkout had uncommitted changes to the code when a run trained."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

#: The package's source folder; its git checkout (if any) is the code's version.
_SOURCE = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(_SOURCE), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """``{"version", "commit", "dirty"}``: the installed package version, the git commit of
    the source checkout and whether its code (the package folder) differed from that commit
    (``None`` for both outside a git checkout, e.g. an installed wheel). Results files
    elsewhere in the checkout (``docs/``) do not count as dirty code."""
    try:
        version = metadata.version("interspace-pruning")
    except metadata.PackageNotFoundError:
        version = None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".") if commit else None
    return {
        "version": version,
        "commit": commit,
        "dirty": None if status is None else bool(status),
    }
