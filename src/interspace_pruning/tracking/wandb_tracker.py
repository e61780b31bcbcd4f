"""Weights & Biases, offline unless ``WANDB_MODE`` says otherwise: runs go to
``<root>/wandb/offline-run-*`` (``wandb sync`` uploads them later). Needs the ``wandb``
package (``[wandb]`` extra). The project is ``WANDB_PROJECT`` (default
``interspace-pruning``); a sweep's or comparison's runs share a W&B group. Online, the
server (``WANDB_BASE_URL``) is probed first and ``wandb.init`` waits at most
``WANDB_INIT_TIMEOUT`` seconds (default here :data:`INIT_TIMEOUT`): one that does not
answer leaves the run to go on without W&B.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import stores, wandb_files
from .base import Scalar, TrackedRun, Tracker, TrackerRefused
from .network import probe

DEFAULT_PROJECT = "interspace-pruning"
#: The values W&B takes for ``WANDB_MODE`` (``dryrun`` is offline, ``run`` online).
MODES = ("offline", "online", "shared", "disabled", "dryrun", "run")
#: Seconds ``wandb.init`` may take online (W&B's own default: 90), unless
#: ``WANDB_INIT_TIMEOUT`` says otherwise.
INIT_TIMEOUT = 30.0
#: Seconds the probe of an online server waits for any answer.
PROBE_SECONDS = 10.0
DEFAULT_SERVER = "https://api.wandb.ai"
#: Characters W&B refuses in a project name.
PROJECT_FORBIDDEN = "/\\#?%:"


def mode() -> str:
    """``WANDB_MODE`` if set (``online`` to stream to a server), else ``offline``."""
    return os.environ.get("WANDB_MODE") or "offline"


def online() -> bool:
    return mode() in ("online", "shared", "run")


def init_timeout() -> float | None:
    """``WANDB_INIT_TIMEOUT`` if set (W&B reads it itself), else :data:`INIT_TIMEOUT`."""
    return None if os.environ.get("WANDB_INIT_TIMEOUT") else INIT_TIMEOUT


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
        self.handle = None
        fix = f"delete {run.run_dir / 'tracking.json'} to start new tracker runs"
        stores.check_run_id(self.run_id, "W&B", fix)
        self.check_files(run.root, run.run_dir)
        if online():
            server = os.environ.get("WANDB_BASE_URL") or DEFAULT_SERVER
            probe(server, PROBE_SECONDS, "the W&B server")
        import wandb

        run.root.mkdir(parents=True, exist_ok=True)
        if continuing:
            self.recorded = wandb_files.logged_steps(run.root / "wandb", self.run_id)
        self.wandb = wandb
        settings = {"silent": True, "console": "off", "save_code": False}
        if init_timeout() is not None:
            settings["init_timeout"] = init_timeout()
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
            settings=wandb.Settings(**settings),
        )

    @classmethod
    def check_environment(cls) -> None:
        if mode() not in MODES:
            raise TrackerRefused(
                f"WANDB_MODE={mode()[:40]!r} is not one of {', '.join(MODES)}; set one, or "
                "unset it (offline)"
            )
        project = os.environ.get("WANDB_PROJECT")
        if project and (len(project) > 128 or any(c in project for c in PROJECT_FORBIDDEN)):
            raise TrackerRefused(
                f"WANDB_PROJECT={project[:40]!r} is not a W&B project name (at most 128 "
                f"characters, none of {PROJECT_FORBIDDEN}); choose another or unset it"
            )
        text = os.environ.get("WANDB_INIT_TIMEOUT")
        if text:
            try:
                ok = math.isfinite(float(text)) and float(text) > 0
            except ValueError:
                ok = False
            if not ok:
                raise TrackerRefused(
                    f"WANDB_INIT_TIMEOUT={text[:40]!r} is not a number of seconds > 0; set "
                    f"one or unset it (default here: {INIT_TIMEOUT:g})"
                )

    @classmethod
    def check_files(cls, root: Path, run_dir: Path) -> None:
        # W&B writes under <root>/wandb: neither it nor an entry in it may lead elsewhere
        stores.check_links(Path(root) / "wandb", within=root)

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
