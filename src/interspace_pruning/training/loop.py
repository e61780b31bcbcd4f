"""The training loop: epochs of SGD/AdamW with per-epoch evaluation and JSON-lines metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import ImageDataset
from ..foundations.checkpoint import load_tensors, save_tensors
from ..foundations.io import write_jsonl
from ..masks import has_masks, sparsity_report
from .callbacks import Callback, TrainState
from .config import TrainConfig
from .optim import build_optimizer, build_scheduler

CHECKPOINT = "checkpoint.pt"


class TrainingError(ValueError):
    """Training cannot go on (e.g. the loss diverged)."""


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: ImageDataset,
    batch_size: int = 1000,
    split: str = "test",
    limit: int | None = None,
) -> dict[str, float]:
    """Loss and accuracy on ``split`` ("test" or "train", at most ``limit`` images), in
    eval mode without augmentation; restores the previous mode."""
    was_training = model.training
    model.eval()
    if split == "test":
        batches = dataset.test_batches(batch_size)
    else:
        n = len(dataset.train_y) if limit is None else min(limit, len(dataset.train_y))
        batches = (
            (
                dataset.normalise(dataset.train_x[i : i + batch_size][: n - i]),
                dataset.train_y[i : i + batch_size][: n - i],
            )
            for i in range(0, n, batch_size)
        )
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in batches:
        out = model(x)
        loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        count += len(y)
    model.train(was_training)
    return {f"{split}_loss": loss_sum / count, f"{split}_acc": correct / count}


def _sparsity(model: nn.Module) -> float:
    """Global sparsity; 0 for a model without masks (which must stay a plain model)."""
    return sparsity_report(model).sparsity if has_masks(model) else 0.0


def _callback_states(callbacks) -> list[list]:
    return [[type(cb).__name__, cb.state_dict()] for cb in callbacks]


def _save_checkpoint(
    path: Path, state: TrainState, generator: torch.Generator, callbacks, tag: str
) -> None:
    save_tensors(
        path,
        {
            "tag": tag,
            "epoch": state.epoch + 1,  # epochs completed
            "step": state.step,
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": state.history,
            "callbacks": _callback_states(callbacks),
        },
    )


def _load_checkpoint(
    path: Path, state: TrainState, generator: torch.Generator, callbacks, tag: str
) -> int:
    """Restore a checkpoint into ``state``; returns the number of completed epochs."""
    ckpt = load_tensors(path)
    if ckpt.get("tag", "") != tag:
        raise ValueError(
            f"checkpoint {path} belongs to another configuration ({ckpt.get('tag')!r}, this "
            f"run is {tag!r}); use another output folder or delete the checkpoint"
        )
    try:
        state.model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"checkpoint {path} does not match this run: {first}") from None
    state.scheduler.load_state_dict(ckpt["scheduler"])
    generator.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    state.step = int(ckpt["step"])
    state.history = list(ckpt["history"])
    # Each callback gets the saved state of the first unused one of its class; callbacks
    # that were not there when the checkpoint was written (e.g. a user's logger) start fresh.
    saved = list(ckpt["callbacks"])
    for cb in callbacks:
        for i, (name, cb_state) in enumerate(saved):
            if name == type(cb).__name__:
                cb.load_state_dict(cb_state)
                del saved[i]
                break
    return int(ckpt["epoch"])


def train(
    model: nn.Module,
    dataset: ImageDataset,
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    desc: str = "train",
    resume: bool = False,
    tag: str = "",
) -> list[dict]:
    """Train ``model`` on ``dataset`` and return the per-epoch metrics.

    The data order and augmentation come from a generator seeded with ``cfg.seed``, so two
    runs with one seed see identical batches. With ``out_dir`` the metrics are rewritten to
    ``out_dir/metrics.jsonl`` and a checkpoint (model with masks and filter bases,
    optimiser, schedule, callbacks, RNG states) to ``out_dir/checkpoint.pt`` after every
    epoch, both atomically. With ``resume`` an existing checkpoint is continued from, and
    the result equals that of an uninterrupted run. ``tag`` identifies the configuration: a
    checkpoint written under another tag is refused.
    """
    callbacks = list(callbacks)
    steps = dataset.steps_per_epoch(cfg.batch_size)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps * cfg.epochs)
    state = TrainState(model, optimizer, scheduler, dataset, cfg, steps, steps * cfg.epochs)

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)

    state.loss_fn = loss_fn
    generator = torch.Generator().manual_seed(cfg.seed)
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CHECKPOINT if out is not None else None
    first_epoch = 0
    if resume and ckpt_path is not None and ckpt_path.is_file():
        first_epoch = _load_checkpoint(ckpt_path, state, generator, callbacks, tag)
    else:
        for cb in callbacks:
            cb.on_train_start(state)
    start = time.perf_counter() - (state.history[-1]["elapsed"] if state.history else 0.0)
    # disable=None: bars only on a terminal, so logs and CI output stay clean
    bar = tqdm(
        total=cfg.epochs,
        initial=first_epoch,
        desc=desc,
        disable=None if progress else True,
        leave=False,
        unit="ep",
    )
    for epoch in range(first_epoch, cfg.epochs):
        state.epoch = epoch
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct, n = 0.0, 0, 0
        for x, y in dataset.train_batches(cfg.batch_size, generator):
            state.batch = (x, y)
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            if not math.isfinite(loss.item()):
                raise TrainingError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {state.step}; "
                    f"lower the learning rate (--lr {cfg.lr}) or check the data"
                )
            loss.backward()
            for cb in callbacks:
                cb.on_after_backward(state)
            optimizer.step()
            scheduler.step()
            for cb in callbacks:
                cb.on_step_end(state)
            state.step += 1
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
        metrics = {
            "epoch": epoch + 1,
            "step": state.step,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": loss_sum / max(n, 1),
            "train_acc": correct / max(n, 1),
            **evaluate(model, dataset),
            "sparsity": _sparsity(model),
            "epoch_time": time.perf_counter() - t0,
            "elapsed": time.perf_counter() - start,
        }
        for cb in callbacks:
            cb.on_epoch_end(state, metrics)
        state.history.append(metrics)
        if out is not None:
            write_jsonl(out / "metrics.jsonl", state.history)
            _save_checkpoint(ckpt_path, state, generator, callbacks, tag)
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", acc=f"{metrics['test_acc']:.3f}")
    bar.close()
    for cb in callbacks:
        cb.on_train_end(state)
    return state.history
