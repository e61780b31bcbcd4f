"""Optimiser and learning-rate schedule from a :class:`TrainConfig`."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..foundations.optim_state import reset_state_entries  # noqa: F401 (re-exported)
from ..interspace import basis_parameters
from .config import TrainConfig


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Two groups: everything else, and the filter bases (own weight decay and lr multiplier)."""
    fb_ids = {id(p) for p in basis_parameters(model)}
    fb = [p for p in basis_parameters(model) if p.requires_grad]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in fb_ids]
    groups = [{"params": rest, "weight_decay": cfg.weight_decay, "lr_mult": 1.0}]
    if fb:
        groups.append(
            {"params": fb, "weight_decay": cfg.basis_weight_decay, "lr_mult": cfg.basis_lr_mult}
        )
    for g in groups:
        g["lr"] = cfg.lr * g["lr_mult"]
    return groups


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factor(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based) of ``total_steps``.

    With ``warmup_epochs > 0`` the factor rises linearly to 1 over the warm-up steps, and
    the schedule then runs over the remaining steps as it would over a whole run.
    """
    if cfg.warmup_epochs > 0:
        warm = cfg.warmup_epochs / cfg.epochs * total_steps
        if step < warm:
            return (step + 1) / (warm + 1)  # never 0, so the first step already moves
        step, total_steps = step - warm, total_steps - warm
    t = step / max(total_steps, 1)
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg.schedule == "step":
        return cfg.step_gamma ** sum(t >= m for m in cfg.milestones())
    if cfg.schedule == "onecycle":  # linear warm-up over 30%, then cosine down to 0
        warm = 0.3
        if t < warm:
            return 0.04 + 0.96 * t / warm
        return 0.5 * (1.0 + math.cos(math.pi * (t - warm) / (1 - warm)))
    return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule (groups keep their lr multipliers)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, total_steps)
    )
