"""Two processes on CPU (gloo): masks and parameters identical on every rank, and equal to
a single process with the same global batch."""

import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from .ddp_worker import train_and_dump, worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("representation,method", [("ip", "rigl"), ("sp", "snip"), ("ip", "gmp")])
def test_two_ranks_agree_with_each_other_and_a_single_process(representation, method, tmp_path):
    mp.spawn(worker, args=(2, _free_port(), str(tmp_path), representation, method), nprocs=2)
    train_and_dump(representation, method, str(tmp_path / "single.pt"))
    r0, r1, single = (
        torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("rank0", "rank1", "single")
    )
    assert len(r0["masks"]) == len(r1["masks"]) == len(single["masks"]) == 17  # start + 16 steps
    for step, (a, b, c) in enumerate(zip(r0["masks"], r1["masks"], single["masks"], strict=True)):
        for ma, mb, mc in zip(a, b, c, strict=True):
            assert torch.equal(ma, mb), f"ranks disagree on masks after step {step}"
            assert torch.equal(ma, mc), f"DDP and single process disagree after step {step}"
    if method in ("rigl", "gmp"):  # the masks did change during training
        first, last = r0["masks"][0], r0["masks"][-1]
        assert any(not torch.equal(x, y) for x, y in zip(first, last, strict=True))
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), f"ranks disagree on {k}"
        assert torch.allclose(v, single["state"][k], atol=1e-5, rtol=1e-4), k
    for h0, hs in zip(r0["history"], single["history"], strict=True):
        assert h0["train_loss"] == pytest.approx(hs["train_loss"], rel=1e-5)


def test_torchrun_launches_the_cli(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "interspace_pruning",
        "train",
        "--train-subset",
        "256",
        "--test-subset",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--method",
        "rigl",
        "--sparsity",
        "0.9",
        "--dst-interval",
        "2",
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("ip: test acc") == 1  # only rank 0 reports
    assert (tmp_path / "run" / "summary.json").is_file()
    bad = subprocess.run(
        [*cmd[:-2], "--batch-size", "33", "--out", str(tmp_path / "odd")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "must be divisible by the 2 processes" in bad.stderr
