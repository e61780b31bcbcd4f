"""``--trust-model-imports`` and ``--model``: which model import paths read from files may run.

A run folder's ``config.json``, a sparse file's header and a sweep file name their model;
a name read from a file is never imported unless the user vouches for it here.
"""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager

from ..models import CommandLine, Trust, command_line


def add_trust_arguments(p: argparse.ArgumentParser, model_flag: bool = False) -> None:
    """Add ``--trust-model-imports`` (and, with ``model_flag``, ``--model NAME``)."""
    p.add_argument(
        "--trust-model-imports",
        action="store_true",
        help="import the package.module:callable models that the files name (only for "
        "files you wrote: importing runs their code); by default a file may name only a "
        "registered model",
    )
    if model_flag:
        p.add_argument(
            "--model",
            default=None,
            metavar="PACKAGE.MODULE:CALLABLE",
            help="the import path of the model the file names: it is rebuilt from that "
            "builder (the same as trusting that one name)",
        )


def trust_from(ns: argparse.Namespace) -> Trust:
    """The trust the flags in ``ns`` give."""
    if ns.trust_model_imports:
        return True
    model = getattr(ns, "model", None)
    return {model} if model else False


def vouch_text(ns: argparse.Namespace) -> str:
    """How to vouch for an import path with the flags this command has (``{name}``: the path):
    ``report`` and ``sweep`` have only ``--trust-model-imports``, ``train`` only ``--model``."""
    model = "pass --model {name} (that name only)" if hasattr(ns, "model") else ""
    trust = "--trust-model-imports if you wrote this file (importing runs its code)"
    if not hasattr(ns, "trust_model_imports"):
        return model or "no flag of this command imports it"
    return f"{model}, or {trust}" if model else f"pass {trust}"


def model_imports(ns: argparse.Namespace) -> AbstractContextManager[CommandLine]:
    """Around a command: the model import paths it may import (the one typed after
    ``--model``, and those a trust flag admits) find their modules in the current directory,
    as under ``python -m``, and a refused one is explained with this command's own flags.
    One path for every command: ``train --model mynet:build`` and ``report
    --trust-model-imports`` on its run both find ``./mynet.py``."""
    return command_line(vouch_text(ns))
