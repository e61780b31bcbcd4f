"""One test per failure mode: each fails loudly, clearly, and without losing work."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from interspace_pruning import data
from interspace_pruning.cli import main
from interspace_pruning.experiments import PruneConfig, RunConfig, run
from interspace_pruning.experiments.runfiles import read_model
from interspace_pruning.foundations.io import read_jsonl
from interspace_pruning.training import Callback, TrainConfig, TrainingError
from interspace_pruning.training.checkpointing import read_checkpoint

CODE = "import sys; from interspace_pruning.cli import main; sys.exit(main(sys.argv[1:]))"
FAST = [
    "--train-subset",
    "300",
    "--test-subset",
    "60",
    "--batch-size",
    "32",
    "--quiet",
    "--threads",
    "1",
]


@pytest.fixture(scope="module")
def digits():
    return data.get("digits", train_subset=256, test_subset=64)


class PoisonAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.step + 1 == self.step:
            with torch.no_grad():
                next(state.model.parameters()).fill_(float("nan"))


def test_nan_stops_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    cfg = RunConfig(prune=PruneConfig(method="random", sparsity=0.5))
    cfg.train = TrainConfig(epochs=3, batch_size=32)
    with pytest.raises(TrainingError, match="loss became nan at epoch 3.*last good checkpoint"):
        run(cfg, tmp_path, dataset=digits, progress=False, callbacks=[PoisonAt(18)])
    ckpt = read_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["position"]["epoch"] == 2  # the end of epoch 2, before the poison
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 2
    assert not (tmp_path / "summary.json").exists()


def test_run_directories_are_never_overwritten(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["train", *FAST, "--epochs", "1", "--out", out]
    assert main(args) == 0
    before = (tmp_path / "run" / "summary.json").read_text()
    assert main(args) == 2
    assert "already holds a finished run; pass --resume" in capsys.readouterr().err
    assert (tmp_path / "run" / "summary.json").read_text() == before
    assert main([*args, "--resume"]) == 0  # finished: resuming changes nothing
    assert main([*args, "--sparsity", "0.5", "--resume"]) == 2
    assert "another configuration" in capsys.readouterr().err
    # without --resume, another configuration is told so, not sent to --resume first
    assert main([*args, "--sparsity", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "finished run of another configuration" in err and "pass --resume" not in err
    assert main([*args, "--sparsity", "0.5", "--overwrite"]) == 0
    assert '"sparsity": 0.5' in (tmp_path / "run" / "config.json").read_text()


def test_a_run_that_fails_before_its_first_epoch_leaves_nothing_that_blocks_the_fix(
    tmp_path, capsys
):
    """A mistake found only once the run has started (an IMP rewind step beyond training)
    must not leave a config.json that makes the mended command "resume an unfinished run";
    a folder this command made and left empty (missing data) is removed too."""
    out = tmp_path / "runs" / "imp"
    args = ["train", *FAST, "--method", "imp", "--imp-rate", "0.5", "--epochs", "1"]
    assert main([*args, "--rewind-step", "500", "--out", str(out)]) == 2
    assert "beyond" in capsys.readouterr().err
    assert not out.exists()
    out.mkdir(parents=True)  # a folder the user made: kept, but emptied of the failed run
    assert main([*args, "--rewind-step", "500", "--out", str(out)]) == 2
    assert out.is_dir() and not any(p.name != ".claim" for p in out.iterdir())
    assert main([*args, "--rewind-step", "2", "--out", str(out)]) == 0  # no --resume needed
    missing = tmp_path / "runs" / "cifar"
    assert (
        main(
            [
                "train",
                "--dataset",
                "cifar10",
                "--root",
                str(tmp_path / "none"),
                "--epochs",
                "1",
                "--out",
                str(missing),
            ]
        )
        == 2
    )
    assert "cifar" in capsys.readouterr().err.lower() and not missing.exists()


def test_sigterm_checkpoints_mid_epoch_and_resumes_bitwise(tmp_path):
    # batch 4: epochs of 75 short steps (~0.25 s), so the signal below lands inside epoch 2
    args = ["train", *FAST, "--batch-size", "4", "--epochs", "3", "--method", "random"]
    args += ["--sparsity", "0.9"]
    straight = subprocess.run(
        [sys.executable, "-c", CODE, *args, "--out", str(tmp_path / "a")],
        capture_output=True,
        text=True,
    )
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen(
        [sys.executable, "-c", CODE, *args, "--out", str(tmp_path / "b")],
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "b" / "metrics.jsonl"
    deadline = time.time() + 120
    while not metrics.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.05)  # somewhere inside epoch 2
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by signal" in err and "resume from" in err
    ckpt = read_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert ckpt["position"]["epoch"] == 1 and ckpt["position"]["batches_done"] > 0
    resumed = subprocess.run(
        [sys.executable, "-c", CODE, *args, "--out", str(tmp_path / "b"), "--resume"],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in ("epoch_time", "elapsed")} for r in rows]

    assert strip(read_jsonl(tmp_path / "a" / "metrics.jsonl")) == strip(read_jsonl(metrics))
    a, b = read_model(tmp_path / "a" / "model.pt"), read_model(tmp_path / "b" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_are_never_unpickled_with_code(tmp_path, digits):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (tmp_path / "model.pt").write_bytes(pickle.dumps({"conv.weight": Evil()}))
    from interspace_pruning.experiments import ModelConfig

    cfg = RunConfig(
        model=ModelConfig(init_from=str(tmp_path)), prune=PruneConfig(method="magnitude")
    )
    with pytest.raises(ValueError, match="cannot read model file"):
        run(cfg, None, dataset=digits, progress=False)
    assert not (tmp_path / "pwned").exists()


def test_invalid_configs_are_rejected_before_any_work(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("grid:\n  prune.sparsity: [0.9, 1.2]\n  prune.representation: [sp]\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "runs")]) == 2
    assert "sparsity must be in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing ran, not even the valid 0.9 run
    assert main(["train", "--batch-size", "0", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_atomic_writes_leave_no_temp_files_and_normal_permissions(tmp_path):
    from interspace_pruning.foundations.io import atomic_write_text

    target = tmp_path / "report.md"
    old = os.umask(0o022)
    try:
        atomic_write_text(target, "a")
        atomic_write_text(target, "b")  # replaces
    finally:
        os.umask(old)
    assert target.read_text() == "b"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
    if os.name == "posix":
        assert target.stat().st_mode & 0o777 == 0o644
