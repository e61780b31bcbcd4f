"""What a run leaves: its result, the summary of a trained model, the files of a finished
run, and a finished run's model rebuilt from them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from .. import data as data_mod
from ..bases import filter_bases
from ..foundations.checkpoint import save_tensors
from ..foundations.hparams import config_hash
from ..foundations.io import CorruptFileError, atomic_write_json
from ..foundations.provenance import code_version
from ..inference import costs, export_sparse
from ..inference.sparse_format import described_size, model_from_sparse, read_sparse
from ..interspace import Representation, prepare
from ..masks import sparsity_report
from ..models import materialize
from ..training import evaluate
from ..training.device import hardware, numerics
from ..training.loop import CHECKPOINT, PREVIOUS_CHECKPOINT
from .config import RunConfig
from .run_setup import load_data
from .runfiles import (
    MODEL,
    SPARSE_MODEL,
    load_model_state,
    model_file,
    read_model,
    write_model,
)
from .stretches import end_stretch


@dataclass
class RunResult:
    config: RunConfig
    history: list[dict]
    summary: dict
    model: nn.Module
    #: The run had finished before (``--resume`` on it): read from its folder, not trained.
    already_finished: bool = False


def _built(
    cfg: RunConfig, num_classes: int, in_channels: int, held: int, source: Path
) -> nn.Module:
    """The plain model of ``cfg``, lazy layers sized as in training. A received config.json
    (or summary's class count) could ask for a model of any size: ``source`` bounds it by
    the ``held`` values it holds (a model file holds at least every parameter)."""
    planned = cfg.model.count_parameters(num_classes, in_channels)
    if planned > held:
        raise CorruptFileError(
            source,
            f"holds {held:,} values but the model of this run's config.json and summary.json "
            f"has {planned:,} parameters: the files do not belong together",
        )
    model = cfg.model.build(num_classes, in_channels)
    materialize(model, data_mod.image_shape(cfg.data.dataset, cfg.data.image_size, in_channels))
    return model


def rebuild_model(
    cfg: RunConfig, num_classes: int, in_channels: int, model_file: Path, tag: str
) -> nn.Module:
    """A finished run's model (masks and filter bases included) from its ``model.pt``,
    refused if another run (``tag`` differs) wrote that file; in eval mode."""
    state = read_model(model_file, tag)  # checked before anything is built
    model = _built(
        cfg, num_classes, in_channels, sum(t.numel() for t in state.values()), model_file
    )
    rep = cfg.prune.representation
    # the basis init is irrelevant: the state dict overwrites it (pca needs no data here)
    prepare(model, replace(rep, basis="dct") if rep.basis == "pca" else rep)
    load_model_state(model, state, model_file)
    return model.eval()


def rebuild_sparse_model(
    cfg: RunConfig, num_classes: int, in_channels: int, sparse_file: Path, tag: str
) -> nn.Module:
    """A finished run's model from its ``model.isp``, refused unless exported from the run
    whose config hash is ``tag``; in eval mode."""
    meta, tensors = read_sparse(sparse_file)  # validated before anything is built
    if meta.get("representation", "sp") != cfg.prune.representation.kind:
        raise CorruptFileError(
            sparse_file,
            f"holds an {meta.get('representation')} model but this run's config.json says "
            f"{cfg.prune.representation.kind}: the files do not belong together",
        )
    model = _built(cfg, num_classes, in_channels, described_size(meta, tensors), sparse_file)
    return model_from_sparse(meta, tensors, sparse_file, model, tag=tag).eval()


def _model_shape(cfg: RunConfig, summary: dict) -> tuple[int, int]:
    """The class and channel count of a finished run's model: from its ``summary``, or for
    runs older than those fields, from the dataset (its table of shapes, else the data)."""
    num_classes, in_channels = summary.get("num_classes"), summary.get("in_channels")
    if isinstance(num_classes, int) and isinstance(in_channels, int):
        return num_classes, in_channels
    shape = data_mod.SHAPES.get(cfg.data.dataset)
    if shape is not None:
        return shape.num_classes, shape.channels
    dataset = load_data(cfg.data)  # an image folder: its class count is in the data
    return dataset.num_classes, dataset.in_channels


def finished_model(cfg: RunConfig, run_dir: Path, summary: dict) -> nn.Module:
    """The model of the finished run in ``run_dir``: from its ``model.pt`` (see
    :func:`rebuild_model`), or, where that is absent (a fresh clone: models are not
    committed), from the ``model.isp`` it may have (see :func:`rebuild_sparse_model`)."""
    num_classes, in_channels = _model_shape(cfg, summary)
    tag = config_hash(cfg)
    source = model_file(run_dir) or run_dir / MODEL  # neither: rebuild_model names model.pt
    if source.name == SPARSE_MODEL:
        return rebuild_sparse_model(cfg, num_classes, in_channels, source, tag)
    return rebuild_model(cfg, num_classes, in_channels, source, tag)


def keep_sparse_model(cfg: RunConfig, run_dir: Path, summary: dict) -> Path | None:
    """Write the finished pruned run's model as ``model.isp`` beside its ``model.pt`` (a few
    MB where ``model.pt`` is tens: small enough to commit); the path, or None for a dense
    run (nothing sparse to keep)."""
    if cfg.prune.representation.is_dense:
        return None
    path = run_dir / SPARSE_MODEL
    export_sparse(finished_model(cfg, run_dir, summary), path, tag=config_hash(cfg))
    return path


DIAGNOSTICS_INIT = ("grad_norm_init", "spatial_grad_norm_init", "basis_grad_norm_init")
DIAGNOSTICS_FINAL = ("grad_norm", "spatial_grad_norm", "filter_nnz_hist", "dense_filter_fraction")


def summarise(
    model: nn.Module,
    dataset: data_mod.ImageDataset,
    history: list[dict],
    wall_time: float,
    rep: Representation | str,
    precision: str = "fp32",
) -> dict:
    """Final numbers of a run, including the generalisation gap (train accuracy measured
    in eval mode, without augmentation, on up to 10,000 training images). The
    representation is written by its name (``"ip"``, ``"sp"``, ``"dense"``); ``numerics``
    records how it was computed (TF32, cuDNN flags, autocast ``precision``, versions)."""
    rep = Representation.parse(rep)
    last = history[-1]  # the last epoch is always evaluated (``TrainConfig.eval_every``)
    train_eval = evaluate(model, dataset, split="train", limit=10_000)
    cost = costs(model, dataset.image_shape)
    report = None if rep.is_dense else sparsity_report(model)  # dense: no prunable counts
    plain_params = sum(p.numel() for p in model.parameters())
    return {
        "representation": rep.kind,
        "test_acc": last["test_acc"],
        "best_test_acc": max(h["test_acc"] for h in history if "test_acc" in h),
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
        "numerics": numerics(next(model.parameters()).device, precision),
        # which copy of the data, as read (None for a dataset object that cannot say)
        "data_sha256": data_fingerprint(dataset),
        "code": code_version(),  # commit and dirty flag: what a rerun checks out
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


def data_fingerprint(dataset: data_mod.ImageDataset) -> str | None:
    """The data's fingerprint (:meth:`..data.ImageDataset.fingerprint`; ``None`` for a
    dataset object of the caller's without one)."""
    fingerprint = getattr(dataset, "fingerprint", None)
    return fingerprint() if callable(fingerprint) else None


#: The filter bases as initialised, kept for the report's basis pictures.
BASES_INIT = "bases_init.pt"


def save_initial_bases(out: Path, model: nn.Module, tag: str | None = None) -> None:
    """Keep the filter bases as initialised (for the report's basis pictures), named as run
    ``tag``'s (``config_hash``: the report leaves out another run's file)."""
    bases = filter_bases(model)
    path = out / BASES_INIT
    if bases and not path.is_file():
        saved: dict = {f"basis{i}": fb.weight.detach() for i, fb in enumerate(bases)}
        save_tensors(path, saved if tag is None else {**saved, "config_hash": tag})


def finish(out: Path, model: nn.Module, summary: dict, tag: str) -> None:
    """Write the final model (as run ``tag``'s) and the summary (last: it marks the run
    finished)."""
    write_model(out / MODEL, model, tag)
    summary["config_hash"] = tag  # whose result it is: a copy in another folder is refused
    summary["stretches"] = end_stretch(out, "finished")  # where each part of it trained
    atomic_write_json(out / "summary.json", summary)
    (out / CHECKPOINT).unlink(missing_ok=True)
    (out / PREVIOUS_CHECKPOINT).unlink(missing_ok=True)
