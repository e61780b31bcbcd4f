"""How the campaign's workers yield the cores to the machine's other work.

``nice`` and ``SCHED_IDLE`` order the processes *of one scheduler group*. Linux's autogroups
(``/proc/sys/kernel/sched_autogroup_enabled``, on by default in most distributions) put each
session in a group of its own and share the CPU fairly *between groups* first. A campaign
started with ``--background`` is a session of its own, so its workers at ``nice +10`` and
``SCHED_IDLE`` still took half the cores from a test suite started in another session
(measured: ``docs/campaign.md``). Raising the nice value of the campaign's own autogroup
makes the priority hold across sessions too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: The scheduler autogroup of the calling process (Linux with CONFIG_SCHED_AUTOGROUP).
AUTOGROUP = Path("/proc/self/autogroup")

_LINE = re.compile(r"^/autogroup-\d+ nice (-?\d+)$")


def autogroup_nice(path: Path = AUTOGROUP) -> int | None:
    """The nice value of this process's autogroup; ``None`` where there is none."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    m = _LINE.match(text)
    return int(m.group(1)) if m else None


def set_autogroup_nice(nice: int, path: Path = AUTOGROUP) -> None:
    """Set the nice value of the autogroup that ``path`` names (``/proc/PID/autogroup``:
    PID's session); raising it needs no privilege, lowering it root or CAP_SYS_NICE."""
    path.write_text(f"{nice}\n", encoding="ascii")


def lower_session_priority(nice: int, path: Path = AUTOGROUP) -> str:
    """Raise the nice value of this session's autogroup to ``nice``; one line saying what
    was done (empty where there was nothing to do).

    Only a session leader does it (``--background`` starts the campaign as one): an autogroup
    is a whole session, and a campaign run from a terminal shares the terminal's session, whose
    other processes must keep their priority. Raising a nice value needs no privilege.
    """
    if nice <= 0:
        return ""
    now = autogroup_nice(path)
    if now is None:
        return ""  # no autogroups here: the workers' nice value already holds machine-wide
    if now >= nice:
        return f"its session's scheduler group already at nice +{now}"
    if os.getsid(0) != os.getpid():
        return (
            "its session is shared (a terminal), so other sessions still get an equal share "
            "of the cores beside it: start it with --background for the priority to hold"
        )
    try:
        set_autogroup_nice(nice, path)
    except OSError as e:
        return f"could not lower its session's scheduler group ({e.strerror or e})"
    return f"its session's scheduler group at nice +{nice} too"
