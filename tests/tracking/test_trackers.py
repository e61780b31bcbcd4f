"""--log tensorboard|wandb|mlflow: what a run logs, read back with each tracker's own reader
(TensorBoard's EventAccumulator, MLflow's MlflowClient on the local store, W&B's offline
run files through the wandb package's protobuf records), offline and without network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("tensorboard", reason="the [tensorboard] extra is not installed")
pytest.importorskip("mlflow", reason="the [mlflow] extra is not installed")
pytest.importorskip("wandb", reason="the [wandb] extra is not installed")

from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

from interspace_pruning.cli import main  # noqa: E402
from interspace_pruning.experiments import RunConfig  # noqa: E402
from interspace_pruning.experiments.config import DataConfig  # noqa: E402
from interspace_pruning.experiments.run import run  # noqa: E402
from interspace_pruning.tracking import RECORD, wandb_files  # noqa: E402
from interspace_pruning.training import TrainConfig  # noqa: E402

ALL = ("tensorboard", "wandb", "mlflow")
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No tracker may reach a network: W&B offline, MLflow's URI left to the run's folder."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)


def config(epochs: int = 2, every: int = 5, **train) -> RunConfig:
    return RunConfig(
        data=DataConfig(dataset="digits"),
        train=TrainConfig(epochs=epochs, log=ALL, log_every=every, **train),
    )


# -- the readers -------------------------------------------------------------------------
def tensorboard_series(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def mlflow_client(root: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{root.resolve()}/mlflow.db")


def mlflow_series(root: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    history = mlflow_client(root).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in history)


def wandb_series(root: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    files = wandb_files.run_files(root / "wandb", run_id)
    rows = [r for f in files for r in wandb_files.history(f)]
    return [(r["_step"], r[key]) for r in rows if key in r]


def series(tracker: str, root: Path, run_dir: Path, key: str) -> list[tuple[int, float]]:
    ids = json.loads((run_dir / RECORD).read_text())
    if tracker == "tensorboard":
        return tensorboard_series(run_dir, key)
    if tracker == "mlflow":
        return mlflow_series(root, ids["mlflow"], key)
    return wandb_series(root, ids["wandb"], key)


def metrics_file(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# -- one run ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One IP run (2 epochs of digits) logging to all three trackers."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path_factory.mktemp("tracked") / "run"
    result = run(config(), out, progress=False)
    yield out, result
    mp.undo()


@pytest.mark.parametrize("tracker", ALL)
def test_every_epoch_metric_is_in_the_tracker(finished, tracker):
    out, _ = finished
    rows = metrics_file(out)
    for key in ("test_acc", "train_loss", "sparsity", "grad_norm"):
        got = series(tracker, out, out, key)
        want = [(r["step"], r[key]) for r in rows]
        assert [s for s, _ in got] == [s for s, _ in want], (tracker, key)
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), key


@pytest.mark.parametrize("tracker", ALL)
def test_steps_layers_and_summary_are_logged(finished, tracker):
    out, result = finished
    total = metrics_file(out)[-1]["step"]
    loss = series(tracker, out, out, "step/loss")
    assert [s for s, _ in loss] == list(range(5, total + 1, 5))
    assert all(v > 0 for _, v in series(tracker, out, out, "step/lr"))
    sparsities = series(tracker, out, out, "layer_sparsity/stage1.0.0")
    assert len(sparsities) == 2 and 0.5 < sparsities[-1][1] < 1.0
    (acc,) = series(tracker, out, out, "summary/test_acc")
    assert acc == (total, pytest.approx(result.summary["test_acc"]))


def test_tensorboard_has_hparams_histogram_and_the_basis_picture(finished):
    out, _ = finished
    ea = EventAccumulator(str(out), size_guidance={"images": 0, "histograms": 0, "tensors": 0})
    ea.Reload()
    tags = ea.Tags()
    assert "filter_bases" in tags["images"]
    assert "layer_sparsity" in tags["histograms"]
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = ea.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["prune.representation"].string_value == "ip"
    assert hparams["train.epochs"].number_value == 2


def test_mlflow_run_has_params_tags_and_artifacts(finished):
    out, result = finished
    ids = json.loads((out / RECORD).read_text())
    client = mlflow_client(out)
    r = client.get_run(ids["mlflow"])
    assert r.info.status == "FINISHED" and r.info.run_name == ids["wandb"]
    assert r.data.params["prune.method"] == "snip" and r.data.params["train.log"] == ",".join(ALL)
    assert r.data.tags["interspace.config_hash"] == ids["wandb"]  # the config hash
    files = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"summary.json", "images", "layers"} <= files
    pictures = [a.path for a in client.list_artifacts(r.info.run_id, "images/filter_bases")]
    assert pictures and pictures[0].endswith(".png")


def test_wandb_offline_run_is_named_by_the_config_hash(finished):
    from interspace_pruning.foundations.hparams import config_hash

    out, result = finished
    ids = json.loads((out / RECORD).read_text())
    assert ids["wandb"] == config_hash(result.config)
    (f,) = wandb_files.run_files(out / "wandb", ids["wandb"])
    rec = wandb_files.run_record(f)
    assert rec.run_id == rec.display_name == ids["wandb"]
    assert "offline-run-" in f.parent.name
    rows = wandb_files.history(f)
    images = [r["filter_bases"] for r in rows if "filter_bases" in r]
    assert images and images[0]["_type"] == "image-file"


# -- killed and resumed ------------------------------------------------------------------------
KILLED = """
import os, signal, sys
sys.path.insert(0, {src!r})
from interspace_pruning.callbacks import Callback
from interspace_pruning.experiments import RunConfig
from interspace_pruning.experiments.config import DataConfig
from interspace_pruning.experiments.run import run
from interspace_pruning.training import TrainConfig

class Kill(Callback):
    def on_step_end(self, state):
        if state.step + 1 == {at}:  # mid-epoch: steps were logged after the last checkpoint
            os.kill(os.getpid(), signal.SIGKILL)

cfg = RunConfig(data=DataConfig(dataset="digits"),
                train=TrainConfig(epochs=3, log={trackers!r}, log_every=5))
run(cfg, {out!r}, progress=False, callbacks=[Kill()], resume=True)
"""


def test_a_killed_and_resumed_run_neither_repeats_nor_loses_a_step(tmp_path):
    out = tmp_path / "run"
    script = KILLED.format(src=SRC, at=37, trackers=ALL, out=str(out))
    # its own W&B service, as a process started afresh has (not this test process's)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists() and (out / "checkpoint.pt").is_file()
    run(config(epochs=3), out, progress=False, resume=True)  # the rest, in this process
    rows = metrics_file(out)
    total = rows[-1]["step"]
    assert total > 37
    for tracker in ALL:
        loss = series(tracker, out, out, "step/loss")
        assert [s for s, _ in loss] == list(range(5, total + 1, 5)), tracker
        acc = series(tracker, out, out, "test_acc")
        assert [s for s, _ in acc] == [r["step"] for r in rows], tracker
        assert [v for _, v in acc] == pytest.approx([r["test_acc"] for r in rows]), tracker
    ids = json.loads((out / RECORD).read_text())
    assert len(wandb_files.run_files(out / "wandb", ids["wandb"])) == 2  # one per process
    client = mlflow_client(out)
    runs = client.search_runs([client.get_run(ids["mlflow"]).info.experiment_id])
    assert len(runs) == 1  # the resumed process continued the same MLflow run


def test_a_run_started_over_gets_new_tracker_runs(tmp_path):
    out = tmp_path / "run"
    cfg = config(epochs=1, every=0)
    run(cfg, out, progress=False)
    first = json.loads((out / RECORD).read_text())
    run(cfg, out, progress=False, overwrite=True)
    second = json.loads((out / RECORD).read_text())
    assert second["mlflow"] != first["mlflow"]
    assert second["wandb"] == first["wandb"] + "-2"
    assert len(tensorboard_series(out, "test_acc")) == 1  # the old event file went with --overwrite


# -- groups ----------------------------------------------------------------------------------
def test_a_sweep_groups_its_runs_and_logs_the_report(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    root = tmp_path / "runs"
    sweep.write_text(
        textwrap.dedent(
            f"""
            name: tracked
            out: {root}
            base:
              train: {{epochs: 1}}
            grid:
              prune.representation: [sp, ip]
            """
        )
    )
    logs = ["--log", "mlflow", "--log", "wandb", "--log", "tensorboard"]
    assert main(["sweep", str(sweep), *logs]) == 0
    client = mlflow_client(root)
    exp = client.get_experiment_by_name("interspace-pruning")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("interspace.role") == "group"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_name == "tracked" and len(children) == 2
    plots = [a.path for a in client.list_artifacts(parent.info.run_id, "images/report")]
    assert plots  # the report's PNGs
    groups = {
        wandb_files.run_record(f).run_group for f in (root / "wandb").glob("offline-run-*/*.wandb")
    }
    assert groups == {"tracked"}
    ea = EventAccumulator(str(root / "_report"), size_guidance={"images": 0})
    ea.Reload()
    assert any(t.startswith("report/") for t in ea.Tags()["images"])
    for d in root.glob("*/config.json"):  # each run's events in its own folder
        assert list(d.parent.glob("events.out.tfevents.*"))


# -- bad input ---------------------------------------------------------------------------------
def test_a_missing_tracker_package_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--log", "wandb", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert 'pip install -e ".[wandb]"' in err  # the extra, from the repository
    assert "interspace-pruning[" not in err  # the package is not on PyPI: a name anyone may take
    assert not out.exists()  # refused before the run folder is made
    assert not (out / "config.json").exists()


def test_an_unknown_tracker_is_one_line(tmp_path, capsys):
    assert main(["train", "--log", "neptune", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown tracker 'neptune'" in err and err.count("\n") == 0


def test_log_needs_a_run_folder():
    with pytest.raises(ValueError, match="--log needs a run folder"):
        run(config(epochs=1), None, progress=False)


def test_compare_groups_sp_and_ip_and_logs_its_table(tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "--epochs", "1", "--no-dense", "--out", str(out), "--quiet"]
    assert main([*args, "--log", "mlflow", "--log", "tensorboard"]) == 0
    client = mlflow_client(out)
    runs = client.search_runs([client.get_experiment_by_name("interspace-pruning").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("interspace.role") == "group"]
    assert parent.info.run_name == "compare cmp"
    kids = {r.data.params["prune.representation"] for r in runs if r is not parent}
    assert kids == {"sp", "ip"}
    table = [a.path for a in client.list_artifacts(parent.info.run_id, "comparison")]
    assert table == ["comparison/step2.md"]
    ea = EventAccumulator(str(out / "_report"), size_guidance={"tensors": 0})
    ea.Reload()
    assert "comparison/text_summary" in ea.Tags()["tensors"]
    assert {p.parent.name for p in out.glob("*/events.out.tfevents.*")} == {"sp", "ip", "_report"}


def test_log_added_on_a_resume_brings_the_earlier_epochs(tmp_path):
    out = tmp_path / "run"
    script = KILLED.format(src=SRC, at=37, trackers=(), out=str(out))  # trained without --log
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    run(config(epochs=3), out, progress=False, resume=True)
    rows = metrics_file(out)
    for tracker in ALL:
        acc = series(tracker, out, out, "test_acc")
        assert [s for s, _ in acc] == [r["step"] for r in rows], tracker
        loss = series(tracker, out, out, "step/loss")
        assert loss[0][0] > rows[0]["step"], tracker  # per-step values only from the resume


def test_imp_rounds_follow_each_other_on_one_axis(tmp_path):
    from interspace_pruning.experiments.config import PruneConfig

    cfg = RunConfig(
        data=DataConfig(dataset="digits"),
        prune=PruneConfig(method="imp", sparsity=0.75),
        train=TrainConfig(epochs=1, log=("tensorboard",)),
        options={"imp": {"rounds": 2}},
    )
    out = tmp_path / "imp"
    run(cfg, out, progress=False)
    steps = [s for s, _ in tensorboard_series(out, "test_acc")]
    per_round = metrics_file(out)[-1]["step"]
    assert steps == [per_round, 2 * per_round, 3 * per_round]  # rounds 0, 1, 2
    assert tensorboard_series(out, "summary/test_acc")[0][0] == 3 * per_round


def test_a_failed_run_ends_its_tracker_runs_failed(tmp_path):
    from interspace_pruning.callbacks import Callback

    class Boom(Callback):
        def on_epoch_end(self, state, metrics):
            raise RuntimeError("boom")

    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"):
        run(config(epochs=1, every=0), out, progress=False, callbacks=[Boom()])
    ids = json.loads((out / RECORD).read_text())
    assert mlflow_client(out).get_run(ids["mlflow"]).info.status == "FAILED"
    (f,) = wandb_files.run_files(out / "wandb", ids["wandb"])
    exits = [
        r.exit.exit_code for r in wandb_files.records(f) if r.WhichOneof("record_type") == "exit"
    ]
    assert exits == [1]
