"""Shared fixtures: small models covering every conv flavour the library must handle."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import interspace_pruning as ip


def pytest_configure(config):
    """Under pytest-xdist (``make test``: one worker per core), each worker and the processes
    it starts use one torch thread: two workers of two threads each on two cores make every
    parallel region wait for a thread the scheduler gave to the other worker."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.cuda`` tests skip without a CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


class MixedNet(nn.Module):
    """Strided, dilated, grouped, depthwise, non-square and 1x1 convs, BN and Linear."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dilated = nn.Conv2d(8, 8, 3, padding=2, dilation=2, bias=False)
        self.grouped = nn.Conv2d(8, 12, 3, padding=1, groups=4)
        self.depthwise = nn.Conv2d(12, 12, 5, padding=2, groups=12, bias=False)
        self.nonsquare = nn.Conv2d(12, 6, (1, 3), padding=(0, 1))
        self.tall = nn.Conv2d(6, 6, (3, 2), stride=(1, 2), padding=(1, 0))
        self.pointwise = nn.Conv2d(6, 10, 1)
        self.fc = nn.Linear(10, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(self.dilated(x))
        x = torch.relu(self.grouped(x))
        x = torch.relu(self.depthwise(x))
        x = torch.relu(self.nonsquare(x))
        x = torch.relu(self.tall(x))
        x = self.pointwise(x).mean(dim=(2, 3))
        return self.fc(x)


@pytest.fixture
def mixed_net() -> MixedNet:
    torch.manual_seed(0)
    return MixedNet().eval()


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 16, 16, generator=g)


def random_batches(n: int, shape: tuple[int, ...], classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, *shape, generator=g), torch.randint(0, classes, (8,), generator=g))
        for _ in range(n)
    ]


def prune_randomly(
    model: nn.Module, representation: str, sparsity: float, seed: int = 0
) -> nn.Module:
    """``model`` in eval mode, pruned at random (IP: perturbed bases), with non-trivial
    BatchNorm statistics: the inference tests' subject."""
    torch.manual_seed(seed)
    model = model.eval()
    if representation == "ip":
        ip.to_interspace(model)
        with torch.no_grad():
            for fb in ip.filter_bases(model):
                fb.weight.add_(0.1 * torch.randn_like(fb.weight))
    ip.prune(model, "random", sparsity, allocation="uniform")
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return model
