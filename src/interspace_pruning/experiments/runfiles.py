"""A run directory's files, each checked on reading: a bad one is named, never a traceback.

``model.pt`` carries its identity: ``{"format": "interspace-model", "version": 2,
"config_hash": ..., "state_dict": ...}``, so a model copied into another run's folder is
refused. Files of version 1 (a bare state dict, written before that) still load.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..foundations.checkpoint import load_tensors, save_tensors
from ..foundations.io import CorruptFileError, read_json, read_jsonl
from .config import RunConfig, config_from_dict

CONFIG, SUMMARY, METRICS, MODEL = "config.json", "summary.json", "metrics.jsonl", "model.pt"
MODEL_FORMAT, MODEL_VERSION = "interspace-model", 2
#: Written instead of a summary when a run's loss became NaN/inf (it would again: skipped).
DIVERGED = "diverged.json"


def _retrain(run_dir: Path) -> str:
    return f"delete the folder {run_dir} to train that run again"


def read_config(path: str | Path) -> RunConfig:
    """The :class:`RunConfig` in a run's ``config.json``, every field type-checked.

    Files of every version read back to the configuration (and hash) they were written
    for: the flat keys (``representation``, ``basis``, ``gmp_interval``, ``dst_stop``, ...)
    are the current layout too, and fields added since take their defaults."""
    path = Path(path)
    fix = _retrain(path.parent)
    d = read_json(path, dict, fix)
    for name, section in d.items():
        if not isinstance(section, dict):
            raise CorruptFileError(path, f"has a {name!r} that is not a mapping", fix)
    try:
        return config_from_dict(d, check=True)
    except (ValueError, TypeError) as e:
        raise CorruptFileError(path, f"is not a valid run configuration ({e})", fix) from None


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


def write_model(path: str | Path, model: nn.Module, tag: str) -> int:
    """Write ``model``'s state dict as a ``model.pt`` of the run whose config hash is ``tag``."""
    return save_tensors(
        path,
        {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "config_hash": tag,
            "state_dict": model.state_dict(),
        },
    )


def _bare_state_dict(obj: dict) -> bool:
    """Version 1: a bare state dict, written before model files had an identity."""
    return "format" not in obj and all(isinstance(v, torch.Tensor) for v in obj.values())


def read_model(path: str | Path, tag: str | None = None, fix: str = "") -> dict:
    """The state dict in a ``model.pt``; with ``tag``, refused unless that run wrote it.

    Loadable by plain torch too: ``torch.load(path, weights_only=True)["state_dict"]``.
    """
    path = Path(path)
    fix = fix or _retrain(path.parent)
    obj = load_tensors(path, "model file", fix, legacy=_bare_state_dict)
    if _bare_state_dict(obj):
        return obj  # version 1: no identity to check
    if obj.get("format") != MODEL_FORMAT or obj.get("version") != MODEL_VERSION:
        raise CorruptFileError(
            path, f"is not an {MODEL_FORMAT} v{MODEL_VERSION} file (nor a bare state dict)", fix
        )
    theirs, state = obj.get("config_hash"), obj.get("state_dict")
    if not isinstance(theirs, str) or not isinstance(state, dict):
        raise CorruptFileError(path, "lacks its config_hash or state_dict", fix)
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CorruptFileError(path, "has a state_dict that does not map names to tensors", fix)
    if tag is not None and theirs != tag:
        raise CorruptFileError(
            path,
            f"was written by run {theirs}, not by the run of this folder ({tag}): it was "
            "copied or moved here from another run",
            fix,
        )
    return state
