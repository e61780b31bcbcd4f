"""What every experiment tracker does, the registry of trackers, and the run they log.

A :class:`Tracker` is one run in one tracker (TensorBoard, W&B, MLflow). The training code
talks to it through a handful of calls (scalars, a histogram, a table, a figure, text, the
summary); each adapter maps them to its tracker's API. Trackers are optional packages:
:func:`require` turns a missing one into a one-line error naming the extra to install.
"""

from __future__ import annotations

import importlib.util
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

#: A value the trackers' hyperparameter views accept.
Scalar = int | float | str | bool


class MissingTrackerError(ImportError, ValueError):
    """A ``--log`` tracker whose package is not installed (one line: the extra to install).
    Also a ``ValueError``: the command line reports it as the bad input it is."""


class TrackerRefused(ValueError):
    """A tracker setting or store this run will not use (an unknown ``MLFLOW_TRACKING_URI``
    scheme, a store in the run folder whose artifacts would go elsewhere): one line naming
    it and the fix, before anything is written."""


class TrackerUnavailable(RuntimeError):
    """A tracker that cannot be reached (its server does not answer in time): the run goes
    on without it (see :class:`~.session.TrackingSession`)."""


@dataclass(frozen=True)
class TrackedRun:
    """One run as the trackers see it.

    ``name``: the run's config hash: the tracker run's name and id, so that a resumed run
    continues its tracker run instead of starting another. ``group``: the sweep or
    comparison it belongs to (a W&B group, an MLflow parent run), if any. ``root``: where the
    trackers keep their local files (MLflow's database, W&B's offline runs); ``run_dir``:
    the run's folder (TensorBoard's event files). ``params``: the configuration, flat.
    """

    name: str
    root: Path
    run_dir: Path
    group: str | None = None
    params: Mapping[str, Scalar] = field(default_factory=dict)


class Tracker(ABC):
    """One run in one tracker. Steps count optimiser steps, so that every value of a run
    shares one x-axis.

    ``done``: the optimiser steps the run had taken before this process. ``continuing``:
    the run folder has logged to this tracker before (``run_id``: the tracker's id of that
    run, if it has one). A continued run must neither repeat nor lose a step: values its
    tracker already holds at a step are not logged again (``recorded``: the last step
    logged per key, which each adapter reads back from its tracker), or (TensorBoard)
    values logged after the checkpoint are purged. ``run_id`` is the tracker's id of this
    run (kept in the run folder, see :mod:`.session`).
    """

    #: The ``--log`` name (also the extra that installs it) and the packages it needs.
    name: ClassVar[str]
    packages: ClassVar[tuple[str, ...]]
    #: Whether a continued run logs again what its checkpoint says was logged and the
    #: tracker does not hold (W&B's service loses what a killed process had not written).
    replays: ClassVar[bool] = True

    def __init__(
        self, run: TrackedRun, done: int = 0, continuing: bool = False, run_id: str | None = None
    ) -> None:
        self.run = run
        self.done = done
        self.continuing = continuing
        self.run_id = run_id or run.name
        self.recorded: dict[str, int] = {}

    @classmethod
    def for_group(cls, run: TrackedRun, step: int) -> Tracker:
        """The group's own tracker run (``run.group``), to log at ``step`` >= 1."""
        return cls(run, step - 1, continuing=True)

    @classmethod  # noqa: B027 - optional: most trackers need no check
    def check_environment(cls) -> None:
        """:class:`TrackerRefused` if this tracker's settings (environment variables) are
        unusable; reads no file and contacts no server."""

    @classmethod  # noqa: B027 - optional
    def check_files(cls, root: Path, run_dir: Path) -> None:
        """:class:`TrackerRefused` (or a ``CorruptFileError``) if what this tracker would
        reuse in ``root`` (its store) or ``run_dir`` could make it write outside them (a
        store, symlink or file planted in a folder received from someone else)."""

    def new(self, key: str, step: int) -> bool:
        """Whether ``key`` at ``step`` is not in the tracker yet (and may be logged)."""
        return step > self.recorded.get(key, -1)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Log the finite numbers of ``values`` at ``step`` (those not logged before)."""
        fresh = {
            k: float(v)
            for k, v in values.items()
            if is_number(v) and math.isfinite(float(v)) and self.new(k, step)
        }
        if fresh:
            self._scalars(fresh, step)

    def histogram(self, tag: str, values: Sequence[float], step: int) -> None:
        if values and self.new(tag, step):
            self._histogram(tag, [float(v) for v in values], step)

    def table(self, tag: str, columns: Sequence[str], rows: Sequence[Sequence], step: int) -> None:
        if self.new(tag, step):
            self._table(tag, list(columns), [list(r) for r in rows], step)

    def figure(self, tag: str, fig: Any, step: int) -> None:
        """A matplotlib figure, logged as an image (the figure is left open)."""
        if self.new(tag, step):
            self._figure(tag, fig, step)

    def image_file(self, tag: str, path: Path, step: int) -> None:
        """A PNG file (e.g. a report plot), logged as an image."""
        if self.new(tag, step):
            self._image_file(tag, Path(path), step)

    def text(self, tag: str, markdown: str, step: int) -> None:
        if self.new(tag, step):
            self._text(tag, markdown, step)

    @abstractmethod
    def params(self, params: Mapping[str, Scalar], metrics: Sequence[str]) -> None:
        """The configuration as hyperparameters (``metrics``: the keys to compare runs by)."""

    def summary(self, values: Mapping[str, Any], step: int) -> None:
        """The run's final numbers (accuracy, nonzeros, FB overhead, FLOPs, file size):
        numbers as ``summary/<key>`` scalars at ``step``, and everything as a table."""
        self.scalars({f"summary/{k}": v for k, v in values.items()}, step)
        rows = [(k, v) for k, v in values.items() if isinstance(v, Scalar)]
        self.table("summary", ["", "value"], rows, step)

    @abstractmethod
    def _scalars(self, values: dict[str, float], step: int) -> None: ...

    @abstractmethod
    def _histogram(self, tag: str, values: list[float], step: int) -> None: ...

    @abstractmethod
    def _table(self, tag: str, columns: list[str], rows: list[list], step: int) -> None: ...

    @abstractmethod
    def _figure(self, tag: str, fig: Any, step: int) -> None: ...

    @abstractmethod
    def _image_file(self, tag: str, path: Path, step: int) -> None: ...

    @abstractmethod
    def _text(self, tag: str, markdown: str, step: int) -> None: ...

    def flush(self) -> None:  # noqa: B027 - optional: most trackers write at once
        """Make what was logged durable (called at every epoch's end)."""

    @abstractmethod
    def close(self, status: str = "FINISHED") -> None:
        """Finish the tracker run (idempotent); ``status``: ``FINISHED``, ``FAILED`` (an
        error) or ``KILLED`` (stopped by a signal, to be resumed)."""


_TRACKERS: dict[str, Callable[[], type[Tracker]]] = {}


def register_tracker(name: str, loader: Callable[[], type[Tracker]]) -> None:
    """Make ``--log name`` open the tracker class ``loader()`` returns (imported only then)."""
    _TRACKERS[name] = loader


def tracker_names() -> tuple[str, ...]:
    return tuple(_TRACKERS)


def tracker_class(name: str) -> type[Tracker]:
    """The tracker ``name``; one line if it is unknown, its package is missing or its
    settings are unusable (:meth:`Tracker.check_environment`)."""
    check_names([name])
    cls = _TRACKERS[name]()
    require(cls)
    cls.check_environment()
    return cls


def check_names(names: Iterable[str]) -> None:
    for n in names:
        if n not in _TRACKERS:
            raise ValueError(f"unknown tracker {n!r} for --log; choose from {tracker_names()}")


def require(cls: type[Tracker]) -> None:
    """:class:`MissingTrackerError` naming the extra if ``cls``'s package is not installed."""
    missing = [p for p in cls.packages if importlib.util.find_spec(p) is None]
    if missing:
        raise MissingTrackerError(
            f"--log {cls.name} needs the {' and '.join(missing)} package"
            f'{"s" if len(missing) > 1 else ""}: pip install -e ".[{cls.name}]" in the '
            "repository (its extra)"
        )


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``; lists and ``None`` as text, so
    that every tracker's hyperparameter view accepts each value."""
    out: dict[str, Scalar] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_params(v, key + "."))
        elif isinstance(v, bool | int | float | str):
            out[key] = v
        elif isinstance(v, list | tuple):
            out[key] = ",".join(map(str, v))
        else:
            out[key] = str(v)
    return out


def is_number(v: Any) -> bool:
    """A plain int or float (``bool`` is not a number here)."""
    return isinstance(v, int | float) and not isinstance(v, bool)
