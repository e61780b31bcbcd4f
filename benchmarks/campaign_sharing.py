"""What a running campaign costs the session's other work, and what that work costs it.

    python benchmarks/campaign_sharing.py --rounds 2 -- \
        .venv/bin/python -m pytest -q -p no:cacheprovider tests/experiments tests/training

The command after ``--`` (a slice of the test suite above) is timed in three modes, taken
in turn each round (medians reported):

- ``group nice 0``: the campaign's scheduler group (its session's Linux autogroup) at nice
  0, as a ``--background`` campaign ran before it lowered its group: its workers' own
  ``nice +10`` and ``SCHED_IDLE`` order processes only within that group;
- ``group nice N`` (``--nice``, default 10): as the campaign now sets it
  (``campaign/priority.py``);
- ``paused``: the workers stopped (``interspace campaign --pause``): a quiet machine.

Beside each time, the CPU the campaign's processes got meanwhile (CPU-seconds per second,
summed over every process of its session, the data-loading workers included): the other
side of the trade. Needs a campaign running on this machine (``runs/campaign/workers.json``)
and the right to set its group back (root or CAP_SYS_NICE): the group's nice value and the
workers are restored at the end, also on Ctrl-C. The CPU's model name (as ``lscpu`` gives
it) heads the output: timings from different machines are never compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from interspace_pruning.campaign.priority import autogroup_nice, set_autogroup_nice
from interspace_pruning.campaign.runner import STATE_DIR, here, running_workers, signal_workers


def campaign_session() -> int:
    """The session id of this machine's running campaign workers."""
    for pid in running_workers(STATE_DIR):
        try:
            return os.getsid(pid)
        except ProcessLookupError:
            continue
    sys.exit("no campaign running on this machine: start one with interspace campaign ...")


def session_cpu_seconds(sid: int) -> float:
    """User + system CPU time of every live process of session ``sid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[3]) == sid:  # fields after the name: state, ppid, pgrp, session, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command to time after --")
    sid = campaign_session()
    group = Path(f"/proc/{sid}/autogroup")
    before = autogroup_nice(group)
    if before is None:
        sys.exit("no scheduler autogroups on this machine: the workers' nice value holds")
    print(f"CPU: {here()}; {os.cpu_count()} CPUs; campaign session {sid} at group nice {before}")
    modes = {"group nice 0": 0, f"group nice {args.nice}": args.nice, "paused": None}
    times: dict[str, list[float]] = {m: [] for m in modes}
    shares: dict[str, list[float]] = {m: [] for m in modes}
    try:
        for r in range(args.rounds):
            for mode, nice in modes.items():
                if nice is None:
                    signal_workers(STATE_DIR, pause=True)
                else:
                    set_autogroup_nice(nice, group)
                cpu0, t0 = session_cpu_seconds(sid), time.perf_counter()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                wall = time.perf_counter() - t0
                share = (session_cpu_seconds(sid) - cpu0) / wall
                if nice is None:
                    signal_workers(STATE_DIR, pause=False)
                times[mode].append(wall)
                shares[mode].append(share)
                print(f"round {r + 1}, {mode}: {wall:.1f} s, campaign {share:.2f} CPU-s/s")
    finally:
        signal_workers(STATE_DIR, pause=False)
        set_autogroup_nice(before, group)
    print("\n| campaign | command s (median) | campaign CPU-s per s |\n|---|---|---|")
    for mode in modes:
        print(
            f"| {mode} | {statistics.median(times[mode]):.0f} | "
            f"{statistics.median(shares[mode]):.2f} |"
        )


if __name__ == "__main__":
    main()
