"""Lottery tickets: iterative magnitude pruning with rewinding, round by round."""

from __future__ import annotations

import time
from pathlib import Path

from torch import nn

from .. import data as data_mod
from ..foundations.checkpoint import save_tensors
from ..foundations.io import atomic_write_bytes, atomic_write_json
from ..masks import prunable
from ..pruning import prune
from ..schedules import RewindPoint, imp_levels, rewind
from ..training import Callback, train
from .run import RunResult, prepare_representation, summarise


def run_imp(
    cfg,
    out: Path | None,
    dataset: data_mod.ImageDataset,
    model: nn.Module | None = None,
    callbacks: list[Callback] | None = None,
    progress: bool = True,
) -> RunResult:
    """Round 0 trains the unpruned model; round r prunes to level r, rewinds and retrains.

    Each round's metrics, summary and masks go to ``out/round_<r>/``; the run's own
    ``metrics.jsonl``/``summary.json`` are those of the last round.
    """
    p = cfg.prune
    levels = imp_levels(p.sparsity, cfg.imp.imp_rounds, cfg.imp.imp_rate)
    start = time.perf_counter()
    model = prepare_representation(cfg, dataset, model)
    prunable(model)
    rewind_point = RewindPoint(cfg.imp.rewind_step)
    rounds: list[dict] = []
    history: list[dict] = []
    for r, level in enumerate([0.0, *levels]):
        if r > 0:
            prune(model, p.criterion, level, **p.allocation_kwargs())
            rewind(model, rewind_point.state)
        sub = out / f"round_{r}" if out is not None else None
        cbs = ([rewind_point] if r == 0 else []) + list(callbacks or [])
        desc = f"{p.representation} imp round {r}/{len(levels)} ({level:.1%})"
        history = train(model, dataset, cfg.train, sub, cbs, progress, desc)
        summary = summarise(model, history, time.perf_counter() - start, p.representation)
        summary["round"] = r
        rounds.append(summary)
        if sub is not None:
            atomic_write_json(sub / "summary.json", summary)
            save_tensors(sub / "masks.pt", {e.name: e.mask.bool() for e in prunable(model)})
    summary = dict(rounds[-1], rounds=rounds)
    if out is not None:
        last = out / f"round_{len(levels)}" / "metrics.jsonl"
        atomic_write_bytes(out / "metrics.jsonl", last.read_bytes())
        save_tensors(out / "model.pt", model.state_dict())
        atomic_write_json(out / "summary.json", summary)  # last: marks the run finished
    return RunResult(cfg, history, summary, model)
