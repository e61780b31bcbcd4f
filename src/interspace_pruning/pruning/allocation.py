"""Allocation: how many entries each layer keeps, and which ones (top scores).

``global`` ranks all scores together; ``uniform`` gives every layer the same sparsity;
``erk`` (Erdos-Renyi-Kernel, Evci et al. 2020) gives layer ``l`` a density proportional to
``sum(shape_l) / prod(shape_l)`` of its spatial weight shape. The shape is the *spatial*
one for SP and IP alike, so both representations get the same per-layer budget.

Already-pruned entries are never revived: they can only stay pruned. The achieved number of
kept entries is ``round((1 - sparsity) * total)`` exactly, every layer within one entry of its
ideal share; an impossible target raises ``ValueError`` instead of under-pruning.

An optional N:M ``pattern`` (e.g. ``"2:4"``) restricts which entries may be kept: every run
of M consecutive entries along the input dimension of a layer's matrix keeps at most N. The
matrix is the prunable tensor seen as ``shape[0] x rest``: ``Cout x (Cin*K*K)`` spatial
weights for SP, the ``Cout x (Cin*K^2)`` coefficient matrix (the operand of IP's sparse
product) for IP, ``Cout x Cin`` for ``nn.Linear``. A row whose length is not a multiple of
M ends in a shorter group, read as padded with pruned entries (how N:M kernels pad shapes).
Layers kept dense (``keep_first_dense`` ...) are exempt. Schedules keep the pattern by
passing it to :func:`allocate` (through ``prune(..., pattern=...)``), by raising targets
to :func:`pattern_min_sparsity`, and by letting regrowth choose only from
:func:`nm_mask` with ``taken=`` the entries still active.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from ..masks import PrunableTensor

ALLOCATIONS = ("global", "uniform", "erk")


class LayerCollapseWarning(UserWarning):
    """A layer lost all its entries: the network is disconnected there."""


#: The keyword arguments of ``prune``/``allocate`` that say how sparsity is spread.
ALLOCATION_OPTIONS = ("allocation", "keep_first_dense", "keep_last_dense", "min_density", "pattern")


def allocation_options(obj: object) -> dict:
    """``obj``'s allocation settings (attributes named as :data:`ALLOCATION_OPTIONS`), as the
    keyword arguments ``prune`` takes."""
    return {name: getattr(obj, name) for name in ALLOCATION_OPTIONS}


def check_sparsity(sparsity: float) -> float:
    """Validate a target sparsity in ``[0, 1)``."""
    try:
        s = float(sparsity)
    except (TypeError, ValueError):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}") from None
    if not 0.0 <= s < 1.0 or math.isnan(s):
        raise ValueError(f"sparsity must be in [0, 1) (e.g. 0.95 for 95% zeros), got {sparsity!r}")
    return s


def check_allocation(allocation: str) -> str:
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; choose one of {list(ALLOCATIONS)}")
    return allocation


def parse_pattern(pattern: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"2:4"`` (or ``(2, 4)``) as ``(n, m)`` with ``1 <= n < m``; ``None`` stays ``None``."""
    if pattern is None:
        return None
    try:
        if isinstance(pattern, str):
            n_text, m_text = pattern.split(":")
            n, m = int(n_text), int(m_text)
        else:
            n, m = (int(v) for v in pattern)
    except (TypeError, ValueError):
        raise ValueError(f"pattern must look like 'N:M' (e.g. '2:4'), got {pattern!r}") from None
    if not 1 <= n < m:
        raise ValueError(f"pattern N:M needs 1 <= N < M (e.g. '2:4'), got {pattern!r}")
    return n, m


def _grouped(t: torch.Tensor, m: int, fill: float | bool) -> torch.Tensor:
    """``t`` as ``(rows, groups, m)``: rows = ``shape[0]``, the rest padded to a multiple of m."""
    flat = t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(1, -1)
    pad = -flat.shape[1] % m
    if pad:
        flat = torch.cat([flat, flat.new_full((flat.shape[0], pad), fill)], dim=1)
    return flat.reshape(flat.shape[0], -1, m)


def _ungrouped(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    cols = like.numel() // (like.shape[0] if like.dim() > 1 else 1)
    return g.reshape(g.shape[0], -1)[:, :cols].reshape(like.shape)


def nm_mask(
    scores: torch.Tensor, n: int, m: int, taken: torch.Tensor | None = None
) -> torch.Tensor:
    """Boolean N:M mask over ``scores`` (shaped like a prunable tensor; higher = keep).

    Without ``taken``: in every group of ``m`` consecutive entries along the input
    dimension, the ``n`` highest scores (fewer if some are ``-inf``: those are never
    chosen). With ``taken`` (a bool mask of entries already kept, e.g. the active entries
    before RigL's regrowth): the entries that may be *added* to ``taken`` without breaking
    the pattern, i.e. per group the ``n - taken`` best entries outside ``taken``. Ties go
    to the earlier entry.
    """
    s = _grouped(scores.detach(), m, -math.inf)
    if taken is None:
        room = torch.full(s.shape[:2] + (1,), n, device=s.device)
    else:
        t = _grouped(taken.detach().bool(), m, False)
        room = (n - t.sum(-1, keepdim=True)).clamp(min=0)
        s = s.masked_fill(t, -math.inf)
    order = torch.argsort(s, dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(m, device=s.device).expand_as(order))
    return _ungrouped((rank < room) & (s > -math.inf), scores)


def satisfies_pattern(mask: torch.Tensor, n: int, m: int) -> bool:
    """Whether ``mask`` keeps at most ``n`` of every ``m`` consecutive input entries."""
    return bool((_grouped(mask.detach().bool(), m, False).sum(-1) <= n).all())


def project_to_pattern(mask: torch.Tensor, scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The largest N:M sub-mask of ``mask``: per group its ``n`` best kept entries."""
    keep = mask.detach().bool()
    return nm_mask(torch.where(keep, scores.detach().double(), -math.inf), n, m)


def satisfiable(mask: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The most entries of ``mask`` an N:M mask can keep (per group: ``n`` of the kept ones)."""
    keep = mask.detach().bool()
    return nm_mask(torch.where(keep, 1.0, -math.inf).to(torch.float32), n, m)


def pattern_min_sparsity(
    entries: Sequence[PrunableTensor],
    pattern: str | tuple[int, int] | None,
    dense: set[int] | None = None,
) -> float:
    """The lowest sparsity ``allocate`` can reach from the current masks under ``pattern``.

    Schedules whose targets start low (GMP from 0%, IMP's first rounds) raise each target to
    at least this, so an N:M run jumps to the pattern's density at its first pruning step.
    """
    nm = parse_pattern(pattern)
    total = sum(e.numel() for e in entries)
    if nm is None:
        kept = sum(e.num_kept() for e in entries)
    else:
        dense = dense or set()
        kept = sum(
            e.num_kept() if i in dense else int(satisfiable(e.mask, *nm).sum())
            for i, e in enumerate(entries)
        )
    return 1.0 - kept / total


def dense_layers(
    entries: Sequence[PrunableTensor], keep_first_dense: bool, keep_last_dense: bool
) -> set[int]:
    """Indices of the first conv and of the classifier (last Linear, else last layer)."""
    dense: set[int] = set()
    if keep_first_dense:
        convs = [i for i, e in enumerate(entries) if isinstance(e.module, torch.nn.Conv2d)]
        dense.add(convs[0] if convs else 0)
    if keep_last_dense:
        linears = [i for i, e in enumerate(entries) if isinstance(e.module, torch.nn.Linear)]
        dense.add(linears[-1] if linears else len(entries) - 1)
    return dense


def erk_weights(shape: Sequence[int]) -> float:
    """Erdos-Renyi-Kernel density factor ``sum(shape) / prod(shape)``."""
    return sum(shape) / math.prod(shape)


def distribute(
    ideal: Sequence[float], floors: Sequence[int], caps: Sequence[int], k: int
) -> list[int]:
    """Integer counts ``floors <= c <= caps`` summing to ``k``, proportional to ``ideal``.

    Finds ``alpha`` with ``sum(clip(alpha * ideal, floors, caps)) == k`` by bisection (the
    sum is monotone in ``alpha``), then rounds by largest remainder, so each count is within
    one of its continuous value. Layers that hit their cap (density 1) are handled by the
    clip, which is the redistribution that ERK needs.
    """
    lo_sum, hi_sum = sum(floors), sum(caps)
    if not lo_sum <= k <= hi_sum:
        raise ValueError(f"cannot keep {k} entries: feasible range is [{lo_sum}, {hi_sum}]")

    def counts(alpha: float) -> list[float]:
        return [min(max(alpha * w, f), c) for w, f, c in zip(ideal, floors, caps, strict=True)]

    lo, hi = 0.0, 1.0
    while sum(counts(hi)) < k and hi < 1e300:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if sum(counts(mid)) < k:
            lo = mid
        else:
            hi = mid
    x = counts(hi)
    out = [min(max(math.floor(v), f), c) for v, f, c in zip(x, floors, caps, strict=True)]
    # Hand out the rounding remainder (positive or negative) by fractional part.
    order = sorted(range(len(x)), key=lambda i: x[i] - math.floor(x[i]), reverse=True)
    diff = k - sum(out)
    while diff != 0:
        step = 1 if diff > 0 else -1
        moved = False
        for i in order if step > 0 else reversed(order):
            if diff == 0:
                break
            if floors[i] <= out[i] + step <= caps[i]:
                out[i] += step
                diff -= step
                moved = True
        if not moved:  # unreachable: k lies in [sum(floors), sum(caps)]
            raise RuntimeError("allocation rounding failed")
    return out


def allocate(
    scores: Sequence[torch.Tensor],
    entries: Sequence[PrunableTensor],
    sparsity: float,
    allocation: str = "global",
    dense: set[int] | None = None,
    min_density: float | None = None,
    pattern: str | tuple[int, int] | None = None,
) -> list[torch.Tensor]:
    """Turn per-entry scores into boolean keep-masks (higher score = keep).

    Args:
        scores: one tensor per entry, shaped like ``entry.param``; entries already pruned
            (``entry.mask == 0``) are ignored and stay pruned.
        sparsity: target fraction of zeros over all entries together.
        dense: indices of entries to keep fully dense (they count towards the total).
        min_density: opt-in guard against layer collapse: every layer keeps at least this
            fraction of its entries.
        pattern: ``"N:M"`` (e.g. ``"2:4"``): every group of M consecutive input entries of
            a layer keeps at most N (layers in ``dense`` are exempt). The best-scoring N of
            each group are the candidates; the allocation then chooses among them, so a
            sparsity above ``1 - N/M`` prunes further inside the pattern.
    """
    check_sparsity(sparsity)
    nm = parse_pattern(pattern)
    check_allocation(allocation)
    dense = dense or set()
    if min_density is not None and not 0.0 <= min_density <= 1.0:
        raise ValueError(f"min_density must be in [0, 1], got {min_density!r}")
    sizes = [e.numel() for e in entries]
    alive = [e.mask.detach().bool().cpu() for e in entries]
    total = sum(sizes)
    k = round((1.0 - sparsity) * total)
    for i in dense:
        if int(alive[i].sum()) != sizes[i]:
            raise ValueError(f"layer {entries[i].name!r} should stay dense but is already pruned")

    flat = []
    for i, (e, s, a) in enumerate(zip(entries, scores, alive, strict=True)):
        s = s.detach().to("cpu", torch.float64).reshape(-1)
        if s.numel() != a.numel():
            raise ValueError(f"score for {e.name!r} has {s.numel()} entries, expected {a.numel()}")
        if torch.isnan(s[a.reshape(-1)]).any():
            raise ValueError(f"score for layer {e.name!r} contains NaN")
        s = torch.where(a.reshape(-1), s, torch.full_like(s, -math.inf))
        if nm is not None and i not in dense:  # only each group's N best stay candidates
            s = torch.where(a.reshape(-1), s.clamp(min=torch.finfo(s.dtype).min), s)
            s = torch.where(nm_mask(s.reshape(a.shape), *nm).reshape(-1), s, -math.inf)
        flat.append(s)
    live = [
        int((f > -math.inf).sum()) if nm is not None and i not in dense else int(a.sum())
        for i, (f, a) in enumerate(zip(flat, alive, strict=True))
    ]
    floors = [
        sizes[i] if i in dense else min(math.ceil((min_density or 0.0) * sizes[i]), live[i])
        for i in range(len(entries))
    ]
    if k > sum(live) and nm is not None:
        raise ValueError(
            f"cannot reach sparsity {sparsity:.4g} with pattern {nm[0]}:{nm[1]}: the pattern "
            f"keeps at most {sum(live)} of {total} entries (sparsity >= "
            f"{1 - sum(live) / total:.4g}); raise the sparsity"
        )
    if k > sum(live):
        raise ValueError(
            f"cannot reach sparsity {sparsity:.4g}: it keeps {k} entries but only {sum(live)} "
            f"are still unpruned (pruning never revives entries; start from a denser model)"
        )
    if k < sum(floors):
        raise ValueError(
            f"cannot reach sparsity {sparsity:.4g}: the dense layers and min_density alone keep "
            f"{sum(floors)} of {total} entries (more than the {k} allowed); lower the sparsity "
            "or drop keep_first_dense/keep_last_dense/min_density"
        )

    if allocation == "global":
        masks = _global_topk(flat, floors, k)
    else:
        if allocation == "uniform":
            ideal = [float(n) for n in sizes]
        else:
            ideal = [erk_weights(e.weight_shape) * n for e, n in zip(entries, sizes, strict=True)]
        ideal = [0.0 if i in dense else w for i, w in enumerate(ideal)]
        counts = distribute(ideal, floors, live, k)
        masks = [_topk_mask(f, c) for f, c in zip(flat, counts, strict=True)]

    masks = [
        m.reshape(e.param.shape).to(e.param.device) for m, e in zip(masks, entries, strict=True)
    ]
    collapsed = [e.name for e, m in zip(entries, masks, strict=True) if not m.any()]
    if collapsed:
        warnings.warn(
            f"layer collapse: {collapsed} keep no entries, which disconnects the network; "
            "lower the sparsity or set min_density",
            LayerCollapseWarning,
            stacklevel=2,
        )
    return masks


def _topk_mask(flat: torch.Tensor, k: int) -> torch.Tensor:
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if k > 0:
        mask[torch.topk(flat, k, sorted=False).indices] = True
    return mask


def _global_topk(flat: list[torch.Tensor], floors: list[int], k: int) -> list[torch.Tensor]:
    """Each layer keeps its ``floors`` best entries; the rest of ``k`` goes to the best overall."""
    reserved = [_topk_mask(f, n) for f, n in zip(flat, floors, strict=True)]
    # Reserved entries must win the global ranking; dead ones (-inf) must lose it.
    boosted = torch.cat([torch.where(r, math.inf, f) for f, r in zip(flat, reserved, strict=True)])
    keep = _topk_mask(boosted, k)
    return list(torch.split(keep, [f.numel() for f in flat]))
