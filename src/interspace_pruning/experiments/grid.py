"""Grids of runs: every combination of some hyperparameters, one directory per run.

A run's directory is named by the hash of its resolved configuration, so a grid can be
stopped and started again: runs with a ``summary.json`` are not trained twice, and a run is
claimed (:mod:`..foundations.claims`) before it is trained, so several processes can share
one grid folder.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..foundations.claims import RunClaimedError, claim_owner, try_claim
from ..foundations.hparams import config_hash
from ..foundations.io import CorruptFileError, lies_in
from ..foundations.yaml_files import brief, brief_text
from ..interspace import Representation
from ..tracking import TrackingScope
from ..training import distributed
from ..training.loop import CHECKPOINT, DivergedError
from .config import PruneConfig, RunConfig, section_names, set_values
from .run import run
from .runfiles import (
    DIVERGED,
    SUMMARY,
    read_config,
    read_diverged,
    read_summary,
    relabel_results,
)


def override(cfg: RunConfig, key: str, value: Any) -> RunConfig:
    """``override(cfg, "prune.sparsity", 0.9)``: a copy with one field changed (validated).

    Fields are named by attribute or config key: ``gmp.interval`` and ``gmp.gmp_interval``,
    ``prune.representation`` (the kind) and ``prune.basis`` (an IP option) all work."""
    sections = section_names()
    section, _, name = key.partition(".") if isinstance(key, str) else ("", "", "")
    if section not in sections or not name:
        raise ValueError(
            f"grid key {brief(key, 60)} must look like '<{'|'.join(sections)}>.<field>'"
        )
    return set_values(cfg, section, {name: value}, where=section)


class GridValueError(ValueError):
    """A grid value that its key does not take: one line naming the key (and the value,
    cut to ~80 characters)."""

    def __init__(self, key: str, value: Any, error: Exception) -> None:
        self.key = key
        text = str(error)
        named = isinstance(key, str) and key in text
        where = "" if named else f"grid {brief_text(str(key), 60)} = {brief(value)}: "
        super().__init__(brief_text(where + text, 300))


def canonical(cfg: RunConfig) -> RunConfig:
    """Reset settings a run ignores, so that runs that train alike hash alike.

    Dense runs ignore all pruning settings; every method ignores the options of the other
    schedules.
    """
    if cfg.prune.representation.is_dense:
        cfg = dataclasses.replace(cfg, prune=PruneConfig(representation=Representation.dense()))
    used = cfg.used_section()
    options = {s: v if s == used else type(v)() for s, v in cfg.options.items()}
    return dataclasses.replace(cfg, options=options)


def expand(base: RunConfig, grid: Mapping[str, Sequence[Any]]) -> list[RunConfig]:
    """All combinations of ``grid`` applied to ``base``, deduplicated, in grid order."""
    keys = list(grid)
    out: dict[str, RunConfig] = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        cfg = base
        for k, v in zip(keys, values, strict=True):
            try:
                cfg = override(cfg, k, v)
            except ValueError as e:
                raise GridValueError(k, v, e) from None
        cfg = canonical(cfg)
        out.setdefault(config_hash(cfg), cfg)
    return list(out.values())


def run_dir(root: Path, cfg: RunConfig) -> Path:
    return Path(root) / config_hash(cfg)


def adopt_renamed_runs(root: Path, configs: Sequence[RunConfig]) -> None:
    """Move runs whose folder name is an older hash of the same configuration.

    A hash covers every field, so adding a hyperparameter (with a default) renames every
    run; the ``config.json`` beside each run says what it really was. Only rank 0 moves, and
    only runs no other process is training. A folder whose ``config.json`` cannot be read
    (damaged, not ours, nested absurdly deep) is named on stderr in one line and left alone:
    one junk folder must not stop every sweep into ``root``.
    """
    if not root.is_dir() or not distributed.info().is_main:
        return
    wanted = {run_dir(root, c).name for c in configs}
    for cfg_file in sorted(root.glob("*/config.json")):
        d = cfg_file.parent
        if d.name in wanted:
            continue
        try:
            current = config_hash(read_config(cfg_file))
        except (ValueError, RecursionError) as e:  # CorruptFileError: the readers' one line
            text = str(e) if isinstance(e, ValueError) else f"{cfg_file} nests too deep"
            _say(f"skipped {d}: not a run this sweep can use ({brief_text(text, 200)})", err=True)
            continue
        if current not in wanted or (root / current).exists():
            continue
        try:
            if claim_owner(d) is not None:
                continue
            relabel_results(d, current, old=d.name)  # first: refuses another run's result
            d.rename(root / current)
        except (OSError, ValueError, RecursionError) as e:
            _say(f"skipped {d}: cannot adopt it as {current} ({brief_text(str(e), 200)})", err=True)


@dataclass
class GridProblems:
    """What a grid could not do: runs whose files are damaged, runs that diverged."""

    bad: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)


def _say(message: str, err: bool = False) -> None:
    if distributed.info().is_main:
        print(message, file=sys.stderr if err else sys.stdout, flush=True)


def _describe(cfg: RunConfig) -> str:
    p = cfg.prune
    return (
        f"{cfg.data.dataset} {cfg.model.model} {p.representation.kind} {p.method} {p.sparsity:g} "
        f"seed {cfg.train.seed}"
    )


def _say_elsewhere(what: str, state: str, owner: dict) -> None:
    who = f"host {owner.get('host')}, pid {owner.get('pid')}" if owner else "another process"
    if state == "elsewhere":
        _say(f"{what}: being trained elsewhere ({who})")
    else:  # one line on stderr: this process stopped training it and wrote nothing since
        _say(
            f"{what}: lost its claim ({who} took it over while this process was stopped "
            "for longer than INTERSPACE_CLAIM_TIMEOUT); left to it",
            err=True,
        )


def not_a_run_folder(d: Path) -> CorruptFileError | None:
    """Why ``d`` (a run's folder) cannot hold the run: it is a file or a dangling link, a
    symlink leading out of its parent, or a file the run writes is a folder (or a device, a
    link loop, ...); None if it can. The sweep and the campaign skip such a folder."""
    fix = f"move {d} away to train this run here"
    if (d.exists() or d.is_symlink()) and not d.is_dir():
        return CorruptFileError(d, "is not a folder, where this run's folder goes", fix)
    if d.is_symlink() and not lies_in(d, d.parent):
        # a received sweep folder must not make this run write elsewhere
        return CorruptFileError(d, f"is a symlink leading out of {d.parent}", fix)
    for name in ("config.json", SUMMARY, DIVERGED, CHECKPOINT):
        p = d / name
        if (p.exists() or p.is_symlink()) and not p.is_file():
            return CorruptFileError(p, "is not a regular file (not one this program wrote)", fix)
    return None


def check_recorded(d: Path, cfg: RunConfig) -> None:
    """A :class:`CorruptFileError` if ``d/config.json`` is damaged or records another
    configuration than ``cfg`` (the folder is named by ``cfg``'s hash: not a run of ours)."""
    path = d / "config.json"
    if path.is_file() and config_hash(read_config(path)) != config_hash(cfg):
        raise CorruptFileError(
            path,
            "records another configuration than the run its folder is named for",
            f"move {d} away to train this run here",
        )


def _attempt(
    cfg: RunConfig,
    d: Path,
    label: str,
    progress: bool,
    problems: GridProblems,
    tracking: TrackingScope | None = None,
) -> tuple[str, dict | None]:
    """Train or read one run. Returns ("done", summary), ("diverged", marker), ("bad", None),
    ("elsewhere", owner): another live process is training it, or ("lost", owner): this one
    was, but its claim was taken over while it was stopped (it wrote nothing since)."""
    junk = not_a_run_folder(d)
    if junk is not None:
        problems.bad.append(str(junk))
        _say(f"{label} skipped: {junk}", err=True)
        return "bad", None
    try:
        claim = try_claim(d)
    except RunClaimedError as e:
        return "elsewhere", e.owner
    try:
        check_recorded(d, cfg)
        if (d / SUMMARY).is_file():  # finished, perhaps by another process a moment ago
            return "done", read_summary(d / SUMMARY, cfg)
        if (d / DIVERGED).is_file():
            return "diverged", read_diverged(d / DIVERGED, cfg)
        if progress:
            again = " (resuming)" if (d / CHECKPOINT).is_file() else ""
            _say(f"{label} {_describe(cfg)} -> {d}{again}")
        return "done", run(cfg, d, progress=False, resume=True, tracking=tracking).summary
    except RunClaimedError as e:  # ClaimLostError: taken over while this one was stopped
        return "lost", e.owner
    except DivergedError as e:
        _say(f"{label} diverged: {e}", err=True)
        return "diverged", {"status": "diverged", "error": str(e)}
    except CorruptFileError as e:
        problems.bad.append(str(e))
        _say(f"{label} skipped: {e}", err=True)
        return "bad", None
    finally:
        claim.release()


def run_grid(
    configs: Sequence[RunConfig],
    root: str | Path,
    progress: bool = True,
    wait: bool = True,
    poll: float = 5.0,
    problems: GridProblems | None = None,
    tracking: TrackingScope | None = None,
) -> Iterator[tuple[RunConfig, dict]]:
    """Train every config not finished yet under ``root`` (continuing interrupted ones from
    their checkpoints); yield ``(config, summary)`` for each finished one.

    Several processes may run one grid on one folder (a shared filesystem): each run is
    claimed before it is trained, and runs another process is training are said so and
    left to it. With ``wait``, those are waited for at the end (and trained here if their
    process dies). A run with a damaged file is named on stderr, recorded in ``problems``
    and skipped; a diverged run is recorded and yields its ``{"status": "diverged"}``
    marker as its summary. ``tracking``: where the runs' trackers (``train.log``) keep
    their files and the group they share (default: each run's folder, no group).
    """
    root = Path(root)
    problems = problems if problems is not None else GridProblems()
    adopt_renamed_runs(root, configs)
    pending: list[tuple[int, RunConfig]] = []
    total = len(configs)
    for i, cfg in enumerate(configs):
        d = run_dir(root, cfg)
        state, summary = _attempt(cfg, d, f"[{i + 1}/{total}]", progress, problems, tracking)
        if state in ("elsewhere", "lost"):
            _say_elsewhere(f"[{i + 1}/{total}] {_describe(cfg)} -> {d}", state, summary)
            pending.append((i, cfg))
            continue
        if state == "diverged":
            problems.diverged.append(str(d))
        if summary is not None:
            yield cfg, summary
    if pending and wait:
        _say(f"waiting for {len(pending)} runs being trained elsewhere")
    while pending and wait:
        time.sleep(poll)
        still = []
        for i, cfg in pending:
            d = run_dir(root, cfg)
            state, summary = _attempt(cfg, d, f"[{i + 1}/{total}]", progress, problems, tracking)
            if state == "lost":
                _say_elsewhere(f"[{i + 1}/{total}] {_describe(cfg)} -> {d}", state, summary)
            if state in ("elsewhere", "lost"):
                still.append((i, cfg))
                continue
            if state == "diverged":
                problems.diverged.append(str(d))
            if summary is not None:
                yield cfg, summary
        pending = still
