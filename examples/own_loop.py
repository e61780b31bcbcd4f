"""Interspace pruning inside your own training loop.

A plain PyTorch loop with its own DataLoader and a model the library has never seen: the
model is prepared in the interspace representation (IP), RigL keeps it at 90% sparsity
while it trains, and at the end it is folded to a plain ``torch.nn`` model and exported
to the compact sparse file. Run it with::

    python examples/own_loop.py --epochs 5

Nothing here is specific to the library except the lines marked ``# <-``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import interspace_pruning as ip


class MyNet(nn.Module):
    """Your own CNN: any mix of Conv2d (any stride/dilation/groups) and Linear layers."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1, groups=2),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def loaders(batch_size: int) -> tuple[DataLoader, DataLoader]:
    """scikit-learn's 8x8 digits as tensors: stands in for your own dataset."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=g)
    train, test = order[:1400], order[1400:]
    return (
        DataLoader(TensorDataset(x[train], y[train]), batch_size, shuffle=True, generator=g),
        DataLoader(TensorDataset(x[test], y[test]), 256),
    )


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)
    model.train()
    return correct / len(loader.dataset)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=None, help="folder for the sparse file")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    train_loader, test_loader = loaders(batch_size=64)

    model = ip.prepare(MyNet(), "ip")  # <- conv filters become filter-basis coefficients
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    total_steps = args.epochs * len(train_loader)
    pruner = ip.pruner(  # <- random 90% mask now, RigL drop-and-grow while training
        "rigl", model, optimizer, sparsity=args.sparsity, total_steps=total_steps
    )
    for epoch in range(args.epochs):
        for x, y in train_loader:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            pruner.step()  # <- once per step, right after optimizer.step()
        print(f"epoch {epoch + 1}: test accuracy {accuracy(model, test_loader):.2%}")

    report = ip.sparsity_report(model)  # <- a pure query
    print(report)
    plain = ip.fold(model).eval()  # <- plain torch.nn model: save, script or export it
    x = next(iter(test_loader))[0]
    with torch.no_grad():
        same = torch.allclose(plain(x), model.eval()(x), atol=1e-5)
    out = args.out or Path(tempfile.mkdtemp())
    size = ip.export_sparse(model, out / "mynet.isp")  # <- compact sparse file
    loaded = ip.load_sparse(out / "mynet.isp", model=MyNet()).eval()
    with torch.no_grad():
        reloaded = torch.allclose(loaded(x), plain(x), atol=1e-5)
    print(
        f"sparsity {report.sparsity:.2%}, {len(pruner.events)} mask updates; folded model "
        f"{'matches' if same else 'DIFFERS'}; sparse file {size} bytes, reloaded "
        f"{'matches' if reloaded else 'DIFFERS'}"
    )
    return {
        "sparsity": report.sparsity,
        "updates": len(pruner.events),
        "accuracy": accuracy(plain, test_loader),
        "folded_matches": same,
        "reloaded_matches": reloaded,
        "bytes": size,
    }


if __name__ == "__main__":
    main()
