"""Trackers are untrusted input and never hang a run (issue 32).

A run folder may come from someone else: a planted MLflow store must not send artifacts
out of it, ``tracking.json`` is validated, and symlinks among the trackers' files are
refused. A tracker's settings are checked before anything is written. A server that
refuses or never answers costs a few seconds, then the run goes on without the tracker;
a stop signal gives a blocked tracker call up at once. Most of this needs no tracker
package (fake trackers, the store read with ``sqlite3``); the rest skips without one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from interspace_pruning.foundations.io import CorruptFileError
from interspace_pruning.tracking import (
    RECORD,
    TrackedRun,
    Tracker,
    TrackerRefused,
    TrackerUnavailable,
    TrackingSession,
    check_trackers,
    network,
    read_record,
    register_tracker,
    stores,
)
from interspace_pruning.tracking import base as tracking_base
from interspace_pruning.tracking.mlflow_tracker import MlflowTracker, local_store
from interspace_pruning.tracking.tensorboard_tracker import TensorBoardTracker
from interspace_pruning.tracking.wandb_tracker import WandbTracker
from interspace_pruning.training.signals import StopOnSignals, StopRequests, TrainingStopped

EXP = "interspace-pruning"
RUN_ID = "0123456789abcdef0123456789abcdef"


def has(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


needs_mlflow = pytest.mark.skipif(not has("mlflow"), reason="the [mlflow] extra")
needs_wandb = pytest.mark.skipif(not has("wandb"), reason="the [wandb] extra")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network: W&B offline, MLflow's store in the run folder, no proxy."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "WANDB_PROJECT",
        "WANDB_INIT_TIMEOUT",
        "WANDB_BASE_URL",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def one_line(e: BaseException | str) -> str:
    text = str(e).strip()
    assert "\n" not in text and "Traceback" not in text, text
    return text


# -- a store planted in a run folder (read with sqlite3: no mlflow needed) -----------------------
def plant(db: Path, experiment: str | None, run: str | None, run_id: str = RUN_ID) -> None:
    """A store with MLflow's columns that matter here: one experiment, one run."""
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE experiments (experiment_id, name, artifact_location)")
    con.execute("CREATE TABLE runs (run_uuid, experiment_id, artifact_uri)")
    con.execute("INSERT INTO experiments VALUES (0, 'Default', ?)", ("/elsewhere/mlruns/0",))
    if experiment is not None:
        con.execute("INSERT INTO experiments VALUES (1, ?, ?)", (EXP, experiment))
    if run is not None:
        con.execute("INSERT INTO runs VALUES (?, 1, ?)", (run_id, run))
    con.commit()
    con.close()


def ours(root: Path, run_id: str = RUN_ID) -> tuple[str, str]:
    arts = root.resolve() / "mlartifacts"
    return arts.as_uri(), (arts / run_id / "artifacts").as_uri()


def test_a_store_whose_run_keeps_artifacts_elsewhere_is_refused(tmp_path):
    root, other = tmp_path / "run", tmp_path / "other"
    exp, _ = ours(root)
    plant(root / "mlflow.db", exp, other.as_uri())
    with pytest.raises(TrackerRefused) as e:
        stores.check_mlflow_store(root / "mlflow.db", root, EXP)
    text = one_line(e.value)
    assert str(root / "mlflow.db") in text and "outside" in text and "move" in text


def test_a_store_whose_experiment_keeps_artifacts_elsewhere_is_refused(tmp_path):
    root = tmp_path / "run"
    plant(root / "mlflow.db", (tmp_path / "other").as_uri(), None)  # no run, no tracking.json
    with pytest.raises(TrackerRefused, match="experiment"):
        stores.check_mlflow_store(root / "mlflow.db", root, EXP)


def test_a_store_of_this_folder_passes_and_other_experiments_are_not_ours(tmp_path):
    root = tmp_path / "run"
    plant(root / "mlflow.db", *ours(root))  # 'Default' points elsewhere: never used
    stores.check_mlflow_store(root / "mlflow.db", root, EXP)
    stores.check_mlflow_store(root / "absent.db", root, EXP)  # MLflow creates it
    (root / "empty.db").write_bytes(b"")  # a database without tables yet
    stores.check_mlflow_store(root / "empty.db", root, EXP)


@pytest.mark.parametrize(
    "uri", ["s3://bucket/artifacts", "mlruns/1/x/artifacts", "http://host/x", "file://host/x"]
)
def test_artifacts_anywhere_but_a_local_path_in_the_folder_are_refused(tmp_path, uri):
    root = tmp_path / "run"
    plant(root / "mlflow.db", ours(root)[0], uri)
    with pytest.raises(TrackerRefused, match="outside"):
        stores.check_mlflow_store(root / "mlflow.db", root, EXP)


def test_a_symlinked_mlartifacts_leading_out_is_refused(tmp_path):
    root, other = tmp_path / "run", tmp_path / "other"
    other.mkdir()
    plant(root / "mlflow.db", *ours(root))
    (root / "mlartifacts").symlink_to(other, target_is_directory=True)
    with pytest.raises(TrackerRefused, match="outside"):
        stores.check_mlflow_store(root / "mlflow.db", root, EXP)


@pytest.mark.parametrize("name", ["mlflow.db", "mlflow.db-journal"])
def test_a_symlinked_store_or_journal_is_refused(tmp_path, name):
    root, other = tmp_path / "run", tmp_path / "other"
    plant(other / "mlflow.db", *ours(root))
    root.mkdir()
    if name == "mlflow.db-journal":
        plant(root / "mlflow.db", *ours(root))
        (other / "x").write_bytes(b"")
    (root / name).symlink_to(other / ("mlflow.db" if name == "mlflow.db" else "x"))
    with pytest.raises(TrackerRefused, match="symlink"):
        stores.check_mlflow_store(root / "mlflow.db", root, EXP)


def test_a_store_that_is_not_a_database_is_one_line(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (root / "mlflow.db").write_bytes(b"not sqlite " * 200)
    with pytest.raises(CorruptFileError) as e:
        stores.check_mlflow_store(root / "mlflow.db", root, EXP)
    assert "mlflow.db" in one_line(e.value)
    con = sqlite3.connect(root / "other.db")
    con.execute("CREATE TABLE t (x)")
    con.close()
    with pytest.raises(CorruptFileError, match="not an MLflow store"):
        stores.check_mlflow_store(root / "other.db", root, EXP)


def test_a_trigger_on_a_table_the_runs_write_is_refused(tmp_path):
    root = tmp_path / "run"
    plant(root / "mlflow.db", *ours(root))
    con = sqlite3.connect(root / "mlflow.db")
    con.execute(  # would send the run's artifacts elsewhere once the check has passed
        "CREATE TRIGGER t AFTER UPDATE ON runs BEGIN "
        "UPDATE runs SET artifact_uri = 'file:///tmp/x'; END"
    )
    con.commit()
    con.close()
    with pytest.raises(TrackerRefused, match="trigger"):
        stores.check_mlflow_store(root / "mlflow.db", root, EXP)


def test_check_trackers_refuses_a_planted_store_before_anything_is_written(tmp_path):
    root, other = tmp_path / "run", tmp_path / "other"
    plant(root / "mlflow.db", ours(root)[0], other.as_uri())
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(TrackerRefused):
        MlflowTracker.check_files(root, root)  # what TrackingSession and check_trackers run
    assert sorted(p.name for p in root.iterdir()) == before and not other.exists()
    assert local_store(root) == root.resolve() / "mlflow.db"


def test_an_mlflow_uri_naming_a_store_outside_the_folder_is_not_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/central.db")
    assert local_store(tmp_path / "run") is None  # the user's own store: their config
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/run/my.db")
    assert local_store(tmp_path / "run") == tmp_path / "run" / "my.db"


def test_artifact_folders_never_follow_a_symlink_or_dots(tmp_path):
    base, other = tmp_path / "mlartifacts", tmp_path / "other"
    other.mkdir()
    assert stores.safe_dir(base, ["a", "artifacts"]) == base / "a" / "artifacts"
    (base / "a" / "artifacts" / "images").symlink_to(other, target_is_directory=True)
    with pytest.raises(TrackerRefused, match="symlink"):
        stores.safe_dir(base, ["a", "artifacts", "images", "x"])
    with pytest.raises(TrackerRefused, match="plain name"):
        stores.safe_dir(base, ["a", "..", "b"])
    assert list(other.iterdir()) == []


# -- links the other trackers would write through -------------------------------------------------
def test_a_wandb_folder_or_entry_leading_out_is_refused(tmp_path):
    root, other = tmp_path / "run", tmp_path / "other"
    root.mkdir()
    other.mkdir()
    (root / "wandb").symlink_to(other, target_is_directory=True)
    with pytest.raises(TrackerRefused, match="symlink"):
        WandbTracker.check_files(root, root)
    (root / "wandb").unlink()
    (root / "wandb").mkdir()
    (root / "wandb" / "latest-run").symlink_to("offline-run-x")  # W&B's own link: inside
    WandbTracker.check_files(root, root)
    (root / "wandb" / "offline-run-20990101_000000-abc").symlink_to(other)
    with pytest.raises(TrackerRefused, match="offline-run"):
        WandbTracker.check_files(root, root)


def test_a_tensorboard_event_file_leading_out_is_refused(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (tmp_path / "victim").write_text("x")
    (root / "events.out.tfevents.1.host.1.0").symlink_to(tmp_path / "victim")
    with pytest.raises(TrackerRefused, match="events.out.tfevents"):
        TensorBoardTracker.check_files(root, root)


# -- tracking.json --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"wandb": "a/b"}', "'wandb'"),
        ('{"mlflow": "../../x"}', "'mlflow'"),
        ('{"wandb": {"id": "x"}}', "'wandb'"),
        ('{"mlflow": 7}', "'mlflow'"),
        ('{"wandb": "' + "a" * 65 + '"}', "'wandb'"),
        ('{"tensorboard": "' + "x" * 5000 + '"}', "'tensorboard'"),
        ('{"tensorboard": "a\\u0000b"}', "'tensorboard'"),
        ('{"../x": "y"}', "'../x'"),
        ('{"x": ' + "[" * 100000 + "]" * 100000 + "}", "deeper"),
        ("[1, 2]", "not a dict"),
        (json.dumps({f"t{i}": "x" for i in range(40)}), "40 fields"),
    ],
)
def test_a_bad_tracking_json_is_one_line_naming_file_and_field(tmp_path, text, field):
    path = tmp_path / RECORD
    path.write_text(text)
    with pytest.raises(CorruptFileError) as e:
        read_record(path)
    msg = one_line(e.value)
    assert str(path) in msg and field in msg and f"delete {path}" in msg


def test_a_good_tracking_json_reads_back(tmp_path):
    path = tmp_path / RECORD
    ids = {"mlflow": RUN_ID, "wandb": "5f2a9c01d3-2", "tensorboard": str(tmp_path)}
    path.write_text(json.dumps(ids))
    assert read_record(path) == ids


# -- settings, before anything is written -------------------------------------------------------
@pytest.mark.parametrize("uri", ["foo://bar", "foo://user:secret@host/x", "ftp://h/x"])
def test_an_unknown_mlflow_scheme_is_one_line_without_the_uri(monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(TrackerRefused) as e:
        MlflowTracker.check_environment()
    msg = one_line(e.value)
    assert "MLFLOW_TRACKING_URI" in msg and "scheme" in msg and "secret" not in msg


@pytest.mark.parametrize(
    "uri", ["http://h:5000", "https://h", "sqlite:////x/m.db", "postgresql+psycopg2://h/d", "/x"]
)
def test_known_mlflow_schemes_pass(monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    MlflowTracker.check_environment()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "soon"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "0"),
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "-1"),
    ],
)
def test_bad_mlflow_bounds_are_one_line(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(TrackerRefused, match=name):
        MlflowTracker.check_environment()


@pytest.mark.parametrize(
    ("name", "value"),
    [("WANDB_MODE", "loud"), ("WANDB_PROJECT", "a/b"), ("WANDB_INIT_TIMEOUT", "never")],
)
def test_bad_wandb_settings_are_one_line(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(TrackerRefused) as e:
        WandbTracker.check_environment()
    assert name in one_line(e.value)


# -- servers that refuse or never answer --------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers (the kernel completes them)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()


@pytest.fixture
def answering_server():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)

    def serve():
        try:
            conn, _ = s.accept()
        except OSError:
            return
        with conn:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.0 404 Not Found\r\n\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()


def test_probe_a_refused_port_fails_at_once():
    t0 = time.monotonic()
    with pytest.raises(TrackerUnavailable) as e:
        network.probe(f"http://127.0.0.1:{closed_port()}", 5, "the MLflow server")
    assert time.monotonic() - t0 < 2
    assert "cannot be reached" in one_line(e.value)


def test_probe_a_silent_server_fails_within_its_timeout(silent_server):
    t0 = time.monotonic()
    with pytest.raises(TrackerUnavailable, match="did not answer within 0.5 s"):
        network.probe(silent_server, 0.5, "the MLflow server")
    assert time.monotonic() - t0 < 2


def test_probe_any_answer_will_do(answering_server):
    network.probe(answering_server, 5, "the MLflow server")


def test_probe_leaves_proxied_and_other_urls_alone(monkeypatch, silent_server):
    network.probe("databricks", 0.1, "x")
    network.probe("sqlite:////x.db", 0.1, "x")
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("no_proxy", "")
    network.probe(silent_server, 0.1, "x")  # the client's bounded requests decide


def tracked(tmp_path: Path) -> TrackedRun:
    root = tmp_path / "run"
    root.mkdir(exist_ok=True)
    return TrackedRun("abc123", root, root, None, {"train.lr": 0.1})


@needs_mlflow
@pytest.mark.parametrize("server", ["refused", "silent"])
def test_an_unreachable_mlflow_server_is_one_line_and_the_session_goes_on(
    tmp_path, monkeypatch, capsys, server, silent_server
):
    url = silent_server if server == "silent" else f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")  # the probe's wait, too
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.setenv(name, "0")  # set here, so that the test leaves them as they were
    session = TrackingSession(["mlflow"], tracked(tmp_path))
    t0 = time.monotonic()
    session.open(0)
    session._scalars({"loss": 1.0}, 1)
    session.close()
    assert time.monotonic() - t0 < 5
    assert session.trackers == [] and session.journal == {1: {"loss": 1.0}}
    err = capsys.readouterr().err.strip()
    assert one_line(err).startswith("interspace: mlflow: the MLflow server at 127.0.0.1:")
    assert err.endswith("training goes on without it")
    assert not (tmp_path / "run" / RECORD).exists()  # no tracker run to record


@needs_wandb
def test_an_unreachable_wandb_server_is_one_line_and_the_session_goes_on(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    session = TrackingSession(["wandb"], tracked(tmp_path))
    t0 = time.monotonic()
    session.open(0)
    assert time.monotonic() - t0 < 5 and session.trackers == []
    assert "W&B server" in one_line(capsys.readouterr().err)


# -- fake trackers: failures and stop signals ----------------------------------------------------
class Fake(Tracker):
    """Records its calls; ``fail``: the call that raises, ``block``: the one that hangs."""

    name = "fake"
    packages = ()
    calls: list[str] = []
    fail: str | None = None
    block: str | None = None

    def __init__(self, run, done=0, continuing=False, run_id=None):
        self._act("init")
        super().__init__(run, done, continuing, run_id)

    def _act(self, what: str) -> None:
        type(self).calls.append(what)
        if type(self).block == what:
            time.sleep(10)  # a server that never answers
        if type(self).fail == what:
            raise (TrackerUnavailable if what == "init" else RuntimeError)(f"{what} went wrong")

    def params(self, params, metrics):
        self._act("params")

    def _scalars(self, values, step):
        self._act("scalars")

    def _histogram(self, tag, values, step):
        self._act("histogram")

    def _table(self, tag, columns, rows, step):
        self._act("table")

    def _figure(self, tag, fig, step):
        self._act("figure")

    def _image_file(self, tag, path, step):
        self._act("image")

    def _text(self, tag, markdown, step):
        self._act("text")

    def close(self, status="FINISHED"):
        self._act(f"close {status}")


class Other(Fake):
    name = "other"
    calls: list[str] = []
    fail = None
    block = None


@pytest.fixture
def fakes():
    for cls in (Fake, Other):
        cls.calls, cls.fail, cls.block = [], None, None
        register_tracker(cls.name, lambda cls=cls: cls)
    yield Fake, Other
    for cls in (Fake, Other):
        tracking_base._TRACKERS.pop(cls.name, None)


def test_a_tracker_that_fails_to_open_is_left_out_in_one_line(tmp_path, fakes, capsys):
    Fake.fail = "init"
    session = TrackingSession(["fake", "other"], tracked(tmp_path))
    session.open(0)
    assert [t.name for t in session.trackers] == ["other"]
    assert one_line(capsys.readouterr().err) == (
        "interspace: fake: init went wrong; training goes on without it"
    )
    assert json.loads((tmp_path / "run" / RECORD).read_text()) == {"other": "abc123"}


def test_a_tracker_that_fails_mid_run_is_dropped_and_the_rest_go_on(tmp_path, fakes, capsys):
    Fake.fail = "scalars"
    session = TrackingSession(["fake", "other"], tracked(tmp_path))
    session.open(0)
    session._scalars({"loss": 1.0}, 1)
    session._scalars({"loss": 0.5}, 2)
    session.close()
    assert Fake.calls == ["init", "params", "scalars"]  # never called again, not closed
    assert Other.calls == ["init", "params", "scalars", "scalars", "close FINISHED"]
    assert "RuntimeError: scalars went wrong" in one_line(capsys.readouterr().err)
    assert session.journal == {1: {"loss": 1.0}, 2: {"loss": 0.5}}  # replayed on a resume


def test_a_refusal_in_a_tracker_is_not_swallowed(tmp_path, fakes):
    session = TrackingSession(["fake"], tracked(tmp_path))
    session.open(0)

    def refuse(values, step):
        raise TrackerRefused("no")

    session.trackers[0]._scalars = refuse
    with pytest.raises(TrackerRefused):
        session._scalars({"loss": 1.0}, 1)


def sigterm_in(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    return timer


def test_sigterm_in_training_gives_a_blocked_tracker_call_up_at_once(tmp_path, fakes):
    Fake.block = "scalars"
    session = TrackingSession(["fake", "other"], tracked(tmp_path))
    session.open(0)
    # StopRequests: the training loop's handlers; leaving it passes the signal on (to
    # StopOnSignals, the command's), where the loop would checkpoint and stop
    with pytest.raises(TrainingStopped), StopOnSignals(), StopRequests() as stop:
        timer = sigterm_in(0.2)
        t0 = time.monotonic()
        session._scalars({"loss": 1.0}, 1)  # the fake's server never answers
        waited = time.monotonic() - t0
        timer.join()
        assert waited < 3 and stop.requested == signal.SIGTERM
        assert session.stopping and [t.name for t in session.trackers] == ["other"]
        session._scalars({"loss": 0.5}, 2)  # the rest of the step: no tracker called
        session.close("KILLED")
    assert Fake.calls == ["init", "params", "scalars"]  # given up, never closed
    assert Other.calls == ["init", "params", "close KILLED"]
    assert session.journal[2] == {"loss": 0.5}


def test_sigterm_outside_training_ends_a_blocked_tracker_call_at_once(tmp_path, fakes):
    Fake.block = "close FINISHED"
    session = TrackingSession(["fake"], tracked(tmp_path))
    session.open(0)
    t0 = time.monotonic()
    with pytest.raises(TrainingStopped, match="signal 15"), StopOnSignals():
        timer = sigterm_in(0.2)
        session.close()
    timer.join()
    assert time.monotonic() - t0 < 3 and session.trackers == []


# -- the command line ---------------------------------------------------------------------------
@needs_mlflow
def test_train_with_an_unknown_mlflow_scheme_writes_nothing(tmp_path, monkeypatch, capsys):
    from interspace_pruning.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://bar")
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--log", "mlflow", "--out", str(out)]) == 2
    assert "scheme 'foo'" in one_line(capsys.readouterr().err)
    assert not out.exists() or list(out.iterdir()) == []  # a rerun is not refused
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://bar")
    assert main(["train", "--epochs", "1", "--log", "mlflow", "--out", str(out)]) == 2
    assert "already holds" not in capsys.readouterr().err


@needs_wandb
def test_train_resumed_with_a_bad_wandb_id_is_one_line(tmp_path, capsys):
    from interspace_pruning.cli import main

    out = tmp_path / "run"
    out.mkdir()
    (out / RECORD).write_text('{"wandb": "a/b"}')
    args = ["train", "--epochs", "1", "--log", "wandb", "--out", str(out), "--resume"]
    assert main(args) == 2
    err = one_line(capsys.readouterr().err)
    assert str(out / RECORD) in err and "'wandb'" in err
    assert sorted(p.name for p in out.iterdir()) == [RECORD]


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    """A store MLflow itself made (once: its tables take seconds to create), whose
    experiment and run keep their artifacts in another folder."""
    pytest.importorskip("mlflow", reason="the [mlflow] extra")
    from interspace_pruning.tracking.mlflow_tracker import _quiet

    base = tmp_path_factory.mktemp("planted")
    from mlflow.tracking import MlflowClient

    _quiet()
    client = MlflowClient(f"sqlite:///{base}/mlflow.db")
    exp = client.create_experiment(EXP, artifact_location=(base / "victim").as_uri())
    run = client.create_run(exp).info.run_id
    client.set_terminated(run)
    return base / "mlflow.db", run, base / "victim"


@pytest.mark.parametrize("record", [True, False])
def test_a_resumed_run_with_a_planted_store_writes_nothing_elsewhere(
    tmp_path, real_store, capsys, record
):
    from interspace_pruning.cli import main

    db, run_id, victim = real_store
    out = tmp_path / "run"
    out.mkdir()
    (out / "mlflow.db").write_bytes(db.read_bytes())
    if record:
        (out / RECORD).write_text(json.dumps({"mlflow": run_id}))
    args = ["train", "--epochs", "1", "--log", "mlflow", "--out", str(out), "--resume"]
    assert main([*args, "--quiet"]) == 2
    err = one_line(capsys.readouterr().err)
    assert str(out / "mlflow.db") in err and "outside" in err and "move" in err
    assert not victim.exists()
    assert not (out / "config.json").exists() and not (out / "bases_init.pt").exists()


@needs_mlflow
def test_check_trackers_runs_every_check_without_a_session(tmp_path, monkeypatch):
    root = tmp_path / "run"
    plant(root / "mlflow.db", ours(root)[0], (tmp_path / "x").as_uri())
    with pytest.raises(TrackerRefused):
        check_trackers(["mlflow"], root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://bar")
    with pytest.raises(TrackerRefused, match="scheme"):
        check_trackers(["mlflow"], tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
