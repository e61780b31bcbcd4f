"""Model builders the library has never seen, used through ``--model module:callable``.

They stand in for torchvision / timm builders (which CI cannot install beside the CPU
torch): a plain function, a class, a timm-style ``create(model_name, **kwargs)`` factory,
and some wrong things to check the one-line errors.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyResNet(nn.Module):
    """A small residual CNN with its own layout (names, a strided 5x5 stem, grouped conv)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, stride=1, padding=2, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.branch = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, groups=2, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.branch(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def build(num_classes: int, in_channels: int = 3, width: int = 8, bias: bool = False) -> nn.Module:
    """A plain builder function with typed options."""
    model = TinyResNet(num_classes, in_channels, width)
    if bias:
        model.head.bias.data.fill_(0.5)
    return model


def create(model_name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """timm-style factory: first argument the architecture, channels as ``in_chans``."""
    if pretrained:
        raise ValueError("no weights here")
    widths = {"tiny": 4, "small": 8}
    if model_name not in widths:
        raise ValueError(f"unknown model_name {model_name!r}")
    in_chans = kwargs.pop("in_chans", 3)
    return TinyResNet(in_channels=in_chans, width=widths[model_name], **kwargs)


class Nets:
    """Builders reachable by a dotted attribute path (``user_builder:Nets.small``)."""

    @staticmethod
    def small(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return TinyResNet(num_classes, in_channels, 6)


def not_a_model(num_classes: int = 10) -> int:
    return num_classes


NOT_CALLABLE = 3
