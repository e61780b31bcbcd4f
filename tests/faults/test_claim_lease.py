"""A claim is a lease: an owner stopped past the timeout and taken over trains no further and
writes nothing; no process deletes a temp file whose writer may still be alive."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interspace_pruning.cli import main
from interspace_pruning.experiments import PruneConfig, RunConfig, run
from interspace_pruning.foundations import claims
from interspace_pruning.foundations.io import remove_stale_temps
from interspace_pruning.training import Callback, TrainConfig

from .conftest import FAST, cli_command, env, one_line

WORKER = str(Path(__file__).with_name("pause_worker.py"))
#: A short lease for the test that takes one over: a heartbeat every second, stale after 3 s.
LEASE = {"INTERSPACE_CLAIM_HEARTBEAT": "1", "INTERSPACE_CLAIM_TIMEOUT": "3"}
EPOCHS = 12
SWEEP = f"""
base:
  data: {{dataset: digits, train_subset: 128, test_subset: 32}}
  train: {{epochs: {EPOCHS}, batch_size: 32, lr: 0.05}}
  prune: {{representation: sp, method: random, sparsity: 0.5}}
"""


def _wait(condition, what: str, procs=(), timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"a process ended before {what}: {p.communicate()[1]}")
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_timeout_shorter_than_three_heartbeats_is_refused(tmp_path, monkeypatch, capsys):
    args = ["train", *FAST, "--epochs", "1", "--out", str(tmp_path / "r")]
    monkeypatch.setenv("INTERSPACE_CLAIM_TIMEOUT", "10")
    assert main(args) == 2
    line = one_line(capsys.readouterr().err)
    assert "INTERSPACE_CLAIM_TIMEOUT=10" in line and "at least 90 seconds" in line
    monkeypatch.setenv("INTERSPACE_CLAIM_HEARTBEAT", "4")
    assert main(args) == 2
    assert "at least 12 seconds" in one_line(capsys.readouterr().err)
    monkeypatch.setenv("INTERSPACE_CLAIM_HEARTBEAT", "soon")
    assert main(args) == 2
    assert "INTERSPACE_CLAIM_HEARTBEAT must be a" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "r" / "config.json").exists()  # refused before anything ran


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are read from /proc")
def test_a_zombie_owner_is_dead(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # never waited for: a zombie
    stat = Path(f"/proc/{child.pid}/stat")
    _wait(lambda: stat.read_text().rpartition(")")[2].split()[0] == "Z", "the zombie")
    try:
        d = tmp_path / "run"
        d.mkdir()
        owner = {"host": socket.gethostname(), "pid": child.pid, "started": 0, "token": "x"}
        (d / claims.CLAIM).write_text(json.dumps(owner))
        assert claims.claim_owner(d) is None
        claims.try_claim(d, heartbeat=False).release()  # taken over at once
    finally:
        child.wait()


def test_stale_temp_files_of_live_writers_are_kept(tmp_path):
    d = tmp_path / "run"
    claim = claims.try_claim(d, heartbeat=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = claims._host_id()
    names = {
        "own": f".checkpoint.pt.{claim.token}.a1b2c3d4.tmp",
        "dead": f".checkpoint.pt.0123456789ab-{here}-{dead.pid}.a1b2c3d4.tmp",
        "live": f".checkpoint.pt.0123456789ab-{here}-{os.getpid()}.a1b2c3d4.tmp",
        "far": f".checkpoint.pt.0123456789ab-{claims._host_id('far')}-1.a1b2c3d4.tmp",
        "far-old": f".model.pt.0123456789ab-{claims._host_id('far')}-1.a1b2c3d4.tmp",
        "untokened": ".summary.json.a1b2c3d4.tmp",
    }
    for name in names.values():
        (d / name).write_bytes(b"x")
    old = time.time() - 2 * 24 * 3600
    os.utime(d / names["far-old"], (old, old))
    removed = {p.name for p in remove_stale_temps(d)}
    claim.release()
    assert removed == {names[k] for k in ("own", "dead", "far-old", "untokened")}
    assert (d / names["live"]).exists() and (d / names["far"]).exists()


class TakeOverAt(Callback):
    """At step ``at`` another process takes the run's claim over (as after a long SIGSTOP);
    counts the steps this process trains after its heartbeat has seen that."""

    def __init__(self, out: Path, at: int) -> None:
        self.out, self.at, self.steps, self.after = out, at, 0, None

    def on_step_end(self, state) -> None:
        self.steps += 1
        if self.after is not None:
            self.after += 1
        if self.steps == self.at:
            taker = {"host": socket.gethostname(), "pid": os.getpid(), "started": 0}
            tmp = self.out / "taker.json"
            tmp.write_text(json.dumps({**taker, "token": "taker"}))
            os.replace(tmp, self.out / claims.CLAIM)
            lease = claims.covering(self.out)
            _wait(lambda: lease.lost, "the heartbeat to see the lost claim")
            self.after = 0


def test_a_lost_claim_stops_training_at_the_next_step_and_writes_nothing(
    digits, tmp_path, monkeypatch
):
    monkeypatch.setenv("INTERSPACE_CLAIM_HEARTBEAT", "0.05")
    monkeypatch.setenv("INTERSPACE_CLAIM_TIMEOUT", "1")
    cfg = RunConfig(prune=PruneConfig(method="random", sparsity=0.5))
    cfg.train = TrainConfig(epochs=2, batch_size=32)
    taker = TakeOverAt(tmp_path, at=3)
    with pytest.raises(claims.ClaimLostError, match="was taken over by another process"):
        run(cfg, tmp_path, dataset=digits, progress=False, callbacks=[taker])
    assert taker.after == 0  # not one more step
    assert not any((tmp_path / f).exists() for f in ("metrics.jsonl", "checkpoint.pt"))
    assert json.loads((tmp_path / claims.CLAIM).read_text())["token"] == "taker"  # left alone


def test_a_worker_stopped_inside_a_checkpoint_write_and_taken_over(tmp_path):
    """kill -STOP a sweep inside its second checkpoint write, past the claim timeout; a second
    sweep takes the run over; kill -CONT the first: it stops at once with one line, renames
    nothing, and its temp file was never deleted under it."""
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP)
    out, marker, go, log = (tmp_path / n for n in ("runs", "marker", "go", "renames"))
    lease_env = {**env(), **LEASE}
    args = ["sweep", str(sweep), "--out", str(out), "--no-report", "--no-wait", "--threads", "1"]
    first = subprocess.Popen(
        [sys.executable, WORKER, "checkpoint-2", str(marker), str(go), str(log), *args],
        env=lease_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    second = None
    try:
        _wait(marker.exists, "the second checkpoint write", [first])
        os.kill(first.pid, signal.SIGSTOP)
        temp = Path(marker.read_text())
        (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
        claim = run_dir / claims.CLAIM
        _wait(lambda: time.time() - claim.stat().st_mtime > 4, "the claim to go stale")
        second = subprocess.Popen(
            cli_command(*args),
            env=lease_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        metrics = run_dir / "metrics.jsonl"
        # the second trains past the first's last epoch: it claimed and cleaned up long ago
        _wait(lambda: len(metrics.read_text().splitlines()) >= 3, "the taker to train", [second])
        assert temp.exists(), "the taker deleted the stopped owner's temp file"
        renames = log.read_text()
    finally:
        go.touch()
        os.kill(first.pid, signal.SIGCONT)
    first_out, first_err = first.communicate(timeout=300)
    second_out, second_err = second.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 0, second_err
    assert "lost its claim" in one_line(first_err) and "Traceback" not in second_err
    assert log.read_text() == renames  # the woken owner renamed (wrote) nothing
    assert "(resuming)" in second_out
    assert not temp.exists() and not list(run_dir.glob(".*.tmp"))
    assert (run_dir / "summary.json").is_file() and not claim.exists()
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == list(range(1, EPOCHS + 1))
