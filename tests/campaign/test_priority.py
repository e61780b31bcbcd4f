"""The campaign's workers yield to other sessions: its autogroup's nice value (Linux)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from interspace_pruning.campaign import priority
from interspace_pruning.campaign.priority import autogroup_nice, lower_session_priority


def _group(tmp_path: Path, nice: int) -> Path:
    path = tmp_path / "autogroup"
    path.write_text(f"/autogroup-57 nice {nice}\n")
    return path


def test_a_session_leader_raises_its_groups_nice_value(tmp_path, monkeypatch):
    path = _group(tmp_path, 0)
    monkeypatch.setattr(priority.os, "getsid", lambda pid: 4242)
    monkeypatch.setattr(priority.os, "getpid", lambda: 4242)
    assert lower_session_priority(10, path) == "its session's scheduler group at nice +10 too"
    assert path.read_text() == "10\n"  # what the kernel's file takes


def test_a_shared_session_is_left_alone_and_says_so(tmp_path, monkeypatch):
    path = _group(tmp_path, 0)
    monkeypatch.setattr(priority.os, "getsid", lambda pid: 1)
    monkeypatch.setattr(priority.os, "getpid", lambda: 4242)
    assert "start it with --background" in lower_session_priority(10, path)
    assert autogroup_nice(path) == 0


def test_nothing_to_do(tmp_path):
    assert lower_session_priority(10, tmp_path / "missing") == ""  # no autogroups
    assert lower_session_priority(0, _group(tmp_path, 0)) == ""
    assert "already at nice +15" in lower_session_priority(10, _group(tmp_path, 15))
    (tmp_path / "odd").write_text("something else\n")
    assert autogroup_nice(tmp_path / "odd") is None


@pytest.mark.skipif(autogroup_nice() is None, reason="no scheduler autogroups on this machine")
def test_a_new_session_really_gets_the_lower_priority():
    """As ``--background`` starts the campaign: a session of its own, whose group (and so
    every process it forks) the kernel then schedules at the lower priority."""
    ours = autogroup_nice()
    code = (
        "from interspace_pruning.campaign.priority import autogroup_nice, "
        "lower_session_priority as low; print(low(7)); print(autogroup_nice())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
        timeout=120,
    ).stdout.splitlines()
    assert out == ["its session's scheduler group at nice +7 too", "7"]
    assert autogroup_nice() == ours  # the test's own session kept its priority
