"""Command-line faults: each ends in one line on stderr and the right exit code."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import tempfile
import time

import pytest

from interspace_pruning.cli import main

from .conftest import FAST, cli_command, env, one_line


def test_out_naming_a_file_or_a_path_under_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    for out, what in ((f, "is a file"), (f / "sub" / "run", "lies under")):
        rc = main(["train", *FAST, "--epochs", "1", "--out", str(out)])
        err = one_line(capsys.readouterr().err)
        assert rc == 2 and what in err and str(out) in err
    assert f.read_text() == "x"


def test_threads_must_be_positive(capsys):
    for value in ("-1", "0"):
        with pytest.raises(SystemExit) as e:
            main(["train", "--threads", value])
        assert e.value.code == 2
        assert "--threads" in one_line(capsys.readouterr().err)


def test_read_only_filesystem_is_one_line(tmp_path, monkeypatch, capsys):
    def mkstemp(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(kwargs.get("dir", "")))

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    rc = main(["train", *FAST, "--epochs", "1", "--out", str(tmp_path / "r")])
    err = one_line(capsys.readouterr().err)
    assert rc == 1 and "Read-only file system" in err and "writable --out" in err


@pytest.mark.parametrize("content", ['["a", "list"]', '"text"', "{broken", '{"train": 5}'])
def test_config_json_of_the_wrong_type(tmp_path, capsys, content):
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json").write_text(content)
    rc = main(["train", *FAST, "--epochs", "1", "--out", str(out), "--resume"])
    err = one_line(capsys.readouterr().err)
    assert rc == 2 and "config.json" in err and "--overwrite" in err


def test_sigint_exits_130_and_sigterm_143_with_a_checkpoint(tmp_path):
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        out = tmp_path / sig.name
        p = subprocess.Popen(
            cli_command("train", *FAST, "--epochs", "40", "--out", str(out)),
            env=env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 240
        while not (out / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.05)
        p.send_signal(sig)
        _, err = p.communicate(timeout=240)
        assert p.returncode == code, err
        assert f"stopped by signal {int(sig)}" in one_line(err)
        assert (out / "checkpoint.pt").is_file()


def test_diverged_run_is_never_reported_as_a_tie(tmp_path):
    from interspace_pruning.experiments import PruneConfig, RunConfig
    from interspace_pruning.foundations.hparams import to_dict
    from interspace_pruning.report import write_report

    root = tmp_path / "sweep"
    for name, rep, acc in (("sp", "sp", float("nan")), ("ip", "ip", 0.5), ("sp1", "sp", 0.4)):
        d = root / name
        d.mkdir(parents=True)
        seed = 1 if name == "sp1" else 0
        cfg = RunConfig(prune=PruneConfig(representation=rep, method="snip", sparsity=0.9))
        cfg.train.seed = seed
        (d / "config.json").write_text(json.dumps(to_dict(cfg)))
        (d / "summary.json").write_text(json.dumps({"test_acc": acc, "wall_time": 1.0}))
    d = root / "ipdiv"
    d.mkdir()
    cfg = RunConfig(prune=PruneConfig(representation="ip", method="snip", sparsity=0.95))
    (d / "config.json").write_text(json.dumps(to_dict(cfg)))
    (d / "diverged.json").write_text(json.dumps({"error": "loss became nan at epoch 1"}))
    text = write_report(root).read_text()
    assert "tie" not in text
    assert "| snip | 90% | 40.00 (1 of 2 diverged) | 50.00 | - | - | - | none: SP diverged |" in (
        text
    )
    assert "none: IP diverged" in text and "loss became nan at epoch 1" in text
