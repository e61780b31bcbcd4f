"""Coverage-guided fuzzing (atheris) of the sweep-file reader, ``fuzz/sweep_file.py``.

Like ``tests/faults/test_coverage_fuzz.py`` for the other targets: the target runs in a
subprocess from a fresh corpus with a fixed ``-seed``, and libFuzzer must finish its runs
without a finding (see the target's docstring). ``INTERSPACE_COVFUZZ_RUNS=N`` runs N inputs
instead of the default (sized for about 20 s on 2 shared cores). Skipped where atheris is not
installed (``pip install -e ".[fuzz]"``; Linux only).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("INTERSPACE_COVFUZZ_RUNS") or 1000)


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (pip install -e '.[fuzz]'; Linux only)",
)
def test_sweep_file_fuzz_finds_nothing(tmp_path):
    command = [
        sys.executable,
        str(ROOT / "fuzz" / "sweep_file.py"),
        f"-atheris_runs={RUNS}",
        "-seed=1",
        "-timeout=60",
        f"-artifact_prefix={tmp_path}{os.sep}",
        str(tmp_path / "corpus"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    findings = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    output = (proc.stdout + proc.stderr).splitlines()  # atheris prints the exception to stdout
    report = "\n".join([line for line in output if not line.startswith(("#", "INFO:"))][-40:])
    assert proc.returncode == 0 and not findings, f"findings {findings}:\n{report}"
    assert f"Done {RUNS} " in proc.stderr, report
