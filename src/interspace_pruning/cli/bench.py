"""``interspace bench``: time an exported or trained model on this CPU."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..foundations.io import atomic_write_json
from .trust import add_trust_arguments, trust_from

EXAMPLES = """examples:
  interspace bench runs/fmnist-ip                      # a run directory (model.pt + config.json)
  interspace bench model.isp --batch 1 32 --threads 2  # a file from ip.export_sparse
  interspace bench runs/fmnist-ip --memory --json runs/fmnist-ip/latency.json
"""


def _count(low: int, high: int, what: str):
    """An argparse type: a whole number from ``low`` to ``high``; the error names the
    range (argparse puts the flag before it)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {what}, a whole number from {low} to {high}, got {text[:40]!r}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low} to {high}, got {value}")
        return value

    return parse


def add_parser(sub, formatter_class) -> None:
    """The ``bench`` subcommand's arguments."""
    from ..inference.bench import ENGINES, MAX_BATCH, MAX_INPUT_SIZE, MAX_REPEATS, MAX_THREADS

    b = sub.add_parser(
        "bench",
        help="time a model on this CPU: torch dense, sparse engine, ONNX Runtime",
        description="Time a trained run or an exported sparse file on this CPU with torch "
        "(the folded dense model, BatchNorm fused), the sparse engine (auto mode: each layer "
        "on its faster path) and ONNX Runtime (the folded dense model), taking turns, on the "
        "same number of threads. Prints the median time of each per batch size.",
        epilog=EXAMPLES,
        formatter_class=formatter_class,
    )
    b.add_argument("source", type=Path, help="a run directory or a sparse file (.isp)")
    b.add_argument(
        "--batch",
        type=_count(1, MAX_BATCH, "a batch size"),
        nargs="+",
        default=[1, 32],
        help=f"batch sizes, 1 to {MAX_BATCH} and what memory allows (default: 1 32)",
    )
    b.add_argument(
        "--threads",
        type=_count(1, MAX_THREADS, "a thread count"),
        default=None,
        help=f"CPU threads, 1 to {MAX_THREADS} (default: torch's)",
    )
    b.add_argument(
        "--repeats",
        type=_count(1, MAX_REPEATS, "a count"),
        default=30,
        help=f"timed passes per engine and batch size, 1 to {MAX_REPEATS} (default: 30)",
    )
    b.add_argument(
        "--engines",
        nargs="+",
        default=list(ENGINES),
        choices=ENGINES,
        help=f"engines to time (default: {' '.join(ENGINES)})",
    )
    b.add_argument(
        "--input-size",
        type=_count(1, MAX_INPUT_SIZE, "an image size"),
        default=None,
        help=f"image height = width, from what the model's pooling needs to {MAX_INPUT_SIZE} "
        "and what memory allows (default: the dataset's for a run folder; for a sparse file, "
        "which does not record it, 28 with one input channel, else 32)",
    )
    b.add_argument(
        "--memory", action="store_true", help="peak RSS per engine (a fresh process each)"
    )
    b.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or the thread's CPU time on a busy shared machine (--threads 1) "
        "(default: wall)",
    )
    b.add_argument(
        "--json", type=Path, default=None, help="write the results here too (default: none)"
    )
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    add_trust_arguments(b, model_flag=True)


def _fits(model, shape: tuple[int, ...]) -> bool:
    from ..inference.bench import probe_input

    return not probe_input(model, shape)[1]


def check_inputs(
    model, shape: tuple[int, ...], own_size: int, input_size: int | None, batches: list[int]
) -> None:
    """One line naming the flag and what it may be, before anything is allocated: an
    ``--input-size`` the model cannot take (too small to pool: the smallest it takes is
    found on the meta device), or a ``--batch``/``--input-size`` whose estimated memory is
    more than this machine has available."""
    from ..inference.bench import MAX_INPUT_SIZE, available_memory, batch_bytes, gib, probe_input

    largest, problem = probe_input(model, shape)
    if problem:
        if input_size is None:
            raise ValueError(f"the model cannot take its data's input size {own_size}: {problem}")
        if input_size < own_size and _fits(model, (shape[0], own_size, own_size)):
            low, high = input_size, own_size  # low fails, high fits: the smallest that fits
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (low, mid) if _fits(model, (shape[0], mid, mid)) else (mid, high)
            raise ValueError(
                f"--input-size {input_size} is too small for this model ({problem}); "
                f"valid: {high} to {MAX_INPUT_SIZE}"
            )
        raise ValueError(
            f"--input-size {input_size} does not fit this model ({problem}); "
            f"its data's size is {own_size}"
        )
    free = available_memory()
    if free is None:
        return
    text = "x".join(map(str, shape))
    one = batch_bytes(model, shape, 1, largest)
    if one > free:
        flag = f"--input-size {input_size}" if input_size is not None else "an input"
        most = int(shape[-1] * (free / one) ** 0.5)
        raise ValueError(
            f"{flag} ({text}) needs about {gib(one)} for a single image, more than the "
            f"{gib(free)} this machine has available; valid --input-size here: at most "
            f"about {most}"
        )
    for batch in batches:
        need = batch_bytes(model, shape, batch, largest)
        if need > free:
            per = max(one - batch_bytes(model, shape, 0, largest), 1)
            most = max(1, (free - batch_bytes(model, shape, 0, largest)) // per)
            raise ValueError(
                f"--batch {batch} needs about {gib(need)} at input {text}, more than the "
                f"{gib(free)} this machine has available; valid --batch here: 1 to {most}"
            )


def run(ns: argparse.Namespace) -> dict:
    """Bench ``ns.source`` at each batch size; print the tables, write ``--json``."""
    from ..inference.bench import bench
    from .sources import add_memory, load_source, run_folder, run_identity

    trust = trust_from(ns)
    model, shape = load_source(ns.source, None, trust)
    own_size = shape[-1]
    if ns.input_size is not None:
        shape = (shape[0], ns.input_size, ns.input_size)
    check_inputs(model, shape, own_size, ns.input_size, ns.batch)
    if ns.input_size is None and run_folder(Path(ns.source)) is None:
        print(
            f"note: {ns.source} does not record its input size: timing "
            f"{'x'.join(map(str, shape))}; pass --input-size to time the size it takes",
            file=sys.stderr,
        )
    threads = ns.threads or torch.get_num_threads()
    results = []
    for batch in ns.batch:
        r = bench(
            model,
            shape,
            batch=batch,
            threads=threads,
            repeats=ns.repeats,
            engines=tuple(ns.engines),
            progress=not ns.quiet,
            clock=ns.clock,
        )
        if ns.memory:
            add_memory(r, ns.source, ns.input_size, trust)
        print(r.markdown() + "\n", flush=True)
        results.append(r.to_dict())
    # whose timings these are: a report leaves out a file copied into another run's folder
    out = {"source": str(ns.source), **run_identity(ns.source), "results": results}
    if ns.json is not None:
        atomic_write_json(ns.json, out)
        print(f"written to {ns.json}")
    return out
