"""Training throughput (images/s) of dense, SP and IP under each precision, layout and
compile option, on the device it finds (or ``--device``), with the IP/SP ratio.

    python benchmarks/train_throughput.py --model resnet20 --batch-size 128
    python benchmarks/train_throughput.py --precisions fp32,bf16,fp16 --layouts off,on --compile

Each step is what ``interspace train`` does: forward and loss under autocast, backward
(through a GradScaler for fp16), SGD update. All settings are timed in interleaved blocks
(machine noise hits all alike) and the median step time is reported. On CUDA every timed
step ends with a synchronisation. Random data on the device; 90% random sparsity.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _models import pruned_model

from interspace_pruning.training import device as dev


class Setting:
    """One model trained under one (precision, layout, compile) option."""

    def __init__(self, args, rep: str, precision: str, layout: bool, compiled: bool, device):
        self.key = (rep, precision, layout, compiled)
        self.device = device
        self.precision = precision
        model = pruned_model(args.model, rep, args.sparsity).to(device).train()
        dev.set_channels_last(model, layout)
        self.model = model
        self.net = torch.compile(model) if compiled else model
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.scaler = dev.grad_scaler(device, precision)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g)
        self.x = x.to(device, memory_format=torch.channels_last if layout else None)
        self.y = torch.randint(0, 10, (args.batch_size,), generator=g).to(device)

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
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--device", default="auto")
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32,bf16,fp16")
    p.add_argument("--layouts", default="off,on", help="channels_last off/on, comma-separated")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    p.add_argument("--blocks", type=int, default=5, help="interleaved timing blocks")
    p.add_argument("--steps", type=int, default=3, help="timed steps per block")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = dev.resolve_device(args.device)
    dev.configure_backends(device)
    reps = ["dense", "sp", "ip"]
    precisions = [s for s in args.precisions.split(",") if s]
    layouts = [{"off": False, "on": True}[s] for s in args.layouts.split(",") if s]
    compiles = [False, True] if args.compile else [False]
    settings = [
        Setting(args, r, pr, lay, c, device)
        for pr in precisions
        for lay in layouts
        for c in compiles
        for r in reps
    ]
    for s in settings:
        s.steps(args.warmup)
    times: dict[tuple, list[float]] = {s.key: [] for s in settings}
    for _ in range(args.blocks):
        for s in settings:
            times[s.key] += s.steps(args.steps)
    ips = {k: args.batch_size / statistics.median(v) for k, v in times.items()}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else dev.cpu_model()
    print(
        f"{args.model}, batch {args.batch_size}, {where} ({device}), "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"median of {args.blocks * args.steps} steps each, {args.sparsity:.0%} random sparsity"
    )
    print("| precision | channels_last | compile | dense img/s | SP img/s | IP img/s | IP/SP |")
    print("|---|---|---|---|---|---|---|")
    for pr in precisions:
        for lay in layouts:
            for c in compiles:
                d, sp, ip = (ips[(r, pr, lay, c)] for r in reps)
                print(
                    f"| {pr} | {'on' if lay else 'off'} | {'on' if c else 'off'} | "
                    f"{d:.0f} | {sp:.0f} | {ip:.0f} | {sp / ip:.3f} |"
                )


if __name__ == "__main__":
    main()
