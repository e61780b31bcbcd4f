"""Finding finished runs on disk and rebuilding their configs and models."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..experiments.config import RunConfig, config_from_dict
from ..foundations.checkpoint import load_tensors
from ..foundations.io import read_jsonl
from ..interspace import to_interspace
from ..masks import prunable

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


def collect_runs(root: str | Path) -> tuple[list[RunRecord], list[Path]]:
    """Finished runs under ``root`` (a run directory or a sweep), and unfinished ones."""
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
        if not (d / "summary.json").is_file():
            unfinished.append(d)
            continue
        cfg = config_from_dict(json.loads((d / "config.json").read_text()))
        summary = json.loads((d / "summary.json").read_text())
        history = read_jsonl(d / "metrics.jsonl") if (d / "metrics.jsonl").is_file() else []
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
    if p.representation == "ip":
        # the basis init is irrelevant: the state dict overwrites it (pca needs no data here)
        basis = "dct" if p.basis == "pca" else p.basis
        to_interspace(model, basis, p.share, p.trainable_basis, p.normalize_basis)
    if p.representation != "dense":
        prunable(model)
    model.load_state_dict(load_tensors(record.path / "model.pt"))
    return model.eval()
