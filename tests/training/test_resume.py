"""A run interrupted mid-training and resumed ends exactly like an uninterrupted one."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from interspace_pruning.campaign.gitsync import SMALL, resume_files
from interspace_pruning.experiments import PruneConfig, RunConfig, run
from interspace_pruning.experiments.runfiles import read_model
from interspace_pruning.foundations.checkpoint import load_tensors
from interspace_pruning.foundations.io import read_jsonl
from interspace_pruning.training import Callback, TrainConfig
from interspace_pruning.training.checkpointing import read_checkpoint

TIMING = {"epoch_time", "elapsed"}


class Crash(Callback):
    """Simulates a crash (e.g. a killed process) at a given optimiser step."""

    def __init__(self, at_step):
        self.at_step = at_step

    def on_step_end(self, state):
        if state.step == self.at_step:
            raise KeyboardInterrupt


class CountSteps(Callback):
    def __init__(self):
        self.steps = 0

    def on_step_end(self, state):
        self.steps += 1


def _metrics(path):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_jsonl(path)]


def _same_models(a, b):
    sa, sb = read_model(a / "model.pt"), read_model(b / "model.pt")
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


CASES = {
    "ip-snip": RunConfig(prune=PruneConfig(representation="ip", method="snip", sparsity=0.9)),
    "sp-rigl": RunConfig(
        prune=PruneConfig(representation="sp", method="rigl", sparsity=0.9),
        options={"dst": {"interval": 5}},
    ),
    "ip-gmp": RunConfig(prune=PruneConfig(representation="ip", method="gmp", sparsity=0.8)),
}
IMP = RunConfig(
    prune=PruneConfig(representation="ip", method="imp", sparsity=0.75),
    options={"imp": {"rounds": 2, "rewind_step": 4}},
)


@pytest.mark.parametrize("name", list(CASES))
def test_crash_and_resume_is_bitwise_identical(name, tmp_path):
    from interspace_pruning import data

    ds = data.get("digits", train_subset=256, test_subset=64)
    cfg = CASES[name]
    cfg.train = TrainConfig(epochs=3, batch_size=32, seed=1)
    run(cfg, tmp_path / "straight", dataset=ds, progress=False)
    # crash in the middle of epoch 2 (8 steps per epoch)
    crash_at = 12
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "crashed", dataset=ds, progress=False, callbacks=[Crash(crash_at)])
    assert (tmp_path / "crashed" / "checkpoint.pt").is_file()
    assert not (tmp_path / "crashed" / "summary.json").exists()
    run(cfg, tmp_path / "crashed", dataset=ds, progress=False, resume=True)
    assert _metrics(tmp_path / "crashed" / "metrics.jsonl") == _metrics(
        tmp_path / "straight" / "metrics.jsonl"
    )
    _same_models(tmp_path / "crashed", tmp_path / "straight")
    assert not (tmp_path / "crashed" / "checkpoint.pt").exists()  # cleaned up when finished


def test_a_run_whose_checkpoint_is_gone_starts_over_and_records_only_the_new_attempt(tmp_path):
    """Its checkpoint stayed on a machine that is gone: the metrics of the epochs it had
    trained remain, but training starts over from the first epoch, so the stretches record
    only the new attempt, from epoch 0 (not from the discarded attempt's last epoch)."""
    from interspace_pruning import data
    from interspace_pruning.experiments.stretches import read_stretches

    ds = data.get("digits", train_subset=256, test_subset=64)
    cfg = CASES["ip-snip"]
    cfg.train = TrainConfig(epochs=3, batch_size=32, seed=1)
    out = tmp_path / "run"
    run(cfg, tmp_path / "straight", dataset=ds, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out, dataset=ds, progress=False, callbacks=[Crash(20)])  # in epoch 3
    assert len(read_jsonl(out / "metrics.jsonl")) == 2
    for f in ("checkpoint.pt", "checkpoint.prev.pt"):
        (out / f).unlink(missing_ok=True)
    stale = read_stretches(out)
    stale[0]["machine"] = "Another CPU (avx2)"  # the discarded attempt's, on another kind
    (out / "stretches.json").write_text(json.dumps(stale))
    # the new attempt is stopped in its first epoch: the stale metrics must not count
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out, dataset=ds, progress=False, resume=True, callbacks=[Crash(4)])
    assert [(s["from_epoch"], s["to_epoch"]) for s in read_stretches(out)] == [(0, 0)]
    run(cfg, out, dataset=ds, progress=False, resume=True)
    assert _metrics(out / "metrics.jsonl") == _metrics(tmp_path / "straight" / "metrics.jsonl")
    stretches = read_stretches(out)
    assert [(s["from_epoch"], s["to_epoch"], s["how"]) for s in stretches] == [
        (0, 0, "stopped"),
        (0, 3, "finished"),
    ]
    assert "Another CPU (avx2)" not in {s["machine"] for s in stretches}


def test_an_imp_run_never_counts_as_starting_over(tmp_path):
    """IMP keeps its checkpoints in round_N/ and writes its top-level metrics at its end: a
    stop between those and its summary must not drop the stretches of its rounds."""
    from interspace_pruning.experiments.stretches import starts_over

    (tmp_path / "round_0").mkdir()
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n')
    assert not starts_over(tmp_path)
    (tmp_path / "round_0").rmdir()
    assert starts_over(tmp_path)  # the same files without rounds: no checkpoint, start over


class CrashInRound(Callback):
    """Interrupts the ``round``-th training (0: round 0) at its 10th step (epoch 2)."""

    def __init__(self, round):
        self.round, self.trainings = round, 0

    def on_train_start(self, state):
        self.trainings += 1

    def on_step_end(self, state):
        if self.trainings == self.round + 1 and state.step == 10:
            raise KeyboardInterrupt


def _copy_what_the_campaign_commits(crashed, clone):
    """A fresh clone of the campaign's commit has the small files and the resume files."""
    for f in crashed.rglob("*"):
        if f.is_file() and (f.suffix in SMALL or f in resume_files(crashed)):
            (clone / f.relative_to(crashed)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, clone / f.relative_to(crashed))


def _rewind_entry(checkpoint):
    return next(s for name, s in read_checkpoint(checkpoint)["callbacks"] if name == "RewindPoint")


@pytest.mark.parametrize("crash_round", [0, 1])
def test_imp_resume(tmp_path, crash_round):
    from interspace_pruning import data

    ds = data.get("digits", train_subset=256, test_subset=64)
    cfg = IMP
    cfg.train = TrainConfig(epochs=2, batch_size=32, seed=1)
    run(cfg, tmp_path / "straight", dataset=ds, progress=False)
    crashed, clone = tmp_path / "crashed", tmp_path / "clone"
    with pytest.raises(KeyboardInterrupt):
        run(cfg, crashed, dataset=ds, progress=False, callbacks=[CrashInRound(crash_round)])
    assert (crashed / f"round_{crash_round}" / "checkpoint.pt").is_file()
    assert (crashed / "round_0" / "summary.json").is_file() == (crash_round > 0)
    if crash_round == 0:  # past the rewind step (4): the state is in its own file, once
        ckpt = crashed / "round_0" / "checkpoint.pt"
        assert _rewind_entry(ckpt) == {"state": None, "file": "rewind.pt"}
        assert resume_files(crashed) == [ckpt, crashed / "rewind.pt"]
    _copy_what_the_campaign_commits(crashed, clone)
    steps = {}
    for out in (crashed, clone):
        counter = CountSteps()
        run(cfg, out, dataset=ds, progress=False, resume=True, callbacks=[counter])
        steps[out] = counter.steps
        for r in range(3):
            a = out / f"round_{r}"
            b = tmp_path / "straight" / f"round_{r}"
            assert _metrics(a / "metrics.jsonl") == _metrics(b / "metrics.jsonl"), (out, r)
        _same_models(out, tmp_path / "straight")
    assert steps[clone] == steps[crashed] < 3 * 2 * 8  # continued where it stopped


def test_an_imp_checkpoint_that_carries_its_rewind_state_still_resumes(tmp_path):
    """Checkpoints written before the rewind state had its own file carry it inline: such a
    run resumes to the same end, and its rewind state is then written to the file."""
    from interspace_pruning import data
    from interspace_pruning.foundations.checkpoint import save_tensors

    ds = data.get("digits", train_subset=256, test_subset=64)
    cfg = IMP
    cfg.train = TrainConfig(epochs=2, batch_size=32, seed=1)
    run(cfg, tmp_path / "straight", dataset=ds, progress=False)
    out = tmp_path / "old"
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out, dataset=ds, progress=False, callbacks=[CrashInRound(0)])
    ckpt = read_checkpoint(out / "round_0" / "checkpoint.pt")
    inline = {"state": load_tensors(out / "rewind.pt")["state"]}
    ckpt["callbacks"] = [[n, inline if n == "RewindPoint" else s] for n, s in ckpt["callbacks"]]
    save_tensors(out / "round_0" / "checkpoint.pt", ckpt)
    (out / "rewind.pt").unlink()
    run(cfg, out, dataset=ds, progress=False, resume=True)
    for r in range(3):
        a, b = out / f"round_{r}", tmp_path / "straight" / f"round_{r}"
        assert _metrics(a / "metrics.jsonl") == _metrics(b / "metrics.jsonl"), r
    _same_models(out, tmp_path / "straight")
    assert (out / "rewind.pt").is_file()


def test_a_rewind_state_of_another_run_is_refused_and_an_older_file_still_resumes(tmp_path):
    """``rewind.pt`` names its run: one copied in from another seed's folder was rewound to
    silently (round 1 of seed 1 from seed 0's weights, reported as seed 1's result); now it
    is refused in one line. A file written before it named its run (the bare state dict, as
    the committed campaign runs have) resumes as before, and a state of another model is one
    line too."""
    from interspace_pruning import data
    from interspace_pruning.foundations.checkpoint import save_tensors
    from interspace_pruning.foundations.io import CorruptFileError

    ds = data.get("digits", train_subset=256, test_subset=64)
    folders = {}
    for seed in (0, 1):
        cfg = IMP
        cfg.train = TrainConfig(epochs=2, batch_size=32, seed=seed)
        folders[seed] = out = tmp_path / f"seed{seed}"
        with pytest.raises(KeyboardInterrupt):
            run(cfg, out, dataset=ds, progress=False, callbacks=[CrashInRound(1)])
    own = (folders[1] / "rewind.pt").read_bytes()
    shutil.copyfile(folders[0] / "rewind.pt", folders[1] / "rewind.pt")
    with pytest.raises(CorruptFileError, match=r"rewind.pt was written by run \w+, not by this"):
        run(cfg, folders[1], dataset=ds, progress=False, resume=True)
    (folders[1] / "rewind.pt").write_bytes(own)
    state = load_tensors(folders[1] / "rewind.pt")["state"]
    save_tensors(folders[1] / "rewind.pt", {"x": torch.zeros(1)})
    with pytest.raises(ValueError, match="the rewind state is not this model's"):
        run(cfg, folders[1], dataset=ds, progress=False, resume=True)
    save_tensors(folders[1] / "rewind.pt", state)  # the older format: no identity to check
    assert run(cfg, folders[1], dataset=ds, progress=False, resume=True).summary["round"] == 2


def test_sigkill_then_resume_from_the_command_line(tmp_path):
    """A real process killed with SIGKILL mid-run, resumed with `interspace train --resume`."""
    args = [
        "train",
        "--train-subset",
        "600",
        "--test-subset",
        "100",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--method",
        "synflow",
        "--rounds",
        "5",
        "--quiet",
        "--threads",
        "1",
    ]
    code = "import sys; from interspace_pruning.cli import main; sys.exit(main(sys.argv[1:]))"
    straight = subprocess.run(
        [sys.executable, "-c", code, *args, "--out", str(tmp_path / "a")], capture_output=True
    )
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen([sys.executable, "-c", code, *args, "--out", str(tmp_path / "b")])
    ckpt = tmp_path / "b" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "summary.json").exists(), "killed too late"
    resumed = subprocess.run(
        [sys.executable, "-c", code, *args, "--out", str(tmp_path / "b"), "--resume"],
        capture_output=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert _metrics(tmp_path / "a" / "metrics.jsonl") == _metrics(tmp_path / "b" / "metrics.jsonl")
    _same_models(tmp_path / "a", tmp_path / "b")


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    from interspace_pruning import data

    ds = data.get("digits", train_subset=256, test_subset=64)
    cfg = RunConfig(prune=PruneConfig(method="random", sparsity=0.5))
    cfg.train = TrainConfig(epochs=2, batch_size=32)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path, dataset=ds, progress=False, callbacks=[Crash(10)])
    other = RunConfig(prune=PruneConfig(method="rigl", sparsity=0.5))
    other.train = cfg.train
    with pytest.raises(ValueError, match="another configuration"):
        run(other, tmp_path, dataset=ds, progress=False, resume=True)


class SignalAtLastEvaluation(Callback):
    """Sends SIGTERM to this process after the last step check: during the last evaluation."""

    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, state, metrics):
        if state.epoch + 1 == self.epochs:
            os.kill(os.getpid(), signal.SIGTERM)


class Stopped(Exception):
    pass


def test_a_signal_during_the_last_evaluation_is_passed_on_not_lost(tmp_path):
    """A stop request that comes too late to stop training is delivered to the handler that
    was there before (e.g. a sweep's, which then stops between runs); the run resumes from
    its final checkpoint to the same result."""
    from interspace_pruning import data

    def raise_stopped(signum, frame):
        raise Stopped(signum)

    ds = data.get("digits", train_subset=256, test_subset=64)
    cfg = CASES["ip-snip"]
    cfg.train = TrainConfig(epochs=2, batch_size=32, seed=1)
    run(cfg, tmp_path / "straight", dataset=ds, progress=False)
    old = signal.signal(signal.SIGTERM, raise_stopped)
    try:
        with pytest.raises(Stopped):
            run(
                cfg,
                tmp_path / "b",
                dataset=ds,
                progress=False,
                callbacks=[SignalAtLastEvaluation(2)],
            )
    finally:
        signal.signal(signal.SIGTERM, old)
    assert read_checkpoint(tmp_path / "b" / "checkpoint.pt")["position"]["epoch"] == 2
    assert not (tmp_path / "b" / "summary.json").exists()
    run(cfg, tmp_path / "b", dataset=ds, progress=False, resume=True)
    assert _metrics(tmp_path / "b" / "metrics.jsonl") == _metrics(
        tmp_path / "straight" / "metrics.jsonl"
    )
    _same_models(tmp_path / "b", tmp_path / "straight")


def test_a_received_imp_folder_cannot_exhaust_memory(tmp_path):
    """Every round finished but not the run: its last round's metrics.jsonl, linked to
    /dev/zero, is read bounded (it was read whole) and refused in one line."""
    from interspace_pruning import data

    ds = data.get("digits", train_subset=256, test_subset=32)
    cfg = IMP
    cfg.train = TrainConfig(epochs=1, batch_size=32, seed=1)  # 8 steps: past the rewind step
    out = tmp_path / "imp"
    run(cfg, out, dataset=ds, progress=False)
    (out / "summary.json").unlink()
    (out / "round_2" / "metrics.jsonl").unlink()
    (out / "round_2" / "metrics.jsonl").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="metrics.jsonl is not a regular file") as e:
        run(cfg, out, dataset=ds, progress=False, resume=True)
    assert "\n" not in str(e.value)


def test_a_run_is_never_continued_or_read_back_on_other_data(tmp_path):
    """A folder is named by its configuration, and a dataset passed to run(dataset=...) is
    not part of it: a run begun on 256 images must not be continued, nor its result returned
    as already finished, for other data (the config's own, or another subset)."""
    from interspace_pruning import data
    from interspace_pruning.experiments.stretches import read_stretches

    small = data.get("digits", train_subset=256, test_subset=64)
    other = data.get("digits", train_subset=128, test_subset=64)
    cfg = CASES["ip-snip"]
    cfg.train = TrainConfig(epochs=2, batch_size=32, seed=1)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out, dataset=small, progress=False, callbacks=[Crash(10)])
    before = (out / "stretches.json").read_text()
    with pytest.raises(ValueError, match="trained on other data") as e:
        run(cfg, out, dataset=other, progress=False, resume=True)
    assert "\n" not in str(e.value) and "overwrite" in str(e.value)
    assert (out / "stretches.json").read_text() == before  # refused before anything is written
    with pytest.raises(ValueError, match="a dataset passed to run"):
        run(cfg, out, progress=False, resume=True)  # the configuration's data: all of digits
    run(cfg, out, dataset=small, progress=False, resume=True)  # the same data: it continues
    stretches = read_stretches(out)
    assert [s["data_sha256"] for s in stretches] == [small.fingerprint()] * 2
    assert all(s["data_given"] for s in stretches)

    for again in (None, other):  # a finished run's result is not handed out for other data
        with pytest.raises(ValueError, match="trained on other data"):
            run(cfg, out, dataset=again, progress=False, resume=True)
    result = run(cfg, out, dataset=small, progress=False, resume=True)
    assert result.already_finished
    fresh = run(cfg, out, dataset=other, progress=False, overwrite=True)  # the way out it names
    assert not fresh.already_finished and fresh.summary["data_sha256"] == other.fingerprint()
