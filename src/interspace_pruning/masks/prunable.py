"""Prunable tensors: what a pruning method scores and masks.

For a layer converted to the interspace representation the prunable tensor is its
coefficient tensor ``Lambda``; for every other ``nn.Conv2d`` / ``nn.Linear`` it is the spatial
weight. Methods only ever see :class:`PrunableTensor` entries, so one code path prunes SP
and IP alike.

:func:`prunable` is a pure query. On a layer that :func:`~interspace_pruning.prepare` has
not put under a mask it reports a *dense* entry (``kind == "dense"``, an all-ones mask that
is computed, not stored, and ``set_mask`` refused), so a plain model reads as dense and its
``state_dict`` never changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from .mask import Mask
from .parametrization import MaskedParametrization, MaskedWeight

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


def masked_parametrization(module: nn.Module) -> MaskedParametrization | None:
    """The library's parametrization on ``module.weight``, or ``None``."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    plist = module.parametrizations["weight"]
    ours = [p for p in plist if isinstance(p, MaskedParametrization)]
    if len(ours) != 1 or len(plist) != 1:
        raise ValueError(
            f"{type(module).__name__}.weight carries parametrizations this library did not "
            f"add ({[type(p).__name__ for p in plist]}); remove them before pruning"
        )
    return ours[0]


@dataclass(frozen=True, eq=False)
class PrunableTensor:
    """One prunable tensor of a model (a layer's SP weights or IP coefficients)."""

    #: Stable name: the layer's path in the model, e.g. ``"layer1.0.conv1"``.
    name: str
    #: The layer (``nn.Conv2d`` or ``nn.Linear``) that owns the tensor.
    module: nn.Module

    @property
    def parametrization(self) -> MaskedParametrization:
        p = masked_parametrization(self.module)
        if p is None:
            raise ValueError(
                f"layer {self.name!r} is dense (no mask); call ip.prepare(model, 'sp' or 'ip') "
                "first"
            )
        return p

    @property
    def is_masked(self) -> bool:
        """Whether the layer is under a mask (``False`` for a dense entry)."""
        return masked_parametrization(self.module) is not None

    @property
    def kind(self) -> str:
        """``"ip"`` (filter-basis coefficients), ``"sp"`` (spatial weights) or ``"dense"``."""
        p = masked_parametrization(self.module)
        return "dense" if p is None else p.kind

    @property
    def param(self) -> nn.Parameter:
        """The stored parameter that is scored and masked."""
        if not self.is_masked:
            return self.module.weight
        return self.module.parametrizations["weight"].original

    @property
    def mask(self) -> torch.Tensor:
        """The 0/1 mask buffer (same shape and dtype as :attr:`param`); for a dense entry a
        fresh all-ones tensor (writing to it changes nothing)."""
        p = masked_parametrization(self.module)
        if p is None:
            w = self.module.weight
            return torch.ones_like(w.detach())
        return p.mask

    @property
    def weight_shape(self) -> torch.Size:
        """Shape of the layer's spatial weight (used by shape-aware allocations like ERK)."""
        return self.module.weight.shape

    def numel(self) -> int:
        return self.param.numel()

    def num_kept(self) -> int:
        if not self.is_masked:
            return self.numel()
        return int(self.mask.count_nonzero())

    @torch.no_grad()
    def set_mask(self, mask: Mask | torch.Tensor) -> None:
        """Install ``mask`` and zero the pruned entries of the parameter."""
        m = Mask(mask)
        p = self.parametrization  # refuses a dense entry
        m.check_shape(self.param.shape, f"{self.name} ({p.kind})")
        self.mask.copy_(m.tensor.to(self.mask.dtype))
        self.param.mul_(self.mask)

    def __repr__(self) -> str:
        return (
            f"PrunableTensor({self.name!r}, kind={self.kind!r}, "
            f"shape={tuple(self.param.shape)}, kept={self.num_kept()}/{self.numel()})"
        )


def attach_masks(model: nn.Module) -> nn.Module:
    """Give every ``Conv2d``/``Linear`` without one an all-ones SP mask (idempotent).

    This is what ``ip.prepare(model, "sp")`` does; :func:`~interspace_pruning.prune` and the
    pruners call it too, so a plain model is pruned in SP. Queries never call it.
    """
    for module in model.modules():
        if isinstance(module, PRUNABLE_TYPES) and masked_parametrization(module) is None:
            parametrize.register_parametrization(module, "weight", MaskedWeight(module.weight))
    return model


def prunable(model: nn.Module) -> list[PrunableTensor]:
    """List the model's prunable tensors in module order (a pure query).

    Each entry has ``.name``, ``.kind``, ``.param`` (the stored tensor that is scored and
    masked) and ``.mask``. Layers not under a mask (a model never given to
    :func:`~interspace_pruning.prepare`) are listed as dense entries; nothing is attached.
    """
    entries = [
        PrunableTensor(name, module)
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES)
    ]
    if not entries:
        raise ValueError(
            f"{type(model).__name__} has nothing prunable: no nn.Conv2d or nn.Linear layers"
        )
    return entries


@torch.no_grad()
def apply_masks(model: nn.Module) -> None:
    """Re-zero every masked entry (e.g. after an optimiser with stale state stepped)."""
    for entry in _existing_entries(model):
        entry.param.mul_(entry.mask)


def keep_masked(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Make ``optimizer`` re-apply the model's masks after every step.

    With fresh optimiser state masked entries already stay zero (their gradient is zero);
    this guards optimisers whose state predates a mask change. Returns the hook handle.
    """
    return optimizer.register_step_post_hook(lambda *_: apply_masks(model))


def has_masks(model: nn.Module) -> bool:
    """Whether any layer of ``model`` is under the library's masks."""
    return any(True for _ in _existing_entries(model))


def _existing_entries(model: nn.Module) -> Iterator[PrunableTensor]:
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES) and masked_parametrization(module) is not None:
            yield PrunableTensor(name, module)
