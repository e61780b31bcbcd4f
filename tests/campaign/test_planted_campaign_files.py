"""The campaign's own files under ``runs/campaign/`` (the estimator's state and lock, the
log) may arrive through git too: a planted symlink must not make us truncate or append to
the file it leads to, and a FIFO must not hang ``--status`` or a worker."""

from __future__ import annotations

import os
import threading

import pytest

from interspace_pruning.campaign.estimate import Estimator
from interspace_pruning.foundations.io import OutsideFolderError, open_for_append


def test_a_planted_lock_symlink_is_refused_and_its_target_kept(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("someone's notes\n")
    folder = tmp_path / "runs" / "campaign"
    folder.mkdir(parents=True)
    est = Estimator(folder, "test machine", threads=1)
    est.path.with_suffix(".lock").symlink_to(victim)
    with pytest.raises(OutsideFolderError, match=r"\.lock: it is a symlink .*remove it"):
        est._update(lambda state: state.update(x=1))
    assert victim.read_text() == "someone's notes\n"


def test_open_for_append_never_writes_through_a_link_and_keeps_the_log(tmp_path):
    log = tmp_path / "campaign.log"
    with open_for_append(log) as f:
        f.write("one\n")
    with open_for_append(log) as f:
        f.write("two\n")
    assert log.read_text() == "one\ntwo\n"
    victim = tmp_path / "victim"
    victim.write_text("kept\n")
    (tmp_path / "planted.log").symlink_to(victim)
    with pytest.raises(OutsideFolderError, match="is a symlink"):
        open_for_append(tmp_path / "planted.log")
    assert victim.read_text() == "kept\n"


def test_a_fifo_as_the_estimator_state_does_not_hang(tmp_path):
    folder = tmp_path / "est"
    folder.mkdir()
    probe = Estimator(folder, "test machine", threads=1)
    os.mkfifo(probe.path)
    done: list[Estimator] = []
    worker = threading.Thread(target=lambda: done.append(Estimator(folder, "test machine", 1)))
    worker.daemon = True  # a hang must fail the test, not block the suite's exit
    worker.start()
    worker.join(timeout=10)
    assert done and done[0].state["step_seconds"] == {}
