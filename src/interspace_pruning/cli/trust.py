"""``--trust-model-imports`` and ``--model``: which model import paths read from files may run.

A run folder's ``config.json``, a sparse file's header and a sweep file name their model;
a name read from a file is never imported unless the user vouches for it here.
"""

from __future__ import annotations

import argparse

from ..models import Trust


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
