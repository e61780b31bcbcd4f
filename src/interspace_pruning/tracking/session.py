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
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..callbacks import Callback, TrainState
from ..foundations.io import atomic_write_json, read_json
from ..masks import sparsity_report
from .base import TrackedRun, Tracker, is_number, tracker_class

#: The tracker runs of a run folder (see the module docstring).
RECORD = "tracking.json"
#: The trackers' own stores where a run folder is their root (``interspace train``): kept
#: when the run is started over, which gets new tracker runs beside the old ones.
STORES = ("mlflow.db", "mlartifacts", "wandb")
#: Where the trackers' group-level views (report plots, comparison tables) go in a root.
GROUP_DIR = "_report"
#: The metrics the trackers' hyperparameter views compare runs by.
KEY_METRICS = ("test_acc", "test_loss", "train_acc", "train_loss", "sparsity")


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
    ``events`` count the mask updates). A missing tracker package is a one-line
    :class:`~.base.MissingTrackerError` here, before any training.
    """

    def __init__(
        self,
        names: Iterable[str],
        run: TrackedRun,
        every: int = 0,
        pruners: Sequence[Any] = (),
    ) -> None:
        # unknown names and missing packages: one line here (tracker_class checks both)
        self.classes = [tracker_class(n) for n in dict.fromkeys(names)]
        self.run = run
        self.every = every
        self.pruners = list(pruners)
        self.trackers: list[Tracker] = []
        self.step = 0
        #: Every number logged, by step: saved in checkpoints, replayed on a resume.
        self.journal: dict[int, dict[str, float]] = {}

    @property
    def is_open(self) -> bool:
        return bool(self.trackers)

    def open(self, done: int) -> None:
        """Open the trackers (once); ``done``: steps the run took before this process."""
        if self.trackers or not self.classes:
            return
        record = self.run.run_dir / RECORD
        continuing = record.is_file()
        ids = _read_record(record) if continuing else {}
        run = self.run
        for cls in self.classes:
            self.trackers.append(cls(run, done, continuing and cls.name in ids, ids.get(cls.name)))
        atomic_write_json(record, {**ids, **{t.name: t.run_id for t in self.trackers}})
        for t in self.trackers:
            t.params(run.params, KEY_METRICS)
            if t.replays or not t.continuing:  # (TensorBoard holds what it had logged)
                for step in sorted(s for s in self.journal if s <= done):
                    t.scalars(self.journal[step], step)  # only what it does not hold
        self.step = done

    def _scalars(self, values: Mapping[str, Any], step: int) -> None:
        numbers = {k: float(v) for k, v in values.items() if is_number(v)}
        self.journal.setdefault(step, {}).update(numbers)
        for t in self.trackers:
            t.scalars(numbers, step)

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
        for t in self.trackers:
            if layers:
                t.histogram("layer_sparsity", [r.sparsity for r in layers], step)
            if isinstance(hist, list):
                rows = [(nnz, count) for nnz, count in enumerate(hist)]
                t.table("filter_nnz", ["nonzeros per filter", "filters"], rows, step)
            t.flush()

    def log_summary(self, summary: Mapping[str, Any], model: nn.Module | None = None) -> None:
        """The final numbers, the per-layer sparsity table and the filter-basis picture."""
        from .figures import learned_bases_figure, plt  # matplotlib: only when needed

        step = self.step
        fig = learned_bases_figure(model) if model is not None else None
        rows = []
        if model is not None:
            layers = sparsity_report(model).layers
            rows = [(r.name, r.kind, r.nonzero, r.total, round(r.sparsity, 6)) for r in layers]
        for t in self.trackers:
            t.summary(summary, step)
            if rows:
                t.table("layers", ["layer", "kind", "nonzero", "total", "sparsity"], rows, step)
            if fig is not None:
                t.figure("filter_bases", fig, step)
            t.flush()
        if fig is not None:
            plt.close(fig)

    def close(self, status: str = "FINISHED") -> None:
        """Finish every tracker run with ``status`` (see :meth:`.base.Tracker.close`)."""
        for t in self.trackers:
            t.close(status)
        self.trackers = []

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


def _read_record(path: Path) -> dict[str, str]:
    data = read_json(path, dict, f"delete {path} to start new tracker runs")
    return {str(k): str(v) for k, v in data.items()}


def open_group(names: Iterable[str], scope: TrackingScope, step: int) -> list[Tracker]:
    """The trackers' group-level runs of ``scope`` (report plots, comparison tables), opened
    to log at ``step`` >= 1 (TensorBoard replaces what an earlier call logged at ``step``
    or later; W&B keeps it; MLflow replaces the files)."""
    root = Path(scope.root)
    run = TrackedRun(group_id(scope), root, root / GROUP_DIR, scope.group)
    return [tracker_class(n).for_group(run, step) for n in dict.fromkeys(names)]


def log_group(
    names: Iterable[str],
    scope: TrackingScope,
    step: int,
    images: Sequence[Path] = (),
    texts: Mapping[str, str] | None = None,
) -> None:
    """Log a group's report (PNG ``images``, Markdown ``texts``) to its trackers' group run
    (``step``: e.g. how many of its runs had finished)."""
    names = list(names)
    if not names:
        return
    step = max(int(step), 1)
    trackers = open_group(names, scope, step)
    try:
        for t in trackers:
            for path in images:
                t.image_file(f"report/{Path(path).stem}", Path(path), step)
            for tag, markdown in (texts or {}).items():
                t.text(tag, markdown, step)
            t.flush()
    finally:
        for t in trackers:
            t.close()
