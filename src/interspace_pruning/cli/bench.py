"""``interspace bench``: time an exported or trained model on this CPU."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..foundations.io import atomic_write_json
from .trust import add_trust_arguments, trust_from

EXAMPLES = """examples:
  interspace bench runs/fmnist-ip                      # a run directory (model.pt + config.json)
  interspace bench model.isp --batch 1 32 --threads 2  # a file from ip.export_sparse
  interspace bench runs/fmnist-ip --memory --json runs/fmnist-ip/latency.json
"""


def add_parser(sub, formatter_class) -> None:
    """The ``bench`` subcommand's arguments."""
    from ..inference.bench import ENGINES

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
    b.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="batch sizes")
    b.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    b.add_argument("--repeats", type=int, default=30, help="timed passes per engine and batch size")
    b.add_argument(
        "--engines", nargs="+", default=list(ENGINES), choices=ENGINES, help="engines to time"
    )
    b.add_argument(
        "--input-size", type=int, default=None, help="image height = width (default: dataset's)"
    )
    b.add_argument(
        "--memory", action="store_true", help="peak RSS per engine (a fresh process each)"
    )
    b.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or the thread's CPU time on a busy shared machine (--threads 1)",
    )
    b.add_argument("--json", type=Path, default=None, help="write the results here too")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    add_trust_arguments(b, model_flag=True)


def run(ns: argparse.Namespace) -> dict:
    """Bench ``ns.source`` at each batch size; print the tables, write ``--json``."""
    from ..inference.bench import bench
    from .sources import add_memory, load_source

    trust = trust_from(ns)
    model, shape = load_source(ns.source, ns.input_size, trust)
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
    out = {"source": str(ns.source), "results": results}
    if ns.json is not None:
        atomic_write_json(ns.json, out)
        print(f"written to {ns.json}")
    return out
