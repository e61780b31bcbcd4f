"""Where IP's extra training time goes: the weight product ``W = (Lambda * M) F``.

    python benchmarks/ip_weight_product.py --model resnet18 --image-size 128 --batch-size 64
    python benchmarks/ip_weight_product.py --steps-only --product plain --steps 8

An IP layer forms its spatial weight from the coefficients in every forward pass:
``(filters, n) @ (n, kh*kw)`` with n = kh*kw = 9, and two more products in the backward
pass (the gradients of ``Lambda`` and of ``F``). The library computes it with rows taken
in pairs against ``block_diag(F, F)`` (``interspace.parametrization._basis_product``); this
script times that against the plain product:

1. per layer shape of the model: forward + backward of the product alone, plain against
   paired (median of interleaved repeats);
2. the whole training step (forward, loss, backward, SGD; bf16 autocast and channels_last as
   the campaign trains) of SP, and of IP with each product, interleaved in blocks.

``--steps-only --product plain|paired`` times just the IP step with one product, for a
whole-process comparison of two invocations. The CPU model heads the output: never
compare timings across machines. Random data, 95% random sparsity, ``--threads`` torch
threads (1: a campaign worker).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _models import pruned_model

from interspace_pruning.interspace import parametrization
from interspace_pruning.training import device as dev

PRODUCTS = {
    "paired": parametrization._basis_product,
    "plain": parametrization._matmul_no_autocast,
}


def ms_of(fn) -> float:
    """Milliseconds of one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def median_ms(fn, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls after one untimed warm-up call."""
    fn()
    return statistics.median(ms_of(fn) for _ in range(repeats))


def layer_shapes(model: torch.nn.Module) -> list[tuple[int, int]]:
    """Distinct (out, in) channel pairs of the model's IP layers, in order."""
    shapes = []
    for module in model.modules():
        p = getattr(module, "parametrizations", None)
        if p is not None and "weight" in p and p["weight"][0].kind == "ip":
            out_c, in_c, _ = p["weight"][0].mask.shape
            if (out_c, in_c) not in shapes:
                shapes.append((out_c, in_c))
    return shapes


def _product_step(product, coeffs: torch.Tensor, basis: torch.Tensor, grad: torch.Tensor):
    """Forward and backward of one weight product, as a call without arguments."""

    def run() -> None:
        coeffs.grad = basis.grad = None
        product(coeffs, basis).backward(grad)

    return run


def time_products(shapes: list[tuple[int, int]], repeats: int) -> None:
    print("\n| layer (out x in) | plain ms | paired ms | plain / paired |")
    print("|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for out_c, in_c in shapes:
        coeffs = torch.randn(out_c, in_c, 9, generator=g).requires_grad_()
        basis = torch.randn(9, 9, generator=g).requires_grad_()
        grad = torch.randn(out_c, in_c, 9, generator=g)
        ms = {name: [] for name in PRODUCTS}
        for _ in range(3):  # interleaved blocks: machine noise hits both alike
            for name, product in PRODUCTS.items():
                run = _product_step(product, coeffs, basis, grad)
                ms[name].append(median_ms(run, repeats))
        plain, paired = statistics.median(ms["plain"]), statistics.median(ms["paired"])
        print(f"| {out_c} x {in_c} | {plain:.3f} | {paired:.3f} | {plain / paired:.2f} |")


class Step:
    """One training step of a pruned model (bf16 autocast, channels_last, SGD)."""

    def __init__(self, args, rep: str) -> None:
        self.model = pruned_model(args.model, rep, args.sparsity).train()
        dev.set_channels_last(self.model, True)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        g = torch.Generator().manual_seed(0)
        size = args.image_size
        x = torch.randn(args.batch_size, 3, size, size, generator=g)
        self.x = x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 10, (args.batch_size,), generator=g)

    def __call__(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()


def use_product(name: str) -> None:
    parametrization._basis_product = PRODUCTS[name]


def time_steps(args) -> None:
    sp, ip = Step(args, "sp"), Step(args, "ip")
    settings = [
        ("SP", sp, "paired"),
        ("IP, plain product", ip, "plain"),
        ("IP, paired product", ip, "paired"),
    ]
    ms = {label: [] for label, _, _ in settings}
    for _ in range(args.blocks):
        for label, step, product in settings:
            use_product(product)
            step()  # the first step after a switch is not counted
            ms[label] += [ms_of(step) for _ in range(args.steps)]
    use_product("paired")
    sp_ms = statistics.median(ms["SP"])
    print("\n| training step | median ms | / SP |")
    print("|---|---|---|")
    for label in ms:
        step_ms = statistics.median(ms[label])
        print(f"| {label} | {step_ms:.1f} | {step_ms / sp_ms:.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sparsity", type=float, default=0.95)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20, help="product timings per block")
    p.add_argument("--blocks", type=int, default=4, help="interleaved blocks of steps")
    p.add_argument("--steps", type=int, default=3, help="steps per block (or in all)")
    p.add_argument("--steps-only", action="store_true", help="time the IP step only")
    p.add_argument("--product", choices=sorted(PRODUCTS), default="paired")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.steps_only:
        use_product(args.product)
        step = Step(args, "ip")
        step()
        ms = [ms_of(step) for _ in range(args.steps)]
        print(f"IP step, {args.product} product: median {statistics.median(ms):.1f} ms")
        return
    print(
        f"{dev.cpu_model()}; torch {torch.__version__}; {args.threads} thread(s); {args.model}"
        f" at {args.image_size} px, batch {args.batch_size}, {args.sparsity:.0%} random sparsity"
    )
    time_products(layer_shapes(pruned_model(args.model, "ip", args.sparsity)), args.repeats)
    time_steps(args)


if __name__ == "__main__":
    main()
