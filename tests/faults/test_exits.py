"""Every exit is clean: a stop signal at any point ends in one line, its exit status and a
released claim; a second signal keeps the first one's status."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interspace_pruning.cli import main
from interspace_pruning.foundations import claims
from interspace_pruning.foundations.checkpoint import load_tensors
from interspace_pruning.training import TrainingStopped
from interspace_pruning.training.loop import StopOnSignals

from .conftest import FAST, env, one_line

WORKER = str(Path(__file__).with_name("pause_worker.py"))
TRAIN = ["train", *FAST, "--method", "random", "--sparsity", "0.5"]


def _start(where: str, tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / "marker"
    cmd = [sys.executable, WORKER, where, str(marker), str(tmp_path / "never"), "-", *args]
    p = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p, marker


def _wait_for(path: Path, p: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 300
    while not path.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if not path.exists():
        p.kill()
        pytest.fail(f"never reached {what}: {p.communicate()[1]}")


def _finished(p: subprocess.Popen) -> tuple[int, str]:
    _, err = p.communicate(timeout=300)
    return p.returncode, err


@pytest.mark.parametrize(
    "where, sig", [("pruning", signal.SIGHUP), ("final-evaluation", signal.SIGTERM)]
)
def test_a_signal_outside_training_steps_is_one_line_and_releases_the_claim(where, sig, tmp_path):
    out = tmp_path / "run"
    p, marker = _start(where, tmp_path, *TRAIN, "--epochs", "1", "--out", str(out))
    _wait_for(marker, p, where)
    assert (out / ".claim").is_file()
    p.send_signal(sig)
    rc, err = _finished(p)
    assert rc == 128 + sig, err
    line = one_line(err)
    assert f"stopped by signal {int(sig)} ({sig.name}) outside a training step" in line
    assert "--resume" in line
    assert not (out / ".claim").exists() and not list(out.glob(".*.tmp"))
    if where == "final-evaluation":  # trained and checkpointed: --resume only evaluates
        assert load_tensors(out / "checkpoint.pt")["position"]["epoch"] == 1
        assert main([*TRAIN, "--epochs", "1", "--out", str(out), "--resume"]) == 0
        assert (out / "summary.json").is_file() and not (out / ".claim").exists()


def test_sighup_checkpoints_at_the_end_of_the_step_and_exits_129(tmp_path):
    out = tmp_path / "run"
    p, _ = _start("none", tmp_path, *TRAIN, "--epochs", "40", "--out", str(out))
    _wait_for(out / "checkpoint.pt", p, "the first checkpoint")
    p.send_signal(signal.SIGHUP)
    rc, err = _finished(p)
    assert rc == 129, err
    assert "stopped by signal 1 (SIGHUP) at epoch" in one_line(err)
    position = load_tensors(out / "checkpoint.pt")["position"]
    assert position["epoch"] >= 1 and not (out / "summary.json").exists()
    assert not (out / ".claim").exists() and not list(out.glob(".*.tmp"))


def test_a_second_sigterm_during_the_stop_checkpoint_still_exits_143(tmp_path):
    out = tmp_path / "run"
    p, marker = _start("stop-checkpoint", tmp_path, *TRAIN, "--epochs", "40", "--out", str(out))
    _wait_for(out / "checkpoint.pt", p, "the first checkpoint")
    p.send_signal(signal.SIGTERM)
    _wait_for(marker, p, "the stop checkpoint")
    temp = Path(marker.read_text())
    assert temp.is_file()  # the checkpoint being written
    p.send_signal(signal.SIGTERM)
    rc, err = _finished(p)
    assert rc == 143, err
    line = one_line(err)
    assert "stopped by signal 15 (SIGTERM), and by signal 15 again" in line
    assert "resume from" in line
    assert not temp.exists() and not list(out.glob(".*.tmp")) and not (out / ".claim").exists()
    kept = [f for f in ("checkpoint.pt", "checkpoint.prev.pt") if (out / f).is_file()]
    assert kept and load_tensors(out / kept[0])["position"]["epoch"] >= 1


def test_a_signal_while_a_claim_is_made_or_released_leaves_no_claim(tmp_path, monkeypatch):
    """The signal is handled once the claim file is made and registered, or removed."""

    def signalled(real):
        def call(*a, **k):
            signal.raise_signal(signal.SIGTERM)  # its handler runs inside the claim update
            return real(*a, **k)

        return call

    d = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(claims, "_create", signalled(claims._create))
        with StopOnSignals(), pytest.raises(TrainingStopped) as stopped:
            claims.try_claim(d, heartbeat=False)
    assert stopped.value.signum == signal.SIGTERM and not (d / claims.CLAIM).exists()
    claim = claims.try_claim(d, heartbeat=False)
    monkeypatch.setattr(claims.Claim, "held", signalled(claims.Claim.held))
    with StopOnSignals(), pytest.raises(TrainingStopped):
        claim.release()
    assert not (d / claims.CLAIM).exists() and claims.covering(d) is None
