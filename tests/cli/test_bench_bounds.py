"""`interspace bench`'s inputs are bounded: one line naming the flag and what it may be, before
anything of that size is allocated; and its help states each default once."""

from __future__ import annotations

import argparse
import re

import pytest
import torch

import interspace_pruning as ip
from interspace_pruning.cli import main
from interspace_pruning.cli.main import build_parser
from interspace_pruning.inference import bench as bench_module
from interspace_pruning.inference.bench import bench, check_input, probe_input

SPEC = {"name": "convnet", "num_classes": 10, "in_channels": 1}


@pytest.fixture(scope="module")
def sparse_file(tmp_path_factory):
    torch.manual_seed(0)
    model = ip.models.get("convnet", 10, 1)
    ip.prune(model, "random", 0.8)
    path = tmp_path_factory.mktemp("bench") / "model.isp"
    ip.export_sparse(model.eval(), path, SPEC)
    return path


def _bench(args: list[str], capsys) -> str:
    """Run ``interspace bench`` expecting a one-line error; that line."""
    try:
        code = main(["bench", *args, "--quiet", "--engines", "torch"])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "flag, value, range_",
    [
        ("--input-size", "100000", "1 to 8192"),
        ("--input-size", "0", "1 to 8192"),
        ("--batch", "1000000000", "1 to 65536"),
        ("--batch", "0", "1 to 65536"),
        ("--repeats", "0", "1 to 100000"),
        ("--threads", "100000", "1 to "),
    ],
)
def test_out_of_range_flags_are_one_line(sparse_file, capsys, flag, value, range_):
    err = _bench([str(sparse_file), flag, value], capsys)
    assert f"argument {flag}: must be {range_}" in err and value in err


def test_too_small_an_input_names_the_smallest_the_model_takes(sparse_file, capsys):
    # was: RuntimeError "Output size is too small" from max_pool2d, a traceback
    err = _bench([str(sparse_file), "--input-size", "1"], capsys)
    assert err.startswith("interspace bench: error: --input-size 1 is too small for this model")
    assert "valid: 2 to 8192" in err
    assert probe_input(ip.models.get("convnet", 10, 1).eval(), (1, 2, 2))[1] == ""


def test_a_batch_beyond_memory_is_refused_with_what_fits(sparse_file, capsys, monkeypatch):
    # was: "DefaultCPUAllocator: can't allocate memory", a traceback
    monkeypatch.setattr(bench_module, "available_memory", lambda: 200 * 2**20)
    err = _bench([str(sparse_file), "--batch", "1", "60000"], capsys)
    assert re.search(r"--batch 60000 needs about [\d.]+ GiB at input 1x28x28, more than the", err)
    most = int(re.search(r"valid --batch here: 1 to (\d+)$", err).group(1))
    assert 100 < most < 60000
    err = _bench([str(sparse_file), "--input-size", "8000"], capsys)
    assert "--input-size 8000 (1x8000x8000) needs about" in err
    assert "valid --input-size here: at most about" in err


def test_the_library_checks_too(monkeypatch):
    model = ip.models.get("convnet", 10, 1).eval()
    with pytest.raises(ValueError, match="cannot take an input of 1x1x1"):
        bench(model, (1, 1, 1), batch=1, repeats=1, engines=("torch",))
    monkeypatch.setattr(bench_module, "available_memory", lambda: 2**20)
    with pytest.raises(ValueError, match="needs about .* more than the 1 MiB"):
        check_input(model, (1, 28, 28), 1000)


def test_bench_help_states_each_default_once():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {"--batch", "--threads", "--repeats", "--engines", "--input-size", "--clock", "--json"}
    for action in sub.choices["bench"]._actions:
        if not flags & set(action.option_strings):  # the source, flags without a value
            continue
        said = len(re.findall(r"\bdefault\b", action.help or "", re.IGNORECASE))
        assert said == 1, f"{action.option_strings}: {action.help!r}"


def test_a_sparse_file_says_which_input_size_it_is_timed_at(sparse_file, capsys):
    """A sparse file does not record its input size: the size timed is said, with the flag."""
    args = ["bench", str(sparse_file), "--quiet", "--engines", "torch", "--repeats", "1"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "does not record its input size: timing 1x28x28" in err and "--input-size" in err
    assert main([*args, "--input-size", "8"]) == 0
    assert "does not record" not in capsys.readouterr().err


def test_a_file_without_a_spec_says_how_to_export_one(tmp_path, capsys):
    model = ip.models.get("convnet", 10, 1)
    ip.prune(model, "random", 0.8)
    ip.export_sparse(model.eval(), tmp_path / "bare.isp")  # no spec: only load_sparse(model=)
    err = _bench([str(tmp_path / "bare.isp")], capsys)
    assert "does not name its model" in err and "export_sparse(model, path, {'name'" in err
    assert "pass model=" not in err  # a Python argument: no flag of this command


def test_a_folder_of_runs_points_to_one_of_them(tmp_path, capsys):
    """`interspace compare` writes a folder of runs (sp/, ip/): bench names one to time."""
    for rep in ("ip", "sp"):
        (tmp_path / "cmp" / rep).mkdir(parents=True)
        (tmp_path / "cmp" / rep / "config.json").write_text("{}")
    err = _bench([str(tmp_path / "cmp")], capsys)
    assert "is not a run directory" in err and f"e.g. {tmp_path / 'cmp' / 'ip'}" in err
