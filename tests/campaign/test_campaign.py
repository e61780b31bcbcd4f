"""The campaign: queue files, groups, what may train here, deadlines, commits, and a run
stopped by its deadline that a fresh clone continues."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

import pytest

from interspace_pruning.campaign import (
    CampaignOptions,
    Estimator,
    estimate,
    gitsync,
    load_queue,
    run_campaign,
    runner,
)
from interspace_pruning.campaign.gitsync import commit_run
from interspace_pruning.campaign.queue import group_key
from interspace_pruning.cli.campaign import parse_deadline
from interspace_pruning.cli.main import main
from interspace_pruning.experiments.grid import override
from interspace_pruning.experiments.stretches import STRETCHES, read_stretches
from interspace_pruning.foundations.provenance import code_version
from interspace_pruning.training import device as dev

RECIPE = """name: digits-t
out: out/digits
base:
  data: {{dataset: digits}}
  train: {{epochs: {epochs}, batch_size: 64}}
grids:
  - prune.method: [snip]
    prune.sparsity: [0.9]
    train.seed: [0, 1]
    prune.representation: [sp, ip]
  - train.seed: [0]
    train.precision: [fp32, bf16]
    prune.representation: [dense]
"""


def write_queue(folder: Path, epochs: int = 2, only: str = "") -> Path:
    (folder / "digits.yaml").write_text(RECIPE.format(epochs=epochs))
    entry = "  - recipe: digits.yaml\n" + (f"    only: {only}\n" if only else "")
    (folder / "q.yaml").write_text(f"name: t\nqueue:\n{entry}")
    return folder / "q.yaml"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def git_repo(folder: Path) -> None:
    git("init", "-q", cwd=folder)
    git("config", "user.email", "t@example.com", cwd=folder)
    git("config", "user.name", "t", cwd=folder)
    (folder / ".gitignore").write_text("*.pt\n.claim\n/runs/\n")
    git("add", ".", cwd=folder)
    git("commit", "-qm", "init", cwd=folder)


def test_deadline_forms():
    now = 1_000_000.0
    assert parse_deadline("170m", now) == now + 170 * 60
    assert parse_deadline("2.5h", now) == now + 9000
    assert parse_deadline("90s", now) == now + 90
    assert parse_deadline("2026-12-06T04:55Z") == parse_deadline("2026-12-06T04:55+00:00")
    at = parse_deadline("04:55", now)
    assert now < at <= now + 86400
    with pytest.raises(Exception, match="duration"):
        parse_deadline("soon", now)


def test_queue_order_only_and_groups(tmp_path):
    q = load_queue(write_queue(tmp_path))
    kinds = [
        (r.cfg.prune.representation.kind, r.cfg.train.seed, r.cfg.train.precision) for r in q.runs
    ]
    assert kinds == [
        ("sp", 0, "fp32"),
        ("ip", 0, "fp32"),
        ("sp", 1, "fp32"),
        ("ip", 1, "fp32"),
        ("dense", 0, "fp32"),
        ("dense", 0, "bf16"),
    ]
    groups = list(q.groups().values())
    # SP and IP of a seed are one group, the fp32 and bf16 dense runs another
    assert [len(g) for g in groups] == [2, 2, 2]
    assert group_key(q.runs[0].cfg) != group_key(q.runs[2].cfg)  # seeds differ
    only = load_queue(write_queue(tmp_path, only="{prune.representation: [ip]}"))
    assert [r.cfg.prune.representation.kind for r in only.runs] == ["ip", "ip"]


def test_bad_queue_files_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("queue: [{recipe: nowhere.yaml}]\n")
    with pytest.raises(ValueError, match="cannot read sweep file"):
        load_queue(bad)
    bad.write_text("name: x\nqueue:\n  - {recipe: d.yaml, when: now}\n")
    with pytest.raises(ValueError, match="unknown key 'when'"):
        load_queue(bad)
    write_queue(tmp_path, only="{prune.colour: [red]}")
    with pytest.raises(ValueError, match="prune.colour"):
        load_queue(tmp_path / "q.yaml")
    assert main(["campaign", str(tmp_path / "missing.yaml"), "--status"]) == 2


def test_what_may_train_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    q = load_queue(write_queue(tmp_path))
    groups = q.groups()
    sp0, ip0, sp1, _, dense32, dense16 = q.runs
    machine = runner.here()
    assert runner.why_not(sp0, groups[sp0.group], machine) is None
    # a precision that is slow here: the whole group (the fp32 run too) waits for another kind
    monkeypatch.setattr(dev, "precision_is_native", lambda p, d="cpu": p == "fp32")
    assert "bf16 is slow" in runner.why_not(dense32, groups[dense32.group], machine)
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    # a group that started on another kind of machine continues there, both runs of it
    ip0.dir.mkdir(parents=True)
    (ip0.dir / STRETCHES).write_text(json.dumps([{"machine": "Other CPU (avx2)"}]))
    assert "Other CPU (avx2)" in runner.why_not(sp0, groups[sp0.group], machine)
    assert runner.why_not(sp1, groups[sp1.group], machine) is None
    monkeypatch.setattr(dev, "precision_is_native", lambda p, d="cpu": True)  # any CPU
    (sp1.dir / "checkpoint.pt").parent.mkdir(parents=True)
    (sp1.dir / "checkpoint.pt").write_bytes(b"y" * 2048)
    monkeypatch.setattr(gitsync, "MAX_GIT_FILE", 1024)  # --status: where it can continue
    lines = runner.status_lines(q)
    assert lines[2].endswith("[its 0 MB checkpoint continues on this checkout only]")
    assert "continues on this checkout" not in lines[0]  # no checkpoint: nothing to say
    assert "Other CPU" in lines[0] and lines[-2].startswith("0/6 runs done")
    assert lines[-1] == (  # what this machine leaves to others, by reason
        "not trained here: 2 runs (2: its group trained on Other CPU (avx2); it continues there)"
    )


def test_a_received_folder_cannot_steer_the_campaign(tmp_path, monkeypatch):
    """Run folders come through git from other machines: a symlink leading out of the
    checkout, a summary.json that never ends, a damaged record of machines or another
    run's config.json make the run not trained here, each said in one line; none hangs."""
    import os

    monkeypatch.chdir(tmp_path)
    git_repo(tmp_path)
    monkeypatch.setattr(dev, "precision_is_native", lambda p, d="cpu": True)  # any CPU
    q = load_queue(write_queue(tmp_path))
    groups = q.groups()
    sp0, ip0, sp1, ip1, dense32, dense16 = q.runs
    machine = runner.here()

    def why(r):
        return runner.why_not(r, groups[r.group], machine)

    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    sp0.dir.parent.mkdir(parents=True, exist_ok=True)
    sp0.dir.symlink_to(outside)  # committed as a symlink: training would write there
    assert why(sp0).startswith("not trained: ") and "symlink leading out" in why(sp0)
    assert not commit_run(sp0.dir, "x")  # nor is anything of it committed
    assert list(outside.iterdir()) == []
    # a summary.json linked to /dev/zero or a FIFO: read bounded, the run counts unfinished
    ip0.dir.mkdir(parents=True)
    (ip0.dir / "summary.json").symlink_to("/dev/zero")
    assert runner.run_machines(ip0.dir) == set()
    assert "not a regular file" in why(ip0)  # and is never trained over
    sp1.dir.mkdir()
    (sp1.dir / "stretches.json").write_text("<<<<<<< HEAD\n")  # a merge left it damaged
    assert why(sp1).startswith("where it trained is unknown: ") and "\n" not in why(sp1)
    assert why(ip1) == why(sp1)  # its pair waits too: it must train on its partner's kind
    assert runner.status_lines(q)[2].endswith(f"[{why(sp1)}]")  # --status says it, no error
    dense32.dir.mkdir()
    (dense32.dir / "config.json").write_text((tmp_path / "q.yaml").read_text())
    assert why(dense32).startswith("not trained: ")
    dense16.dir.mkdir()
    os.mkfifo(dense16.dir / "summary.json")
    assert runner.run_machines(dense16.dir) == set() and "not a regular file" in why(dense16)


def test_estimates_scale_with_epochs_and_learn(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    short = load_queue(write_queue(tmp_path, epochs=2)).runs[0]
    est = Estimator(tmp_path / "est", "test machine", threads=1)
    a = est.raw_seconds(short)
    long = load_queue(write_queue(tmp_path, epochs=20)).runs[0]
    b = est.raw_seconds(long)
    assert 0 < a < b
    assert est.correction() == 1.0
    imp = load_queue(write_queue(tmp_path, epochs=2)).runs[0]
    imp = dataclasses.replace(
        imp, cfg=override(override(imp.cfg, "prune.method", "imp"), "imp.rounds", 2)
    )
    setup = estimate.SETUP_SECONDS  # once per run; IMP trains rounds + 1 times
    assert est.raw_seconds(imp) - setup == pytest.approx(3 * (est.raw_seconds(short) - setup))
    # evaluating every 5th epoch (and the last) costs 4 of the 20 evaluations
    sparse = dataclasses.replace(long, cfg=override(long.cfg, "train.eval_every", 5))
    _, n_test = est.sizes(long)
    per_eval = (b - est.raw_seconds(sparse)) / (16 * n_test)
    batch = long.cfg.train.batch_size
    assert per_eval == pytest.approx(est.step_seconds(long) / batch * estimate.EVAL_COST)
    est.learn(long, b, 2 * b)
    again = Estimator(tmp_path / "est", "test machine", threads=1)  # kept on disk
    assert again.correction() == pytest.approx(2.0)
    assert again.seconds(long) > b


def test_commit_run_commits_small_files_and_the_checkpoint(tmp_path):
    git_repo(tmp_path)
    d = tmp_path / "out" / "abc"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.pt").write_bytes(b"x")
    (d / "checkpoint.pt").write_bytes(b"y")
    assert commit_run(d, "partial", checkpoint=True)
    assert sorted(git("ls-files", "out", cwd=tmp_path).split()) == [
        "out/abc/checkpoint.pt",
        "out/abc/config.json",
    ]
    (d / "checkpoint.pt").unlink()
    (d / "summary.json").write_text("{}")
    assert commit_run(d, "finished")
    assert sorted(git("ls-files", "out", cwd=tmp_path).split()) == [
        "out/abc/config.json",
        "out/abc/summary.json",
    ]
    assert git("status", "--porcelain", cwd=tmp_path) == ""


def test_a_checkpoint_too_large_for_git_keeps_its_unfinished_run_uncommitted(
    tmp_path, monkeypatch, capsys
):
    git_repo(tmp_path)
    d = tmp_path / "out" / "big"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "checkpoint.pt").write_bytes(b"y" * 2048)
    monkeypatch.setattr(gitsync, "MAX_GIT_FILE", 1024)
    assert gitsync.too_large_to_commit(gitsync.resume_files(d)) == 2048
    assert not commit_run(d, "partial", checkpoint=True)
    assert "a committed file may have" in capsys.readouterr().out
    assert git("ls-files", "out", cwd=tmp_path).split() == []  # nothing of it in git
    (d / "checkpoint.pt").unlink()
    (d / "summary.json").write_text("{}")
    assert commit_run(d, "finished")  # finished: its small files as always
    assert sorted(git("ls-files", "out", cwd=tmp_path).split()) == [
        "out/big/config.json",
        "out/big/summary.json",
    ]


def test_deadline_stops_a_run_that_a_fresh_clone_continues(tmp_path, monkeypatch):
    """Machine 1 trains until its deadline: a short run finishes and is committed, a long
    one is stopped and its checkpoint committed. A clone (machine 2, same kind) continues
    the long run from that checkpoint and trains no finished run again."""
    first = tmp_path / "machine1"
    first.mkdir()
    write_queue(first)
    (first / "digits.yaml").write_text(
        RECIPE.format(epochs=2).split("grids:")[0]
        + "grid:\n  prune.representation: [sp]\n  train.epochs: [2, 2000]\n"
    )
    git_repo(first)
    monkeypatch.chdir(first)
    q = load_queue(first / "q.yaml")
    done_run, stopped_run = q.runs
    assert stopped_run.cfg.train.epochs == 2000
    monkeypatch.setattr(runner.Estimator, "seconds", lambda self, r: 1.0)  # both "fit"
    # deadlines with room for a loaded machine (tests in parallel beside a campaign: the
    # 2-epoch run once took 7 s and met a 12 s deadline in its final evaluation); the worker
    # at normal priority, not at SCHED_IDLE and nice +10 as a real campaign's: beside one
    # (whose workers are idle-class too) it got a third of a core and missed 20 s
    fair = {"workers": 1, "margin": 1.0, "nice": 0, "idle": False}
    run_campaign(q, CampaignOptions(deadline=time.time() + 20, **fair))
    assert (done_run.dir / "summary.json").is_file()
    assert not (stopped_run.dir / "summary.json").is_file()
    stretch = read_stretches(stopped_run.dir)
    assert stretch[0]["how"] == "stopped" and stretch[0]["machine"] == runner.here()
    assert stretch[0]["to_epoch"] > 0
    assert stretch[0]["code"] == code_version()  # the code that trained this stretch
    assert stretch[0]["cpu_id"] == dev.cpu_id()  # the generation the model name can hide
    tracked = git("ls-files", cwd=first)
    assert f"{stopped_run.dir.as_posix()}/checkpoint.pt" in tracked
    assert f"{done_run.dir.as_posix()}/summary.json" in tracked
    finished_summary = (done_run.dir / "summary.json").read_text()

    second = tmp_path / "machine2"
    git("clone", "-q", str(first), str(second), cwd=tmp_path)
    git("config", "user.email", "t@example.com", cwd=second)
    git("config", "user.name", "t", cwd=second)
    monkeypatch.chdir(second)
    q2 = load_queue(second / "q.yaml")
    run_campaign(q2, CampaignOptions(deadline=time.time() + 12, **fair))
    assert (done_run.dir / "summary.json").read_text() == finished_summary  # not retrained
    again = read_stretches(stopped_run.dir)
    assert [s["how"] for s in again] == ["stopped", "stopped"]
    assert again[1]["from_epoch"] == stretch[0]["to_epoch"] < again[1]["to_epoch"]


def test_pause_and_resume_this_machines_workers(tmp_path):
    import socket
    import sys

    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "interspace", "campaign"]
    )
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "workers.json").write_text(
            json.dumps({"pids": [fake.pid, stranger.pid], "host": socket.gethostname()})
        )

        def state(pid: int) -> str:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]

        def soon(check) -> bool:  # signals and exec land asynchronously: poll, bounded
            stop = time.time() + 10
            while not check() and time.time() < stop:
                time.sleep(0.05)
            return check()

        # Popen may return before the child's exec has set its command line (vfork): a
        # loaded machine showed an empty one, and the fake was not taken for a worker
        assert soon(lambda: b"campaign" in Path(f"/proc/{fake.pid}/cmdline").read_bytes())
        assert runner.signal_workers(tmp_path, pause=True) == [fake.pid]  # not a reused PID
        assert soon(lambda: state(fake.pid) == "T") and state(stranger.pid) != "T"
        assert runner.signal_workers(tmp_path, pause=False) == [fake.pid]
        assert soon(lambda: state(fake.pid) != "T")
        assert runner.signal_workers(tmp_path / "none", pause=True) == []
        # the pause is kept, so that the run it slowed does not teach the estimator
        paused = runner.paused_between(tmp_path, time.time() - 60, time.time())
        assert 0 < paused < 30
    finally:
        fake.kill()
        stranger.kill()


def test_runs_longer_than_any_machine_start_and_train_in_stretches(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    q = load_queue(write_queue(tmp_path))
    opts = CampaignOptions(
        deadline=time.time() + 3600, margin=0, session=7200, min_stretch=600, state_dir=tmp_path
    )
    worker = runner._Worker("w", q, opts)

    def pick_with(seconds):
        monkeypatch.setattr(runner.Estimator, "seconds", lambda self, r: seconds)
        picked = worker.pick()
        if picked is not None:
            picked[1].release()
        return picked

    assert pick_with(2000)[0] is q.runs[0]  # fits
    assert pick_with(5000) is None  # does not fit, but a whole machine would: wait for one
    assert pick_with(10_000)[0] is q.runs[0]  # no machine would: train it in stretches
    opts.min_stretch = 4000  # ... but not for a stretch shorter than min_stretch
    assert pick_with(10_000) is None


def test_missing_data_is_said_once_and_its_runs_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist.yaml").write_text(
        "name: m\nout: out/m\nbase:\n  data: {dataset: mnist, root: nowhere}\n"
        "grid:\n  train.seed: [0, 1, 2]\n  prune.representation: [sp, ip]\n"
    )
    (tmp_path / "q.yaml").write_text("name: t\nqueue:\n  - recipe: mnist.yaml\n")
    q = load_queue(tmp_path / "q.yaml")
    worker = runner._Worker(
        "w", q, CampaignOptions(deadline=time.time() + 3600, state_dir=tmp_path)
    )
    assert worker.pick() is None
    out = capsys.readouterr().out
    assert out.count("skipping the runs of m on mnist") == 1 and "FAILED" not in out
    assert worker.skipped == {r.dir for r in q.runs}


def test_fill_uses_the_time_left_in_queue_order(tmp_path, monkeypatch):
    """Without --fill a run that does not fit waits for a later machine and a later run that
    fits trains; with it the earlier run starts (its checkpoint goes through git), unless
    too little is left or its checkpoint would be too large for git."""
    monkeypatch.chdir(tmp_path)
    q = load_queue(write_queue(tmp_path))
    first, second = q.runs[0], q.runs[1]
    monkeypatch.setattr(runner.Estimator, "seconds", lambda self, r: 3000.0 if r is first else 60.0)

    def pick(**options):
        opts = CampaignOptions(deadline=time.time() + 1800, margin=0, state_dir=tmp_path, **options)
        picked = runner._Worker("w", q, opts).pick()
        picked[1].release()
        return picked[0]

    assert pick() is second  # the later run that fits
    assert pick(fill=True) is first  # queue order: the earlier run, checkpointed at the stop
    assert pick(fill=True, fill_min=3600) is second  # too little left to be worth a start
    monkeypatch.setattr(gitsync, "MAX_GIT_FILE", 1024)  # its checkpoint stays here
    assert pick(fill=True) is second
    assert pick(fill=True, commit=False) is first  # nothing goes through git: this checkout


def test_an_imp_run_stopped_in_a_later_round_commits_what_it_resumes_from(tmp_path):
    """An IMP run keeps its checkpoint in the round's folder and resumes from the rewind
    state and the last finished round's model: all three go through git at a stop, and the
    commit that records the run finished removes them."""
    git_repo(tmp_path)
    d = tmp_path / "out" / "imp"
    (d / "round_0").mkdir(parents=True)
    (d / "round_1").mkdir()
    (d / "config.json").write_text("{}")
    (d / "rewind.pt").write_bytes(b"r")
    (d / "round_0" / "summary.json").write_text("{}")
    (d / "round_0" / "model.pt").write_bytes(b"m")
    (d / "round_0" / "masks.pt").write_bytes(b"k")  # the report's, not needed to resume
    (d / "round_1" / "checkpoint.pt").write_bytes(b"c")
    (d / "round_1" / "checkpoint.prev.pt").write_bytes(b"p")
    assert gitsync.resume_files(d) == [
        d / "round_1" / "checkpoint.pt",
        d / "round_0" / "model.pt",
        d / "rewind.pt",
    ]
    assert commit_run(d, "partial", checkpoint=True)
    assert sorted(git("ls-files", "out", cwd=tmp_path).split()) == [
        "out/imp/config.json",
        "out/imp/rewind.pt",
        "out/imp/round_0/model.pt",
        "out/imp/round_0/summary.json",
        "out/imp/round_1/checkpoint.pt",
    ]
    for p in ("round_1/checkpoint.pt", "round_1/checkpoint.prev.pt"):
        (d / p).unlink()
    (d / "round_1" / "summary.json").write_text("{}")
    (d / "summary.json").write_text("{}")
    (tmp_path / "theirs.txt").write_text("staged by someone else")
    git("add", "theirs.txt", cwd=tmp_path)
    assert commit_run(d, "finished")  # their staged work stays out: the .pt stay tracked
    assert "theirs.txt" not in git("ls-tree", "-r", "--name-only", "HEAD", cwd=tmp_path)
    assert "out/imp/rewind.pt" in git("ls-tree", "-r", "--name-only", "HEAD", cwd=tmp_path)
    git("commit", "-qm", "theirs", "--", "theirs.txt", cwd=tmp_path)
    assert commit_run(d, "finished")
    assert sorted(git("ls-tree", "-r", "--name-only", "HEAD", "out", cwd=tmp_path).split()) == [
        "out/imp/config.json",
        "out/imp/round_0/summary.json",
        "out/imp/round_1/summary.json",
        "out/imp/summary.json",
    ]
    assert (d / "rewind.pt").is_file()  # removed from git only: the files stay on disk


def test_a_summary_copied_from_another_run_does_not_count_as_done(tmp_path, monkeypatch):
    """The campaign reads a result as the report does: a ``summary.json`` copied into
    another run's folder is not that run's, so the run is neither done nor trained over."""
    from interspace_pruning.foundations.hparams import config_hash

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dev, "precision_is_native", lambda p, d="cpu": True)
    q = load_queue(write_queue(tmp_path))
    groups = q.groups()
    sp0, ip0 = q.runs[:2]
    summary = json.dumps({"test_acc": 0.5, "config_hash": config_hash(sp0.cfg)})
    for r in (sp0, ip0):  # sp0's own result, and the same file copied to ip0
        r.dir.mkdir(parents=True)
        (r.dir / "summary.json").write_text(summary)
    machine = runner.here()
    assert runner.state_of(sp0) == "done"
    assert runner.why_not(sp0, groups[sp0.group], machine) == "done"
    why = runner.why_not(ip0, groups[ip0.group], machine)
    assert why.startswith("not trained: ") and "result of another run" in why and "\n" not in why
    assert runner.state_of(ip0) == "unusable result"
    lines = runner.status_lines(q)
    assert lines[1].endswith(f"[{why}]")
    assert lines[len(q.runs)].startswith(f"1/{len(q.runs)} runs done")
    # an older summary (no config_hash) must at least be of this run's representation
    (ip0.dir / "summary.json").write_text(json.dumps({"test_acc": 0.5, "representation": "sp"}))
    assert "records a 'sp' run" in runner.why_not(ip0, groups[ip0.group], machine)


def test_a_run_whose_checkpoint_is_gone_ties_no_group_and_counts_no_epochs(tmp_path):
    """Its recorded stretches and epochs belong to an attempt it discards: another kind of
    machine may train it, from the first epoch, and the estimate counts the whole run."""
    from interspace_pruning.experiments.stretches import epochs_kept

    d = tmp_path / "run"
    d.mkdir()
    (d / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    stale = [{"machine": "AMD EPYC (avx2)", "from_epoch": 0, "to_epoch": 2, "how": "stopped"}]
    (d / STRETCHES).write_text(json.dumps(stale))
    assert runner.run_machines(d) == set() and epochs_kept(d) == 0
    (d / "checkpoint.pt").write_bytes(b"x")  # with its checkpoint it continues where it was
    assert runner.run_machines(d) == {"AMD EPYC (avx2)"} and epochs_kept(d) == 2
