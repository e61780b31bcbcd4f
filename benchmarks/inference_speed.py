"""Forward wall time: dense vs SP-sparse vs IP-sparse inference, with FLOP bounds.

    python benchmarks/inference_speed.py [--models resnet20 vgg16] [--batches 1 32]

For each model, sparsity (random global pruning) and batch size: the folded dense model,
and ``sparse_inference(mode="sparse")`` of the SP- and IP-pruned models (every pruned layer
on its sparse path), timed interleaved, median of --repeats forward passes on --threads CPU
threads. Beside each speed-up: its FLOP bound, dense FLOPs / sparse FLOPs (``costs``).
"""

from __future__ import annotations

import argparse

import torch
from _models import pruned_model

import interspace_pruning as ip
from interspace_pruning.inference.engine import median_time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet20", "vgg16"])
    p.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.95, 0.98, 0.99])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mode", default="sparse", choices=["sparse", "auto"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}")
    print(
        "| model | sparsity | batch | dense ms | SP ms | IP ms | SP speed-up (FLOP bound) "
        "| IP speed-up (FLOP bound) | IP / SP time |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        for s in args.sparsities:
            engines, bounds = {}, {}
            for rep in ("sp", "ip"):
                model = pruned_model(name, rep, s).eval()
                c = ip.costs(model, (3, 32, 32))
                bounds[rep] = c.dense_flops / c.sparse_flops
                example = torch.randn(max(args.batches), 3, 32, 32)
                engines[rep] = ip.sparse_inference(
                    model, example=example if args.mode == "auto" else None, mode=args.mode
                )
                engines["dense"] = ip.fold(model).eval()
            for b in args.batches:
                x = torch.randn(b, 3, 32, 32)
                t = {k: median_time(m, x, args.repeats) for k, m in engines.items()}
                print(
                    f"| {name} | {s:.0%} | {b} | {t['dense'] * 1e3:.1f} | {t['sp'] * 1e3:.1f} | "
                    f"{t['ip'] * 1e3:.1f} | {t['dense'] / t['sp']:.2f}x ({bounds['sp']:.1f}x) | "
                    f"{t['dense'] / t['ip']:.2f}x ({bounds['ip']:.1f}x) | "
                    f"{t['ip'] / t['sp']:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
