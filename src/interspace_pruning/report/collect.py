"""Finding finished runs on disk and rebuilding their configs and models."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from ..experiments.build import representation
from ..experiments.config import RunConfig, config_from_dict  # noqa: F401 (re-exported)
from ..experiments.runfiles import (
    DIVERGED,
    diverged,
    read_config,
    read_metrics,
    read_summary,
)
from ..foundations.checkpoint import load_tensors
from ..foundations.io import CorruptFileError, read_json
from ..interspace import prepare

#: (num_classes, in_channels) of the built-in datasets.
DATASET_SHAPES = {
    "digits": (10, 1),
    "mnist": (10, 1),
    "fashion-mnist": (10, 1),
    "cifar10": (10, 3),
    "cifar100": (100, 3),
    "tiny-imagenet": (200, 3),
}


@dataclass
class RunRecord:
    path: Path
    config: RunConfig
    summary: dict
    history: list[dict] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        """The run's loss became NaN/inf (``diverged.json``) or its result is not finite."""
        return diverged(self.summary)


def collect_runs(
    root: str | Path, damaged: list[str] | None = None
) -> tuple[list[RunRecord], list[Path]]:
    """Finished runs under ``root`` (a run directory or a sweep), and unfinished ones.

    Diverged runs count as finished (see :attr:`RunRecord.diverged`). A run whose
    ``config.json``, ``summary.json`` or ``metrics.jsonl`` is damaged is left out, named on
    stderr and appended to ``damaged``.
    """
    root = Path(root)
    if not root.exists():
        raise ValueError(f"{root} does not exist")
    dirs = (
        [root]
        if (root / "config.json").is_file()
        else sorted(p.parent for p in root.glob("*/config.json"))
    )
    if not dirs:
        raise ValueError(f"{root} holds no runs (no config.json in it or its subfolders)")
    done, unfinished = [], []
    for d in dirs:
        finished, failed = (d / "summary.json").is_file(), (d / DIVERGED).is_file()
        if not finished and not failed:
            unfinished.append(d)
            continue
        try:
            cfg = read_config(d / "config.json")
            if finished:
                summary = read_summary(d / "summary.json")
            else:
                summary = {"status": "diverged", **read_json(d / DIVERGED, dict)}
            history = read_metrics(d / "metrics.jsonl") if (d / "metrics.jsonl").is_file() else []
        except CorruptFileError as e:
            print(f"interspace report: skipped a run: {e}", file=sys.stderr)
            if damaged is not None:
                damaged.append(str(e))
            continue
        done.append(RunRecord(d, cfg, summary, history))
    return done, unfinished


def load_model(record: RunRecord) -> nn.Module:
    """Rebuild a finished run's model (masks and filter bases included) from ``model.pt``."""
    cfg = record.config
    num_classes, in_channels = record.summary.get("num_classes"), record.summary.get("in_channels")
    if num_classes is None:
        num_classes, in_channels = DATASET_SHAPES[cfg.data.dataset]
    model = cfg.model.build(num_classes, in_channels)
    p = cfg.prune
    # the basis init is irrelevant: the state dict overwrites it (pca needs no data here)
    prepare(model, representation(replace(p, basis="dct") if p.basis == "pca" else p))
    model.load_state_dict(
        load_tensors(
            record.path / "model.pt",
            "model file",
            f"delete the folder {record.path} and run the sweep again to retrain it",
        )
    )
    return model.eval()
