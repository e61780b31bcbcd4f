"""`make demo` runs `interspace compare --out runs/demo --resume`: twice in a row must work."""

import json
import re
from pathlib import Path

from interspace_pruning.cli import main

FAST = ["--train-subset", "200", "--test-subset", "60", "--epochs", "1", "--quiet"]


def test_makefile_demo_resumes():
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    demo = re.search(r"^demo:.*\n\t(.+)$", makefile, re.M).group(1)
    assert "compare" in demo and "--resume" in demo


def test_compare_twice_shows_the_finished_runs(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["compare", *FAST, "--no-dense", "--method", "random", "--out", str(out), "--resume"]
    assert main(args) == 0
    first = capsys.readouterr().out
    stamps = {rep: (out / rep / "model.pt").stat().st_mtime_ns for rep in ("sp", "ip")}
    summary = json.loads((out / "sp" / "summary.json").read_text())
    assert main(args) == 0  # the second time: no error, same table, nothing retrained
    second = capsys.readouterr().out
    assert second.split("written to")[0] == first.split("written to")[0]
    assert {rep: (out / rep / "model.pt").stat().st_mtime_ns for rep in stamps} == stamps
    assert json.loads((out / "sp" / "summary.json").read_text()) == summary
    # another configuration in the same folder is still refused, in one line
    other = [a if a != "random" else "magnitude" for a in args]
    assert main(other) == 2
    err = capsys.readouterr().err.strip()
    assert "another configuration" in err and "\n" not in err
