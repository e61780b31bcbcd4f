"""One run: build the model, convert and prune it, train it, write the run directory."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .. import data as data_mod
from .. import models
from ..foundations.hparams import to_dict
from ..foundations.io import atomic_write_json
from ..interspace import to_interspace
from ..masks import sparsity_report
from ..pruning import prune
from ..training import Callback, train
from .config import DataConfig, RunConfig


def load_data(cfg: DataConfig) -> data_mod.ImageDataset:
    return data_mod.get(
        cfg.dataset,
        cfg.root,
        download=cfg.download,
        train_subset=cfg.train_subset,
        test_subset=cfg.test_subset,
        augment=cfg.augment,
    )


def initial_model(cfg: RunConfig, dataset: data_mod.ImageDataset) -> nn.Module:
    """The dense model at initialisation; the same weights for every representation."""
    torch.manual_seed(cfg.train.seed)
    return models.get(cfg.model.model, dataset.num_classes, dataset.in_channels)


def pruning_batches(cfg: RunConfig, dataset: data_mod.ImageDataset) -> list:
    """The first ``prune_batches`` training batches of a fixed, seed-determined order."""
    g = torch.Generator().manual_seed(cfg.train.seed + 7919)
    out = []
    for batch in dataset.train_batches(cfg.train.batch_size, g, drop_last=False):
        out.append(batch)
        if len(out) == cfg.prune.prune_batches:
            break
    return out


def prepare(cfg: RunConfig, dataset: data_mod.ImageDataset, model: nn.Module | None = None):
    """Convert (IP) and prune (IP/SP) at initialisation. Returns ``(model, prune_seconds)``."""
    p = cfg.prune
    model = initial_model(cfg, dataset) if model is None else model
    t0 = time.perf_counter()
    if p.representation == "ip":
        to_interspace(model, p.basis, p.share, p.trainable_basis, p.normalize_basis)
    if p.representation != "dense":
        torch.manual_seed(cfg.train.seed + 1)  # random scores: same draw for SP and IP
        prune(
            model,
            p.method,
            p.sparsity,
            data=pruning_batches(cfg, dataset),
            allocation=p.allocation,
            keep_first_dense=p.keep_first_dense,
            keep_last_dense=p.keep_last_dense,
            min_density=p.min_density,
            rounds=p.rounds,
            input_shape=dataset.image_shape,
        )
    return model, time.perf_counter() - t0


@dataclass
class RunResult:
    config: RunConfig
    history: list[dict]
    summary: dict
    model: nn.Module


def summarise(model: nn.Module, history: list[dict], wall_time: float, rep: str) -> dict:
    last = history[-1]
    report = sparsity_report(model) if rep != "dense" else None
    plain_params = sum(p.numel() for p in model.parameters())
    return {
        "representation": rep,
        "test_acc": last["test_acc"],
        "best_test_acc": max(h["test_acc"] for h in history),
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "test_loss": last["test_loss"],
        "sparsity": report.sparsity if report else 0.0,
        "nonzero": report.nonzero if report else None,
        "prunable": report.total if report else None,
        "basis_params": report.basis_params if report else 0,
        "basis_overhead": report.basis_overhead if report else 0.0,
        "parameters": report.dense_model_params if report else plain_params,
        "wall_time": wall_time,
        "epochs": len(history),
    }


def run(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    dataset: data_mod.ImageDataset | None = None,
    model: nn.Module | None = None,
    callbacks: list[Callback] | None = None,
    progress: bool = True,
) -> RunResult:
    """Train one configuration end to end; with ``out_dir`` write config, metrics, summary."""
    dataset = load_data(cfg.data) if dataset is None else dataset
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", to_dict(cfg))
    start = time.perf_counter()
    model, _ = prepare(cfg, dataset, model)
    p = cfg.prune
    desc = (
        "dense" if p.representation == "dense" else f"{p.representation} {p.method} {p.sparsity:g}"
    )
    history = train(model, dataset, cfg.train, out, callbacks or [], progress, desc=desc)
    summary = summarise(model, history, time.perf_counter() - start, cfg.prune.representation)
    if out is not None:
        atomic_write_json(out / "summary.json", summary)
    return RunResult(cfg, history, summary, model)


def with_representation(cfg: RunConfig, rep: str) -> RunConfig:
    return replace(copy.deepcopy(cfg), prune=replace(cfg.prune, representation=rep))
