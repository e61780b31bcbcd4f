"""One thread rule from Python and the command line (issue 32): ``compare()`` trains with
the thread count of ``interspace compare --threads auto`` unless told otherwise, so the
same job reproduces ``make demo`` from Python."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest
import torch

from interspace_pruning.cli import main
from interspace_pruning.experiments import RunConfig, compare
from interspace_pruning.experiments.threads import training_threads

compare_mod = sys.modules["interspace_pruning.experiments.compare"]
FAST = ["--train-subset", "200", "--test-subset", "60", "--epochs", "1", "--quiet"]


@pytest.fixture
def seen(monkeypatch):
    """The thread counts the comparison trains with (nothing is trained)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    counts: list[int] = []

    def fake(*args, **kwargs):
        counts.append(torch.get_num_threads())
        raise ValueError("stop here")

    monkeypatch.setattr(compare_mod, "_compare", fake)
    saved = torch.get_num_threads()
    torch.set_num_threads(2)  # torch's default on a 2-core machine
    yield counts
    torch.set_num_threads(saved)


def cpu_config() -> RunConfig:
    return replace(RunConfig(), train=replace(RunConfig().train, device="cpu"))


def test_python_compare_uses_the_clis_rule_by_default(seen):
    for threads in ("auto", 3, None):
        kwargs = {} if threads == "auto" else {"threads": threads}
        with pytest.raises(ValueError, match="stop here"):
            compare(cpu_config(), **kwargs)
        assert torch.get_num_threads() == 2  # restored afterwards
    assert seen == [1, 3, 2]  # tiny digits convnet: 1, as `interspace compare`


def test_the_cli_and_python_train_the_demo_with_the_same_threads(seen):
    assert main(["compare", *FAST, "--device", "cpu"]) == 2
    with pytest.raises(ValueError, match="stop here"):
        compare(cpu_config())
    assert seen == [1, 1]


def test_the_users_count_reaches_compare_from_the_cli(seen):
    assert main(["compare", *FAST, "--device", "cpu", "--threads", "3"]) == 2
    assert seen == [3]


@pytest.mark.parametrize("bad", [0, -1, "two", 1.5, True])
def test_a_bad_thread_count_is_one_line(bad):
    with (
        pytest.raises(ValueError, match="threads must be a count >= 1, 'auto'"),
        training_threads(bad, [cpu_config()]),
    ):
        pass
