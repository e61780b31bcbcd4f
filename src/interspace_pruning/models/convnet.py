"""A small CNN for 8x8 (digits) up to 28x28 (MNIST-like) inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class ConvNet(nn.Module):
    """Two stages of two 3x3 conv-BN-ReLU blocks (``width`` and ``2*width`` channels).

    Stage 1 runs at the input resolution, a 2x2 max-pool halves it for stage 2, and a
    global average pool with one linear layer makes the classifier, so any input of 2x2
    or more works (8x8 digits, 28x28 MNIST, 32x32 CIFAR).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stage1 = nn.Sequential(_conv_bn(in_channels, w), _conv_bn(w, w))
        self.stage2 = nn.Sequential(_conv_bn(w, 2 * w), _conv_bn(2 * w, 2 * w))
        self.fc = nn.Linear(2 * w, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage1(x)
        x = F.max_pool2d(x, 2)
        x = self.stage2(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)
