"""Fetching official dataset files where a network exists (``--download``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .errors import DataError


def user_cache_dir(name: str) -> Path:
    """Default data folder: ``$INTERSPACE_DATA/<name>``, else the user cache dir."""
    base = os.environ.get("INTERSPACE_DATA")
    if base:
        return Path(base) / name
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "interspace-pruning" / name


def fetch(urls: list[str], dest: Path, timeout: float = 60.0) -> Path:
    """Download the first URL that answers to ``dest`` (temp file, then rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(r, f)
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise DataError(
        f"could not download {dest.name} ({'; '.join(errors)}); without a network, place the "
        f"file in {dest.parent} yourself"
    )
