"""The trackers' files in a run folder, checked before a tracker reuses them.

A run folder may come from someone else (copied, downloaded, unpacked): whatever a tracker
would reuse from it is input, not configuration. MLflow's SQLite store names where each
run's artifacts go (a run's ``artifact_uri``, an experiment's ``artifact_location``); a
planted store could send them anywhere. So the store is reused only when every such path
resolves (symlinks resolved) inside the folder's own ``mlartifacts``, and artifacts are
written where this package's configuration puts them, never where a store says. A symlink
among the trackers' files that leads out of the folder is refused as well.

Everything here reads files with the standard library only (``sqlite3``, opened with a
busy timeout), so the checks run before any tracker package is imported, and without one.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ..foundations.io import CorruptFileError, lies_in
from .base import TrackerRefused

#: Where MLflow's artifacts go in a root (``<root>/mlartifacts/<run id>/artifacts``).
MLFLOW_ARTIFACTS = "mlartifacts"
#: How long the store check waits for another process's write to the store to end.
BUSY_SECONDS = 10.0
#: MLflow's tables this package writes to: a trigger on one could change a row after the
#: check (MLflow's own trigger guards its ``secrets`` table, which is left alone).
WRITTEN_TABLES = frozenset(
    {"experiments", "experiment_tags", "runs", "tags", "params", "metrics", "latest_metrics"}
)
#: A tracker run id as this package uses it (in paths and file patterns): MLflow's are 32
#: hex digits, W&B's the config hash (``-2``, ``-3`` for a folder started over).
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def uri_path(uri: str) -> Path | None:
    """The local path of a ``file:`` URI or an absolute path; ``None`` for anything else
    (another scheme, a relative path: not a place this package would have put artifacts)."""
    parts = urlsplit(uri)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        path = unquote(parts.path)
    elif parts.scheme == "" and not parts.netloc:
        path = uri
    else:
        return None
    return Path(path) if os.path.isabs(path) else None


def artifact_root(root: Path) -> Path:
    """``<root>/mlartifacts`` with ``root`` resolved (the folder itself not resolved: a
    symlinked ``mlartifacts`` leading elsewhere is then outside it)."""
    return Path(root).resolve() / MLFLOW_ARTIFACTS


def check_run_id(run_id: str, where: str, fix: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise TrackerRefused(
            f"{where}: tracker run id {str(run_id)[:80]!r} is not 1-64 letters, digits, "
            f"'-' or '_'; {fix}"
        )
    return run_id


def store_fix(db: Path) -> str:
    return (
        f"move {db} aside to start a new MLflow store there (the run's own files are "
        "unaffected), or leave out --log mlflow"
    )


def check_mlflow_store(db: Path, root: Path, experiment: str) -> None:
    """Refuse MLflow's SQLite store ``db`` in ``root`` unless every run's ``artifact_uri``
    and experiment ``experiment``'s ``artifact_location`` resolve inside
    ``<root>/mlartifacts``, the store and its journal files are plain files in ``root``,
    and no trigger sits on a table this package writes. A missing store passes (MLflow
    creates it), so does one without MLflow's tables yet."""
    db = Path(db)
    fix = store_fix(db)
    if not db.exists() and not db.is_symlink():
        return
    for f in (db, *(db.with_name(db.name + s) for s in ("-journal", "-wal", "-shm"))):
        if f.is_symlink() or (f.exists() and not f.is_file()):
            raise TrackerRefused(f"{f} is a symlink or not a plain file; {fix}")
    if not lies_in(db, root):
        raise TrackerRefused(f"{db} lies outside {root}; {fix}")
    base = artifact_root(root)
    rows = _store_rows(db, experiment, fix)
    for kind, key, uri in rows:
        path = uri_path(str(uri)) if uri is not None else None
        if path is None or not lies_in(path, base, resolve_folder=False):
            raise TrackerRefused(
                f"{db}: {kind} {key} keeps its artifacts at {str(uri)[:200]!r}, outside "
                f"{base} (a copied or planted store); {fix}"
            )


def _store_rows(db: Path, experiment: str, fix: str) -> list[tuple[str, str, str | None]]:
    """(what, which, artifact URI) for experiment ``experiment`` and every run of ``db``."""
    # mode=rw: a journal left by a killed write is rolled back first, as MLflow's own
    # connection would (mode=ro could read the pages it is about to restore)
    uri = f"file:{quote(str(db.resolve()))}?mode=rw"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=BUSY_SECONDS)
    except sqlite3.Error as e:
        raise CorruptFileError(db, f"cannot be opened as an SQLite store ({e})", fix) from None
    try:
        con.execute("PRAGMA query_only = ON")  # this check never writes
        tables = {
            name: kind
            for kind, name in con.execute(
                "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view')"
            )
        }
        if tables.get("experiments") != "table" or tables.get("runs") != "table":
            if tables:  # a database, but not MLflow's
                raise CorruptFileError(db, "is not an MLflow store (no experiments or runs)", fix)
            return []  # empty: MLflow creates its tables
        for name, table in con.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"
        ):
            if str(table).lower() in WRITTEN_TABLES:
                raise TrackerRefused(
                    f"{db} has a trigger {str(name)[:80]!r} on its {table} table (MLflow's "
                    f"stores have none there: not a store this package wrote); {fix}"
                )
        rows: list[tuple[str, str, str | None]] = [
            ("experiment", repr(str(name)[:80]), loc)
            for name, loc in con.execute(
                "SELECT name, artifact_location FROM experiments WHERE name = ?", (experiment,)
            )
        ]
        rows += [
            ("run", str(run)[:80], uri)
            for run, uri in con.execute("SELECT run_uuid, artifact_uri FROM runs")
        ]
        return rows
    except sqlite3.Error as e:
        raise CorruptFileError(db, f"cannot be read as an MLflow store ({e})", fix) from None
    finally:
        con.close()


def check_links(
    folder: Path, names: Iterable[str] | None = None, within: Path | None = None
) -> None:
    """Refuse a symlink in ``folder`` (among ``names``, or any entry) that leads out of
    ``folder``; with ``within``, also ``folder`` itself if it is a symlink leading out of
    ``within``."""
    folder = Path(folder)
    if within is not None and folder.is_symlink() and not lies_in(folder, within):
        raise TrackerRefused(
            f"{folder} is a symlink leading out of {within}; remove it (a tracker would "
            "write through it)"
        )
    if not folder.is_dir():
        return
    entries = [folder / n for n in names] if names is not None else list(folder.iterdir())
    for p in entries:
        if p.is_symlink() and not lies_in(p, folder):
            raise TrackerRefused(
                f"{p} is a symlink leading out of {folder}; remove it (a tracker would write "
                "through it)"
            )


def safe_dir(base: Path, parts: Iterable[str]) -> Path:
    """``base/parts...``, created as needed, refusing a symlinked or ``..`` component (so
    that a file written there stays under ``base``)."""
    d = Path(base)
    if d.is_symlink():
        raise TrackerRefused(f"{d} is a symlink; remove it (a tracker would write through it)")
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\\" in part:
            raise TrackerRefused(f"artifact path part {part!r} under {base} is not a plain name")
        d = d / part
        if d.is_symlink():
            raise TrackerRefused(f"{d} is a symlink; remove it (a tracker would write through it)")
    d.mkdir(parents=True, exist_ok=True)
    return d
