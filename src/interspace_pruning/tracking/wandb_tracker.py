"""Weights & Biases, offline unless ``WANDB_MODE`` says otherwise: runs go to
``<root>/wandb/offline-run-*`` (``wandb sync`` uploads them later). Needs the ``wandb``
package (``[wandb]`` extra). The project is ``WANDB_PROJECT`` (default
``interspace-pruning``); a sweep's or comparison's runs share a W&B group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import wandb_files
from .base import Scalar, TrackedRun, Tracker

DEFAULT_PROJECT = "interspace-pruning"


def mode() -> str:
    """``WANDB_MODE`` if set (``online`` to stream to a server), else ``offline``."""
    return os.environ.get("WANDB_MODE") or "offline"


class WandbTracker(Tracker):
    """One W&B run whose id is the run's config hash: a resumed run reopens it
    (``resume="allow"``), and steps its earlier files already hold are not logged again
    (read back with :mod:`.wandb_files`)."""

    name = "wandb"
    packages = ("wandb",)

    def __init__(
        self,
        run: TrackedRun,
        done: int = 0,
        continuing: bool = False,
        run_id: str | None = None,
        job_type: str = "train",
    ) -> None:
        super().__init__(run, done, continuing, run_id or fresh_id(run))
        import wandb

        run.root.mkdir(parents=True, exist_ok=True)
        if continuing:
            self.recorded = wandb_files.logged_steps(run.root / "wandb", self.run_id)
        self.wandb = wandb
        self.handle = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            dir=str(run.root),
            id=self.run_id,
            name=run.group if job_type == "report" else run.name,
            group=run.group,
            job_type=job_type,
            resume="allow",
            mode=mode(),
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", save_code=False),
        )

    @classmethod
    def for_group(cls, run: TrackedRun, step: int) -> Tracker:
        return cls(run, step - 1, True, run.name, job_type="report")

    def params(self, params: Mapping[str, Scalar], metrics: Sequence[str]) -> None:
        self.handle.config.update(dict(params), allow_val_change=True)

    def summary(self, values: Mapping[str, Any], step: int) -> None:
        super().summary(values, step)
        self.handle.summary.update({k: v for k, v in values.items() if isinstance(v, Scalar)})

    def _log(self, row: dict[str, Any], step: int) -> None:
        self.handle.log(row, step=step)

    def _scalars(self, values: dict[str, float], step: int) -> None:
        self._log(values, step)

    def _histogram(self, tag: str, values: list[float], step: int) -> None:
        self._log({tag: self.wandb.Histogram(values)}, step)

    def _table(self, tag: str, columns: list[str], rows: list[list], step: int) -> None:
        # a W&B table column holds one type: a column of mixed types becomes text
        mixed = [len({type(r[j]) for r in rows}) > 1 for j in range(len(columns))]
        data = [
            [str(v) if mixed[j] or not isinstance(v, Scalar) else v for j, v in enumerate(r)]
            for r in rows
        ]
        self._log({tag: self.wandb.Table(columns=columns, data=data)}, step)

    def _figure(self, tag: str, fig: Any, step: int) -> None:
        self._log({tag: self.wandb.Image(fig)}, step)

    def _image_file(self, tag: str, path: Path, step: int) -> None:
        self._log({tag: self.wandb.Image(str(path))}, step)

    def _text(self, tag: str, markdown: str, step: int) -> None:
        self._log({tag: self.wandb.Html(f"<pre>{_escape(markdown)}</pre>")}, step)

    def close(self, status: str = "FINISHED") -> None:
        if self.handle is not None:
            self.handle.finish(exit_code=0 if status == "FINISHED" else 1)
            self.handle = None


def fresh_id(run: TrackedRun) -> str:
    """The id of a run folder's first W&B run: its config hash, unless W&B holds a run of
    that id already (from a folder started over): then ``<hash>-2``, ``-3``, ..."""
    k, run_id = 1, run.name
    while wandb_files.run_files(run.root / "wandb", run_id):
        k += 1
        run_id = f"{run.name}-{k}"
    return run_id


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
