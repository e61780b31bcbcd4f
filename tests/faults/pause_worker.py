"""The command line with a pause at one named point, for the stop-signal and claim tests.

    python pause_worker.py WHERE MARKER GO LOG interspace-arguments...

At WHERE it writes MARKER (holding the temp file's path inside a checkpoint write) and waits
until the file GO exists; a signal's handler may end the wait by raising. WHERE is one of

- ``pruning``: in the pruner's construction (pruning at initialisation);
- ``final-evaluation``: in ``summarise`` (the evaluation after training);
- ``stop-checkpoint``: inside the checkpoint write that follows a stop signal, after the
  temp file is written and fsynced, before the claim check and the renames;
- ``checkpoint-2``: inside the second checkpoint write, at the same place.

LOG (or ``-``): every ``os.replace`` is appended to it as ``<destination>``.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

where, marker, go, log = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
if hasattr(signal, "SIGHUP"):  # as from a terminal, even where the tests run under nohup
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def pause(text: str = "") -> None:
    marker.write_text(text or where)
    while not go.exists():
        time.sleep(0.05)


# the module, not the function of the same name that interspace_pruning.experiments exports
run_mod = importlib.import_module("interspace_pruning.experiments.run")

if where == "pruning":
    real_pruner = run_mod.pruner

    def pruner(*a, **k):
        pause()
        return real_pruner(*a, **k)

    run_mod.pruner = pruner
elif where == "final-evaluation":
    real_summarise = run_mod.summarise

    def summarise(*a, **k):
        pause()
        return real_summarise(*a, **k)

    run_mod.summarise = summarise
else:
    names: dict[int, str] = {}
    checkpoints = [0]
    real_mkstemp, real_fsync = tempfile.mkstemp, os.fsync

    def mkstemp(*a, **k):
        fd, name = real_mkstemp(*a, **k)
        names[fd] = name
        return fd, name

    def stop_requested() -> bool:
        handler = signal.getsignal(signal.SIGTERM)
        return getattr(getattr(handler, "__self__", None), "requested", None) is not None

    def fsync(fd):
        real_fsync(fd)
        name = names.pop(fd, "")
        if not os.path.basename(name).startswith(".checkpoint.pt."):
            return
        checkpoints[0] += 1
        if (where == "checkpoint-2" and checkpoints[0] == 2) or (
            where == "stop-checkpoint" and stop_requested()
        ):
            pause(name)

    tempfile.mkstemp, os.fsync = mkstemp, fsync

if log != "-":
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        with open(log, "a") as f:
            f.write(f"{dst}\n")

    os.replace = replace

from interspace_pruning.cli import main  # noqa: E402

sys.exit(main(sys.argv[5:]))
