"""Lottery tickets: iterative magnitude pruning with rewinding, round by round."""

from __future__ import annotations

import time
from pathlib import Path

from torch import nn

from .. import data as data_mod
from ..diagnostics import Diagnostics
from ..foundations.checkpoint import save_tensors
from ..foundations.hparams import config_hash
from ..foundations.io import inside, write_jsonl
from ..masks import prunable
from ..pruning import prune
from ..pruning.allocation import dense_layers, pattern_min_sparsity
from ..schedules import RewindPoint, imp_levels, make_options, rewind
from ..tracking import TrackingSession
from ..training import Callback, distributed, train
from ..training.checkpointing import CHECKPOINT
from ..training.device import Placement
from .results import RunResult, finish, save_initial_bases, summarise
from .run_setup import prepare_representation, pruner_options
from .runfiles import (
    MODEL,
    ROUND_PREFIX,
    SUMMARY,
    load_model_state,
    read_metrics,
    read_model,
    read_summary,
    round_dir,
)

#: The rewind state (weights at ``rewind_step`` of round 0) that every later round starts from.
REWIND = "rewind.pt"


def resume_files(out: Path) -> list[Path]:
    """The files beyond its small ones that an unfinished IMP run in ``out`` continues from
    on another checkout: the checkpoint of the round in progress, the rewind state once
    taken (round 0's checkpoints refer to it) and, after round 0, the last finished round's
    model (the next round prunes it)."""
    out = Path(out)
    numbered = []
    for sub in out.glob(f"{ROUND_PREFIX}*"):
        index = sub.name.removeprefix(ROUND_PREFIX)
        if sub.is_dir() and not sub.is_symlink() and index.isdigit():
            numbered.append((int(index), sub))
    files = []
    finished = None
    for _, sub in sorted(numbered):
        if (sub / SUMMARY).is_file():
            finished = sub
        elif (sub / CHECKPOINT).is_file():
            files.append(sub / CHECKPOINT)
    if finished is not None and (finished / MODEL).is_file():
        files.append(finished / MODEL)
    if (out / REWIND).is_file():
        files.append(out / REWIND)
    return files


def run_imp(
    cfg,
    out: Path | None,
    dataset: data_mod.ImageDataset,
    model: nn.Module | None = None,
    callbacks: list[Callback] | None = None,
    progress: bool = True,
    resume: bool = False,
    session: TrackingSession | None = None,
) -> RunResult:
    """Round 0 trains the unpruned model; round r prunes to level r, rewinds and retrains.

    Each round's metrics, summary, masks and final model go to ``out/round_<r>/``; the run's
    own ``metrics.jsonl``/``summary.json`` are those of the last round. With ``resume``,
    finished rounds are skipped (their final model and the rewind state are reloaded) and
    an interrupted round continues from its checkpoint. ``session``: the run's trackers, on
    one step axis through all rounds.
    """
    p = cfg.prune
    o = make_options("imp", **pruner_options(cfg, dataset))  # ImpOptions, as the library's
    tag = config_hash(cfg)
    levels = imp_levels(p.sparsity, o.rounds, o.rate)
    start = time.perf_counter()
    model = prepare_representation(cfg, dataset, model)  # SP or IP: masks from here on
    writes = out is not None and distributed.info().is_main
    if writes:
        save_initial_bases(out, model, tag)
    # the rewind state goes to its own file when taken, not into every round-0 checkpoint
    rewind_point = RewindPoint(
        o.rewind_step, out / REWIND if out is not None else None, writes, tag=tag
    )
    rounds: list[dict] = []
    history: list[dict] = []
    restored = False
    for r, level in enumerate([0.0, *levels]):
        sub = inside(round_dir(out, r), out) if out is not None else None
        if resume and sub is not None and (sub / "summary.json").is_file():
            rounds.append(read_summary(sub / "summary.json", cfg))
            continue
        if rounds and not restored and out is not None:  # resuming after finished rounds
            previous = round_dir(out, r - 1) / MODEL
            load_model_state(model, read_model(previous, tag), previous)
            rewind_point.read_file()
        restored = True
        if r > 0:
            if o.pattern is not None:  # N:M: the first rounds jump to the pattern's density
                entries = prunable(model)
                dense = dense_layers(entries, o.keep_first_dense, o.keep_last_dense)
                level = max(level, pattern_min_sparsity(entries, o.pattern, dense))
            prune(model, o.criterion, level, **o.allocation_kwargs())
            rewind(model, rewind_point.state)
        cbs = ([rewind_point] if r == 0 else []) + [Diagnostics(), *(callbacks or [])]
        if session is not None:
            round_steps = dataset.steps_per_epoch(cfg.train.batch_size) * cfg.train.epochs
            cbs.append(session.callback(offset=r * round_steps))
        desc = f"{p.representation.kind} imp round {r}/{len(levels)} ({level:.1%})"
        history = train(
            model,
            dataset,
            cfg.train,
            sub,
            cbs,
            progress,
            desc,
            resume=resume,
            tag=f"{tag}/round{r}",
        )
        wall = time.perf_counter() - start
        precision = Placement.of(cfg.train).precision
        summary = summarise(model, dataset, history, wall, p.representation, precision)
        summary["round"] = r
        rounds.append(summary)
        if writes:
            save_tensors(sub / "masks.pt", {e.name: e.mask.bool() for e in prunable(model)})
            finish(sub, model, summary, tag)
    summary = dict(rounds[-1], rounds=rounds)
    if writes:
        last = round_dir(out, len(levels))
        last_history = read_metrics(last / "metrics.jsonl")  # bounded in bytes and rows
        write_jsonl(out / "metrics.jsonl", last_history)
        if not restored:  # every round was already done: the model is the last round's
            load_model_state(model, read_model(last / MODEL, tag), last / MODEL)
            history = last_history
        finish(out, model, summary, tag)
    if session is not None:
        session.log_summary(summary, model)
    return RunResult(cfg, history, summary, model)
