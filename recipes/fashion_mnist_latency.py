"""Fashion-MNIST, accuracy vs CPU latency: IP vs SP vs dense (torch and ONNX Runtime).

The protocol of recipes/fashion_mnist_pai.yaml (convnet width 32, a fixed class-balanced
subset of 10,000 training images, the full test set, 3 epochs of SGD, lr 0.05, momentum 0.9,
weight decay 5e-4, cosine, batch 64), SNIP with global allocation for SP and IP (per-layer
trainable DCT bases), plus dense. Then every finished run is timed on this CPU with
``interspace bench`` (torch dense, the sparse engine in auto mode, ONNX Runtime; batch 1 and
32; same thread count; engines taking turns, medians) into its ``latency.json``, and the
accuracy-vs-latency plot and the matched-accuracy statement are built:

    python recipes/fashion_mnist_latency.py --stage train --shard 0/2 &   # two workers
    python recipes/fashion_mnist_latency.py --stage train --shard 1/2
    python recipes/fashion_mnist_latency.py --stage bench --threads 2
    python recipes/fashion_mnist_latency.py --stage report

(``--stage all`` does the three in turn.) Runs are stored by configuration hash under --out;
finished runs are not trained again, and runs with a ``latency.json`` are not timed again
(--rebench redoes them). The small files of each run (config, summary, metrics, latency)
are copied to --docs beside the plot, the table and the statement.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from interspace_pruning.cli.sources import add_memory, load_source, run_identity
from interspace_pruning.experiments import DataConfig, RunConfig
from interspace_pruning.experiments.grid import expand, run_grid
from interspace_pruning.foundations.io import atomic_write_json, atomic_write_text
from interspace_pruning.inference.bench import bench
from interspace_pruning.report.collect import collect_runs
from interspace_pruning.report.pareto import LATENCY_FILE, write_pareto
from interspace_pruning.training import TrainConfig

BASE = RunConfig(
    data=DataConfig(dataset="fashion-mnist", train_subset=10_000),
    train=TrainConfig(epochs=3, batch_size=64, lr=0.05, weight_decay=5e-4, schedule="cosine"),
)
SPARSITIES = [0.9, 0.95, 0.98, 0.99, 0.8]
SMALL_FILES = ("config.json", "summary.json", "metrics.jsonl", LATENCY_FILE)


def configs(seeds: list[int], sparsities: list[float]) -> list[RunConfig]:
    """Seed by seed: dense, then SP and IP per sparsity (in the order given)."""
    out = []
    for seed in seeds:
        out += expand(BASE, {"train.seed": [seed], "prune.representation": ["dense"]})
        for s in sparsities:
            out += expand(
                BASE,
                {
                    "train.seed": [seed],
                    "prune.method": ["snip"],
                    "prune.sparsity": [s],
                    "prune.representation": ["sp", "ip"],
                },
            )
    return out


def train(args: argparse.Namespace) -> None:
    index, count = (int(v) for v in args.shard.split("/"))
    todo = configs(args.seeds, args.sparsities)[index::count]
    for _ in run_grid(todo, args.out):
        pass


def time_runs(args: argparse.Namespace) -> None:
    """``interspace bench --json`` for every finished run: latency.json in its folder."""
    records, _ = collect_runs(args.out)
    if records:  # the first timings of a process run slow (measured: torch dense 27 vs 17 ms)
        model, shape = load_source(records[0].path)
        bench(model, shape, max(args.batches), args.threads, 10, clock=args.clock)
    for r in records:
        path = r.path / LATENCY_FILE
        if path.is_file() and not args.rebench:
            continue
        model, shape = load_source(r.path)
        results = []
        for b in args.batches:
            res = bench(model, shape, b, args.threads, args.repeats, clock=args.clock)
            if args.memory:
                add_memory(res, r.path)
            results.append(res.to_dict())
            e = res.engines
            print(
                f"{r.path.name} {r.config.prune.representation.kind} {r.summary['sparsity']:.0%} "
                f"batch {b}: "
                + ", ".join(f"{k} {v.median_ms:.2f} ms" for k, v in e.items() if v.median_ms),
                flush=True,
            )
        # whose timings these are: the report refuses a latency.json of another run
        atomic_write_json(path, {"source": str(r.path), **run_identity(r.path), "results": results})


def report(args: argparse.Namespace) -> None:
    args.docs.mkdir(parents=True, exist_ok=True)
    records, _ = collect_runs(args.out)
    runs = args.docs / "run_data"  # not "runs/": that name is gitignored
    for r in records:
        for name in SMALL_FILES:
            if (r.path / name).is_file():
                (runs / r.path.name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(r.path / name, runs / r.path.name / name)
    text = write_pareto(records, args.docs, batch=args.plot_batch)
    seeds = " ".join(map(str, args.seeds))
    sparsities = " ".join(f"{v:g}" for v in args.sparsities)
    header = (
        "# Fashion-MNIST / convnet: accuracy vs CPU latency\n\n"
        f"Made by `python recipes/fashion_mnist_latency.py --seeds {seeds} --sparsities "
        f"{sparsities} --threads {args.threads} --clock {args.clock}` (stages train, bench, "
        f"report); {len(records)} finished runs. Each run's config, summary, metrics and "
        "latency.json are in `run_data/`.\n\n"
    )
    atomic_write_text(args.docs / "README.md", header + text + "\n")
    print(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stage", choices=["train", "bench", "report", "all"], default="all")
    p.add_argument("--out", type=Path, default=Path("runs/fmnist-latency"))
    p.add_argument("--docs", type=Path, default=Path("docs/results/accuracy_latency"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--sparsities", type=float, nargs="+", default=SPARSITIES)
    p.add_argument("--shard", default="0/1", help="train every n-th run from the i-th: i/n")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (training and timing)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--plot-batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--memory", action="store_true", help="also peak RSS per engine")
    p.add_argument("--rebench", action="store_true", help="time runs again")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.stage in ("train", "all"):
        train(args)
    if args.stage in ("bench", "all"):
        time_runs(args)
    if args.stage in ("report", "all"):
        report(args)


if __name__ == "__main__":
    main()
