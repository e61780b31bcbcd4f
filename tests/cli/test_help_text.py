"""What ``--help`` and a misspelt flag say: each default once, the subcommand's own help."""

import argparse
import re
import subprocess
import sys

import pytest

from interspace_pruning.cli import main
from interspace_pruning.cli.main import build_parser
from interspace_pruning.foundations.hparams import help_with_default


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_each_option_states_its_default_once():
    for command, parser in _subparsers().items():
        for action in parser._actions:
            text = action.help or ""
            flags = "/".join(action.option_strings) or action.dest
            said = len(re.findall(r"\bdefault\b", text, re.IGNORECASE))
            assert said <= 1, f"interspace {command} {flags}: {text!r}"
            assert "[optional]" not in text, f"interspace {command} {flags}: {text!r}"
    train = {s: a for a in _subparsers()["train"]._actions for s in a.option_strings}
    assert train["--image-size"].help.endswith("(default 224; Tiny-ImageNet 64; Imagewoof 128)")
    assert train["--basis-weight-decay"].help.endswith("(off by default)")
    assert train["--epochs"].help.endswith("(default: 30)")
    assert train["--augment"].help.endswith("(default: True)")


def test_help_with_default():
    assert help_with_default("epochs", 30) == "epochs (default: 30)"
    assert help_with_default("subset", None) == "subset (default: none)"
    assert help_with_default("crop (Default 224)", None) == "crop (Default 224)"
    assert help_with_default("off by default", 0.0) == "off by default"
    assert help_with_default("a share", "5%") == "a share (default: 5%%)"  # argparse's %


def _error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


def test_a_misspelt_flag_gets_a_guess_and_the_subcommand_help(capsys):
    assert _error(["train", "--epoh", "3"], capsys) == (
        "interspace train: error: unknown option --epoh (did you mean --epochs?); "
        "see `interspace train --help`"
    )
    err = _error(["report", "runs/x", "--min-sedes=3", "--zzz"], capsys)
    assert err == (
        "interspace report: error: unknown options --min-sedes (did you mean --min-seeds?), "
        "--zzz; see `interspace report --help`"
    )
    err = _error(["sweep", "a.yaml", "extra"], capsys)
    assert err == (
        "interspace sweep: error: unexpected argument: extra; see `interspace sweep --help`"
    )
    err = _error(["train", "--sparsity", "abc"], capsys)  # argparse's own errors: the same tail
    assert err.endswith("invalid float value: 'abc'; see `interspace train --help`")
    err = _error(["trian"], capsys)  # no subcommand yet: the top-level help
    assert err.endswith("; see `interspace --help`") and "invalid choice: 'trian'" in err


def test_the_cli_starts_without_matplotlib():
    """matplotlib is imported only when a report draws: it cost every ``interspace`` command
    about 1 s of start-up (``interspace --help``: 4.4 s against 5.5 s on a loaded Zen 3)."""
    code = "import sys, interspace_pruning.cli.main; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
