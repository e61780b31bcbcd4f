"""Reading a run directory's small files, each checked: a bad one is named, never a traceback."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from ..foundations.hparams import coerce
from ..foundations.io import CorruptFileError, read_json, read_jsonl
from .config import RunConfig

CONFIG, SUMMARY, METRICS = "config.json", "summary.json", "metrics.jsonl"
#: Written instead of a summary when a run's loss became NaN/inf (it would again: skipped).
DIVERGED = "diverged.json"


def _retrain(run_dir: Path) -> str:
    return f"delete the folder {run_dir} to train that run again"


def read_config(path: str | Path) -> RunConfig:
    """The :class:`RunConfig` in a run's ``config.json``, every field type-checked."""
    path = Path(path)
    fix = _retrain(path.parent)
    d = read_json(path, dict, fix)
    fresh = RunConfig()
    parts = {}
    for f in dataclasses.fields(RunConfig):
        section = d.get(f.name, {})
        if not isinstance(section, dict):
            raise CorruptFileError(path, f"has a {f.name!r} that is not a mapping", fix)
        cls = type(getattr(fresh, f.name))
        known = {g.name for g in dataclasses.fields(cls)}
        try:
            values = {
                k: coerce(cls, k, v, where=f"{f.name}.{k}")
                for k, v in section.items()
                if k in known
            }
            parts[f.name] = cls(**values)
        except (ValueError, TypeError) as e:
            raise CorruptFileError(path, f"is not a valid run configuration ({e})", fix) from None
    return RunConfig(**parts)


def read_summary(path: str | Path) -> dict:
    """A finished run's ``summary.json`` (a JSON object)."""
    path = Path(path)
    return read_json(path, dict, _retrain(path.parent))


def read_metrics(path: str | Path) -> list[dict]:
    """A run's per-epoch ``metrics.jsonl``."""
    path = Path(path)
    return read_jsonl(path, _retrain(path.parent))


def diverged(summary: dict, key: str = "test_acc") -> bool:
    """Whether a summary records a run that diverged (a NaN/inf result or a ``diverged`` mark)."""
    if summary.get("status") == "diverged":
        return True
    value = summary.get(key)
    return not isinstance(value, (int, float)) or not math.isfinite(value)
