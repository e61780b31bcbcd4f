"""The trackers of one run, and the training-loop callback that feeds them.

:class:`TrackingSession` opens every tracker of ``--log`` when training starts or resumes,
logs the configuration once, each epoch's metrics and per-layer sparsity, (every
``log_every`` steps) the loss, learning rate and mask updates, and at the end the summary
and the filter-basis pictures. The tracker runs a run folder uses are recorded in it
(``tracking.json``): a resumed run continues them, a run started over (``--overwrite``)
gets new ones.

A killed run must neither repeat nor lose a step in any tracker. The session keeps a
journal of the numbers it logged, saved with each checkpoint; a resumed run first logs
again what the journal holds and the tracker does not (W&B's service writes its files
late: a killed process loses what it had not written yet), and never logs a step twice
(see :class:`~.base.Tracker`).

Trackers are helpers, never the run's record, and what they reuse from a run folder is
input. Their settings, their stores in the folder and ``tracking.json`` are checked when
the session is made, before the run writes anything (one line naming the problem). A
tracker that then fails or cannot be reached is dropped with one line, and the run goes
on without it; a stop signal gives up a tracker call at once (see
:func:`~..foundations.interrupts.blocking_call`).
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from tqdm import tqdm

from ..callbacks import Callback, TrainState
from ..foundations import interrupts
from ..foundations.claims import RunClaimedError
from ..foundations.io import CorruptFileError, atomic_write_json, read_json
from ..masks import sparsity_report
from .base import (
    MissingTrackerError,
    TrackedRun,
    Tracker,
    TrackerRefused,
    is_number,
    tracker_class,
)
from .network import reason
from .stores import RUN_ID

#: The tracker runs of a run folder (see the module docstring).
RECORD = "tracking.json"
#: The trackers' own stores where a run folder is their root (``interspace train``): kept
#: when the run is started over, which gets new tracker runs beside the old ones.
STORES = ("mlflow.db", "mlartifacts", "wandb")
#: Where the trackers' group-level views (report plots, comparison tables) go in a root.
GROUP_DIR = "_report"
#: The metrics the trackers' hyperparameter views compare runs by.
KEY_METRICS = ("test_acc", "test_loss", "train_acc", "train_loss", "sparsity")
#: Errors a tracker call passes on (bad input, a lost claim) instead of being dropped for.
REFUSALS = (TrackerRefused, CorruptFileError, RunClaimedError, MissingTrackerError)
#: ``tracking.json``: at most this many entries (one per tracker), keys like tracker
#: names, values at most this long; the ids of :data:`ID_FIELDS` as :data:`.stores.RUN_ID`.
MAX_RECORD_ENTRIES = 32
MAX_RECORD_VALUE = 4096
RECORD_KEY = re.compile(r"[a-z][a-z0-9_-]{0,31}")
#: The trackers whose entry is their run's id (TensorBoard's is its folder).
ID_FIELDS = ("mlflow", "wandb")


@dataclass(frozen=True)
class TrackingScope:
    """Where a run's trackers keep their files (``root``) and the group of runs it belongs
    to (a sweep's or comparison's name; ``None`` for a run on its own)."""

    root: Path
    group: str | None = None


def group_id(scope: TrackingScope) -> str:
    """A stable id for the group's own tracker run (its name may hold any characters)."""
    text = f"{scope.group}|{Path(scope.root).resolve()}"
    return "group-" + hashlib.sha256(text.encode()).hexdigest()[:10]


class TrackingSession:
    """The trackers ``names`` of run ``run``: nothing is opened until :meth:`open`.

    ``every``: also log loss, learning rate and mask updates every this many steps (0: per
    epoch only; each such log waits for the device). ``pruners``: the run's pruners (their
    ``events`` count the mask updates). Checked here, before any training, each in one
    line: unknown names, missing packages, unusable settings, and what the trackers would
    reuse in the run folder (:func:`check_files`).
    """

    def __init__(
        self,
        names: Iterable[str],
        run: TrackedRun,
        every: int = 0,
        pruners: Sequence[Any] = (),
    ) -> None:
        # unknown names, missing packages, bad settings: one line here (tracker_class)
        self.classes = [tracker_class(n) for n in dict.fromkeys(names)]
        check_files(self.classes, run)
        self.run = run
        self.every = every
        self.pruners = list(pruners)
        self.trackers: list[Tracker] = []
        self.step = 0
        self.opened = False
        #: A stop signal gave up a tracker call: no tracker is called again but to close.
        self.stopping = False
        #: Every number logged, by step: saved in checkpoints, replayed on a resume.
        self.journal: dict[int, dict[str, float]] = {}

    @property
    def is_open(self) -> bool:
        return self.opened

    def open(self, done: int) -> None:
        """Open the trackers (once); ``done``: steps the run took before this process. A
        tracker that fails to open is left out (one line); the others go on."""
        if self.opened or not self.classes:
            return
        self.opened = True
        record = self.run.run_dir / RECORD
        continuing = record.is_file()
        ids = read_record(record) if continuing else {}
        run = self.run
        for cls in self.classes:
            if self.stopping:
                break
            t = self._call(
                cls.name,
                lambda cls=cls: cls(run, done, continuing and cls.name in ids, ids.get(cls.name)),
            )
            if t is not None:
                self.trackers.append(t)
        if self.trackers:
            atomic_write_json(record, {**ids, **{t.name: t.run_id for t in self.trackers}})
        for t in self.live():
            self._call(t, lambda t=t: self._start(t, done))
        self.step = done

    def _start(self, t: Tracker, done: int) -> None:
        t.params(self.run.params, KEY_METRICS)
        if t.replays or not t.continuing:  # (TensorBoard holds what it had logged)
            for step in sorted(s for s in self.journal if s <= done):
                t.scalars(self.journal[step], step)  # only what it does not hold

    def live(self) -> list[Tracker]:
        """The trackers still logged to (none once a stop signal gave one up)."""
        return [] if self.stopping else list(self.trackers)

    def _call(self, t: Tracker | str, fn: Callable[[], Any], closing: bool = False) -> Any:
        """``fn()``, a call into tracker ``t`` (a name while it is being opened); what it
        returns, or None if the tracker was dropped: it raised (one line says so), or a stop
        signal gave the call up (the stop's own line follows). After such a stop only
        ``closing`` calls are made."""
        name = t if isinstance(t, str) else t.name
        if self.stopping and not closing:
            return None
        try:
            with interrupts.blocking_call():
                return fn()
        except interrupts.CallAbandoned:
            self.stopping = True  # the step ends, checkpoints and stops: no more calls
            self._drop(t)
        except KeyboardInterrupt:  # a stop raised here: the run ends now, without t
            self._drop(t)
            raise
        except REFUSALS:
            raise
        except Exception as e:  # noqa: BLE001 - a tracker is a helper: the run goes on
            self._drop(t)
            say(f"interspace: {name}: {reason(e)}; training goes on without it")
        return None

    def _drop(self, t: Tracker | str) -> None:
        # not closed: the call that failed may be what closing would wait on again
        if not isinstance(t, str) and t in self.trackers:
            self.trackers.remove(t)

    def _scalars(self, values: Mapping[str, Any], step: int) -> None:
        numbers = {k: float(v) for k, v in values.items() if is_number(v)}
        self.journal.setdefault(step, {}).update(numbers)
        for t in self.live():
            self._call(t, lambda t=t: t.scalars(numbers, step))

    def callback(self, offset: int = 0) -> TrackingCallback:
        """The callback for :func:`~interspace_pruning.training.train` (``offset``: steps
        of earlier rounds, so that IMP's rounds follow each other on one axis)."""
        return TrackingCallback(self, offset)

    # -- what is logged --------------------------------------------------------------------
    def log_step(self, state: TrainState, step: int) -> None:
        values = {"step/lr": state.optimizer.param_groups[0]["lr"]}
        if state.loss is not None:
            values["step/loss"] = float(state.loss)
        if self.pruners:
            values["step/mask_updates"] = sum(len(p.events) for p in self.pruners)
        self._scalars(values, step)

    def log_epoch(self, metrics: Mapping[str, Any], model: nn.Module, step: int) -> None:
        """One epoch's metrics (as in ``metrics.jsonl``) and the per-layer sparsity."""
        self.step = step
        values = {k: v for k, v in metrics.items() if k != "step"}
        layers = sparsity_report(model).layers
        per_layer = {f"layer_sparsity/{r.name}": r.sparsity for r in layers}
        hist = metrics.get("filter_nnz_hist")
        self._scalars({**values, **per_layer}, step)

        def views(t: Tracker) -> None:
            if layers:
                t.histogram("layer_sparsity", [r.sparsity for r in layers], step)
            if isinstance(hist, list):
                rows = [(nnz, count) for nnz, count in enumerate(hist)]
                t.table("filter_nnz", ["nonzeros per filter", "filters"], rows, step)
            t.flush()

        for t in self.live():
            self._call(t, lambda t=t: views(t))

    def log_summary(self, summary: Mapping[str, Any], model: nn.Module | None = None) -> None:
        """The final numbers, the per-layer sparsity table and the filter-basis picture."""
        trackers = self.live()
        if not trackers:
            return
        from .figures import learned_bases_figure, plt  # matplotlib: only when needed

        step = self.step
        fig = learned_bases_figure(model) if model is not None else None
        rows = []
        if model is not None:
            layers = sparsity_report(model).layers
            rows = [(r.name, r.kind, r.nonzero, r.total, round(r.sparsity, 6)) for r in layers]

        def final(t: Tracker) -> None:
            t.summary(summary, step)
            if rows:
                t.table("layers", ["layer", "kind", "nonzero", "total", "sparsity"], rows, step)
            if fig is not None:
                t.figure("filter_bases", fig, step)
            t.flush()

        try:
            for t in trackers:
                self._call(t, lambda t=t: final(t))
        finally:
            if fig is not None:
                plt.close(fig)

    def close(self, status: str = "FINISHED") -> None:
        """Finish every tracker run with ``status`` (see :meth:`.base.Tracker.close`); a
        tracker dropped on the way is left as it was."""
        trackers, self.trackers = self.trackers, []
        for t in trackers:
            self._call(t, lambda t=t: t.close(status), closing=True)

    def __enter__(self) -> TrackingSession:
        return self

    def __exit__(self, kind, error, tb) -> None:
        self.close(end_status(error))


class TrackingCallback(Callback):
    """Feeds a :class:`TrackingSession` from the training loop (it goes last, so that it
    sees what the other callbacks add to each epoch's metrics)."""

    def __init__(self, session: TrackingSession, offset: int = 0) -> None:
        self.session = session
        self.offset = offset

    def _open(self, state: TrainState) -> None:
        """Open the session at the first step of this process. A run resumed with ``--log``
        for the first time gets its earlier epochs (the checkpoint's history) as well."""
        if self.session.is_open:
            return
        for h in state.history:
            numbers = {k: v for k, v in h.items() if k != "step" and is_number(v)}
            self.session.journal.setdefault(self.offset + int(h["step"]), {}).update(numbers)
        self.session.open(self.offset + state.step)  # state.step: steps before this one

    def on_step_end(self, state: TrainState) -> None:
        self._open(state)
        n = self.offset + state.step + 1
        every = self.session.every
        if every and n % every == 0:
            self.session.log_step(state, n)

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        self._open(state)
        self.session.log_epoch(metrics, state.model, self.offset + state.step)

    def state_dict(self) -> dict[str, Any]:
        return {"journal": [[s, v] for s, v in sorted(self.session.journal.items())]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for step, values in state.get("journal", []):
            self.session.journal.setdefault(int(step), {}).update(values)


def end_status(error: BaseException | None) -> str:
    """A tracker run's final status after ``error`` (``None``: it finished)."""
    if error is None:
        return "FINISHED"
    # a signal's stop (training's TrainingStopped) is a KeyboardInterrupt too
    return "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"


def say(line: str) -> None:
    """One line on stderr, below any progress bar."""
    tqdm.write(line, file=sys.stderr)


def read_record(path: Path) -> dict[str, str]:
    """A run folder's ``tracking.json``: tracker name -> its run's id (TensorBoard: its
    folder). One line naming the file and the field if it is not one this package writes
    (too large or deep, not an object of short strings, an id with other characters)."""
    fix = f"delete {path} to start new tracker runs"
    data = read_json(path, dict, fix)  # bounded in size and depth
    if len(data) > MAX_RECORD_ENTRIES:
        raise CorruptFileError(
            path, f"holds {len(data)} fields, more than {MAX_RECORD_ENTRIES} trackers", fix
        )
    out = {}
    for key, value in data.items():
        if not RECORD_KEY.fullmatch(key):
            raise CorruptFileError(path, f"has a field {key[:40]!r} that names no tracker", fix)
        if not isinstance(value, str):
            raise CorruptFileError(
                path, f"field {key!r} must be a string, not a JSON {_json_type(value)}", fix
            )
        if key in ID_FIELDS and not RUN_ID.fullmatch(value):
            raise CorruptFileError(
                path,
                f"field {key!r} must be a run id of 1-64 letters, digits, '-' or '_', got "
                f"{value[:40]!r}",
                fix,
            )
        if len(value) > MAX_RECORD_VALUE or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise CorruptFileError(
                path,
                f"field {key!r} is longer than {MAX_RECORD_VALUE} characters or holds control "
                "characters",
                fix,
            )
        out[key] = value
    return out


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def check_files(classes: Iterable[type[Tracker]], run: TrackedRun) -> None:
    """What trackers ``classes`` would reuse in ``run``'s folders: their stores and
    symlinks (:meth:`.base.Tracker.check_files`) and ``tracking.json``; one line if any
    could make a tracker write outside them or is damaged."""
    for cls in classes:
        cls.check_files(Path(run.root), Path(run.run_dir))
    record = Path(run.run_dir) / RECORD
    if record.is_file():
        read_record(record)


def check_trackers(
    names: Iterable[str], root: str | Path, run_dir: str | Path | None = None
) -> None:
    """Everything a :class:`TrackingSession` of ``names`` checks when it is made, without
    making one: for a caller to run before it creates or claims the run folder
    (``root``: where the trackers keep their stores; ``run_dir``: the run's folder,
    default ``root``). One line for an unknown tracker, a missing package, unusable
    settings or a store, symlink or ``tracking.json`` the trackers must not reuse."""
    classes = [tracker_class(n) for n in dict.fromkeys(names)]
    root = Path(root)
    check_files(classes, TrackedRun("", root, Path(run_dir) if run_dir is not None else root))


def open_group(names: Iterable[str], scope: TrackingScope, step: int) -> list[Tracker]:
    """The trackers' group-level runs of ``scope`` (report plots, comparison tables), opened
    to log at ``step`` >= 1 (TensorBoard replaces what an earlier call logged at ``step``
    or later; W&B keeps it; MLflow replaces the files)."""
    root = Path(scope.root)
    run = TrackedRun(group_id(scope), root, root / GROUP_DIR, scope.group)
    classes = [tracker_class(n) for n in dict.fromkeys(names)]
    check_files(classes, run)
    return [cls.for_group(run, step) for cls in classes]


def log_group(
    names: Iterable[str],
    scope: TrackingScope,
    step: int,
    images: Sequence[Path] = (),
    texts: Mapping[str, str] | None = None,
) -> None:
    """Log a group's report (PNG ``images``, Markdown ``texts``) to its trackers' group run
    (``step``: e.g. how many of its runs had finished). A tracker that fails or cannot be
    reached is left out (one line); a stop signal ends this at once."""
    names = list(names)
    if not names:
        return
    step = max(int(step), 1)
    root = Path(scope.root)
    run = TrackedRun(group_id(scope), root, root / GROUP_DIR, scope.group)
    classes = [tracker_class(n) for n in dict.fromkeys(names)]
    check_files(classes, run)
    # a session only for its guarded calls: opened by hand, as group runs
    guard = TrackingSession((), run)
    for cls in classes:
        t = guard._call(cls.name, lambda cls=cls: cls.for_group(run, step))
        if t is not None:
            guard.trackers.append(t)

    def report(t: Tracker) -> None:
        for path in images:
            t.image_file(f"report/{Path(path).stem}", Path(path), step)
        for tag, markdown in (texts or {}).items():
            t.text(tag, markdown, step)
        t.flush()

    with guard:
        for t in guard.live():
            guard._call(t, lambda t=t: report(t))
