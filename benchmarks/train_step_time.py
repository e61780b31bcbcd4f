"""Train-step time of IP vs SP (and the unpruned dense model) on the CPU.

The paper claims IP trains at the same cost as SP: the only extra work per step is
``W = (Lambda * M) F`` per layer, a (C_out*C_in, K^2) x (K^2, K^2) product, and its backward.

    python benchmarks/train_step_time.py --model resnet20 --batch-size 128

Each step is forward + backward + SGD update on random data. The representations are
timed in interleaved blocks (so machine noise hits all alike) and the median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _models import pruned_model


def step_times(model, opt, x, y, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--blocks", type=int, default=8, help="interleaved timing blocks")
    p.add_argument("--steps", type=int, default=5, help="timed steps per block")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    kinds = ["dense", "sp", "ip"]
    models = {k: pruned_model(args.model, k, args.sparsity).train() for k in kinds}
    opts = {
        k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        for k, m in models.items()
    }
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g)
    y = torch.randint(0, 10, (args.batch_size,), generator=g)
    for k in kinds:  # warm-up
        step_times(models[k], opts[k], x, y, 2)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.blocks):
        for k in kinds:
            times[k] += step_times(models[k], opts[k], x, y, args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{args.model}, batch {args.batch_size}, {args.threads} threads, "
        f"torch {torch.__version__}, {args.blocks * args.steps} steps each"
    )
    for k in kinds:
        print(f"  {k:>5}: median {med[k] * 1e3:8.1f} ms/step")
    print(f"  IP/SP train-step time ratio: {med['ip'] / med['sp']:.3f}")
    print(f"  SP/dense ratio (mask overhead): {med['sp'] / med['dense']:.3f}")


if __name__ == "__main__":
    main()
