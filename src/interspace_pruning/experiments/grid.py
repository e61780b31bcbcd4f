"""Grids of runs: every combination of some hyperparameters, one directory per run.

A run's directory is named by the hash of its resolved configuration, so a grid can be
stopped and started again: runs with a ``summary.json`` are not trained twice.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..foundations.hparams import coerce, config_hash
from ..training import distributed
from ..training.loop import CHECKPOINT
from .config import PruneConfig, RunConfig, config_from_dict
from .run import run

SECTIONS = ("data", "model", "prune", "train", "imp", "gmp", "dst")
#: Which optional section each method reads; the others are reset before hashing.
METHOD_SECTIONS = {"imp": "imp", "gmp": "gmp", "rigl": "dst", "set": "dst"}


def override(cfg: RunConfig, key: str, value: Any) -> RunConfig:
    """``override(cfg, "prune.sparsity", 0.9)``: a copy with one field changed (validated)."""
    section, _, name = key.partition(".")
    if section not in SECTIONS or not name:
        raise ValueError(f"grid key {key!r} must look like '<{'|'.join(SECTIONS)}>.<field>'")
    sub = getattr(cfg, section)
    value = coerce(type(sub), name, value, where=key)
    return dataclasses.replace(cfg, **{section: dataclasses.replace(sub, **{name: value})})


def canonical(cfg: RunConfig) -> RunConfig:
    """Reset settings a run ignores, so that runs that train alike hash alike.

    Dense runs ignore all pruning settings; every method ignores the sections of the
    other schedules.
    """
    if cfg.prune.representation == "dense":
        cfg = dataclasses.replace(cfg, prune=PruneConfig(representation="dense"))
    used = METHOD_SECTIONS.get(cfg.prune.method)
    fresh = RunConfig()
    for section in set(METHOD_SECTIONS.values()) - {used}:
        cfg = dataclasses.replace(cfg, **{section: getattr(fresh, section)})
    return cfg


def expand(base: RunConfig, grid: Mapping[str, Sequence[Any]]) -> list[RunConfig]:
    """All combinations of ``grid`` applied to ``base``, deduplicated, in grid order."""
    keys = list(grid)
    out: dict[str, RunConfig] = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        cfg = base
        for k, v in zip(keys, values, strict=True):
            cfg = override(cfg, k, v)
        cfg = canonical(cfg)
        out.setdefault(config_hash(cfg), cfg)
    return list(out.values())


def run_dir(root: Path, cfg: RunConfig) -> Path:
    return Path(root) / config_hash(cfg)


def adopt_renamed_runs(root: Path, configs: Sequence[RunConfig]) -> None:
    """Move runs whose folder name is an older hash of the same configuration.

    A hash covers every field, so adding a hyperparameter (with a default) renames every
    run; the ``config.json`` beside each run says what it really was. Only rank 0 moves.
    """
    if not root.is_dir() or not distributed.info().is_main:
        return
    wanted = {run_dir(root, c).name for c in configs}
    for cfg_file in root.glob("*/config.json"):
        d = cfg_file.parent
        if d.name in wanted:
            continue
        try:
            current = config_hash(config_from_dict(json.loads(cfg_file.read_text())))
        except (ValueError, TypeError):
            continue
        if current in wanted and not (root / current).exists():
            d.rename(root / current)


def run_grid(
    configs: Sequence[RunConfig], root: str | Path, progress: bool = True
) -> Iterator[tuple[RunConfig, dict]]:
    """Train every config not finished yet under ``root`` (continuing interrupted ones from
    their checkpoints); yield ``(config, summary)``."""
    root = Path(root)
    adopt_renamed_runs(root, configs)
    for i, cfg in enumerate(configs):
        d = run_dir(root, cfg)
        done = d / "summary.json"
        if done.is_file():
            summary = json.loads(done.read_text())
        else:
            if progress and distributed.info().is_main:
                p = cfg.prune
                again = " (resuming)" if (d / CHECKPOINT).is_file() else ""
                print(
                    f"[{i + 1}/{len(configs)}] {cfg.data.dataset} {cfg.model.model} "
                    f"{p.representation} {p.method} {p.sparsity:g} seed {cfg.train.seed} "
                    f"-> {d}{again}",
                    flush=True,
                )
            summary = run(cfg, d, progress=False, resume=True).summary
        yield cfg, summary
