import json
import os
import signal
import subprocess
import sys
import time

import pytest

from interspace_pruning.cli import main
from interspace_pruning.experiments.grid import run_dir
from interspace_pruning.experiments.sweep import load_sweep

SWEEP = """
name: tiny
base:
  data: {dataset: digits, train_subset: 400, test_subset: 100}
  train: {epochs: 3, batch_size: 32, lr: 0.05}
grid:
  train.seed: [0]
  prune.method: [snip]
  prune.sparsity: [0.9]
  prune.representation: [sp, ip]
"""


def test_load_sweep_expands_and_validates(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(SWEEP)
    sweep = load_sweep(f)
    assert sweep.name == "tiny" and len(sweep.configs) == 2
    assert sweep.configs[0].data.train_subset == 400
    assert sweep.configs[0].train.lr == 0.05
    bad = {
        "base: {train: {lr: 5e-4}}": "base.train.lr must be float, got '5e-4'",
        "base: {prune: {pattern: 2:4}}": "pattern must be str, got 124 (quote it",
        "base: {train: {lrr: 0.1}}": "'base.train.lrr' (did you mean 'base.train.lr'",
        "base: {optim: {lr: 0.1}}": "unknown section base.optim",
        "grid: {prune.sparsity: 0.9}": "maps 'section.field' to a list",
        "grid: {prune.sparsity: [1.5]}": "sparsity must be in",
        "grid: {prune.method: [obd]}": "unknown pruning method 'obd'",
        "gird: {}": "unknown key 'gird'",
        "base: [1, 2": "not valid YAML",
        "- 1\n- 2": "must hold a mapping",
    }
    for text, match in bad.items():
        f.write_text(text)
        with pytest.raises(ValueError, match=match.replace("(", r"\(").replace("[", r"\[")):
            load_sweep(f)
    with pytest.raises(ValueError, match="cannot read sweep file"):
        load_sweep(tmp_path / "missing.yaml")


def test_sweep_killed_mid_run_resumes(tmp_path):
    """Kill the sweep (SIGKILL) while its second run trains; rerun: the first run is
    skipped, the second continues from its checkpoint and ends like an uninterrupted one."""
    f = tmp_path / "s.yaml"
    f.write_text(SWEEP)
    out = tmp_path / "runs"
    cfgs = load_sweep(f).configs
    first, second = (run_dir(out, c) for c in cfgs)
    code = "import sys; from interspace_pruning.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [
        sys.executable,
        "-c",
        code,
        "sweep",
        str(f),
        "--out",
        str(out),
        "--threads",
        "1",
        "--no-report",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (second / "checkpoint.pt").exists():
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (first / "summary.json").is_file()
    assert not (second / "summary.json").exists(), "killed too late"
    first_mtime = (first / "summary.json").stat().st_mtime_ns
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "(resuming)" in done.stdout and done.stdout.count("->") == 1
    assert (first / "summary.json").stat().st_mtime_ns == first_mtime  # not retrained
    # the resumed run equals a fresh, uninterrupted one
    fresh = tmp_path / "fresh"
    assert main(["sweep", str(f), "--out", str(fresh), "--no-report"]) == 0
    keep = lambda p: [  # noqa: E731
        {k: v for k, v in json.loads(line).items() if k not in ("epoch_time", "elapsed")}
        for line in (p / "metrics.jsonl").read_text().splitlines()
    ]
    assert keep(second) == keep(run_dir(fresh, cfgs[1]))


def test_sweep_dry_run_and_report(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(SWEEP.replace("epochs: 3", "epochs: 1"))
    assert main(["sweep", str(f), "--out", str(tmp_path / "r"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert text.count("todo") == 2 and not (tmp_path / "r").exists()
    assert main(["sweep", str(f), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report" / "report.md").is_file()
