"""Each example of docs/python-api.md runs alone, twice (issue 32).

A reader pastes one block into a fresh session, or runs the page a second time in the same
folder: each ```python block must define what it uses (no ``NameError`` from a name an
earlier block made) and must work again where its first run left its files (a run folder
that exists: ``resume=True``). tests/docs/test_examples.py runs the page as one script; here
every block runs in a process of its own (forked from one that has only imported the
libraries, so the imports are paid once), in one empty folder, then all of them again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .examples import ROOT, python_blocks

PAGE = ROOT / "docs" / "python-api.md"
#: Imported once before the blocks fork off (what the blocks import anyway).
PRELOAD = ["torch", "sklearn.datasets", "interspace_pruning", "lightning"]

#: Runs the blocks of a JSON file, each in a forked child with a fresh namespace, ``rounds``
#: times over in the working directory; exit status 1 if any block failed.
RUNNER = textwrap.dedent(
    """
    import importlib, json, os, sys, time, traceback

    spec = json.load(open(sys.argv[1]))
    for name in spec["preload"]:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    failed = 0
    for rnd in range(1, spec["rounds"] + 1):
        for block in spec["blocks"]:
            where = f"{spec['page']}:{block['line']}"
            sys.stdout.flush()
            sys.stderr.flush()
            start = time.perf_counter()
            pid = os.fork()
            if pid == 0:  # the child: this block alone, in a namespace of its own
                status = 0
                try:
                    source = "\\n" * (block["line"] - 1) + block["code"]
                    exec(compile(source, spec["page"], "exec"), {"__name__": "__main__"})
                except BaseException:
                    traceback.print_exc()
                    status = 1
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
            _, wait_status = os.waitpid(pid, 0)
            ok = os.waitstatus_to_exitcode(wait_status) == 0
            took = time.perf_counter() - start
            print(f"round {rnd} {where}: {'ok' if ok else 'FAILED'} ({took:.1f} s)", flush=True)
            if not ok:
                print(f"FAILED: round {rnd}, the example at {where}", file=sys.stderr)
                failed += 1
    sys.exit(1 if failed else 0)
    """
)


def run_alone(page: Path, cwd: Path, rounds: int = 2, preload=PRELOAD):
    """Run every ```python block of ``page`` alone, ``rounds`` times, in ``cwd``."""
    blocks = [{"line": b.line, "code": b.code} for b in python_blocks(page) if b.skip is None]
    spec = cwd.parent / f"{cwd.name}-blocks.json"
    spec.write_text(
        json.dumps({"page": str(page), "blocks": blocks, "rounds": rounds, "preload": preload})
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(spec)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@needs_fork
def test_each_example_of_the_python_api_page_runs_alone_twice(tmp_path):
    pytest.importorskip("lightning")  # one block shows the Lightning callback
    assert len(python_blocks(PAGE)) > 3
    proc = run_alone(PAGE, tmp_path)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert proc.stdout.count(": ok (") == 2 * len(python_blocks(PAGE)), proc.stdout


@needs_fork
def test_a_block_that_needs_an_earlier_one_fails(tmp_path):
    """The runner really isolates: names and registrations of one block do not reach the
    next, and a failure names the block's line."""
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nx = 1\nimport sys\nsys.modules['math'].mine = 1\n```\n\n"
        "```python\nprint(x)\n```\n\n"
        "```python\nimport math\nassert not hasattr(math, 'mine')\n```\n"
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = run_alone(page, cwd, rounds=1, preload=["math"])
    assert proc.returncode == 1
    assert f"round 1 {page}:2: ok" in proc.stdout
    assert f"round 1 {page}:8: FAILED" in proc.stdout and "NameError" in proc.stderr
    assert f"round 1 {page}:12: ok" in proc.stdout


def test_a_second_python_compare_names_the_python_arguments(tmp_path):
    """The refusal of a folder that holds a run speaks in the caller's terms: Python's
    ``resume=True``/``overwrite=True``, not the CLI's flags."""
    from interspace_pruning.experiments import DataConfig, RunConfig, compare

    (tmp_path / "sp").mkdir()
    (tmp_path / "sp" / "config.json").write_text("{}")  # a run was started here
    cfg = RunConfig(data=DataConfig(train_subset=50, test_subset=20))
    with pytest.raises(ValueError) as e:
        compare(cfg, tmp_path, dense=False, progress=False, threads=None)
    text = str(e.value)  # another configuration's run: resuming it is no way out
    assert "another configuration" in text and "\n" not in text and "--" not in text
    assert "overwrite=True" in text and "out_dir" in text
