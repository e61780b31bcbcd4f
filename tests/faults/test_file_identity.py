"""A file is data, never code, and carries its identity.

Crafted model names (``os:abort``, ``os:system``, ``builtins:exec``, ``this:x``) in a run's
``config.json``, a sweep file or a checkpoint are refused with one line naming the field on
every loading path (library, ``bench``, ``report``, ``sweep``, ``--resume``) and never
imported; ``model.pt`` records the run that wrote it; a finished run is not retrained by
``--resume``; files that lost their checksum are refused. (Sparse files: test_sparse_files.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from interspace_pruning.cli import main
from interspace_pruning.cli.sources import load_source
from interspace_pruning.experiments import PruneConfig, RunConfig, run
from interspace_pruning.experiments.runfiles import read_config, read_model
from interspace_pruning.experiments.sweep import load_sweep
from interspace_pruning.foundations.checkpoint import UncheckedFileWarning, save_tensors
from interspace_pruning.foundations.hparams import config_hash
from interspace_pruning.inference import export_sparse
from interspace_pruning.models import UntrustedModelError
from interspace_pruning.report import collect_runs, load_model, write_report
from interspace_pruning.training import TrainConfig

from .conftest import cli_command, env, flip_bit, one_line
from .test_checkpoints import CrashAt

CRAFTED = ("os:abort", "os:system", "builtins:exec", "this:x")


def _cfg(rep="ip"):
    return RunConfig(
        prune=PruneConfig(representation=rep, method="random", sparsity=0.8),
        train=TrainConfig(epochs=1, batch_size=32),
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits):
    """A finished IP run and a finished SP run (1 epoch on 256 digits)."""
    root = tmp_path_factory.mktemp("runs")
    for rep in ("ip", "sp"):
        run(_cfg(rep), root / rep, dataset=digits, progress=False)
    return root


def _copy(runs, tmp_path, rep="ip"):
    out = tmp_path / "runs" / rep
    shutil.copytree(runs / rep, out)
    return out


def _craft_config(run_dir, name, marker):
    """Name ``name`` as the run's model, with an argument that would leave ``marker``."""
    config = json.loads((run_dir / "config.json").read_text())
    config["model"]["model"] = name
    config["model"]["model_args"] = {
        "os:system": [f"touch {marker}"],
        "builtins:exec": [f"open({str(marker)!r}, 'w').close()"],
    }.get(name, [])
    (run_dir / "config.json").write_text(json.dumps(config))
    # as a hostile folder would: its summary names the crafted run (the hash is no seal)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["config_hash"] = config_hash(read_config(run_dir / "config.json"))
    (run_dir / "summary.json").write_text(json.dumps(summary))


# ---- names read from files are never imported ------------------------------------------------


@pytest.mark.parametrize("name", [n for n in CRAFTED if n != "os:abort"])
def test_a_crafted_model_name_in_config_json_is_refused_everywhere(runs, tmp_path, name):
    """os:abort would kill pytest: it runs in a subprocess below, on the CLI."""
    imported = "this" in sys.modules
    marker = tmp_path / "pwned"
    d = _copy(runs, tmp_path)
    _craft_config(d, name, marker)
    for load in (
        lambda: load_source(d),  # interspace bench
        lambda: load_model(collect_runs(d)[0][0]),  # the library
    ):
        with pytest.raises(UntrustedModelError) as e:
            load()
        assert "field model.model" in one_line(str(e.value)) and name in str(e.value)
    report = write_report(tmp_path / "runs")  # tables made; pictures of that run skipped
    assert f"no pictures from ip: {d / 'config.json'}: field model.model" in report.read_text()
    with pytest.raises(UntrustedModelError, match="field model.model"):  # --resume
        run(_cfg(), d, resume=True, progress=False)
    assert not marker.exists()
    assert ("this" in sys.modules) == imported


@pytest.mark.parametrize("name", CRAFTED)
def test_a_crafted_model_name_in_a_sweep_file_is_refused(tmp_path, name):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"base:\n  model:\n    model: '{name}'\ngrid:\n  train.seed: [0, 1]\n")
    with pytest.raises(UntrustedModelError) as e:
        load_sweep(sweep)
    assert "model.model" in one_line(str(e.value))


def test_crafted_names_in_a_checkpoint_are_never_imported(runs, tmp_path, digits):
    """A checkpoint names its configuration (tag) and callbacks: both are compared, never
    imported; a foreign tag is refused with one line."""
    d = tmp_path / "r"
    save_tensors(
        d / "checkpoint.pt",
        {"format_version": 2, "tag": "os:system", "callbacks": [["os:abort", {}]]},
    )
    (d / "config.json").write_text((runs / "ip" / "config.json").read_text())
    with pytest.raises(ValueError) as e:
        run(_cfg(), d, dataset=digits, resume=True, progress=False)
    assert "belongs to another configuration ('os:system'" in one_line(str(e.value))


def test_os_abort_never_runs_from_any_command(runs, tmp_path):
    """The CLI, in subprocesses: bench, report, sweep and train --resume on files naming
    os:abort end with one line and status 2, not a SIGABRT (rc 134)."""
    d = _copy(runs, tmp_path)
    _craft_config(d, "os:abort", tmp_path / "unused")
    sweep = tmp_path / "s.yaml"
    sweep.write_text("base:\n  model:\n    model: 'os:abort'\n")
    isp = tmp_path / "evil.isp"
    spec = {"name": "convnet", "num_classes": 10, "in_channels": 1}
    export_sparse(load_model(collect_runs(runs / "ip")[0][0]), isp, spec)
    payload = torch.load(isp, weights_only=True)
    payload["meta"] = payload["meta"].replace('"name": "convnet"', '"name": "os:abort"')
    save_tensors(isp, payload)  # anyone can compute the checksum
    commands = {
        "bench isp": ["bench", str(isp), "--repeats", "1", "--batch", "1", "--quiet"],
        "bench": ["bench", str(d), "--repeats", "1", "--batch", "1", "--quiet"],
        "report": ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")],
        "sweep": ["sweep", str(sweep), "--out", str(tmp_path / "sw")],
        "train": ["train", "--resume", "--out", str(d), "--epochs", "1", "--quiet"],
    }
    for what, args in commands.items():
        proc = subprocess.run(cli_command(*args), capture_output=True, text=True, env=env())
        if what == "report":  # the tables need no model: written, the pictures skipped
            assert proc.returncode == 0, proc.stderr
            assert "never imported" in proc.stderr
            continue
        assert proc.returncode == 2, (what, proc.returncode, proc.stderr)
        assert "os:abort" in one_line(proc.stderr), what


def test_a_trusted_import_path_is_rebuilt(runs, tmp_path, monkeypatch):
    """--model NAME / --trust-model-imports: the user vouches for the builder."""
    (tmp_path / "my_builder.py").write_text(
        "from interspace_pruning import models\n"
        "def build(num_classes=10, in_channels=1):\n"
        "    return models.get('convnet', num_classes, in_channels)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    d = _copy(runs, tmp_path)
    _craft_config(d, "my_builder:build", tmp_path / "unused")
    with pytest.raises(UntrustedModelError):
        load_source(d)
    # the config changed, so the model file (written by the original config) is foreign now
    with pytest.raises(ValueError, match="was written by run"):
        load_source(d, trust_model_imports={"my_builder:build"})
    args = ["bench", str(d), "--repeats", "1", "--batch", "1", "--engines", "torch", "--quiet"]
    assert main([*args, "--model", "my_builder:build"]) == 2  # the same refusal, one line


# ---- files carry their identity ---------------------------------------------------------------


def test_a_model_file_from_another_run_is_refused(runs, tmp_path, capsys):
    d = _copy(runs, tmp_path)
    shutil.copy(runs / "sp" / "model.pt", d / "model.pt")  # an SP model.pt in an IP run
    with pytest.raises(ValueError) as e:
        load_source(d)
    assert "was written by run" in one_line(str(e.value))
    assert main(["bench", str(d), "--repeats", "1", "--quiet"]) == 2
    assert "copied or moved here" in one_line(capsys.readouterr().err)


def test_a_summary_from_another_run_is_refused(runs, tmp_path, digits):
    """A ``summary.json`` copied into another run's folder is not reported (or taken as
    finished) as that run's result: it names the run it belongs to; an older summary
    without that name must at least be of the folder's representation."""
    sp = json.loads((runs / "sp" / "summary.json").read_text())
    assert sp["config_hash"] == config_hash(_cfg("sp"))
    d = _copy(runs, tmp_path)
    _copy(runs, tmp_path, "sp")
    for summary, says in [
        (sp, "is the result of another run (config_hash"),
        ({k: v for k, v in sp.items() if k != "config_hash"}, "records a 'sp' run, but config"),
    ]:
        (d / "summary.json").write_text(json.dumps(summary))
        damaged: list[str] = []
        records, _ = collect_runs(tmp_path / "runs", damaged)
        assert [r.path.name for r in records] == ["sp"]
        assert len(damaged) == 1 and says in damaged[0]
        with pytest.raises(ValueError, match="another run") as e:
            run(_cfg(), d, dataset=digits, resume=True, progress=False)
        assert "\n" not in str(e.value)
    ip = json.loads((runs / "ip" / "summary.json").read_text())
    (d / "summary.json").write_text(json.dumps({k: v for k, v in ip.items() if k != "config_hash"}))
    assert [r.path.name for r in collect_runs(tmp_path / "runs")[0]] == ["ip", "sp"]  # older


def test_a_bare_state_dict_of_another_representation_is_one_line(runs, tmp_path):
    """Version 1 model files (a bare state dict) have no identity: a mismatch is still one
    line, never torch's multi-line load_state_dict error."""
    d = _copy(runs, tmp_path)
    state = read_model(runs / "sp" / "model.pt")
    save_tensors(d / "model.pt", state)
    with pytest.raises(ValueError) as e:
        load_source(d)
    assert "does not fit the model of this run's config.json" in one_line(str(e.value))


def test_report_skips_a_damaged_model_file_and_reports_the_rest(runs, tmp_path):
    d = _copy(runs, tmp_path)
    _copy(runs, tmp_path, "sp")
    flip_bit(d / "model.pt")
    report = write_report(tmp_path / "runs").read_text()
    assert "no pictures from ip" in report and "is damaged" in report
    assert "| random | 80% |" in report  # the table row of both runs is there


def test_resume_on_a_finished_run_changes_nothing(runs, tmp_path, digits, capsys):
    d = _copy(runs, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    result = run(_cfg(), d, dataset=digits, resume=True, progress=False)
    assert result.already_finished
    assert result.summary == json.loads((d / "summary.json").read_text())
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == before
    args = ["train", "--representation", "ip", "--method", "random", "--sparsity", "0.8"]
    args += ["--epochs", "1", "--batch-size", "32", "--quiet", "--resume", "--out", str(d)]
    # the run trained on 256 digits given to run(); the command line's data is all of them,
    # so its result is not handed out as the command's: refused in one line, nothing touched
    assert main(args) == 2
    assert "trained on other data" in one_line(capsys.readouterr().err)
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == before


# ---- a lost checksum ---------------------------------------------------------------------------


def _strip_checksum(path):
    obj = torch.load(path, weights_only=True)
    torch.save(obj, path)  # plain torch.save: same content, no checksum trailer
    return obj


def test_a_model_file_without_its_checksum_is_refused(runs, tmp_path):
    d = _copy(runs, tmp_path)
    obj = _strip_checksum(d / "model.pt")
    with pytest.raises(ValueError) as e:
        read_model(d / "model.pt")
    assert "has no checksum" in one_line(str(e.value))
    torch.save(obj["state_dict"], d / "model.pt")  # version 1 never had one: read, warned
    with pytest.warns(UncheckedFileWarning):
        assert read_model(d / "model.pt").keys() == obj["state_dict"].keys()


def test_a_checkpoint_without_its_checksum_is_refused(tmp_path, digits):
    out = tmp_path / "r"
    cfg = RunConfig(
        prune=PruneConfig(method="random", sparsity=0.5),
        train=TrainConfig(epochs=2, batch_size=32),
    )
    with pytest.raises(RuntimeError, match="simulated crash"):  # in epoch 2: one checkpoint
        run(cfg, out, dataset=digits, progress=False, callbacks=[CrashAt(10)])
    _strip_checksum(out / "checkpoint.pt")
    with pytest.raises(ValueError) as e:
        run(cfg, out, dataset=digits, progress=False, resume=True)
    assert "has no checksum" in one_line(str(e.value))
