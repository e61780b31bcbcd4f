"""Timing forward passes fairly: engines take turns in short blocks.

Turns cancel drifts of the machine's speed (other jobs, clock frequency), which hit every
engine alike. Each block starts after a short sleep and one untimed call, so that one
engine's idle threads do not slow the next one: ONNX Runtime's worker threads spin for a
while after a call, and on a 2-core machine the engine timed right after ONNX Runtime ran up
to 2x slower without the pause (measured; see docs/results/inference_speed.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def interleaved_times(
    fns: dict[str, Callable[[torch.Tensor], object]],
    x: torch.Tensor,
    repeats: int,
    progress: bool = False,
    desc: str = "bench",
    block: int = 5,
    settle: float = 0.05,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per forward pass of each engine: ``repeats`` timed calls each, without grad.

    The engines take turns in blocks of ``block`` timed calls, each block after a sleep of
    ``settle`` seconds and one untimed call. Returns the wall-clock times, and the calling
    thread's CPU times.
    """
    from tqdm.auto import tqdm

    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    repeats, block = max(repeats, 1), max(block, 1)
    with torch.no_grad():
        for fn in fns.values():
            fn(x)  # first call: allocations, caches, lazy initialisation
        bar = tqdm(total=repeats, desc=desc, disable=not progress, leave=False)
        done = 0
        while done < repeats:
            n = min(block, repeats - done)
            for k, fn in fns.items():
                time.sleep(settle)  # lets the previous engine's spinning threads go idle
                fn(x)  # absorbs what the previous engine left running
                for _ in range(n):
                    c0, t0 = time.thread_time(), time.perf_counter()
                    fn(x)
                    times[k].append(time.perf_counter() - t0)
                    cpu[k].append(time.thread_time() - c0)
            done += n
            bar.update(n)
        bar.close()
    return times, cpu


def interleaved_medians(
    fns: dict[str, Callable[[torch.Tensor], object]],
    x: torch.Tensor,
    repeats: int,
    settle: float = 0.05,
) -> dict[str, float]:
    """Median wall seconds per forward pass of each engine (see :func:`interleaved_times`)."""
    wall, _ = interleaved_times(fns, x, repeats, settle=settle)
    return {k: statistics.median(v) for k, v in wall.items()}
