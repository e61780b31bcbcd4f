"""Timing forward passes: engines take turns, so a drift of the machine's speed (other jobs,
clock frequency) hits all of them alike."""

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
    warmup: int = 2,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per forward pass of each engine over ``repeats`` rounds, engines taking turns
    (after ``warmup`` passes each, without grad): wall-clock times, and the calling thread's
    CPU times."""
    from tqdm.auto import tqdm

    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    with torch.no_grad():
        for fn in fns.values():
            for _ in range(warmup):
                fn(x)
        for _ in tqdm(range(max(repeats, 1)), desc=desc, disable=not progress, leave=False):
            for k, fn in fns.items():
                c0, t0 = time.thread_time(), time.perf_counter()
                fn(x)
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(time.thread_time() - c0)
    return times, cpu


def interleaved_medians(
    fns: dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor, repeats: int
) -> dict[str, float]:
    """Median wall seconds per forward pass of each engine (see :func:`interleaved_times`)."""
    wall, _ = interleaved_times(fns, x, repeats, warmup=1)
    return {k: statistics.median(v) for k, v in wall.items()}
