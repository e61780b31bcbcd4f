"""Sweeps on one folder from several processes; claims; shards; damaged run files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from interspace_pruning.cli import main
from interspace_pruning.experiments.grid import run_dir
from interspace_pruning.experiments.sweep import load_sweep, parse_shard, shard_configs
from interspace_pruning.foundations import claims

from .conftest import cli_command, env, one_line

SWEEP = """
name: tiny
base:
  data: {dataset: digits, train_subset: 128, test_subset: 32}
  train: {epochs: 1, batch_size: 32, lr: 0.05}
grid:
  train.seed: [0, 1]
  prune.method: [random]
  prune.sparsity: [0.5]
  prune.representation: [sp, ip]
"""


@pytest.fixture
def sweep_file(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(SWEEP)
    return f


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_claims_are_exclusive_and_dead_or_stale_ones_are_taken_over(tmp_path, monkeypatch):
    d = tmp_path / "run"
    first = claims.try_claim(d, heartbeat=False)
    nested = claims.try_claim(d, heartbeat=False)  # the same process: re-entrant
    nested.release()
    assert first.held()
    live = {"host": socket.gethostname(), "pid": os.getppid(), "started": 0, "token": "x"}
    first.release()
    assert not (d / claims.CLAIM).exists()
    (d / claims.CLAIM).write_text(json.dumps(live))  # another live process on this host
    with pytest.raises(claims.RunClaimedError, match="being trained by another process"):
        claims.try_claim(d, heartbeat=False)
    dead = {**live, "pid": _dead_pid()}
    (d / claims.CLAIM).write_text(json.dumps(dead))
    claims.try_claim(d, heartbeat=False).release()  # dead PID: taken over
    far = {**live, "host": "another-host", "pid": 1}
    (d / claims.CLAIM).write_text(json.dumps(far))
    with pytest.raises(claims.RunClaimedError):  # another host, fresh heartbeat
        claims.try_claim(d, heartbeat=False)
    old = time.time() - 3600
    os.utime(d / claims.CLAIM, (old, old))
    monkeypatch.setenv("INTERSPACE_CLAIM_TIMEOUT", "120")  # at least 3 heartbeats (30 s)
    c = claims.try_claim(d, heartbeat=False)  # no heartbeat for an hour: taken over
    assert c.held()
    c.release()
    (d / claims.CLAIM).write_text(json.dumps(far))
    skewed = time.time() + 60  # another host's clock a minute ahead: still live
    os.utime(d / claims.CLAIM, (skewed, skewed))
    with pytest.raises(claims.RunClaimedError):
        claims.try_claim(d, heartbeat=False)
    future = time.time() + 10 * 365 * 86400  # dated 2035 in a received folder: not a
    os.utime(d / claims.CLAIM, (future, future))  # clock's drift, the run is not held
    claims.try_claim(d, heartbeat=False).release()


def test_two_sweeps_on_one_folder_never_train_a_run_twice(sweep_file, tmp_path):
    out = tmp_path / "runs"
    args = ["sweep", str(sweep_file), "--out", str(out), "--no-report"]
    procs = [
        subprocess.Popen(
            cli_command(*args),
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    trained: dict[str, int] = {}
    for stdout, _ in outputs:
        for line in stdout.splitlines():
            if line.startswith("[") and "->" in line and "elsewhere" not in line:
                d = line.split("-> ")[1].split(" ")[0]
                trained[d] = trained.get(d, 0) + 1
    cfgs = load_sweep(sweep_file).configs
    assert sorted(trained) == sorted(str(run_dir(out, c)) for c in cfgs)
    assert set(trained.values()) == {1}  # every run trained exactly once
    assert all((run_dir(out, c) / "summary.json").is_file() for c in cfgs)
    assert not list(out.glob("*/.claim"))


def test_shards_split_the_runs_deterministically(sweep_file, tmp_path, capsys):
    cfgs = load_sweep(sweep_file).configs
    for n in (1, 2, 3, 5):
        parts = [shard_configs(cfgs, i, n) for i in range(1, n + 1)]
        flat = [c for part in parts for c in part]
        assert len(flat) == len(cfgs) and {id(c) for c in flat} == {id(c) for c in cfgs}
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    listed = []
    for i in (1, 2):
        assert (
            main(
                ["sweep", str(sweep_file), "--out", str(tmp_path), "--dry-run", "--shard", f"{i}/2"]
            )
            == 0
        )
        listed.append({line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]})
    assert listed[0].isdisjoint(listed[1]) and len(listed[0] | listed[1]) == len(cfgs)
    for bad in ("0/2", "3/2", "1/0", "a/b", "2"):
        with pytest.raises(ValueError, match="--shard must look like i/n"):
            parse_shard(bad)
        with pytest.raises(SystemExit):
            main(["sweep", str(sweep_file), "--dry-run", "--shard", bad])
        assert "--shard" in one_line(capsys.readouterr().err)


def test_damaged_run_files_are_named_and_the_sweep_goes_on(sweep_file, tmp_path, capsys):
    sweep_file.write_text(SWEEP.replace("train.seed: [0, 1]", "train.seed: [0]"))
    out = tmp_path / "runs"
    cfgs = load_sweep(sweep_file).configs
    first = run_dir(out, cfgs[0])
    assert main(["sweep", str(sweep_file), "--out", str(out), "--no-report", "--shard", "1/2"]) == 0
    capsys.readouterr()
    kept = (first / "summary.json").read_text()
    (first / "summary.json").write_text("{not json")
    (first / "checkpoint.pt").write_bytes(b"")  # irrelevant: finished runs are not resumed
    rc = main(["sweep", str(sweep_file), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 2
    err_lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err
    assert any(str(first / "summary.json") in line for line in err_lines)
    assert "runs were skipped" in err_lines[-1]
    assert all((run_dir(out, c) / "summary.json").is_file() for c in cfgs[1:])  # the others ran
    assert "report:" in captured.out  # and the report was written from the good runs
    second = run_dir(out, cfgs[1])
    (first / "summary.json").write_text(kept)  # repaired (another run's would be refused)
    (second / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n')
    assert main(["report", str(out)]) == 0  # from the good run
    err = one_line(capsys.readouterr().err)
    where = second.relative_to(out) / "metrics.jsonl"  # named under the report's folder
    assert str(where) in err and "line 2 is not valid JSON" in err
