"""The pruned models every benchmark measures: the same seed, init and masks for SP and IP."""

from __future__ import annotations

import torch
from torch import nn

import interspace_pruning as ip


def pruned_model(name: str, representation: str, sparsity: float, seed: int = 0) -> nn.Module:
    """``name`` from the zoo (10 classes, RGB), IP-converted if asked, randomly pruned
    (global) unless ``representation == "dense"``."""
    torch.manual_seed(seed)
    model = ip.models.get(name, num_classes=10, in_channels=3)
    if representation == "ip":
        ip.to_interspace(model)
    if representation != "dense":
        ip.prune(model, "random", sparsity)
    return model
