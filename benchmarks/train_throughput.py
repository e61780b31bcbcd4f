"""Training throughput (images/s) of dense, SP and IP under each precision, layout and
compile option, on the device it finds (or ``--device``), with the IP/SP ratio.

    python benchmarks/train_throughput.py --model resnet20 --batch-size 128
    python benchmarks/train_throughput.py --precisions fp32,bf16,fp16 --layouts off,on --compile
    python benchmarks/train_throughput.py --batch-sizes 128,256 --compile --compile-layouts on

The CPU's model name (as ``lscpu`` gives it) heads the output: timings from different
machines are never compared.

Each step is what ``interspace train`` does: forward and loss under autocast, backward
(through a GradScaler for fp16), SGD update. All settings are timed in interleaved blocks
(machine noise hits all alike) and the median step time is reported. On CUDA every timed
step ends with a synchronisation. Random data on the device; 90% random sparsity.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F
from _models import pruned_model

from interspace_pruning.training import device as dev


class Setting:
    """One model trained under one (precision, layout, compile) option."""

    def __init__(
        self, args, rep: str, precision: str, layout: bool, compiled: bool, batch_size: int, device
    ):
        self.key = (rep, precision, layout, compiled, batch_size)
        self.device = device
        self.precision = precision
        model = pruned_model(args.model, rep, args.sparsity).to(device).train()
        dev.set_channels_last(model, layout)
        self.model = model
        self.net = torch.compile(model) if compiled else model
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.scaler = dev.grad_scaler(device, precision)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch_size, 3, args.image_size, args.image_size, generator=g)
        self.x = x.to(device, memory_format=torch.channels_last if layout else None)
        self.y = torch.randint(0, 10, (batch_size,), generator=g).to(device)
        self.batch_size = batch_size

    def steps(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.opt.zero_grad(set_to_none=True)
            with dev.autocast(self.device, self.precision):
                loss = F.cross_entropy(self.net(self.x), self.y)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            times.append(time.perf_counter() - t0)
        return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batch-sizes", default=None, help="comma-separated, e.g. 128,256")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--device", default="auto")
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32,bf16,fp16")
    p.add_argument("--layouts", default="off,on", help="channels_last off/on, comma-separated")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    p.add_argument(
        "--compile-layouts", default=None, help="with --compile: only at these layouts (on/off)"
    )
    p.add_argument("--blocks", type=int, default=5, help="interleaved timing blocks")
    p.add_argument("--steps", type=int, default=3, help="timed steps per block")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compile:  # every model compiles the same forward: each is a recompile, not a hit
        import torch._dynamo as dynamo

        for name in ("recompile_limit", "cache_size_limit"):  # its name before torch 2.7
            if hasattr(dynamo.config, name):
                setattr(dynamo.config, name, 256)
    device = dev.resolve_device(args.device)
    dev.configure_backends(device)
    reps = ["dense", "sp", "ip"]
    precisions = [s for s in args.precisions.split(",") if s]
    layouts = [{"off": False, "on": True}[s] for s in args.layouts.split(",") if s]
    compiles = [False, True] if args.compile else [False]
    compiled_at = {
        {"off": False, "on": True}[s] for s in (args.compile_layouts or args.layouts).split(",")
    }
    batches = [int(b) for b in (args.batch_sizes or str(args.batch_size)).split(",") if b]
    combos = [
        (pr, lay, c, b)
        for b in batches
        for pr in precisions
        for lay in layouts
        for c in compiles
        if not c or lay in compiled_at
    ]
    settings = [Setting(args, r, pr, lay, c, b, device) for pr, lay, c, b in combos for r in reps]
    for s in settings:
        s.steps(args.warmup)
    times: dict[tuple, list[float]] = {s.key: [] for s in settings}
    for _ in range(args.blocks):
        for s in settings:
            times[s.key] += s.steps(args.steps)
    ips = {k: k[-1] / statistics.median(v) for k, v in times.items()}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else lscpu_model()
    print(
        f"{args.model}, {where} ({dev.machine_kind(device)}, {device}), "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"median of {args.blocks * args.steps} steps each, {args.sparsity:.0%} random sparsity"
    )
    print(
        "| batch | precision | channels_last | compile | dense img/s | SP img/s | IP img/s "
        "| IP/SP step time |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for pr, lay, c, b in combos:
        d, sp, ip = (ips[(r, pr, lay, c, b)] for r in reps)
        print(
            f"| {b} | {pr} | {'on' if lay else 'off'} | {'on' if c else 'off'} | "
            f"{d:.0f} | {sp:.0f} | {ip:.0f} | {sp / ip:.3f} |"
        )


def lscpu_model() -> str:
    """``lscpu``'s model name (the CPU every timing is recorded beside)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return dev.cpu_model()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return dev.cpu_model()


if __name__ == "__main__":
    main()
