"""Converting models to the interspace representation and folding them back."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import parametrize

from ..bases import FilterBasis, basis_names, filter_bases
from ..masks.parametrization import MaskedWeight, unparametrize_weight
from ..masks.prunable import PRUNABLE_TYPES, attach_masks, masked_parametrization
from .parametrization import InterspaceWeight

SHARE_MODES = ("layer", "network")


def _convertible(module: nn.Module) -> bool:
    """Conv2d layers with more than one kernel element; 1x1 gains nothing from a basis."""
    return isinstance(module, nn.Conv2d) and module.kernel_size[0] * module.kernel_size[1] > 1


def _drop_untouched_sp_mask(name: str, module: nn.Module) -> None:
    """Allow converting layers that only carry an all-ones SP mask; refuse pruned ones."""
    p = masked_parametrization(module)
    if p is None:
        return
    if isinstance(p, InterspaceWeight):
        raise ValueError(f"layer {name!r} is already in the interspace representation")
    if isinstance(p, MaskedWeight) and not bool((p.mask == 1).all()):
        raise ValueError(
            f"layer {name!r} is already pruned in the spatial basis (SP); "
            "convert with to_interspace() before pruning"
        )
    unparametrize_weight(module)


def to_interspace(
    model: nn.Module,
    basis: str = "dct",
    share: str = "layer",
    trainable_basis: bool = True,
    normalize: bool = True,
) -> nn.Module:
    """Convert ``model`` in place to the interspace representation and return it.

    Every ``nn.Conv2d`` with a kernel larger than 1x1 (any stride, padding, dilation or
    groups, square or not) gets its weight reparametrised as ``W = (Lambda * M) F``; the
    coefficients ``Lambda`` are solved from the current weights, so the model computes the
    same function. 1x1 convolutions and ``nn.Linear`` layers keep spatial weights (with SP
    masks). The model keeps its own module types.

    Args:
        basis: filter-basis initialisation: ``"dct"``, ``"standard"``, ``"random"``, ``"pca"``.
        share: ``"layer"`` (one FB per layer) or ``"network"`` (one FB per kernel shape,
            shared by all layers with that shape).
        trainable_basis: train the FB jointly with the coefficients (``False`` freezes it).
        normalize: scale each basis filter to unit L2 norm in the forward pass.
    """
    if basis not in basis_names():
        raise ValueError(f"unknown basis {basis!r}; choose one of {basis_names()}")
    if share not in SHARE_MODES:
        raise ValueError(f"unknown share mode {share!r}; choose one of {list(SHARE_MODES)}")
    convs = [(n, m) for n, m in model.named_modules() if _convertible(m)]
    if not convs:
        raise ValueError(
            f"{type(model).__name__} has no nn.Conv2d with a kernel larger than 1x1 to convert"
        )
    for name, module in convs:
        _drop_untouched_sp_mask(name, module)

    def make_basis(kernel: tuple[int, int], layers: list[nn.Module]) -> FilterBasis:
        w = layers[0].weight
        return FilterBasis(
            kernel,
            init=basis,
            trainable=trainable_basis,
            normalize=normalize,
            filters=[m.weight for m in layers] if basis == "pca" else None,
            dtype=w.dtype,
            device=w.device,
        )

    shared: dict[tuple[int, int], FilterBasis] = {}
    if share == "network":
        by_kernel: dict[tuple[int, int], list[nn.Module]] = {}
        for _, m in convs:
            by_kernel.setdefault(tuple(m.kernel_size), []).append(m)
        shared = {k: make_basis(k, layers) for k, layers in by_kernel.items()}

    for _, module in convs:
        kernel = tuple(module.kernel_size)
        fb = shared[kernel] if share == "network" else make_basis(kernel, [module])
        parametrize.register_parametrization(module, "weight", InterspaceWeight(module.weight, fb))
    attach_masks(model)
    return model


def is_interspace(module: nn.Module) -> bool:
    """Whether ``module``'s weight is in the interspace representation."""
    return isinstance(module, PRUNABLE_TYPES) and isinstance(
        masked_parametrization(module), InterspaceWeight
    )


def basis_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The FB parameters (e.g. for their own optimiser group without weight decay)."""
    return [fb.weight for fb in filter_bases(model)]


def fold(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return a plain PyTorch model with dense spatial weights and no trace of the library.

    The result computes the same function (masks and bases folded into the weights) and
    uses only ``torch.nn`` classes, so it can be saved, scripted or exported anywhere.
    """
    out = model if inplace else copy.deepcopy(model)
    for module in out.modules():
        if isinstance(module, PRUNABLE_TYPES) and masked_parametrization(module) is not None:
            unparametrize_weight(module)
    return out
