"""MLflow, on a local store unless ``MLFLOW_TRACKING_URI`` names another: a SQLite file
``<root>/mlflow.db`` with artifacts in ``<root>/mlartifacts`` (``mlflow ui
--backend-store-uri sqlite:///<root>/mlflow.db`` shows them). Needs the ``mlflow-skinny``
package with SQLAlchemy and Alembic (``[mlflow]`` extra). The experiment is
``MLFLOW_EXPERIMENT_NAME`` (default ``interspace-pruning``); a sweep's or comparison's
runs are nested under one parent run.

A store found in a run folder is input: it is reused only if its artifact paths lie in
the folder (see :mod:`.stores`), and this adapter writes a local store's artifacts itself,
to ``<root>/mlartifacts/<run id>/artifacts``, whatever the store says. A server
(``http(s)://``) is probed first and its requests are bounded (:data:`HTTP_DEFAULTS`): one
that does not answer leaves the run to go on without MLflow.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..foundations.io import atomic_write_bytes, lies_in
from . import stores
from .base import Scalar, TrackedRun, Tracker, TrackerRefused
from .network import probe

DEFAULT_EXPERIMENT = "interspace-pruning"
TAG_HASH = "interspace.config_hash"
TAG_GROUP = "interspace.group"
TAG_ROLE = "interspace.role"
PARENT = "mlflow.parentRunId"
#: The tracking URI schemes MLflow's own stores take (a database scheme may name its
#: driver: ``postgresql+psycopg2``); plugins add theirs (entry points
#: ``mlflow.tracking_store``). Anything else is refused before anything is written.
SCHEMES = frozenset(
    {"", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks"}
)
#: Bounds on MLflow's HTTP requests (its defaults: 120 s a request, 7 retries with
#: exponential backoff, minutes in all), set for this process where the environment does
#: not set them: at most about 35 s before a call to an unreachable server fails.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve()}/mlflow.db"


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def local_store(root: Path) -> Path | None:
    """The SQLite file of the store if it lies in ``root`` (the default store, or an
    ``MLFLOW_TRACKING_URI`` naming a file there): a store this package manages, whose
    artifacts go to ``<root>/mlartifacts``."""
    uri = tracking_uri(root)
    parts = urlsplit(uri)
    if parts.scheme.lower().split("+")[0] != "sqlite" or not uri.lower().startswith("sqlite:///"):
        return None
    db = Path(unquote(uri[len("sqlite:///") :].split("?")[0]))
    return db if lies_in(db.parent, root) else None


def check_uri(uri: str) -> None:
    """:class:`TrackerRefused` for a tracking URI whose scheme no MLflow store takes (the
    message names the scheme only: a URI may hold a password)."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme.split("+")[0] in SCHEMES:
        return
    plugins = {e.name for e in importlib.metadata.entry_points(group="mlflow.tracking_store")}
    if scheme not in plugins:
        raise TrackerRefused(
            f"MLFLOW_TRACKING_URI has the scheme {scheme[:40]!r}, which no MLflow store "
            "takes; use http(s)://HOST:PORT, sqlite:///PATH, postgresql://..., a folder or "
            "databricks, or unset it to keep the store in the run folder"
        )


def _check_count(name: str, least: int) -> None:
    text = os.environ.get(name)
    if text is None:
        return
    try:
        ok = int(text) >= least
    except ValueError:
        ok = False
    if not ok:
        raise TrackerRefused(
            f"{name}={text[:40]!r} is not a whole number >= {least}; set one or unset it "
            f"(default here: {HTTP_DEFAULTS[name]})"
        )


def bound_http() -> None:
    """:data:`HTTP_DEFAULTS` for this process, where the environment leaves them unset."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def request_timeout() -> float:
    return float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or 10)


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
        uri = tracking_uri(run.root)
        db = local_store(run.root)
        #: ``<root>/mlartifacts`` for a store this package manages (artifacts written here,
        #: never where the store says); None: MLflow's own artifact repository (a server)
        self._artifacts: Path | None = None
        if db is not None:
            stores.check_mlflow_store(db, run.root, experiment_name())
            self._artifacts = stores.artifact_root(run.root)
        else:
            bound_http()
            probe(uri, request_timeout(), "the MLflow server")
        from mlflow.tracking import MlflowClient

        _quiet()  # after the import, which sets mlflow's own levels

        run.root.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(uri)
        self.experiment = self._experiment()
        parent = (self._find("group") or self._create("group")) if run.group else None
        if role == "group":
            self.run_id = parent.info.run_id
        elif continuing and run_id and self._exists(run_id):
            self.recorded = self._recorded()
        else:  # a new run folder (or one started over): a new MLflow run
            self.run_id = self._create(role, parent).info.run_id
        found = self.client.get_run(self.run_id)
        if self._artifacts is not None:
            self._check_artifact_uri(found.info.artifact_uri)
        self.client.update_run(self.run_id, status="RUNNING")
        self._params = found.data.params
        self._closed = False

    @classmethod
    def check_environment(cls) -> None:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            check_uri(uri)
        _check_count("MLFLOW_HTTP_REQUEST_TIMEOUT", 1)
        _check_count("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 0)
        _check_count("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 0)

    @classmethod
    def check_files(cls, root: Path, run_dir: Path) -> None:
        db = local_store(root)
        if db is not None:
            stores.check_mlflow_store(db, root, experiment_name())

    def _run_artifacts(self) -> Path:
        """This run's artifact folder, from this package's layout (not from the store)."""
        fix = stores.store_fix(Path(local_store(self.run.root) or self.run.root))
        run_id = stores.check_run_id(self.run_id, "the MLflow store", fix)
        return self._artifacts / run_id / "artifacts"

    def _check_artifact_uri(self, uri: str) -> None:
        """Refuse a run whose artifact URI is not the folder this adapter writes to (the
        store would show other files than the ones written)."""
        path = stores.uri_path(uri)
        want = self._run_artifacts()
        if path is None or path.resolve() != want.resolve():
            db = local_store(self.run.root) or self.run.root
            raise TrackerRefused(
                f"{db}: run {self.run_id} keeps its artifacts at {uri[:200]!r}, not at "
                f"{want}; {stores.store_fix(Path(db))}"
            )

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
        name = experiment_name()
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        # the folder itself unresolved: a symlinked mlartifacts is refused, not followed
        artifacts = stores.artifact_root(self.run.root).as_uri()
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
            if self._artifacts is None:
                self.client.log_dict(self.run_id, dict(values), "summary.json")
            else:
                text = json.dumps(dict(values), indent=2, default=str)
                self._write("summary.json", text.encode())

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
        self._log_text(json.dumps(data, default=str), f"{tag}/step{step}.json")

    def _figure(self, tag: str, fig: Any, step: int) -> None:
        path = f"images/{tag}/step{step}.png"
        if self._artifacts is None:
            self.client.log_figure(self.run_id, fig, path)
            return
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        self._write(path, buf.getvalue())

    def _image_file(self, tag: str, path: Path, step: int) -> None:
        from PIL import Image

        where = f"images/{tag}/step{step}.png"
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        if self._artifacts is None:
            self.client.log_image(self.run_id, rgb, where)
            return
        buf = io.BytesIO()
        rgb.save(buf, format="PNG")
        self._write(where, buf.getvalue())

    def _text(self, tag: str, markdown: str, step: int) -> None:
        self._log_text(markdown, f"{tag}/step{step}.md")

    def _log_text(self, text: str, path: str) -> None:
        if self._artifacts is None:
            self.client.log_text(self.run_id, text, path)
        else:
            self._write(path, text.encode())

    def _write(self, path: str, data: bytes) -> None:
        """One artifact of a local store, written atomically under this run's artifact
        folder; no symlink or ``..`` on the way (see :func:`.stores.safe_dir`)."""
        *folders, name = path.split("/")
        own = self._run_artifacts().relative_to(self._artifacts).parts  # (run id, artifacts)
        d = stores.safe_dir(self._artifacts, [*own, *folders])
        if name in ("", ".", ".."):
            raise TrackerRefused(f"artifact name {name!r} under {d} is not a plain name")
        atomic_write_bytes(d / name, data)

    def close(self, status: str = "FINISHED") -> None:
        if not self._closed:
            self.client.set_terminated(self.run_id, status)
            self._closed = True


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
