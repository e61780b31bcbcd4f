"""The pieces every kind of run shares: data, the model in its representation, the summary
and the files of a finished run. ``run`` (one training) and ``imp`` (lottery-ticket rounds)
both build on this module, never on each other."""

from __future__ import annotations

import dataclasses
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
from ..models import materialize
from ..pruning import method_names
from ..schedules import section_of
from ..schedules.registry import options_class
from ..training import evaluate
from ..training.device import hardware
from ..training.loop import CHECKPOINT, PREVIOUS_CHECKPOINT
from .config import DataConfig, PruneConfig, RunConfig
from .runfiles import MODEL, read_model, write_model


def representation(p: PruneConfig) -> Representation:
    """The :class:`Representation` of a run's pruning options (``p.representation``)."""
    return p.representation


def pruner_options(cfg: RunConfig, dataset: data_mod.ImageDataset) -> dict:
    """The options ``ip.pruner`` (or ``ip.lottery_ticket``) gets for ``cfg``'s method: the
    method's own section of ``cfg.options`` (defaults: its options dataclass's, the same as
    the library's), plus the allocation options, ``--criterion`` and ``--seed`` where its
    options have them; criteria also get their scoring batches."""
    p = cfg.prune
    known = {f.name for f in dataclasses.fields(options_class(p.method))}
    options = {**p.allocation_kwargs(), "criterion": p.criterion, "seed": cfg.train.seed}
    if p.method in method_names():
        options.update(
            data=pruning_batches(cfg, dataset), rounds=p.rounds, input_shape=dataset.image_shape
        )
    section = section_of(p.method)
    if section is not None:
        own = cfg.options[section]
        options.update({f.name: getattr(own, f.name) for f in dataclasses.fields(own)})
    return {k: v for k, v in options.items() if k in known}


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
    """The dense model at initialisation; the same weights for every representation (lazy
    layers get theirs from one forward pass on the data's image shape)."""
    torch.manual_seed(cfg.train.seed)
    model = cfg.model.build(dataset.num_classes, dataset.in_channels)
    return materialize(model, dataset.image_shape)


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
    if model is None:
        model = initial_model(cfg, dataset)
    else:  # the caller's own: lazy layers sized on the data's image shape
        model = materialize(model, dataset.image_shape)
    if cfg.model.init_from:
        load_pretrained(model, cfg.model.init_from)
    return prepare(model, cfg.prune.representation)


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
    shape = data_mod.image_shape(cfg.data.dataset, cfg.data.image_size, in_channels)
    materialize(model, shape)  # lazy layers: sized as in training, then loaded
    rep = cfg.prune.representation
    # the basis init is irrelevant: the state dict overwrites it (pca needs no data here)
    prepare(model, replace(rep, basis="dct") if rep.basis == "pca" else rep)
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
    rep: Representation | str,
) -> dict:
    """Final numbers of a run, including the generalisation gap (train accuracy measured
    in eval mode, without augmentation, on up to 10,000 training images). The
    representation is written by its name (``"ip"``, ``"sp"``, ``"dense"``)."""
    rep = Representation.parse(rep)
    last = history[-1]
    train_eval = evaluate(model, dataset, split="train", limit=10_000)
    cost = costs(model, dataset.image_shape)
    report = None if rep.is_dense else sparsity_report(model)  # dense: no prunable counts
    plain_params = sum(p.numel() for p in model.parameters())
    return {
        "representation": rep.kind,
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
