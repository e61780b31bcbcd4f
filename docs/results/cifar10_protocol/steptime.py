"""ms per training step of ResNet-20 on CIFAR-10 (dense, SP 98%, IP 98%), interleaved.

    python docs/results/cifar10_protocol/steptime.py --root data --threads 2 --batch-size 128

Each model trains on the same batch in turn (forward, backward, SGD step), so that load from
other processes hits all of them alike; the first round is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import time

import torch

from interspace_pruning import data
from interspace_pruning.experiments import DataConfig, ModelConfig, PruneConfig, RunConfig
from interspace_pruning.experiments.run import prepare_run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", default="data")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ds = data.get("cifar10", args.root, train_subset=2560, test_subset=1000)
    models = {}
    for rep, sparsity in (("dense", 0.0), ("sp", 0.98), ("ip", 0.98)):
        cfg = RunConfig(
            data=DataConfig(dataset="cifar10"),
            model=ModelConfig(model="resnet20"),
            prune=PruneConfig(representation=rep, method="random", sparsity=sparsity),
        )
        model, _ = prepare_run(cfg, ds)
        models[rep] = (model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    x, y = next(iter(ds.train_batches(args.batch_size, torch.Generator().manual_seed(0))))
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.rounds + 1):
        for rep, (model, opt) in models.items():
            t = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times[rep].append(time.perf_counter() - t)
    for rep, ts in times.items():
        ts = sorted(ts[1:])
        print(
            f"{rep:5s} batch {args.batch_size} threads {args.threads}: "
            f"min {1000 * ts[0]:.0f} ms/step, median {1000 * ts[len(ts) // 2]:.0f} ms/step"
        )


if __name__ == "__main__":
    main()
