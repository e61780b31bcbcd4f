"""Where each stretch of a run trained: a run stopped on one machine and continued on
another is several stretches, and a results table must know every machine and precision
that went into each number. ``stretches.json`` in the run folder holds one entry per
stretch (machine kind, CPU, device, precision, threads, torch, code commit, epochs, times,
how it ended);
the summary copies it when the run finishes."""

from __future__ import annotations

import calendar
import contextlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from ..foundations.io import atomic_write_json, read_json, read_jsonl
from ..foundations.provenance import code_version
from ..training.device import Placement, cpu_model, machine_kind
from .runfiles import METRICS

STRETCHES = "stretches.json"
#: How a stretch ended. A stretch without ``ended`` was killed (or is still training).
ENDINGS = ("finished", "stopped", "failed")
#: How ``started`` and ``ended`` are written (UTC), and read back by :func:`run_seconds`.
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


def read_stretches(out: Path) -> list[dict]:
    """The stretches recorded in ``out`` (empty if none, or if the file is damaged)."""
    try:
        stretches = read_json(Path(out) / STRETCHES, list)  # bounded: a received folder
    except ValueError:  # CorruptFileError: missing, damaged, too deep, a FIFO, ...
        return []
    if not isinstance(stretches, list):
        return []
    return [s for s in stretches if isinstance(s, dict)]


def epochs_done(out: Path) -> int:
    """Epochs recorded in ``out``'s ``metrics.jsonl`` (0 without one)."""
    try:
        return len(read_jsonl(Path(out) / METRICS))  # bounded: regular file, 64 MiB
    except ValueError:  # missing or damaged: nothing to count on
        return 0


def _now() -> str:
    return time.strftime(_STAMP, time.gmtime())


def begin_stretch(out: Path, where: Placement) -> None:
    """Record that training (re)starts in ``out`` on this machine, as ``where`` says."""
    stretches = read_stretches(out)
    stretches.append(
        {
            "machine": machine_kind(where.device),
            "cpu": cpu_model(),
            "device": str(where.device),
            "precision": where.precision,
            "channels_last": where.channels_last,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "started": _now(),
            "from_epoch": epochs_done(out),
            # the code this process imported: asked at the stretch's start, not at the end
            # of a run that other commits landed beside (commit and dirty flag, cached)
            "code": code_version(),
        }
    )
    atomic_write_json(Path(out) / STRETCHES, stretches)


def end_stretch(out: Path, how: str) -> list[dict]:
    """Close the open stretch in ``out`` (``how``: one of :data:`ENDINGS`); the stretches."""
    stretches = read_stretches(out)
    if stretches and "ended" not in stretches[-1]:
        stretches[-1].update(ended=_now(), to_epoch=epochs_done(out), how=how)
        atomic_write_json(Path(out) / STRETCHES, stretches)
    return stretches


@contextlib.contextmanager
def recording_stretch(out: Path | None, where: Placement) -> Iterator[None]:
    """Record a stretch of training in ``out`` (nothing without a folder): begun now, closed
    as ``stopped`` (a stop signal: to be resumed) or ``failed`` if the body raises; a
    finished run's stretch is closed by :func:`..results.finish`."""
    if out is None:
        yield
        return
    begin_stretch(out, where)
    try:
        yield
    except BaseException as e:
        with contextlib.suppress(OSError):  # a full disk must not hide the error it caused
            end_stretch(out, "stopped" if isinstance(e, KeyboardInterrupt) else "failed")
        raise


def summary_stretches(summary: Mapping) -> list[Mapping]:
    """The stretches a run's summary records (empty for older summaries)."""
    found = summary.get("stretches")
    return [s for s in found if isinstance(s, Mapping)] if isinstance(found, list) else []


def _seconds(stamp: object) -> float | None:
    try:
        return calendar.timegm(time.strptime(str(stamp), _STAMP))
    except ValueError:
        return None


def run_seconds(summary: Mapping) -> float:
    """Seconds a run spent training, summed over its stretches: ``wall_time`` counts only
    the last process, so a run continued from a checkpoint would seem to have taken only
    its last stretch. Summaries without stretches (or with one that lacks a time) give
    ``wall_time``."""
    spans = []
    for s in summary_stretches(summary):
        begin, end = _seconds(s.get("started")), _seconds(s.get("ended"))
        if begin is None or end is None or end < begin:
            spans = []
            break
        spans.append(end - begin)
    if len(spans) > 1:
        return float(sum(spans))
    wall = summary.get("wall_time", 0.0)
    return float(wall) if isinstance(wall, (int, float)) else 0.0


def machine_kinds(summary: Mapping) -> tuple[str, ...]:
    """The kinds of machine that trained a run, in the order its stretches ran; from
    ``hardware`` (GPU name, else CPU) for summaries without stretches; empty if unrecorded."""
    kinds = [str(s["machine"]) for s in summary_stretches(summary) if s.get("machine")]
    if kinds:
        return tuple(dict.fromkeys(kinds))
    hw = summary.get("hardware")
    name = (hw.get("gpu") or hw.get("cpu")) if isinstance(hw, Mapping) else None
    return (str(name),) if name else ()
