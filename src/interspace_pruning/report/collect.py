"""Finding finished runs on disk and rebuilding their configs and models."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from torch import nn

from ..experiments.config import RunConfig, config_from_dict  # noqa: F401 (re-exported)
from ..experiments.results import finished_model
from ..experiments.runfiles import (
    DIVERGED,
    diverged,
    read_config,
    read_diverged,
    read_metrics,
    read_summary,
)
from ..foundations.hparams import config_hash
from ..foundations.io import CorruptFileError
from ..models import Trust, check_trusted


@dataclass
class RunRecord:
    path: Path
    config: RunConfig
    summary: dict
    history: list[dict] = field(default_factory=list)
    #: Which model import paths its reader vouches for (see ``models.check_trusted``).
    trust: Trust = False

    @cached_property
    def config_hash(self) -> str:
        """The hash that names the run's folder (computed once: a report asks per file)."""
        return config_hash(self.config)

    @property
    def diverged(self) -> bool:
        """The run's loss became NaN/inf (``diverged.json``) or its result is not finite."""
        return diverged(self.summary)


def collect_runs(
    root: str | Path, damaged: list[str] | None = None, trust_model_imports: Trust = False
) -> tuple[list[RunRecord], list[Path]]:
    """Finished runs under ``root`` (a run directory or a sweep), and unfinished ones.

    Diverged runs count as finished (see :attr:`RunRecord.diverged`). A run whose
    ``config.json``, ``summary.json`` or ``metrics.jsonl`` is damaged is left out and named:
    appended to ``damaged`` (its file under ``root`` and the problem), or, without that list,
    on stderr. ``trust_model_imports``: which model import paths
    named in the runs' ``config.json`` may be imported to rebuild their models.
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
            summary = (
                read_summary(d / "summary.json", cfg)
                if finished
                else read_diverged(d / DIVERGED, cfg)
            )
            metrics = d / "metrics.jsonl"
            history = read_metrics(metrics, cfg) if metrics.is_file() else []
        except CorruptFileError as e:
            if damaged is None:
                print(f"interspace report: skipped a run: {e}", file=sys.stderr)
            else:  # the caller says it: short, the file under root and what is wrong with it
                where = e.path.relative_to(root) if e.path.is_relative_to(root) else e.path
                damaged.append(f"{where} {e.problem}")
            continue
        done.append(RunRecord(d, cfg, summary, history, trust_model_imports))
    return done, unfinished


def load_model(record: RunRecord) -> nn.Module:
    """Rebuild a finished run's model (masks and filter bases included) from ``model.pt``.

    The model named in ``config.json`` is built only if it is registered, or an import path
    that the record's ``trust_model_imports`` admits (a name in a file is never imported
    otherwise); ``model.pt`` must have been written by this run. Problems raise a one-line
    ``ValueError``.
    """
    cfg = record.config
    check_trusted(
        cfg.model.model, f"{record.path / 'config.json'}: field model.model", record.trust
    )
    return finished_model(cfg, record.path, record.summary)


def try_load_model(record: RunRecord, problems: list[str] | None = None) -> nn.Module | None:
    """:func:`load_model`, or None when that fails: the reason is named on stderr and
    appended to ``problems``, so one damaged or foreign ``model.pt`` spoils no report."""
    try:
        return load_model(record)
    except ValueError as e:
        message = f"no pictures from {record.path.name}: {e}"
        print(f"interspace report: {message}", file=sys.stderr)
        if problems is not None:
            problems.append(message)
        return None
