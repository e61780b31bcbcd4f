"""Helpers for the fault-injection suite: tiny runs, one-line error checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from interspace_pruning import data

ROOT = Path(__file__).resolve().parents[2]
CODE = "import sys; from interspace_pruning.cli import main; sys.exit(main(sys.argv[1:]))"
FAST = [
    "--train-subset",
    "256",
    "--test-subset",
    "64",
    "--batch-size",
    "32",
    "--quiet",
    "--threads",
    "1",
]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-c", CODE, *args]


def one_line(text: str) -> str:
    """The single line of an error message; fails if there is a traceback or more lines."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert "Traceback" not in text
    return lines[0]


def flip_bit(path: Path, where: float = 0.5) -> None:
    data_ = bytearray(path.read_bytes())
    i = int(len(data_) * where)
    data_[i] ^= 0x10
    path.write_bytes(bytes(data_))


@pytest.fixture(scope="session")
def digits():
    return data.get("digits", train_subset=256, test_subset=64)
