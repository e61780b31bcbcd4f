"""Fuzz worker: compares sparse inference with the model on random layer/input shapes.

Run as ``python -m tests.faults.fuzz_worker SEED FIRST COUNT``; prints ``CASE i`` before each
case (so a parent sees which case killed it) and ``OK i`` or ``FAIL i <reason>`` after it.
"""

from __future__ import annotations

import random
import sys

import torch
from torch import nn

import interspace_pruning as ip


def case(seed: int, i: int) -> dict:
    """The i-th random case of ``seed`` (independent of the other cases)."""
    r = random.Random(seed * 1_000_003 + i)
    groups = r.choice([1, 1, 1, 2, 3, 4])
    in_ch = groups * r.randint(1, 3)
    out_ch = groups * r.randint(1, 3)
    k = (r.choice([1, 2, 3, 5]), r.choice([1, 3]))
    if k == (1, 1):
        k = (3, 3)  # a 1x1 layer has no interspace form
    stride = (r.randint(1, 3), r.randint(1, 3))
    dilation = (r.randint(1, 2), r.randint(1, 2))
    padding = (r.randint(0, 2), r.randint(0, 2))
    batch = r.choice([1, 2, 3, r.randint(1, 300)])
    h, w = r.randint(1, 70), r.randint(1, 70)
    while batch * h * w > 200_000:  # bounded time per case
        batch = max(1, batch // 2)
    channels = in_ch if r.random() < 0.75 else r.choice([c for c in range(1, 9) if c != in_ch])
    return {
        "groups": groups,
        "in_ch": in_ch,
        "out_ch": out_ch,
        "kernel": k,
        "stride": stride,
        "dilation": dilation,
        "padding": padding,
        "input": (batch, channels, h, w),
        "representation": r.choice(["sp", "ip"]),
        "sparsity": r.choice([0.3, 0.7, 0.9]),
        "seed": r.randrange(2**31),
    }


def run_case(c: dict) -> str | None:
    """None if the engine agrees with the model (same outputs, or both refuse the input)."""
    torch.manual_seed(c["seed"])
    conv = nn.Conv2d(
        c["in_ch"],
        c["out_ch"],
        c["kernel"],
        stride=c["stride"],
        padding=c["padding"],
        dilation=c["dilation"],
        groups=c["groups"],
    )
    model = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(c["out_ch"], 2, 1)).eval()
    if c["representation"] == "ip":
        ip.to_interspace(model)
    ip.prune(model, "random", c["sparsity"], allocation="uniform")
    engine = ip.sparse_inference(model, mode="sparse")
    x = torch.randn(*c["input"])
    try:
        with torch.no_grad():
            expected = model(x)
    except RuntimeError:
        expected = None
    try:
        with torch.no_grad():
            got = engine(x)
    except RuntimeError as e:
        if expected is not None:
            return f"engine refused input the model accepts: {e}"
        if "\n" in str(e).strip():
            return f"error is not one line: {e!r}"
        return None
    if expected is None:
        return "engine accepted input the model refuses"
    if got.shape != expected.shape:
        return f"shape {tuple(got.shape)} != {tuple(expected.shape)}"
    tol = 1e-4 * max(1.0, float(expected.abs().max()))
    if not torch.allclose(got, expected, rtol=1e-4, atol=tol) or not torch.isfinite(got).all():
        return f"max difference {float((got - expected).abs().max()):.3g}"
    return None


def main(argv: list[str]) -> int:
    seed, first, count = (int(a) for a in argv)
    torch.set_num_threads(2)
    for i in range(first, first + count):
        print(f"CASE {i}", flush=True)
        problem = run_case(case(seed, i))
        print(f"OK {i}" if problem is None else f"FAIL {i} {problem}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
