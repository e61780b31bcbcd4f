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
from ..foundations.io import write_jsonl
from ..masks import has_masks, sparsity_report
from .callbacks import Callback, TrainState
from .config import TrainConfig
from .optim import build_optimizer, build_scheduler


class TrainingError(ValueError):
    """Training cannot go on (e.g. the loss diverged)."""


@torch.no_grad()
def evaluate(model: nn.Module, dataset: ImageDataset, batch_size: int = 1000) -> dict[str, float]:
    """Test loss and accuracy (eval mode; restores the previous mode)."""
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in dataset.test_batches(batch_size):
        out = model(x)
        loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        n += len(y)
    model.train(was_training)
    return {"test_loss": loss_sum / n, "test_acc": correct / n}


def _sparsity(model: nn.Module) -> float:
    """Global sparsity; 0 for a model without masks (which must stay a plain model)."""
    return sparsity_report(model).sparsity if has_masks(model) else 0.0


def train(
    model: nn.Module,
    dataset: ImageDataset,
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    desc: str = "train",
) -> list[dict]:
    """Train ``model`` on ``dataset`` and return the per-epoch metrics.

    The data order and augmentation come from a generator seeded with ``cfg.seed``, so two
    runs with one seed see identical batches. With ``out_dir`` the metrics are rewritten to
    ``out_dir/metrics.jsonl`` after every epoch (atomically).
    """
    steps = dataset.steps_per_epoch(cfg.batch_size)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps * cfg.epochs)
    state = TrainState(model, optimizer, scheduler, dataset, cfg, steps, steps * cfg.epochs)

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)

    state.loss_fn = loss_fn
    generator = torch.Generator().manual_seed(cfg.seed)
    metrics_path = Path(out_dir) / "metrics.jsonl" if out_dir is not None else None
    for cb in callbacks:
        cb.on_train_start(state)
    start = time.perf_counter()
    # disable=None: bars only on a terminal, so logs and CI output stay clean
    bar = tqdm(
        total=cfg.epochs, desc=desc, disable=None if progress else True, leave=False, unit="ep"
    )
    for epoch in range(cfg.epochs):
        state.epoch = epoch
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct, n = 0.0, 0, 0
        for x, y in dataset.train_batches(cfg.batch_size, generator):
            state.batch = (x, y)
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            loss = loss_fn(out, y)
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
            correct += int((out.argmax(1) == y).sum())
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
        if metrics_path is not None:
            write_jsonl(metrics_path, state.history)
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", acc=f"{metrics['test_acc']:.3f}")
    bar.close()
    for cb in callbacks:
        cb.on_train_end(state)
    return state.history
