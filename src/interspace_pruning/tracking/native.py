"""``log_sparsity``: the pruning state of a model, to whatever tracker your own loop uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..masks import sparsity_report
from .base import Tracker


def sparsity_values(model: nn.Module) -> dict[str, float]:
    """Global sparsity, nonzeros, filter-basis parameters and each layer's sparsity."""
    report = sparsity_report(model)
    values = {
        "sparsity": report.sparsity,
        "nonzero": float(report.nonzero),
        "basis_params": float(report.basis_params),
    }
    values.update({f"layer_sparsity/{r.name}": r.sparsity for r in report.layers})
    return values


def log_sparsity(
    logger: Any, model: nn.Module, step: int, extra: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Log ``model``'s pruning state at ``step`` to ``logger`` and return what was logged.

    ``logger`` is what your loop already has: a ``torch.utils.tensorboard.SummaryWriter``,
    a W&B run (``wandb.init(...)``), the ``mlflow`` module (inside ``mlflow.start_run()``),
    a Lightning logger (anything with ``log_metrics(metrics, step=)``), one of this
    package's trackers, or a function ``f(values, step)``. ``extra``: more values to log
    with them (e.g. your pruner's mask updates). A pure query on the model.
    """
    values = {**sparsity_values(model), **(extra or {})}
    if isinstance(logger, Tracker):
        logger.scalars(values, step)
        layers = [v for k, v in values.items() if k.startswith("layer_sparsity/")]
        logger.histogram("layer_sparsity", layers, step)
    elif hasattr(logger, "add_scalar"):  # TensorBoard
        for k, v in values.items():
            logger.add_scalar(k, v, step)
    elif hasattr(logger, "log_metrics"):  # the mlflow module, Lightning loggers
        logger.log_metrics(values, step=step)
    elif hasattr(logger, "log") and hasattr(logger, "summary"):  # a W&B run
        logger.log(values, step=step)
    elif callable(logger):
        logger(values, step)
    else:
        raise TypeError(
            f"log_sparsity cannot log to a {type(logger).__name__}: pass a SummaryWriter, a "
            "W&B run, the mlflow module, a Lightning logger or a function f(values, step)"
        )
    return values
