"""``prune``: one-shot or iterative pruning of SP weights or IP coefficients."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..masks import SparsityReport, attach_masks, prunable, sparsity_report
from .allocation import (
    allocate,
    check_allocation,
    check_sparsity,
    dense_layers,
    parse_pattern,
    pattern_min_sparsity,
)
from .registry import Batch, LossFn, ScoringContext, get_method, score_entries


def _materialise(data: Iterable[Batch] | None) -> Iterable[Batch] | None:
    """Keep re-iterable data (lists, DataLoaders) as is; store one-shot iterators."""
    if data is None:
        return None
    if iter(data) is data:
        data = list(data)
    return data


def _input_shape(
    data: Iterable[Batch] | None, given: Sequence[int] | None
) -> tuple[int, ...] | None:
    if given is not None:
        return tuple(int(d) for d in given)
    if data is None:
        return None
    for x, _ in data:
        return tuple(x.shape[1:])
    return None


def round_sparsities(start_density: float, sparsity: float, rounds: int) -> list[float]:
    """Exponential schedule: density falls geometrically from the current to the target."""
    end_density = 1.0 - sparsity
    return [
        1.0 - start_density * (end_density / start_density) ** (r / rounds)
        for r in range(1, rounds + 1)
    ]


def prune(
    model: nn.Module,
    method: str,
    sparsity: float,
    data: Iterable[Batch] | None = None,
    allocation: str = "global",
    *,
    keep_first_dense: bool = False,
    keep_last_dense: bool = False,
    min_density: float | None = None,
    rounds: int | None = None,
    loss_fn: LossFn | None = None,
    input_shape: Sequence[int] | None = None,
    pattern: str | None = None,
) -> SparsityReport:
    """Prune ``model`` in place to ``sparsity`` with criterion ``method``.

    Works on whatever :func:`~interspace_pruning.prunable` lists: IP coefficients for layers
    converted with :func:`~interspace_pruning.prepare` (``"ip"``), spatial weights otherwise.
    Layers not yet under a mask (a plain model) are prepared in SP first: unlike the
    queries, ``prune`` changes the model. Entries pruned before stay pruned.

    Args:
        method: a registered criterion: ``random``, ``magnitude``, ``snip``, ``grasp``,
            ``synflow`` or one added with :func:`register_method`.
        sparsity: target fraction of zeros over all prunable tensors, in ``[0, 1)``.
        data: iterable of ``(inputs, targets)`` batches; data-driven criteria use all of them.
        allocation: ``global``, ``uniform`` or ``erk``.
        keep_first_dense: leave the first conv unpruned.
        keep_last_dense: leave the classifier unpruned.
        min_density: every layer keeps at least this fraction (guards against collapse).
        rounds: prune-score rounds on an exponential schedule (method default: 1; synflow 100).
        loss_fn: loss for data-driven criteria (default: cross-entropy).
        input_shape: per-sample input shape for data-free criteria that need one (synflow),
            if no ``data`` is given.
        pattern: ``"N:M"`` (e.g. ``"2:4"``): keep at most N of every M consecutive entries
            along each layer's input dimension (see :mod:`.allocation`); needs
            ``sparsity >= 1 - N/M``. Intermediate rounds are raised to the pattern's density.

    Returns:
        The :class:`SparsityReport` after pruning.
    """
    spec = get_method(method)
    sparsity = check_sparsity(sparsity)
    check_allocation(allocation)
    parse_pattern(pattern)
    if spec.needs_data and data is None:
        raise ValueError(f"method {method!r} is data-driven: pass data=[(inputs, targets), ...]")
    n_rounds = spec.rounds if rounds is None else int(rounds)
    if n_rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    data = _materialise(data)
    entries = prunable(attach_masks(model))
    dense = dense_layers(entries, keep_first_dense, keep_last_dense)
    shape = _input_shape(data, input_shape)

    total = sum(e.numel() for e in entries)
    start_density = sum(e.num_kept() for e in entries) / total
    if 1.0 - start_density > sparsity + 0.5 / total:
        raise ValueError(
            f"model is already at sparsity {1 - start_density:.4g}, above the target "
            f"{sparsity:.4g}; pruning never revives entries"
        )
    if pattern is not None:
        lowest = pattern_min_sparsity(entries, pattern, dense)
        if sparsity < lowest - 0.5 / total:
            raise ValueError(
                f"cannot reach sparsity {sparsity:.4g} with pattern {pattern}: the pattern "
                f"prunes at least {lowest:.2%} of this model; raise the sparsity"
            )
    targets = round_sparsities(start_density, sparsity, n_rounds)
    for r, target in enumerate(targets):
        if pattern is not None and r < len(targets) - 1:
            target = max(target, pattern_min_sparsity(entries, pattern, dense))
        scorer = copy.deepcopy(model)
        scorer.train(spec.mode == "train")
        ctx = ScoringContext(scorer, prunable(scorer), data, loss_fn or F.cross_entropy, shape)
        with torch.enable_grad():
            scores = score_entries(spec, ctx)
        masks = allocate(scores, entries, target, allocation, dense, min_density, pattern)
        for entry, mask in zip(entries, masks, strict=True):
            entry.set_mask(mask)
    return sparsity_report(model)
