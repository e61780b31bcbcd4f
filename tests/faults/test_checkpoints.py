"""Checkpoints and model files: bit flips, truncation, kill -9 inside a write, full disks,
stale temp files, NaN before the first checkpoint."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time

import pytest
import torch

from interspace_pruning.experiments import PruneConfig, RunConfig, run
from interspace_pruning.experiments.runfiles import read_model
from interspace_pruning.foundations import checkpoint as ckpt_mod
from interspace_pruning.foundations import io as io_mod
from interspace_pruning.foundations.checkpoint import load_tensors, save_tensors
from interspace_pruning.training import Callback, TrainConfig, TrainingError

from ..hardening.test_failure_modes import PoisonAt
from .conftest import FAST, cli_command, env, flip_bit, one_line


def _cfg(epochs=3):
    return RunConfig(
        prune=PruneConfig(method="random", sparsity=0.5),
        train=TrainConfig(epochs=epochs, batch_size=32),
    )


class CrashAt(Callback):
    """Raises at a global step: a stand-in for a process dying mid-epoch."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, state):
        if state.step + 1 == self.step:
            raise RuntimeError("simulated crash")


def _same_models(a, b):
    sa, sb = read_model(a / "model.pt"), read_model(b / "model.pt")
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_files_carry_a_checksum_and_plain_torch_load_still_works(tmp_path):
    save_tensors(tmp_path / "a.pt", {"w": torch.arange(1000.0)})
    data = (tmp_path / "a.pt").read_bytes()
    assert ckpt_mod.verify_checksum(data) is True
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], torch.arange(1000.0))
    for where in (0.1, 0.5, 0.9):  # header, tensor data, zip directory
        p = tmp_path / f"flip{where}.pt"
        p.write_bytes(data)
        flip_bit(p, where)
        with pytest.raises(ValueError, match="is damaged") as e:
            load_tensors(p)
        assert str(p) in one_line(str(e.value))
    truncated = tmp_path / "short.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=str(truncated)):
        load_tensors(truncated)


def test_an_unreadable_file_is_explained_without_torchs_advice_to_unpickle_it(tmp_path):
    """torch's own message for a file it refuses can say "re-running torch.load with
    weights_only set to False will likely succeed": advice that would run the file's code."""
    text = tmp_path / "mist.py"
    text.write_text("print('hi')\n")
    cut = tmp_path / "cut.pt"
    save_tensors(tmp_path / "whole.pt", {"w": torch.arange(1000.0)})
    cut.write_bytes((tmp_path / "whole.pt").read_bytes()[:500])  # no checksum trailer left
    for path, reason in ((text, "not a torch archive"), (cut, "damaged or cut short")):
        with pytest.raises(ValueError, match=reason) as e:
            load_tensors(path, fix="export it again")
        message = one_line(str(e.value))
        assert str(path) in message and message.endswith("export it again")
        assert "weights_only" not in message


def test_bit_flip_in_a_checkpoint_is_named_and_the_previous_one_resumes(digits, tmp_path):
    out, ref = tmp_path / "run", tmp_path / "ref"
    steps = digits.steps_per_epoch(32)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(_cfg(), out, dataset=digits, progress=False, callbacks=[CrashAt(2 * steps + 2)])
    assert (out / "checkpoint.pt").is_file() and (out / "checkpoint.prev.pt").is_file()
    flip_bit(out / "checkpoint.pt", 0.5)
    with pytest.raises(ValueError) as e:
        run(_cfg(), out, dataset=digits, progress=False, resume=True)
    msg = one_line(str(e.value))
    assert "checkpoint.pt is damaged" in msg and "checkpoint.prev.pt" in msg
    os.replace(out / "checkpoint.prev.pt", out / "checkpoint.pt")  # what the message says
    run(_cfg(), out, dataset=digits, progress=False, resume=True)
    run(_cfg(), ref, dataset=digits, progress=False)
    assert _same_models(out, ref)  # nothing lost: bitwise the uninterrupted result
    assert not (out / "checkpoint.pt").exists() and not (out / "checkpoint.prev.pt").exists()


def test_bit_flip_in_a_model_file_is_named(digits, tmp_path):
    run(_cfg(epochs=1), tmp_path / "dense", dataset=digits, progress=False)
    model = tmp_path / "dense" / "model.pt"
    flip_bit(model, 0.6)
    from interspace_pruning.experiments import ModelConfig

    cfg = RunConfig(
        model=ModelConfig(init_from=str(tmp_path / "dense")),
        prune=PruneConfig(method="magnitude"),
        train=TrainConfig(epochs=1),
    )
    with pytest.raises(ValueError) as e:
        run(cfg, None, dataset=digits, progress=False)
    assert str(model) in one_line(str(e.value)) and "damaged" in str(e.value)


KILL_IN_WRITE = """
import os, sys, time
from pathlib import Path
real = os.replace
count = {"n": 0}
def slow_replace(src, dst):
    if str(dst).endswith("checkpoint.pt") and ".tmp" in str(src):
        count["n"] += 1
        if count["n"] == 2:  # the second checkpoint: after 'keep previous', before the rename
            Path(sys.argv[1]).write_text("in the write")
            time.sleep(600)
    return real(src, dst)
os.replace = slow_replace
from interspace_pruning.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_kill_9_inside_a_checkpoint_write_resumes_bitwise(tmp_path):
    out, ref, marker = tmp_path / "run", tmp_path / "ref", tmp_path / "marker"
    args = ["train", *FAST, "--epochs", "3", "--method", "random", "--sparsity", "0.5"]
    import sys

    p = subprocess.Popen(
        [sys.executable, "-c", KILL_IN_WRITE, str(marker), *args, "--out", str(out)], env=env()
    )
    deadline = time.time() + 240
    while not marker.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the run never reached its second checkpoint write"
    p.send_signal(signal.SIGKILL)
    p.wait()
    temps = list(out.glob(".checkpoint.pt.*.tmp"))
    assert temps and not (out / "checkpoint.pt").exists()  # killed between the renames
    assert (out / "checkpoint.prev.pt").is_file()
    r = subprocess.run(
        cli_command(*args, "--out", str(out), "--resume"), env=env(), capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert not list(out.glob(".*.tmp"))  # stale temp files removed
    from interspace_pruning.cli import main

    assert main([*args, "--out", str(ref)]) == 0  # the uninterrupted reference, in-process
    assert _same_models(out, ref)


def test_full_disk_keeps_the_last_good_checkpoint(digits, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_fsync = os.fsync
    full = {"on": False}

    def fsync(fd):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    class FillDiskAfterEpoch(Callback):
        def on_epoch_end(self, state, metrics):
            if metrics["epoch"] == 2:
                full["on"] = True

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(TrainingError) as e:
        run(_cfg(), out, dataset=digits, progress=False, callbacks=[FillDiskAfterEpoch()])
    msg = one_line(str(e.value))
    assert "no space left" in msg and "checkpoint.pt is kept" in msg and "--resume" in msg
    assert load_tensors(out / "checkpoint.pt")["position"]["epoch"] == 1  # the last good one
    assert not list(out.glob(".*.tmp"))
    full["on"] = False
    result = run(_cfg(), out, dataset=digits, progress=False, resume=True)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]  # nothing lost
    assert (out / "summary.json").is_file()


def test_full_disk_on_the_command_line_is_one_line(tmp_path, monkeypatch, capsys):
    from interspace_pruning.cli import main

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    rc = main(["train", *FAST, "--epochs", "1", "--out", str(tmp_path / "r")])
    err = one_line(capsys.readouterr().err)
    assert rc == 1 and "No space left on device" in err and "free some space" in err
    assert not list((tmp_path / "r").glob(".*.tmp"))


def test_nan_before_the_first_checkpoint_names_no_checkpoint(digits, tmp_path):
    with pytest.raises(TrainingError) as e:
        run(_cfg(), tmp_path, dataset=digits, progress=False, callbacks=[PoisonAt(2)])
    msg = one_line(str(e.value))
    assert "loss became nan" in msg and "before its first checkpoint" in msg
    assert "checkpoint.pt" not in msg and not (tmp_path / "checkpoint.pt").exists()
    assert (tmp_path / "diverged.json").is_file()


def test_stale_temp_files_are_removed_on_the_next_start(digits, tmp_path):
    steps = digits.steps_per_epoch(32)
    with pytest.raises(RuntimeError):
        run(_cfg(), tmp_path, dataset=digits, progress=False, callbacks=[CrashAt(steps + 1)])
    stale = [tmp_path / f".checkpoint.pt.k{i}.tmp" for i in range(3)]
    for p in stale:
        p.write_bytes(b"x" * 1000)
    run(_cfg(), tmp_path, dataset=digits, progress=False, resume=True)
    assert not any(p.exists() for p in stale) and (tmp_path / "summary.json").is_file()


def test_a_tensor_file_is_read_only_when_it_is_a_regular_file_that_fits(tmp_path, monkeypatch):
    """A received folder's model.pt linked to a FIFO (which would block), or a file too large
    for the memory available (a 16 GB file elsewhere), is refused in one line, unread."""
    path = tmp_path / "model.pt"
    save_tensors(path, {"w": torch.ones(1000)})
    assert torch.equal(load_tensors(path)["w"], torch.ones(1000))
    monkeypatch.setattr(io_mod, "available_memory", lambda: 2 * path.stat().st_size - 1)
    with pytest.raises(ValueError, match="more than the .* of memory available") as e:
        load_tensors(path)
    one_line(str(e.value))
    monkeypatch.undo()
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is not a regular file") as e:
        load_tensors(fifo)
    one_line(str(e.value))


def test_a_file_of_expanded_views_is_refused_before_its_tensors_are_used(tmp_path):
    """A tensor saved as ``zeros(1).expand(shape)`` stores one value and claims any count:
    an 11 KB ``model.pt`` passed the model-size check and took 2 GB where it was used. A
    file may describe about what it holds; a filter basis shared by every layer (the same
    small tensor under each layer's name) still loads."""
    import warnings

    from interspace_pruning import interspace as ip
    from interspace_pruning import models
    from interspace_pruning.foundations.io import CorruptFileError

    path = tmp_path / "model.pt"
    save_tensors(path, {"w": torch.zeros(1).expand(3000, 3000)})  # 36 MB from 1 KB
    with pytest.raises(CorruptFileError, match=r"describes 36,000,000 bytes of tensors from"):
        load_tensors(path)
    deep: object = torch.zeros(1)
    for _ in range(20):
        deep = [deep]
    save_tensors(path, {"x": deep})
    with pytest.raises(CorruptFileError, match="nesting deeper than a state dict"):
        load_tensors(path)
    model = models.get("resnet20")
    ip.prepare(model, ip.Representation(kind="ip", share="network"))
    save_tensors(path, model.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_tensors(path).keys() == model.state_dict().keys()
