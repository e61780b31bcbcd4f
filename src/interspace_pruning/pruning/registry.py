"""The registry of scoring criteria: add a pruning method by writing one function.

A criterion receives a :class:`ScoringContext` and returns one score tensor per prunable
tensor (shaped like ``entry.param``; higher means keep). It runs on a private copy of the
model, so it may change modes, dtypes or parameter values freely. Because it only sees
prunable tensors, it works unchanged for SP weights and IP coefficients.

Example::

    from interspace_pruning.pruning import register_method

    @register_method("gradient-norm", needs_data=True)
    def gradient_norm(ctx):
        grads = ctx.gradients()
        return [g.abs() for g in grads]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..masks import PrunableTensor

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class ScoringContext:
    """Everything a criterion may use."""

    #: A private copy of the model (on the model's device); free to modify.
    model: nn.Module
    #: The copy's prunable tensors, in the same order as the original's.
    entries: list[PrunableTensor]
    #: Batches of ``(inputs, targets)`` (re-iterable), or ``None`` for data-free methods.
    data: Iterable[Batch] | None
    loss_fn: LossFn
    #: Shape of one input sample (without batch dimension), if known.
    input_shape: tuple[int, ...] | None = None

    @property
    def params(self) -> list[nn.Parameter]:
        return [e.param for e in self.entries]

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    def batches(self) -> Iterator[Batch]:
        """Iterate over all given batches, moved to the model's device and dtype."""
        if self.data is None:
            raise ValueError("this criterion needs data batches, but data=None was given")
        dtype = self.params[0].dtype
        for x, y in self.data:
            yield x.to(self.device, dtype), y.to(self.device)

    def gradients(self, scale: float = 1.0) -> list[torch.Tensor]:
        """Gradient of the loss (summed over all batches) w.r.t. the prunable tensors.

        ``scale`` divides the logits first (GraSP's temperature).
        """
        grads = [torch.zeros_like(p) for p in self.params]
        for x, y in self.batches():
            loss = self.loss_fn(self.model(x) / scale, y)
            for g, d in zip(grads, torch.autograd.grad(loss, self.params), strict=True):
                g += d
        return grads


ScoreFn = Callable[[ScoringContext], list[torch.Tensor]]


@dataclass(frozen=True)
class PruningMethod:
    """A registered criterion with its defaults."""

    name: str
    score: ScoreFn
    #: Whether the criterion needs ``(inputs, targets)`` batches.
    needs_data: bool = False
    #: Default number of prune-score rounds (exponential sparsity schedule).
    rounds: int = 1
    #: Mode of the scoring copy: ``"train"`` or ``"eval"``.
    mode: str = "train"


_METHODS: dict[str, PruningMethod] = {}


def register_method(
    name: str, *, needs_data: bool = False, rounds: int = 1, mode: str = "train"
) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator registering ``fn(ctx) -> list[Tensor]`` as pruning method ``name``."""
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")

    def wrap(fn: ScoreFn) -> ScoreFn:
        _METHODS[name] = PruningMethod(name, fn, needs_data, rounds, mode)
        return fn

    return wrap


def method_names() -> list[str]:
    """The registered pruning criteria, sorted: the built-in ones (``magnitude``, ``snip``,
    ``grasp``, ``synflow``, ``random``, ...) and those added with :func:`register_method`.
    Each is a ``method`` of :func:`~interspace_pruning.prune`, a one-shot pruner of
    :func:`~interspace_pruning.pruner` and a ``criterion`` of GMP and IMP."""
    return sorted(_METHODS)


def get_method(name: str) -> PruningMethod:
    if name not in _METHODS:
        raise ValueError(f"unknown pruning method {name!r}; choose one of {method_names()}")
    return _METHODS[name]


def score_entries(method: PruningMethod, ctx: ScoringContext) -> list[torch.Tensor]:
    """Run a criterion and check its output shape."""
    scores = method.score(ctx)
    if len(scores) != len(ctx.entries):
        raise ValueError(
            f"method {method.name!r} returned {len(scores)} scores for {len(ctx.entries)} tensors"
        )
    for s, e in zip(scores, ctx.entries, strict=True):
        if tuple(s.shape) != tuple(e.param.shape):
            raise ValueError(
                f"method {method.name!r} scored {e.name!r} with shape {tuple(s.shape)}, "
                f"expected {tuple(e.param.shape)}"
            )
    return scores
