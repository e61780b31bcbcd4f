"""Setting a run up: its data, its model at initialisation (or ``--init-from``) in the run's
representation, and the options and scoring batches its pruner gets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from .. import data as data_mod
from ..interspace import prepare
from ..masks import sparsity_report
from ..models import materialize
from ..pruning import method_names
from ..schedules import section_of
from ..schedules.registry import options_class
from .config import DataConfig, RunConfig
from .runfiles import read_model


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


def matched_sparsity(cfg: RunConfig, dataset: data_mod.ImageDataset) -> float:
    """The sparsity of ``cfg``'s parameter-matched SP control: SP keeps as many weights as
    IP at ``cfg.prune.sparsity`` trains (nonzero coefficients plus filter-basis entries)."""
    rep = cfg.prune.representation
    ip_rep = dataclasses.replace(rep, kind="ip")
    ip_prune = dataclasses.replace(cfg.prune, param_matched=False, representation=ip_rep)
    ip_cfg = dataclasses.replace(cfg, prune=ip_prune)
    ip_report = sparsity_report(prepare_representation(ip_cfg, dataset))
    sp_report = sparsity_report(prepare(initial_model(cfg, dataset), rep))
    kept = round((1.0 - cfg.prune.sparsity) * ip_report.total) + ip_report.basis_params
    return 1.0 - kept / sp_report.total


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
