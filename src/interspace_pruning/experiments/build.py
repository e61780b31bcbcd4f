"""The pieces every kind of run shares: data, the model in its representation, the summary
and the files of a finished run. ``run`` (one training) and ``imp`` (lottery-ticket rounds)
both build on this module, never on each other."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .. import data as data_mod
from ..bases import filter_bases
from ..foundations.checkpoint import save_tensors
from ..foundations.io import CorruptFileError, atomic_write_json
from ..inference import costs
from ..interspace import Representation, prepare
from ..masks import sparsity_report
from ..training import evaluate
from ..training.device import hardware
from ..training.loop import CHECKPOINT, PREVIOUS_CHECKPOINT
from .config import DataConfig, PruneConfig, RunConfig
from .runfiles import MODEL, read_model, write_model


def representation(p: PruneConfig) -> Representation:
    """The :class:`Representation` value a run's pruning options describe."""
    if p.representation != "ip":
        return Representation.parse(p.representation)
    return Representation.interspace(p.basis, p.share, p.trainable_basis, p.normalize_basis)


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
    return cfg.model.build(dataset.num_classes, dataset.in_channels)


def pretrained_file(path: str | Path) -> Path:
    """The ``model.pt`` that ``--init-from path`` (a file or a run directory) names."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load a trained *dense* state dict (a ``model.pt`` or the run directory holding one)."""
    path = pretrained_file(path)
    state = read_model(path, fix="give the model.pt of a finished dense run")
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
    """The initial (or ``--init-from``) dense model, prepared in the run's representation."""
    p = cfg.prune
    model = initial_model(cfg, dataset) if model is None else model
    if cfg.model.init_from:
        load_pretrained(model, cfg.model.init_from)
    return prepare(model, representation(p))


@dataclass
class RunResult:
    config: RunConfig
    history: list[dict]
    summary: dict
    model: nn.Module
    #: The run had finished before (``--resume`` on it): read from its folder, not trained.
    already_finished: bool = False


def rebuild_model(
    cfg: RunConfig, num_classes: int, in_channels: int, model_file: Path, tag: str
) -> nn.Module:
    """A finished run's model (masks and filter bases included) from its ``model.pt``,
    refused if another run (``tag`` differs) wrote that file; in eval mode."""
    state = read_model(model_file, tag)  # checked before anything is built
    model = cfg.model.build(num_classes, in_channels)
    p = cfg.prune
    # the basis init is irrelevant: the state dict overwrites it (pca needs no data here)
    prepare(model, representation(replace(p, basis="dct") if p.basis == "pca" else p))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CorruptFileError(
            model_file, f"does not fit the model of this run's config.json ({first})"
        ) from None
    return model.eval()


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
    report = sparsity_report(model) if rep != "dense" else None  # dense: no prunable counts
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
        "wall_time": wall_time,  # this process: a resumed run counts from its resume
        "hardware": hardware(next(model.parameters()).device),
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


def save_initial_bases(out: Path, model: nn.Module) -> None:
    """Keep the filter bases as initialised (for the report's basis pictures)."""
    bases = filter_bases(model)
    path = out / "bases_init.pt"
    if bases and not path.is_file():
        save_tensors(path, {f"basis{i}": fb.weight.detach() for i, fb in enumerate(bases)})


def finish(out: Path, model: nn.Module, summary: dict, tag: str) -> None:
    """Write the final model (as run ``tag``'s) and the summary (last: it marks the run
    finished)."""
    write_model(out / MODEL, model, tag)
    atomic_write_json(out / "summary.json", summary)
    (out / CHECKPOINT).unlink(missing_ok=True)
    (out / PREVIOUS_CHECKPOINT).unlink(missing_ok=True)
