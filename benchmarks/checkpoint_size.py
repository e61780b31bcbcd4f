"""Checkpoint sizes of pruned ImageNet ResNet-18 runs: compact (version 3) against plain.

    python benchmarks/checkpoint_size.py [--root data/imagewoof] [--steps 40]

Trains each configuration of the Imagewoof 64 px recipe (SNIP 98%, RigL 98%, GMP 95%; SP
and IP) for ``--steps`` optimiser steps on real Imagewoof images, stops it the way a
machine stop does (the checkpoint is written at the interrupted step), and compares the
checkpoint's bytes with the same content saved plainly (every tensor dense, as version 2
wrote it). GMP stops after its ramp, at its final sparsity. The last column says whether
the campaign can commit the checkpoint (at most ``MAX_GIT_FILE`` bytes).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import torch

from interspace_pruning import data
from interspace_pruning.callbacks import Callback
from interspace_pruning.campaign.gitsync import MAX_GIT_FILE
from interspace_pruning.experiments import PruneConfig, RunConfig, run
from interspace_pruning.experiments.config import DataConfig, ModelConfig
from interspace_pruning.training import TrainConfig
from interspace_pruning.training.checkpointing import read_checkpoint

CASES = [("snip", 0.98), ("rigl", 0.98), ("gmp", 0.95)]


class StopAt(Callback):
    """Interrupt training after ``step`` optimiser steps, as a machine stop does."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state) -> None:
        if state.step == self.step:
            raise KeyboardInterrupt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", default="data/imagewoof", help="the Imagewoof folder")
    p.add_argument("--steps", type=int, default=40, help="optimiser steps before the stop")
    p.add_argument("--image-size", type=int, default=64)
    args = p.parse_args()
    batch = 64
    ds = data.get(
        "imagewoof",
        root=args.root,
        image_size=args.image_size,
        train_subset=batch * args.steps,
        test_subset=256,
        workers=1,
    )
    print("| method | repr | plain (MB) | compact (MB) | ratio | read (s) | commits |")
    print("|---|---|---|---|---|---|---|")
    for method, sparsity in CASES:
        for rep in ("sp", "ip"):
            cfg = RunConfig(
                data=DataConfig(dataset="imagewoof", image_size=args.image_size),
                model=ModelConfig(model="resnet18"),
                prune=PruneConfig(representation=rep, method=method, sparsity=sparsity),
                # two epochs: GMP's ramp ends at 75% of them, before the stop
                train=TrainConfig(epochs=2, batch_size=batch, lr=0.05, precision="fp32"),
                options={"dst": {"interval": 10}},
            )
            with tempfile.TemporaryDirectory() as tmp:
                stop = StopAt(2 * args.steps - 2)
                with contextlib.suppress(KeyboardInterrupt):
                    run(cfg, tmp, dataset=ds, progress=False, callbacks=[stop])
                path = Path(tmp) / "checkpoint.pt"
                compact = path.stat().st_size
                start = time.perf_counter()
                content = read_checkpoint(path)
                took = time.perf_counter() - start
                buf = io.BytesIO()
                torch.save(content, buf)
                plain = len(buf.getvalue())
            print(
                f"| {method} {sparsity:.0%} | {rep.upper()} | {plain / 1e6:.1f} | "
                f"{compact / 1e6:.2f} | {plain / compact:.0f}x | {took:.2f} | "
                f"{'yes' if compact <= MAX_GIT_FILE else 'no'} |"
            )


if __name__ == "__main__":
    main()
