"""A sweep file is bounded: YAML aliases, nesting and size, values, cells, model sizes; and a
junk folder in a sweep's output folder is named and skipped, never the end of the sweep."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from interspace_pruning.cli import main
from interspace_pruning.experiments.config import RunConfig
from interspace_pruning.experiments.grid import GridProblems, adopt_renamed_runs, run_dir, run_grid
from interspace_pruning.experiments.sweep import MAX_CELLS, count_cells, load_sweep
from interspace_pruning.foundations.hparams import config_hash, to_dict
from interspace_pruning.foundations.yaml_files import (
    MAX_YAML_DEPTH,
    YamlFileError,
    brief,
    data_size,
    load_yaml,
)
from interspace_pruning.training import TrainConfig


def laughs(levels: int = 9) -> str:
    """Anchors l0..l{levels}, each nine aliases of the one before (9**levels values)."""
    lines = ["description:", "  - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


BASE = "base:\n  data: {dataset: digits}\n"


def _write(tmp_path, text: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _refused(path, match: str, **kwargs) -> str:
    start = time.monotonic()
    with pytest.raises(ValueError, match=match) as e:
        load_sweep(path, **kwargs)
    assert time.monotonic() - start < 10  # was: 70 s and more
    text = str(e.value)
    assert "\n" not in text and len(text) < 600, text[:1000]
    return text


@pytest.mark.parametrize(
    "use",
    [
        "grid:\n  train.lr: [*l9]\n",  # a grid value (was: MemoryError repr()ing it)
        "base:\n  data: {root: *l9}\n",  # a base value
        "grid:\n  train.seed: [0]\n",  # defined, never used: still refused (was: 70 s+)
    ],
)
def test_billion_laughs_is_refused_at_once(tmp_path, use):
    path = _write(tmp_path, laughs() + use)
    assert path.stat().st_size < 2000
    text = _refused(path, "aliases")
    assert str(path) in text


def test_billion_laughs_from_the_command_line_is_one_line(tmp_path, capsys):
    path = _write(tmp_path, laughs() + "grid:\n  train.lr: [*l9]\n")
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("interspace sweep: error:") and "\n" not in err and str(path) in err


def test_a_few_aliases_still_work(tmp_path):
    text = BASE + "grid:\n  train.seed: &seeds [1, 2]\n  train.epochs: *seeds\n"
    assert len(load_sweep(_write(tmp_path, text)).configs) == 4
    merged = "a: &a {x: 1}\nb:\n  <<: *a\n  y: 2\n"
    assert load_yaml(_write(tmp_path, merged, "m.yaml")) == {"a": {"x": 1}, "b": {"x": 1, "y": 2}}


def test_a_large_grid_value_is_named_and_cut(tmp_path):
    # small enough for the YAML bounds, wrong for its key: the message shows ~80 characters
    path = _write(tmp_path, BASE + "grid:\n  train.lr: [" + json.dumps(list(range(500))) + "]\n")
    text = _refused(path, "train.lr")
    assert len(text) < 400
    path = _write(tmp_path, BASE + "grid:\n  data.root: [" + "x" * 5000 + "]\n")
    assert "grid data.root is too large" in _refused(path, "too large")
    path = _write(tmp_path, "base:\n  model: {model_args: {width: " + "[" * 40 + "]" * 40 + "}}\n")
    _refused(path, "nests deeper")


def test_a_billion_cells_are_counted_not_expanded(tmp_path):
    grid = {f"train.{k}": list(range(1, 11)) for k in ("seed", "epochs", "batch_size")}
    grid |= {f"data.{k}": list(range(1, 11)) for k in ("train_subset", "test_subset", "workers")}
    grid |= {"prune.prune_batches": list(range(1, 11)), "train.log_every": list(range(1, 11))}
    grid |= {"imp.rewind_step": list(range(10))}
    assert count_cells([grid]) == 10**9
    path = _write(tmp_path, yaml.safe_dump({"grid": grid}))
    text = _refused(path, "asks for 1000000000 runs")
    assert f"more than {MAX_CELLS}" in text and "--max-cells" in text


def test_max_cells(tmp_path, capsys):
    path = _write(tmp_path, BASE + "grid:\n  train.seed: [0, 1, 2]\n  train.epochs: [1, 2]\n")
    assert len(load_sweep(path, max_cells=6).configs) == 6
    _refused(path, "asks for 6 runs, more than 5", max_cells=5)
    out = str(tmp_path / "o")
    assert main(["sweep", str(path), "--dry-run", "--out", out, "--max-cells", "5"]) == 2
    assert "asks for 6 runs, more than 5" in capsys.readouterr().err
    assert main(["sweep", str(path), "--dry-run", "--out", out, "--max-cells", "6"]) == 0
    with pytest.raises(SystemExit):
        main(["sweep", str(path), "--dry-run", "--max-cells", "0"])
    err = capsys.readouterr().err
    assert "argument --max-cells: must be a count >= 1, got '0'" in err


@pytest.mark.parametrize(
    "args, match",
    [
        ("{width: 1000000}", "has 6.3e\\+13 parameters, more than 1e\\+09"),
        ("{width: -1}", "negative dimension"),
        ("{width: 1000000000000}", "overflow"),
        ("{widht: 3}", "unexpected keyword argument 'widht'"),
    ],
)
def test_model_args_of_an_impossible_model_are_refused_up_front(tmp_path, args, match):
    text = BASE + f"grid:\n  train.seed: [0]\n  model.model_args: [{{width: 8}}, {args}]\n"
    message = _refused(_write(tmp_path, text), match)
    assert "model_args" in message and "convnet" in message


def test_refused_up_front_from_the_command_line(tmp_path, capsys):
    path = _write(tmp_path, BASE + "grid:\n  model.model_args: [{width: 8}, {width: 1000000}]\n")
    out = tmp_path / "o"
    assert main(["sweep", str(path), "--out", str(out), "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "width=1000000" in err
    assert not out.exists()  # nothing trained, not even the small one


@pytest.mark.parametrize(
    "text, match",
    [
        ("grid: {1: [2]}", "grid key 1"),
        ("{1: 2, foo: 3}", "unknown key 1"),
        ("name: {a: 1}", "name in"),
        ("out: [1, 2]", "out in"),
        ("grids: 5", "grids in"),
        ("base: [1]", "base must be a mapping"),
        ("x: 2001-02-30", "cannot read: day is out of range"),
        ("x: " + "9" * 5000, "a number written with 5000 characters"),
        ("x: 1" + ":59" * 100_000, "a number written with 300001 characters"),  # was: 20 s
        ("x: \x00", "not valid YAML"),
        ("[" * 100 + "]" * 100, f"nests deeper than {MAX_YAML_DEPTH}"),
        ("a: &a [*a]", "alias inside its own anchor"),
    ],
)
def test_other_hostile_files_are_one_line(tmp_path, text, match):
    _refused(_write(tmp_path, text), match)


def test_the_yaml_bounds(tmp_path):
    big = _write(tmp_path, "a: " + "x" * 2**20 + "\n", "big.yaml")
    with pytest.raises(YamlFileError, match="larger than 1 MiB"):
        load_yaml(big)
    many = _write(tmp_path, "[" + "0," * 30_000 + "0]", "many.yaml")
    with pytest.raises(YamlFileError, match="more than 20000 values"):
        load_yaml(many)
    chain = "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 40))  # deep only via aliases
    with pytest.raises(YamlFileError, match="deeper than 32 levels once its aliases"):
        load_yaml(_write(tmp_path, "a0: &a0 [x]\n" + chain, "chain.yaml"))
    bad = _write(tmp_path, "", "bad.yaml")
    bad.write_bytes(b"a: \xff\xfe")
    with pytest.raises(YamlFileError, match="not UTF-8"):
        load_yaml(bad)
    assert load_yaml(_write(tmp_path, "", "empty.yaml")) is None
    with pytest.raises(YamlFileError, match="cannot read sweep file"):
        load_yaml(tmp_path / "missing.yaml", "sweep file")
    with pytest.raises(YamlFileError, match="not valid YAML: could not determine a constructor"):
        load_yaml(_write(tmp_path, "a: !!python/name:os.system x", "tag.yaml"))


def test_brief_and_data_size_are_bounded():
    nested: list = []
    nested.append(nested)  # holds itself
    assert len(brief(nested)) < 100 and len(brief(list(range(10**6)))) < 100
    assert len(brief("x" * 10**6)) < 100
    assert data_size(nested, 1000) == 1001 and data_size(list(range(10**7)), 10) == 11
    assert data_size({"ab": [1, "cd"]}, 100) == 1 + 3 + 1 + 1 + 3


# ---- a junk folder in a sweep's output folder ------------------------------------------


def _junk(root):
    """Folders a sweep may find in its output folder, none of them a usable run."""
    (root / "deep").mkdir(parents=True)
    (root / "deep" / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "dir").mkdir()
    (root / "dir" / "config.json").mkdir()
    (root / "binary").mkdir()
    (root / "binary" / "config.json").write_bytes(b"\x00\xff junk")
    (root / "list").mkdir()
    (root / "list" / "config.json").write_text("[1, 2]")
    (root / "notes").mkdir()  # not a run at all: no config.json, not named
    (root / "notes" / "todo.txt").write_text("x")
    return ["deep", "dir", "binary", "list"]


def test_a_junk_folder_is_named_and_skipped(tmp_path, capsys):
    root = tmp_path / "runs"
    names = _junk(root)
    adopt_renamed_runs(root, [RunConfig()])
    err = capsys.readouterr().err.splitlines()
    assert len(err) == len(names), err
    for name, line in zip(sorted(names), err, strict=True):
        assert line.startswith(f"skipped {root / name}:"), line


def test_a_run_folder_taken_by_junk_is_skipped_and_the_sweep_goes_on(tmp_path, capsys):
    root = tmp_path / "runs"
    _junk(root)
    cfgs = [RunConfig(train=TrainConfig(seed=s)) for s in range(3)]
    run_dir(root, cfgs[0]).write_text("a file where the run's folder goes")
    other = to_dict(RunConfig(train=TrainConfig(seed=99)))
    run_dir(root, cfgs[1]).mkdir()
    (run_dir(root, cfgs[1]) / "config.json").write_text(json.dumps(other))
    run_dir(root, cfgs[2]).mkdir()
    (run_dir(root, cfgs[2]) / "summary.json").mkdir()
    problems = GridProblems()
    assert list(run_grid(cfgs, root, progress=False, problems=problems)) == []
    assert len(problems.bad) == 3, problems.bad
    err = capsys.readouterr().err
    assert "[1/3] skipped" in err and "is not a folder" in err
    assert "[2/3] skipped" in err and "records another configuration" in err
    assert "[3/3] skipped" in err and "summary.json is not a regular file" in err
    assert config_hash(cfgs[0]) != config_hash(cfgs[1])


def test_a_run_folder_that_is_a_symlink_out_of_the_sweep_is_skipped(tmp_path, capsys):
    root, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    cfg = RunConfig(train=TrainConfig(seed=0))
    run_dir(root, cfg).symlink_to(elsewhere)
    problems = GridProblems()
    assert list(run_grid([cfg], root, progress=False, problems=problems)) == []
    assert "is a symlink leading out of" in capsys.readouterr().err
    assert len(problems.bad) == 1 and list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "a\\b"])
def test_a_sweep_name_is_one_folder_name(tmp_path, name):
    path = _write(tmp_path, yaml.safe_dump({"name": name, "grid": {"train.seed": [0]}}))
    assert "must be one folder name" in _refused(path, "folder name")
