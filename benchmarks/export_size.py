"""Size of the sparse file (export_sparse) against the dense state dict.

    python benchmarks/export_size.py [--models resnet20 vgg16]

Random global pruning at 90/95/98/99% in SP and IP (per-layer 3x3 DCT bases). Sizes are
bytes of the files as written (torch.save); the dense reference is the folded model's
state dict.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import torch
from _models import pruned_model

import interspace_pruning as ip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet20", "vgg16"])
    p.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.95, 0.98, 0.99])
    args = p.parse_args()
    print("| model | sparsity | repr | dense state dict (KB) | sparse file (KB) | ratio |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for sparsity in args.sparsities:
                for rep in ("sp", "ip"):
                    model = pruned_model(name, rep, sparsity)
                    buf = io.BytesIO()
                    torch.save(ip.fold(model).state_dict(), buf)
                    dense = len(buf.getvalue())
                    sparse = ip.export_sparse(model, Path(tmp) / "m.isp")
                    print(
                        f"| {name} | {sparsity:.0%} | {rep.upper()} | {dense / 1e3:.0f} | "
                        f"{sparse / 1e3:.0f} | {dense / sparse:.1f}x |"
                    )


if __name__ == "__main__":
    main()
