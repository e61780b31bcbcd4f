"""Where each stretch of a run trained: a run stopped on one machine and continued on
another is several stretches, and a results table must know every machine and precision
that went into each number. ``stretches.json`` in the run folder holds one entry per
stretch (machine kind, CPU and its generation, device, precision, threads, torch, code
commit, epochs, times, how it ended); the summary copies it when the run finishes."""

from __future__ import annotations

import calendar
import contextlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from ..foundations.io import CorruptFileError, atomic_write_json, read_json, read_jsonl
from ..foundations.provenance import code_version
from ..training.checkpointing import CHECKPOINT, checkpoints
from ..training.device import Placement, cpu_id, cpu_model, machine_kind
from .runfiles import MAX_METRICS_ROWS, METRICS, round_dir

STRETCHES = "stretches.json"
#: How a stretch ended. A stretch without ``ended`` was killed (or is still training).
ENDINGS = ("finished", "stopped", "failed")
#: How ``started`` and ``ended`` are written (UTC), and read back by :func:`run_seconds`.
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


#: The machine of epochs no stretch records (a record begun after the run's first epochs).
UNRECORDED = "unrecorded hardware"


def read_stretches(out: Path) -> list[dict]:
    """The stretches recorded in ``out`` (empty if it has no ``stretches.json``).

    A damaged file (not JSON, not a list, too large or deep, a FIFO, a link to a device)
    raises a one-line :class:`CorruptFileError`: dropping it would forget the machines and
    precisions of the run's first epochs and let another kind of machine continue it."""
    path = Path(out) / STRETCHES
    if not path.exists() and not path.is_symlink():
        return []
    fix = (
        f"restore it (git checkout -- {path}), or delete it to go on: the machines of "
        "the epochs it recorded are then unknown, and the report marks the run"
    )
    stretches = read_json(path, list, fix)  # bounded: a received folder
    if not all(isinstance(s, dict) for s in stretches):
        raise CorruptFileError(path, "holds an entry that is not a JSON object", fix)
    return stretches


def epochs_done(out: Path) -> int:
    """Epochs recorded in ``out``'s ``metrics.jsonl`` (0 without one)."""
    try:
        # bounded: a regular file of at most 64 MiB and MAX_METRICS_ROWS rows (a received
        # folder's 64 MiB of '{}' lines would otherwise be 21 million dicts)
        return len(read_jsonl(Path(out) / METRICS, max_rows=MAX_METRICS_ROWS))
    except ValueError:  # missing or damaged: nothing to count on
        return 0


def _now() -> str:
    return time.strftime(_STAMP, time.gmtime())


def starts_over(out: Path) -> bool:
    """Whether training in ``out`` (an unfinished run) starts over although epochs are
    recorded: no checkpoint to continue from (it stayed on a machine that is gone, say),
    so the recorded epochs are discarded and retrained from the first. Never for an IMP
    run (its checkpoints are in ``round_N/``, its top-level metrics written at its end)."""
    return epochs_done(out) > 0 and not has_resume_state(out)


def has_resume_state(out: Path) -> bool:
    """Whether ``out`` holds what a run continues from: a checkpoint, or an IMP run's rounds
    (whose checkpoints are in ``round_N/``)."""
    out = Path(out)
    return any(p.is_file() for p in checkpoints(out / CHECKPOINT)) or round_dir(out, 0).exists()


def epochs_kept(out: Path) -> int:
    """The epochs a resume of ``out`` continues from: :func:`epochs_done`, or 0 where the
    run starts over (:func:`starts_over`)."""
    return 0 if starts_over(out) else epochs_done(out)


def begin_stretch(
    out: Path, where: Placement, data_sha256: str | None = None, data_given: bool = False
) -> None:
    """Record that training (re)starts in ``out`` on this machine, as ``where`` says, on the
    data of fingerprint ``data_sha256`` (``data_given``: passed by the caller rather than
    named by the configuration). A run that starts over (:func:`starts_over`) drops its
    discarded attempt's record, metrics and stretches: the stretches describe the epochs
    behind the result (a discarded stretch on another kind of machine would mark the run as
    mixed), and stale metrics would be read as epochs done by a stop before the first new
    epoch ends."""
    over = starts_over(out)
    if over:
        (Path(out) / METRICS).unlink(missing_ok=True)
    stretches = [] if over else read_stretches(out)
    stretches.append(
        {
            "machine": machine_kind(where.device),
            "cpu": cpu_model(),
            # the generation, which the model name can hide (a Zen 4 and a Zen 5 are both
            # "AMD EPYC"); not part of the machine kind: see machine_kind
            "cpu_id": cpu_id(),
            "device": str(where.device),
            "precision": where.precision,
            "channels_last": where.channels_last,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "started": _now(),
            "from_epoch": epochs_done(out),  # 0 for a run starting over: metrics deleted
            # the code this process imported: asked at the stretch's start, not at the end
            # of a run that other commits landed beside (commit and dirty flag, cached)
            "code": code_version(),
            "data_sha256": data_sha256,
            "data_given": data_given,
        }
    )
    atomic_write_json(Path(out) / STRETCHES, stretches)


def check_same_data(out: Path, stretches: list[Mapping], fingerprint: str) -> None:
    """Refuse to continue or read back the run in ``out`` on data other than the data its
    ``stretches`` trained on (``fingerprint``: :meth:`..data.ImageDataset.fingerprint`). A
    run's folder is named by its configuration, and a dataset passed to ``run(dataset=...)``
    is not part of it: without this, a run begun on 500 images would be continued, or its
    result returned, for the full dataset. Stretches recorded before fingerprints were are
    not checked."""
    recorded = [s.get("data_sha256") for s in stretches if isinstance(s.get("data_sha256"), str)]
    if recorded and recorded[-1] != fingerprint:
        given = any(s.get("data_given") for s in stretches)
        raise ValueError(
            f"{out} holds a run trained on other data (data fingerprint {recorded[-1][:12]}, "
            f"the data now {fingerprint[:12]}"
            + (", a dataset passed to run(dataset=...)" if given else "")
            + "): pass the dataset it "
            + ("was given" if given else "trained on")
            + " (run(dataset=...)), or overwrite=True (--overwrite) to train it again"
        )


def data_was_given(stretches: list[Mapping]) -> bool:
    """Whether a stretch of the run trained on a dataset its caller passed."""
    return any(s.get("data_given") is True for s in stretches)


def end_stretch(out: Path, how: str) -> list[dict]:
    """Close the open stretch in ``out`` (``how``: one of :data:`ENDINGS`); the stretches."""
    stretches = read_stretches(out)
    if stretches and "ended" not in stretches[-1]:
        stretches[-1].update(ended=_now(), to_epoch=epochs_done(out), how=how)
        atomic_write_json(Path(out) / STRETCHES, stretches)
    return stretches


@contextlib.contextmanager
def recording_stretch(
    out: Path | None, where: Placement, data_sha256: str | None = None, data_given: bool = False
) -> Iterator[None]:
    """Record a stretch of training in ``out`` (nothing without a folder): begun now, closed
    as ``stopped`` (a stop signal: to be resumed) or ``failed`` if the body raises; a
    finished run's stretch is closed by :func:`..results.finish`."""
    if out is None:
        yield
        return
    begin_stretch(out, where, data_sha256, data_given)
    try:
        yield
    except BaseException as e:
        with contextlib.suppress(OSError, ValueError):  # a full disk must not hide the error
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
    ``hardware`` (GPU name, else CPU) for summaries without stretches; empty if unrecorded.
    Stretches that begin after epoch 0 (the record was lost) start with :data:`UNRECORDED`,
    so a pair with such a run is marked as trained on several kinds."""
    stretches = summary_stretches(summary)
    kinds = [str(s["machine"]) for s in stretches if s.get("machine")]
    if kinds:
        first = stretches[0].get("from_epoch", 0)
        if not isinstance(first, int) or first != 0:  # its first epochs' machine is unknown
            kinds.insert(0, UNRECORDED)
        return tuple(dict.fromkeys(kinds))
    hw = summary.get("hardware")
    name = (hw.get("gpu") or hw.get("cpu")) if isinstance(hw, Mapping) else None
    return (str(name),) if name else ()
