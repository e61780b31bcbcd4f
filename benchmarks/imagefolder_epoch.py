"""One pass of the image-folder training loader (decode + augment + batch, no model), with
and without the decode cache, on the Imagewoof training split at 128 px.

    nice python benchmarks/imagefolder_epoch.py --root data/imagewoof
    nice python benchmarks/imagefolder_epoch.py --root data/imagewoof --rewrite-side 320

Modes, taken in turn and repeated (medians reported), each timed over whole epochs of
``train_batches`` (batch 64, the loader's DataLoader workers as ``interspace train`` runs
them):

- ``none``: every image decoded every epoch (a plain ImageFolder);
- ``cold``: the first epoch of a run with an empty cache folder: decoding the split, writing
  the cache file, then the epoch's crops;
- ``warm (memory)``: the next epoch of that run, from the decoded images in memory;
- ``warm (file)``: the first epoch of the next run, reading the cache file.

The cache files go to a temporary folder (removed at the end), never beside the data.
``--rewrite-side N`` first writes a temporary copy of the folder with every image resized
to short side N (JPEG quality 90): the decoding cost of a larger release (N=320: about the
official ``imagewoof2-320``), measured on the same images.

The CPU's model name (as ``lscpu`` gives it), its thread count and the load average head
the output: timings from different machines, or under another load, are never compared.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from interspace_pruning.data import imagefolder as imf


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def rewrite(src: Path, dest: Path, side: int) -> Path:
    """A copy of image folder ``src`` with every image resized to short side ``side``."""
    from PIL import Image

    for path in sorted(src.rglob("*")):
        if path.suffix.lower() not in imf.EXTENSIONS:
            continue
        out = dest / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = side / min(w, h)
            im.resize((round(w * s), round(h * s)), Image.BICUBIC).save(out, "JPEG", quality=90)
    return dest


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Timer:
    """Wall-clock and CPU seconds (this process and its workers) of a block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = cpu_seconds() - self.cpu


def epoch(ds: imf.FolderDataset, batch_size: int, seed: int) -> Timer:
    """One pass over the training split (every batch materialised), timed."""
    n = 0
    with Timer() as t:
        for x, _ in ds.train_batches(batch_size, torch.Generator().manual_seed(seed)):
            n += len(x)
    assert n == ds.steps_per_epoch(batch_size) * batch_size
    return t


def add(a: Timer, b: Timer) -> Timer:
    out = Timer()
    out.wall, out.cpu = a.wall + b.wall, a.cpu + b.cpu
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="data/imagewoof", help="Imagewoof (either layout)")
    p.add_argument("--dataset", default="imagewoof", help="imagewoof or imagefolder")
    p.add_argument("--size", type=int, default=128, help="crop size (default 128)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=4, help="as --workers (default 4)")
    p.add_argument("--repeats", type=int, default=3, help="times each mode is timed")
    p.add_argument("--rewrite-side", type=int, default=None, help="time a resized copy")
    args = p.parse_args()

    print(f"CPU: {cpu_model()}; {os.cpu_count()} threads; torch threads {torch.get_num_threads()}")
    print(f"load average at start (1, 5, 15 min): {load()}; niceness {os.nice(0)}")
    workers = min(args.workers, os.cpu_count() or 1)
    scratch = Path(tempfile.mkdtemp(prefix="imagefolder-epoch-"))
    try:
        root = Path(args.root)
        if args.rewrite_side:
            t0 = time.perf_counter()
            src = imf.find_root(root)
            root = rewrite(src, scratch / "data", args.rewrite_side)
            took = time.perf_counter() - t0
            print(f"rewrote {src} at short side {args.rewrite_side} in {took:.0f} s")

        def dataset(cache: str, folder: Path) -> imf.FolderDataset:
            return imf.load_image_folder(
                args.dataset, root, args.size, args.workers, cache=cache, cache_dir=folder
            )

        n = len(dataset("none", scratch).train_samples)
        print(
            f"{args.dataset}: {n} training images, crops of {args.size} px, batch "
            f"{args.batch_size}, {workers} DataLoader workers\n"
        )
        modes = (
            "none (decode every epoch)",
            "cold (decode, write the file, epoch)",
            "warm (memory)",
            "warm (file: read, epoch)",
        )
        rows: dict[str, list[Timer]] = {m: [] for m in modes}
        builds, reads = [], []
        # the modes in turn, repeated: the machine's noise hits all of them alike
        for r in range(args.repeats):
            rows[modes[0]].append(epoch(dataset("none", scratch), args.batch_size, r))
            folder = scratch / f"cache{r}"
            cold = dataset("file", folder)
            with Timer() as build:
                images = cold.decoded("train")
            rows[modes[1]].append(add(build, epoch(cold, args.batch_size, r)))
            rows[modes[2]].append(epoch(cold, args.batch_size, r + 1))
            again = dataset("file", folder)
            with Timer() as read:
                again.decoded("train")
            rows[modes[3]].append(add(read, epoch(again, args.batch_size, r)))
            builds.append(build)
            reads.append(read)
            cache_file = cold.cache_file("train")
            on_disk = cache_file.stat().st_size if cache_file and cache_file.is_file() else 0
            del cold, again
            shutil.rmtree(folder)

        print("| mode | epoch wall s | CPU s | images/s |")
        print("|---|---|---|---|")
        for name, times in rows.items():
            wall = statistics.median(t.wall for t in times)
            cpu = statistics.median(t.cpu for t in times)
            each = ", ".join(f"{t.wall:.1f}" for t in times)
            print(f"| {name} | {wall:.1f} ({each}) | {cpu:.1f} | {n / wall:.0f} |")
        build_wall = statistics.median(t.wall for t in builds)
        build_cpu = statistics.median(t.cpu for t in builds)
        read_wall = statistics.median(t.wall for t in reads)
        side = dataset("none", scratch).side
        size = images.nbytes if images is not None else 0
        print(
            f"\nmedians over {args.repeats} repeats; wall s of each repeat in brackets; CPU s "
            "of this process and its DataLoader workers\n"
            f"cold: decoding and writing {build_wall:.1f} s of it ({build_cpu:.1f} CPU s); "
            f"warm (file): reading {read_wall:.1f} s of it\n"
            f"decoded training images: {size / 1e6:.0f} MB in memory (uint8, short side "
            f"{side}), cache file {on_disk / 1e6:.0f} MB; peak RSS "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB"
        )
        print(f"load average at end (1, 5, 15 min): {load()}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
