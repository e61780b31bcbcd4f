"""Fuzz: the sparse engine against the model on random shapes, crash-isolated.

Cases run in a worker process; if native code kills it (a signal), the case is reported as a
failure and the worker restarts at the next case, so a segfault fails this test instead of
killing pytest. ``INTERSPACE_FUZZ_CASES`` enlarges the run, ``INTERSPACE_FUZZ_SEED`` changes
it. The kernel path under test is whatever ``INTERSPACE_KERNEL_PATH`` selects (inherited by
the worker; unset: the default path); ``INTERSPACE_KERNEL_PATHS=a,b`` runs the fuzz once per
listed path, setting ``INTERSPACE_KERNEL_PATH`` for each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .fuzz_worker import case

ROOT = Path(__file__).resolve().parents[2]
CASES = int(os.environ.get("INTERSPACE_FUZZ_CASES", "30"))
SEED = int(os.environ.get("INTERSPACE_FUZZ_SEED", "20261129"))
PATHS = [p for p in os.environ.get("INTERSPACE_KERNEL_PATHS", "").split(",") if p] or [None]


def _run_cases(
    seed: int, count: int, kernel_path: str | None = None
) -> tuple[dict[int, str], set[int]]:
    """Run cases 0..count-1; returns failures ``{case: reason}`` and the cases that passed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    if kernel_path is not None:
        env["INTERSPACE_KERNEL_PATH"] = kernel_path
    failures: dict[int, str] = {}
    passed: set[int] = set()
    first = 0
    while first < count:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.faults.fuzz_worker",
                str(seed),
                str(first),
                str(count - first),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        current = first
        for line in proc.stdout.splitlines():
            kind, _, rest = line.partition(" ")
            index, _, reason = rest.partition(" ")
            if kind == "CASE":
                current = int(index)
            elif kind == "OK":
                passed.add(int(index))
            elif kind == "FAIL":
                failures[int(index)] = reason
        if proc.returncode == 0:
            break
        failures[current] = f"worker died with exit code {proc.returncode}: {proc.stderr[-300:]}"
        first = current + 1
    return failures, passed


@pytest.mark.parametrize("kernel_path", PATHS)
def test_sparse_engine_matches_model_on_random_shapes(kernel_path):
    failures, passed = _run_cases(SEED, CASES, kernel_path)
    report = "; ".join(f"case {i} {case(SEED, i)}: {why}" for i, why in sorted(failures.items()))
    assert not failures, report
    assert len(passed) == CASES


def test_wrong_channels_are_refused_not_read_out_of_bounds():
    """The issue's case: a 3-channel model given 1-, 2- and 4-channel input, big batch."""
    code = (
        "import torch, interspace_pruning as ip\n"
        "torch.manual_seed(0)\n"
        "m = ip.models.get('convnet', 10, 3); ip.to_interspace(m); ip.prune(m, 'random', 0.9)\n"
        "m.eval(); f = ip.sparse_inference(m, mode='sparse')\n"
        "for c in (1, 2, 4):\n"
        "    try:\n        f(torch.randn(256, c, 64, 64))\n"
        "    except RuntimeError as e:\n        print('refused', e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("refused") for line in lines), proc.stdout
    for line, c in zip(lines, (1, 2, 4), strict=True):
        assert "to have 3 channels" in line and f"got {c} channels" in line
