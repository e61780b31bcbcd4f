"""One run: build the model, convert and prune it, train it, write the run directory."""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .. import data as data_mod
from .. import models
from ..bases import filter_bases
from ..diagnostics import Diagnostics
from ..foundations.checkpoint import load_tensors, save_tensors
from ..foundations.hparams import config_hash, to_dict
from ..foundations.io import atomic_write_json
from ..inference import costs
from ..interspace import to_interspace
from ..masks import prunable, sparsity_report
from ..pruning import method_names, prune
from ..schedules import DynamicSparseTraining, GradualMagnitudePruning
from ..training import Callback, distributed, evaluate, train
from ..training.device import resolve_device
from ..training.loop import CHECKPOINT
from .config import DataConfig, RunConfig, config_from_dict


def load_data(cfg: DataConfig) -> data_mod.ImageDataset:
    return data_mod.get(
        cfg.dataset,
        cfg.root,
        download=cfg.download,
        train_subset=cfg.train_subset,
        test_subset=cfg.test_subset,
        augment=cfg.augment,
        image_size=cfg.image_size,
        workers=cfg.workers,
    )


def initial_model(cfg: RunConfig, dataset: data_mod.ImageDataset) -> nn.Module:
    """The dense model at initialisation; the same weights for every representation."""
    torch.manual_seed(cfg.train.seed)
    return models.get(cfg.model.model, dataset.num_classes, dataset.in_channels)


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load a trained *dense* state dict (a ``model.pt`` or the run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    state = load_tensors(path)
    if any("parametrizations" in k for k in state):
        raise ValueError(
            f"checkpoint {path} holds a pruned or converted model; --init-from needs a dense "
            "one (e.g. from `interspace train --representation dense`)"
        )
    mine = model.state_dict()
    missing = sorted(set(mine) - set(state))
    unexpected = sorted(set(state) - set(mine))
    wrong = sorted(k for k in set(mine) & set(state) if mine[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            parts.append(f"shape mismatch in {wrong[:3]}")
        raise ValueError(
            f"checkpoint {path} does not fit model {type(model).__name__}: {'; '.join(parts)}; "
            "use the same --model and dataset as the run that wrote it"
        )
    model.load_state_dict(state)


def pruning_batches(cfg: RunConfig, dataset: data_mod.ImageDataset) -> list:
    """The first ``prune_batches`` training batches of a fixed, seed-determined order."""
    g = torch.Generator().manual_seed(cfg.train.seed + 7919)
    out = []
    for batch in dataset.train_batches(cfg.train.batch_size, g, drop_last=False):
        out.append(batch)
        if len(out) == cfg.prune.prune_batches:
            break
    return out


def prepare_representation(
    cfg: RunConfig, dataset: data_mod.ImageDataset, model: nn.Module | None = None
) -> nn.Module:
    """The initial (or ``--init-from``) dense model, converted to IP if asked."""
    p = cfg.prune
    model = initial_model(cfg, dataset) if model is None else model
    if cfg.model.init_from:
        load_pretrained(model, cfg.model.init_from)
    if p.representation == "ip":
        to_interspace(model, p.basis, p.share, p.trainable_basis, p.normalize_basis)
    return model


def prepare(
    cfg: RunConfig, dataset: data_mod.ImageDataset, model: nn.Module | None = None
) -> tuple[nn.Module, list[Callback]]:
    """Build the model for ``cfg`` and the schedule callbacks its method trains with.

    Criteria prune once here (at initialisation, or the ``--init-from`` trained model);
    GMP starts dense; SET/RigL start from a random mask at the target sparsity.
    """
    p = cfg.prune
    model = prepare_representation(cfg, dataset, model)
    device = resolve_device(cfg.train.device)
    model.to(device)  # prune where training runs (initial weights come from the CPU RNG)
    dataset = dataset.to(device)
    if p.representation == "dense":
        return model, []
    steps = dataset.steps_per_epoch(cfg.train.batch_size) * cfg.train.epochs
    torch.manual_seed(cfg.train.seed + 1)  # random scores: the same draw for SP and IP
    if p.method in method_names():
        prune(
            model,
            p.method,
            p.sparsity,
            data=pruning_batches(cfg, dataset),
            rounds=p.rounds,
            input_shape=dataset.image_shape,
            **p.allocation_kwargs(),
        )
        return model, []
    if p.method == "gmp":
        g = cfg.gmp
        prunable(model)
        schedule = GradualMagnitudePruning(
            p.sparsity,
            start_step=round(g.gmp_start * steps),
            end_step=round(g.gmp_end * steps),
            interval=g.gmp_interval,
            initial_sparsity=g.gmp_initial_sparsity,
            criterion=p.criterion,
            **p.allocation_kwargs(),
        )
        return model, [schedule]
    if p.method in ("rigl", "set"):
        prune(model, "random", p.sparsity, **p.allocation_kwargs())
        d = cfg.dst
        schedule = DynamicSparseTraining(
            growth="gradient" if p.method == "rigl" else "random",
            interval=d.dst_interval,
            drop_fraction=d.dst_drop_fraction,
            stop_fraction=d.dst_stop,
            seed=cfg.train.seed,
        )
        return model, [schedule]
    raise ValueError(f"method {p.method!r} is not a single-training method")  # imp: run_imp


@dataclass
class RunResult:
    config: RunConfig
    history: list[dict]
    summary: dict
    model: nn.Module


DIAGNOSTICS_INIT = ("grad_norm_init", "spatial_grad_norm_init", "basis_grad_norm_init")
DIAGNOSTICS_FINAL = ("grad_norm", "spatial_grad_norm", "filter_nnz_hist", "dense_filter_fraction")


def summarise(
    model: nn.Module,
    dataset: data_mod.ImageDataset,
    history: list[dict],
    wall_time: float,
    rep: str,
) -> dict:
    """Final numbers of a run, including the generalisation gap (train accuracy measured
    in eval mode, without augmentation, on up to 10,000 training images)."""
    last = history[-1]
    train_eval = evaluate(model, dataset, split="train", limit=10_000)
    cost = costs(model, dataset.image_shape)
    report = sparsity_report(model) if rep != "dense" else None
    plain_params = sum(p.numel() for p in model.parameters())
    return {
        "representation": rep,
        "test_acc": last["test_acc"],
        "best_test_acc": max(h["test_acc"] for h in history),
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "test_loss": last["test_loss"],
        "train_eval_acc": train_eval["train_acc"],
        "train_eval_loss": train_eval["train_loss"],
        "gap_acc": train_eval["train_acc"] - last["test_acc"],
        "gap_loss": last["test_loss"] - train_eval["train_loss"],
        "sparsity": report.sparsity if report else 0.0,
        "nonzero": report.nonzero if report else None,
        "prunable": report.total if report else None,
        "basis_params": report.basis_params if report else 0,
        "basis_overhead": report.basis_overhead if report else 0.0,
        "parameters": report.dense_model_params if report else plain_params,
        "wall_time": wall_time,
        "epochs": len(history),
        "dense_flops": cost.dense_flops,
        "sparse_flops": cost.sparse_flops,
        "sparse_bytes": cost.sparse_bytes,
        "dense_bytes": cost.dense_bytes,
        "num_classes": dataset.num_classes,
        "in_channels": dataset.in_channels,
        **{k: history[0][k] for k in DIAGNOSTICS_INIT if k in history[0]},
        **{k: last[k] for k in DIAGNOSTICS_FINAL if k in last},
    }


def run(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    dataset: data_mod.ImageDataset | None = None,
    model: nn.Module | None = None,
    callbacks: list[Callback] | None = None,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
) -> RunResult:
    """Train one configuration end to end.

    With ``out_dir``: ``config.json``, ``metrics.jsonl`` (per epoch), a ``checkpoint.pt``
    while training, then ``model.pt`` (the state dict, loadable with
    ``torch.load(weights_only=True)``) and, last, ``summary.json``. A directory that already
    holds a run is refused unless ``resume`` (continue it: same configuration only) or
    ``overwrite`` (start over). Under ``torchrun`` only rank 0 writes.
    """
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        claim_run_dir(out, cfg, resume, overwrite)
    dataset = load_data(cfg.data) if dataset is None else dataset
    dataset = dataset.to(resolve_device(cfg.train.device))
    writes = out is not None and distributed.info().is_main
    if writes:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", to_dict(cfg))
    if cfg.prune.method == "imp" and cfg.prune.representation != "dense":
        from .imp import run_imp

        return run_imp(cfg, out, dataset, model, callbacks or [], progress, resume)
    start = time.perf_counter()
    model, schedule = prepare(cfg, dataset, model)
    if writes:
        save_initial_bases(out, model)
    p = cfg.prune
    desc = (
        "dense" if p.representation == "dense" else f"{p.representation} {p.method} {p.sparsity:g}"
    )
    cbs = [*schedule, Diagnostics(), *(callbacks or [])]
    history = train(
        model, dataset, cfg.train, out, cbs, progress, desc, resume=resume, tag=config_hash(cfg)
    )
    summary = summarise(model, dataset, history, time.perf_counter() - start, p.representation)
    if writes:
        finish(out, model, summary)
    return RunResult(cfg, history, summary, model)


def claim_run_dir(out: Path, cfg: RunConfig, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber an existing run; check that a resumed one is the same configuration."""
    config_file = out / "config.json"
    if not config_file.is_file():
        return
    if overwrite:
        if distributed.info().is_main:
            shutil.rmtree(out)
        return
    state = "a finished" if (out / "summary.json").is_file() else "an unfinished"
    if not resume:
        raise ValueError(
            f"{out} already holds {state} run; pass --resume to continue it, --overwrite to "
            "start over, or choose another --out"
        )
    try:
        theirs = config_hash(config_from_dict(json.loads(config_file.read_text())))
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{config_file} is unreadable ({e}); pass --overwrite to start over"
        ) from None
    if theirs != config_hash(cfg):
        raise ValueError(
            f"{out} holds a run of another configuration; resume it with its own settings "
            f"(see {config_file}), or pass --overwrite"
        )


def save_initial_bases(out: Path, model: nn.Module) -> None:
    """Keep the filter bases as initialised (for the report's basis pictures)."""
    bases = filter_bases(model)
    path = out / "bases_init.pt"
    if bases and not path.is_file():
        save_tensors(path, {f"basis{i}": fb.weight.detach() for i, fb in enumerate(bases)})


def finish(out: Path, model: nn.Module, summary: dict) -> None:
    """Write the final model and the summary (last: it marks the run finished)."""
    save_tensors(out / "model.pt", model.state_dict())
    atomic_write_json(out / "summary.json", summary)
    (out / CHECKPOINT).unlink(missing_ok=True)


def with_representation(cfg: RunConfig, rep: str) -> RunConfig:
    return replace(copy.deepcopy(cfg), prune=replace(cfg.prune, representation=rep))
