"""``interspace campaign``: run a queue of tables until a deadline, committing as it goes."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..foundations.io import open_for_append

EXAMPLES = """examples:
  interspace campaign recipes/campaign_cpu.yaml --deadline 170m --background
  interspace campaign recipes/campaign_cpu.yaml --status
  interspace campaign recipes/campaign_cpu.yaml --pause    # ... quiet timings ... then --resume
  interspace campaign recipes/campaign_cpu.yaml --deadline 04:55 --workers 2 --threads 1

--deadline: when this machine stops (a duration from now such as 170m, 2.5h, 90s, or a UTC
time HH:MM, or an ISO time such as 2026-12-06T04:55Z). Training stops --margin seconds
before it, so the last checkpoints are written and committed in time.
"""

LOG = Path("runs") / "campaign" / "campaign.log"


def parse_deadline(text: str, now: float | None = None) -> float:
    """Unix time of ``--deadline``: ``170m``, ``2.5h``, ``90s``, ``HH:MM`` (UTC, the next
    one) or an ISO 8601 time."""
    now = time.time() if now is None else now
    text = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh])", text)
    if m:
        scale = {"s": 1, "m": 60, "h": 3600}[m.group(2)]
        return now + float(m.group(1)) * scale
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if m and int(m.group(1)) < 24 and int(m.group(2)) < 60:
        base = datetime.fromtimestamp(now, timezone.utc)
        at = base.replace(hour=int(m.group(1)), minute=int(m.group(2)), second=0, microsecond=0)
        if at.timestamp() <= now:
            at += timedelta(days=1)
        return at.timestamp()
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--deadline {text!r}: give a duration (170m, 2.5h), a UTC time HH:MM or an ISO "
            "time such as 2026-12-06T04:55Z"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.timestamp()


def add_parser(sub, formatter_class) -> None:
    """The ``campaign`` subcommand's arguments."""
    c = sub.add_parser(
        "campaign",
        help="run a queue of tables until a deadline, resumable across machines",
        description="Train the runs of a queue file (recipes in priority order) with a few "
        "worker processes until the deadline: each worker takes the first run that fits in "
        "the time left (estimated from training steps timed on this machine), trains in a "
        "precision that is fast here, and keeps each group of compared runs on one kind of "
        "machine. Finished runs are committed as they finish; at the deadline a run still "
        "training commits its checkpoint, and the next machine of its kind continues it.",
        epilog=EXAMPLES,
        formatter_class=formatter_class,
    )
    c.add_argument(
        "queue",
        type=Path,
        nargs="?",
        default=None,
        help="queue file (see recipes/campaign_cpu.yaml); not needed for --pause/--resume",
    )
    c.add_argument("--deadline", type=parse_deadline, default=None, help="when this machine stops")
    c.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    c.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    c.add_argument(
        "--nice",
        type=int,
        default=10,
        help="niceness added to the workers, and with --background to the campaign's "
        "scheduler group (Linux autogroup), so that other sessions come first (default 10)",
    )
    c.add_argument(
        "--margin",
        type=float,
        default=180.0,
        help="seconds before the deadline at which training stops (default 180)",
    )
    c.add_argument(
        "--fill",
        action="store_true",
        help="use the time left in queue order: a run that does not fit starts anyway, before "
        "later runs that fit, when 10+ min are left and its checkpoint goes through git (one "
        "too large for git only when nothing fits); checkpointed at the stop, continued by the "
        "next machine of its kind",
    )
    c.add_argument("--no-commit", action="store_true", help="do not commit anything to git")
    c.add_argument("--status", action="store_true", help="list every run's state, train nothing")
    c.add_argument(
        "--pause",
        action="store_true",
        help="pause this machine's running campaign workers (SIGSTOP), e.g. for timings or tests",
    )
    c.add_argument("--resume", action="store_true", help="continue paused workers (SIGCONT)")
    c.add_argument(
        "--background",
        action="store_true",
        help=f"detach and log to {LOG} (the command returns at once)",
    )


def _background(argv: list[str]) -> None:
    LOG.parent.mkdir(parents=True, exist_ok=True)
    args = [a for a in argv if a != "--background"]
    with open_for_append(LOG) as log:  # never through a planted symlink
        proc = subprocess.Popen(
            [sys.executable, "-m", "interspace_pruning", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # the campaign outlives this shell
        )
    print(f"campaign started in the background (pid {proc.pid}); log: {LOG}")
    print(f"stop it with: kill {proc.pid}   (workers checkpoint and commit first)")


def run(ns: argparse.Namespace) -> None:
    from ..campaign import CampaignOptions, Estimator, load_queue, run_campaign, status_lines
    from ..campaign.runner import STATE_DIR, here, signal_workers

    if ns.pause or ns.resume:
        pids = signal_workers(STATE_DIR, pause=ns.pause)
        what = "paused" if ns.pause else "resumed"
        print(f"{what} {len(pids)} worker(s): {pids}" if pids else "no campaign workers running")
        return
    if ns.queue is None:
        raise ValueError("name the queue file, e.g. interspace campaign recipes/campaign_cpu.yaml")
    queue = load_queue(ns.queue)  # a bad queue file: one line now, in the foreground
    if ns.status:
        print("\n".join(status_lines(queue, Estimator(STATE_DIR, here(), ns.threads))))
        return
    if ns.deadline is None:
        raise ValueError("--deadline is required: when this machine stops (e.g. 170m)")
    if ns.background:
        _background(sys.argv[1:])
        return
    opts = CampaignOptions(
        deadline=ns.deadline,
        workers=ns.workers,
        threads=ns.threads,
        nice=ns.nice,
        commit=not ns.no_commit,
        margin=ns.margin,
        fill=ns.fill,
    )
    run_campaign(queue, opts)
