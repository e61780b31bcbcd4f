"""MLflow, on a local store unless ``MLFLOW_TRACKING_URI`` names another: a SQLite file
``<root>/mlflow.db`` with artifacts in ``<root>/mlartifacts`` (``mlflow ui
--backend-store-uri sqlite:///<root>/mlflow.db`` shows them). Needs the ``mlflow-skinny``
package with SQLAlchemy and Alembic (``[mlflow]`` extra). The experiment is
``MLFLOW_EXPERIMENT_NAME`` (default ``interspace-pruning``); a sweep's or comparison's
runs are nested under one parent run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import Scalar, TrackedRun, Tracker

DEFAULT_EXPERIMENT = "interspace-pruning"
TAG_HASH = "interspace.config_hash"
TAG_GROUP = "interspace.group"
TAG_ROLE = "interspace.role"
PARENT = "mlflow.parentRunId"


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve()}/mlflow.db"


def _quiet() -> None:
    # the store says "Creating initial MLflow database tables..." on every new database
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class MlflowTracker(Tracker):
    """An MLflow run tagged with the run's config hash: a resumed run finds it again and
    continues it; steps it already holds (per metric) are not logged again."""

    name = "mlflow"
    packages = ("mlflow", "sqlalchemy", "alembic")  # the SQLite store needs the last two

    def __init__(
        self,
        run: TrackedRun,
        done: int = 0,
        continuing: bool = False,
        run_id: str | None = None,
        role: str = "run",
    ) -> None:
        super().__init__(run, done, continuing, run_id)
        from mlflow.tracking import MlflowClient

        _quiet()  # after the import, which sets mlflow's own levels

        run.root.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri(run.root))
        self.experiment = self._experiment()
        parent = (self._find("group") or self._create("group")) if run.group else None
        if role == "group":
            self.run_id = parent.info.run_id
        elif continuing and run_id and self._exists(run_id):
            self.recorded = self._recorded()
        else:  # a new run folder (or one started over): a new MLflow run
            self.run_id = self._create(role, parent).info.run_id
        self.client.update_run(self.run_id, status="RUNNING")
        self._params = self.client.get_run(self.run_id).data.params
        self._closed = False

    @classmethod
    def for_group(cls, run: TrackedRun, step: int) -> Tracker:
        return cls(run, step - 1, True, None, role="group")

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    # -- finding the runs ----------------------------------------------------------------
    def _experiment(self) -> str:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        artifacts = (self.run.root / "mlartifacts").resolve().as_uri()
        return self.client.create_experiment(name, artifact_location=artifacts)

    def _tags(self, role: str) -> dict[str, str]:
        tags = {TAG_ROLE: role}
        if self.run.group:
            tags[TAG_GROUP] = self.run.group
        if role != "group":
            tags[TAG_HASH] = self.run.name
        return tags

    def _find(self, role: str):
        where = " and ".join(f"tags.`{k}` = '{_quote(v)}'" for k, v in self._tags(role).items())
        runs = self.client.search_runs(
            [self.experiment], where, max_results=1, order_by=["attributes.start_time ASC"]
        )
        return runs[0] if runs else None

    def _create(self, role: str, parent=None):
        tags = self._tags(role)
        if parent is not None:
            tags[PARENT] = parent.info.run_id
        name = self.run.group if role == "group" else self.run.name
        return self.client.create_run(self.experiment, tags=tags, run_name=name)

    def _recorded(self) -> dict[str, int]:
        """The last step logged per metric (a resumed run logs only later ones). Artifacts
        need no such record: one logged again at a step replaces its own file."""
        keys = self.client.get_run(self.run_id).data.metrics
        last = {}
        for k in keys:
            steps = [m.step for m in self.client.get_metric_history(self.run_id, k)]
            last[k] = max(steps)
        return last

    # -- logging -------------------------------------------------------------------------
    def params(self, params: Mapping[str, Scalar], metrics: Sequence[str]) -> None:
        from mlflow.entities import Param

        # MLflow refuses to change a parameter: a resumed run adds only missing ones
        new = [Param(k, str(v)) for k, v in params.items() if k not in self._params]
        for i in range(0, len(new), 100):  # the store takes at most 100 per batch
            self.client.log_batch(self.run_id, params=new[i : i + 100])

    def summary(self, values: Mapping[str, Any], step: int) -> None:
        super().summary(values, step)
        if self.new("summary.json", step):
            self.client.log_dict(self.run_id, dict(values), "summary.json")

    def _scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def _histogram(self, tag: str, values: list[float], step: int) -> None:
        self._json(tag, {"step": step, "values": values}, step)

    def _table(self, tag: str, columns: list[str], rows: list[list], step: int) -> None:
        self._json(tag, {"step": step, "columns": columns, "rows": rows}, step)

    def _json(self, tag: str, data: dict, step: int) -> None:
        self.client.log_text(self.run_id, json.dumps(data, default=str), f"{tag}/step{step}.json")

    def _figure(self, tag: str, fig: Any, step: int) -> None:
        self.client.log_figure(self.run_id, fig, f"images/{tag}/step{step}.png")

    def _image_file(self, tag: str, path: Path, step: int) -> None:
        from PIL import Image

        with Image.open(path) as im:
            self.client.log_image(self.run_id, im.convert("RGB"), f"images/{tag}/step{step}.png")

    def _text(self, tag: str, markdown: str, step: int) -> None:
        self.client.log_text(self.run_id, markdown, f"{tag}/step{step}.md")

    def close(self, status: str = "FINISHED") -> None:
        if not self._closed:
            self.client.set_terminated(self.run_id, status)
            self._closed = True


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
