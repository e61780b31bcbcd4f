"""A model of your own (``--model mynet:build`` with ``./mynet.py``) through train, report and
bench: the console script does not put the current directory on ``sys.path`` (``python -m``
does), so every command finds ``./mynet.py`` itself, and only for names the user vouches for."""

import sys

import pytest

from interspace_pruning import models
from interspace_pruning.cli import main

NAME = "ip_own_model_t32"
BUILDER = """
from torch import nn

def build(num_classes=10, in_channels=1):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes),
    )
"""
FAST = ["--train-subset", "120", "--test-subset", "40", "--epochs", "1", "--sparsity", "0.5"]
FAST += ["--quiet"]
BENCH = ["--engines", "torch", "--batch", "1", "--repeats", "2", "--quiet"]


@pytest.fixture
def own_model(tmp_path, monkeypatch):
    """``./NAME.py`` in the current directory, which is not on ``sys.path``."""
    (tmp_path / f"{NAME}.py").write_text(BUILDER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    sys.modules.pop(NAME, None)
    yield f"{NAME}:build"
    sys.modules.pop(NAME, None)


def _forget(tmp_path) -> None:
    """As a new process would start: ``./NAME.py`` neither imported nor on ``sys.path``."""
    sys.modules.pop(NAME, None)
    sys.path[:] = [p for p in sys.path if p != str(tmp_path)]


def test_report_and_bench_find_the_model_trained_from_the_cwd(own_model, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *FAST, "--model", own_model, "--out", str(run)]) == 0
    capsys.readouterr()
    # nobody vouches: refused before any import, naming only the flags each command has
    _forget(tmp_path)
    assert main(["report", str(run)]) == 0  # tables without pictures
    err = capsys.readouterr().err
    assert "pass --trust-model-imports if you wrote this file" in err
    assert "--model" not in err and NAME not in sys.modules
    assert main(["bench", str(run), *BENCH]) == 2
    err = capsys.readouterr().err.strip()
    assert f"pass --model {own_model} (that name only), or --trust-model-imports" in err
    assert len(err.splitlines()) == 1 and NAME not in sys.modules
    # the user vouches: ./NAME.py is found, as train found it
    assert main(["report", str(run), "--trust-model-imports"]) == 0
    err = capsys.readouterr().err
    assert "cannot import" not in err and "no pictures" not in err, err
    _forget(tmp_path)
    assert main(["bench", str(run), "--trust-model-imports", *BENCH]) == 0
    assert "| torch |" in capsys.readouterr().out
    _forget(tmp_path)
    assert main(["bench", str(run), "--model", own_model, *BENCH]) == 0


def test_a_name_from_a_file_is_refused_before_the_cwd_is_searched(own_model, tmp_path):
    with models.command_line("pass --trust-model-imports"):
        with pytest.raises(models.UntrustedModelError, match="pass --trust-model-imports$"):
            models.check_trusted(own_model, "config.json: model", trust=False)
        assert NAME not in sys.modules and str(tmp_path) not in sys.path
        assert models.check_trusted(own_model, "config.json: model", trust=True) == own_model
        net = models.get(own_model, 3, 1)  # a trusted (or typed) name: found in the cwd
        assert net[-1].out_features == 3 and sys.path[0] == str(tmp_path)
    assert models._command is None  # the command is over


def test_outside_a_command_the_cwd_is_not_searched(own_model):
    with pytest.raises(ValueError, match=r"model .*:build: cannot import 'ip_own_model_t32'"):
        models.get(own_model, 3, 1)
    with pytest.raises(models.UntrustedModelError, match=r"trust_model_imports=True"):
        models.check_trusted(own_model, "config.json: model")
