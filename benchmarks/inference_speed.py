"""Forward wall time: dense vs SP-sparse vs IP-sparse inference, with FLOP bounds.

    python benchmarks/inference_speed.py [--models resnet20 vgg16] [--batches 1 32]

For each model, sparsity (random global pruning) and batch size: the dense model
(``sparse_inference(mode="dense")``: folded, BatchNorm fused into the convolutions) and
``sparse_inference(mode="sparse")`` of the SP- and IP-pruned models (every pruned layer on
its sparse path, BatchNorm fused too). The three run in turn, one forward pass each per
round, so that drifts in machine speed hit all three alike; each time is the median over
--repeats rounds, on --threads CPU threads. Beside each speed-up: its FLOP bound, dense
FLOPs / sparse FLOPs (``costs``).

--per-layer adds, per model, a breakdown at the first sparsity and the largest batch: each
pruned layer timed alone on the input it gets, and the rest of the network (pooling,
activations, additions), which no sparsity speeds up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _models import pruned_model

import interspace_pruning as ip


def interleaved_medians(engines: dict, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds per forward pass of each engine, the engines taking turns."""
    times: dict[str, list[float]] = {k: [] for k in engines}
    with torch.no_grad():
        for m in engines.values():
            m(x)  # warm-up
        for _ in range(repeats):
            for k, m in engines.items():
                t0 = time.perf_counter()
                m(x)
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _layer_inputs(engine: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    modules = dict(engine.named_modules())
    handles = [
        modules[n].register_forward_pre_hook(lambda m, i, n=n: seen.setdefault(n, i[0]))
        for n in engine.plan
    ]
    with torch.no_grad():
        engine(x)
    for h in handles:
        h.remove()
    return seen


def per_layer(engines: dict, x: torch.Tensor, repeats: int) -> None:
    """Per pruned layer: median ms of each engine's module on the input it gets."""
    inputs = {k: _layer_inputs(m, x) for k, m in engines.items()}
    totals = interleaved_medians(engines, x, repeats)
    print(f"\n| layer | input | {' | '.join(f'{k} ms' for k in engines)} |")
    print("|---|---|" + "---|" * len(engines))
    sums = dict.fromkeys(engines, 0.0)
    for name in engines["dense"].plan:
        layers = {k: m.get_submodule(name) for k, m in engines.items()}
        t = {k: interleaved_medians({k: layers[k]}, inputs[k][name], repeats)[k] for k in layers}
        for k in sums:
            sums[k] += t[k]
        shape = "x".join(map(str, inputs["dense"][name].shape))
        print(f"| {name} | {shape} | " + " | ".join(f"{t[k] * 1e3:.2f}" for k in engines) + " |")
    print("| all pruned layers | | " + " | ".join(f"{sums[k] * 1e3:.1f}" for k in engines) + " |")
    rest = {k: totals[k] - sums[k] for k in engines}
    print("| rest of the network | | " + " | ".join(f"{rest[k] * 1e3:.1f}" for k in engines) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet20", "vgg16"])
    p.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.95, 0.98, 0.99])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mode", default="sparse", choices=["sparse", "auto"])
    p.add_argument("--per-layer", action="store_true", help="add a per-layer breakdown")
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
            engines["dense"] = ip.sparse_inference(model, mode="dense")  # one dense baseline
            for b in args.batches:
                t = interleaved_medians(engines, torch.randn(b, 3, 32, 32), args.repeats)
                print(
                    f"| {name} | {s:.0%} | {b} | {t['dense'] * 1e3:.1f} | {t['sp'] * 1e3:.1f} | "
                    f"{t['ip'] * 1e3:.1f} | {t['dense'] / t['sp']:.2f}x ({bounds['sp']:.1f}x) | "
                    f"{t['dense'] / t['ip']:.2f}x ({bounds['ip']:.1f}x) | "
                    f"{t['ip'] / t['sp']:.2f} |",
                    flush=True,
                )
            if args.per_layer and s == args.sparsities[0]:
                x = torch.randn(max(args.batches), 3, 32, 32)
                print(f"\n{name}, {s:.0%} sparsity, batch {x.shape[0]}:")
                per_layer({k: engines[k] for k in ("dense", "sp", "ip")}, x, args.repeats)
                print()


if __name__ == "__main__":
    main()
