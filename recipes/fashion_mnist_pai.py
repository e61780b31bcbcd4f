"""Fashion-MNIST, pruning at initialisation: IP vs SP on a ~1 hour CPU budget.

Protocol: convnet (width 32, ~65k prunable weights), a fixed class-balanced subset of 10,000
training images, the full 10,000-image test set, 3 epochs of SGD (lr 0.05, momentum 0.9,
weight decay 5e-4, cosine schedule, batch 64), global allocation, per-layer DCT bases
(trainable) for IP; methods random, magnitude, snip, grasp, synflow (100 rounds) at
90/95/98/99% sparsity, seeds 0 and 1, plus the dense reference. SP and IP of one seed
start from the same initial weights and see the same data order.

    python recipes/fashion_mnist_pai.py --out runs/fmnist-pai [--threads 2]

Runs are stored by configuration hash under --out; rerunning skips finished ones.
The Markdown table goes to stdout and to docs/results/fashion_mnist_pai.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from interspace_pruning.experiments import DataConfig, RunConfig
from interspace_pruning.experiments.grid import expand, run_grid
from interspace_pruning.experiments.tables import ip_vs_sp_table
from interspace_pruning.foundations.io import atomic_write_text
from interspace_pruning.training import TrainConfig

BASE = RunConfig(
    data=DataConfig(dataset="fashion-mnist", train_subset=10_000),
    train=TrainConfig(epochs=3, batch_size=64, lr=0.05, weight_decay=5e-4, schedule="cosine"),
)
GRID = {
    "train.seed": [0, 1],
    "prune.method": ["random", "magnitude", "snip", "grasp", "synflow"],
    "prune.sparsity": [0.9, 0.95, 0.98, 0.99],
    "prune.representation": ["sp", "ip", "dense"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/fmnist-pai"))
    p.add_argument("--table", type=Path, default=Path("docs/results/fashion_mnist_pai.md"))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = list(run_grid(expand(BASE, GRID), args.out))
    table = ip_vs_sp_table(results)
    print(table)
    atomic_write_text(args.table, table + "\n")


if __name__ == "__main__":
    main()
