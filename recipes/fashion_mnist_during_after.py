"""Fashion-MNIST, pruning during and after training: IP vs SP.

The protocol of recipes/fashion_mnist_pai.yaml (convnet width 32, a fixed class-balanced
subset of 10,000 training images, the full test set, 3 epochs of SGD with lr 0.05,
momentum 0.9, weight decay 5e-4, cosine schedule, batch 64), at 90/95/98% sparsity, seeds
0 and 1, SP and IP (per-layer trainable DCT bases unless said otherwise):

- imp:     lottery tickets, 3 pruning rounds on geometric levels, rewind to init, global
           magnitude; every round trains the full 3 epochs (4 trainings per run).
- gmp:     gradual magnitude pruning from 0% at 10% of training to the target at 75%,
           every 50 steps, global magnitude.
- rigl:    RigL, ERK allocation, update every 50 steps (the short protocol has 468 steps;
           the default 100 would give only 3 updates), drop fraction 0.3, cosine, stop at 75%.
- set:     SET, as rigl with random regrowth.
- trained: a dense model trained with the protocol (3 epochs), pruned once by magnitude
           (IP: basis initialised by PCA of the trained filters), fine-tuned 2 epochs at lr 0.01.

    python recipes/fashion_mnist_during_after.py --out runs/fmnist-during-after [--threads 2]

Runs are stored by configuration hash under --out; rerunning skips finished ones. The
Markdown table goes to stdout and to docs/results/fashion_mnist_during_after.md.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from interspace_pruning import Representation
from interspace_pruning.experiments import DataConfig, ModelConfig, PruneConfig, RunConfig
from interspace_pruning.experiments.grid import expand, run_dir, run_grid
from interspace_pruning.foundations.io import atomic_write_text
from interspace_pruning.report import ip_vs_sp_table
from interspace_pruning.training import TrainConfig

BASE = RunConfig(
    data=DataConfig(dataset="fashion-mnist", train_subset=10_000),
    train=TrainConfig(epochs=3, batch_size=64, lr=0.05, weight_decay=5e-4, schedule="cosine"),
    # gmp every 50 steps, as in the runs of docs/results/fashion_mnist_during_after.md
    options={
        "imp": {"rounds": 3, "rewind_step": 0},
        "dst": {"interval": 50},
        "gmp": {"interval": 50},
    },
)
SPARSITIES = [0.9, 0.95, 0.98]
SEEDS = [0, 1]
DURING = {
    "prune.method": ["gmp", "rigl", "set", "imp"],
    "prune.sparsity": SPARSITIES,
    "train.seed": SEEDS,
    "prune.representation": ["sp", "ip"],
}


def trained_model_configs(root: Path) -> tuple[list, list[RunConfig]]:
    """Dense pre-training per seed (run here), then one-shot magnitude pruning + fine-tuning.

    Returns the pre-training results (the dense reference) and the fine-tuning configs.
    """
    pretrain = expand(BASE, {"train.seed": SEEDS, "prune.representation": ["dense"]})
    dense_results = list(run_grid(pretrain, root))
    out = []
    for dense in pretrain:
        for sparsity in SPARSITIES:
            for rep in ("sp", "ip"):
                out.append(
                    dataclasses.replace(
                        BASE,
                        model=ModelConfig(init_from=str(run_dir(root, dense))),
                        prune=PruneConfig(
                            representation=Representation(rep, basis="pca"),
                            method="magnitude",
                            sparsity=sparsity,
                        ),
                        train=dataclasses.replace(
                            BASE.train, seed=dense.train.seed, epochs=2, lr=0.01
                        ),
                    )
                )
    return dense_results, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/fmnist-during-after"))
    p.add_argument("--table", type=Path, default=Path("docs/results/fashion_mnist_during_after.md"))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--reverse", action="store_true", help="train in reverse order (a second worker)"
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sections = []
    dense, finetune = trained_model_configs(args.out)
    trained = dense + list(run_grid(finetune, args.out))
    order = expand(BASE, DURING)
    during = list(run_grid(order[::-1] if args.reverse else order, args.out))
    for method in DURING["prune.method"]:
        rows = [(c, s) for c, s in during if c.prune.method == method]
        sections.append(f"### {method}\n\n{ip_vs_sp_table(rows)}")
    sections.append(
        "### trained (prune a trained dense model by magnitude, fine-tune)\n\n"
        + ip_vs_sp_table(trained).replace("| magnitude |", "| trained + magnitude |")
    )
    text = "\n\n".join(sections)
    print(text)
    atomic_write_text(args.table, text + "\n")


if __name__ == "__main__":
    main()
