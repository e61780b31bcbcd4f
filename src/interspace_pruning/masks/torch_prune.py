"""Interoperation with ``torch.nn.utils.prune``.

``torch.nn.utils.prune`` stores a pruned layer's weight as a parameter ``weight_orig`` and a
buffer ``weight_mask`` and recomputes ``weight = weight_orig * weight_mask`` in a forward
pre-hook. This library stores the same thing as a parametrisation (SP: ``MaskedWeight``).

- :func:`from_torch_prune` takes a model pruned with ``torch.nn.utils.prune`` and turns every
  pruned ``Conv2d``/``Linear`` weight into an SP mask of this library, in place: the
  unpruned values and the mask are kept exactly, so the outputs do not change.
- :func:`to_torch_prune` does the reverse for SP masks, so a model pruned here can be handed
  to code that expects ``torch.nn.utils.prune``'s format (``weight_orig``/``weight_mask``).
  IP coefficients have no spatial mask (their spatial weights are dense): fold or keep them.
- :func:`load_torch_prune_state_dict` reads a *state dict* saved from a
  ``torch.nn.utils.prune`` model (keys ``*.weight_orig``/``*.weight_mask``) into a plain model.

``torch.nn.utils.prune`` leaves pruned entries of ``weight_orig`` at their old values; here
they are stored as zero. Outputs are equal; the dropped values are not kept.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune

from .parametrization import MaskedWeight, unparametrize_weight
from .prunable import PRUNABLE_TYPES, PrunableTensor, attach_masks, masked_parametrization


def _pruned_names(module: nn.Module) -> list[str]:
    """Names of the tensors ``torch.nn.utils.prune`` reparametrised on ``module``."""
    return [
        hook._tensor_name
        for hook in module._forward_pre_hooks.values()
        if isinstance(hook, torch_prune.BasePruningMethod)
    ]


def _check_mask(mask: torch.Tensor, where: str) -> None:
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{where}: weight_mask holds values other than 0 and 1")


def from_torch_prune(model: nn.Module) -> nn.Module:
    """Turn ``torch.nn.utils.prune`` masks into this library's SP masks (in place).

    Every ``Conv2d``/``Linear`` with a ``weight_orig``/``weight_mask`` pair gets an SP mask
    equal to ``weight_mask`` and a stored weight equal to ``weight_orig * weight_mask`` (pruned
    entries stored as zero, as everywhere in this library); every other ``Conv2d``/``Linear``
    gets an all-ones SP mask, so the result is an SP model of this library. Returns
    ``model``.

    Raises ``ValueError`` (one line) for a pruned ``bias`` or a pruned layer of another type:
    this library masks ``Conv2d``/``Linear`` weights only.
    """
    found = []
    for name, module in model.named_modules():
        tensors = _pruned_names(module)
        if not tensors:
            continue
        where = name or type(model).__name__
        if not isinstance(module, PRUNABLE_TYPES):
            raise ValueError(
                f"{where} ({type(module).__name__}) is pruned by torch.nn.utils.prune; this "
                "library masks nn.Conv2d/nn.Linear weights only: call "
                "torch.nn.utils.prune.remove on it first"
            )
        if tensors != ["weight"]:
            other = [t for t in tensors if t != "weight"]
            raise ValueError(
                f"{where}.{other[0]} is pruned by torch.nn.utils.prune; this library masks "
                f"weights only: call torch.nn.utils.prune.remove({where}, {other[0]!r}) first"
            )
        _check_mask(module.weight_mask, where)
        found.append((module, module.weight_mask.detach().clone()))
    for module, mask in found:
        torch_prune.remove(module, "weight")  # weight = weight_orig * mask, a plain Parameter
        attach_masks_to(module)
        PrunableTensor("", module).set_mask(mask.to(module.weight.device))
    return attach_masks(model)


def to_torch_prune(model: nn.Module) -> nn.Module:
    """Turn this library's SP masks into ``torch.nn.utils.prune`` form (in place).

    Every layer with an SP mask gets ``weight_orig`` (the stored weight) and ``weight_mask``
    through ``torch.nn.utils.prune.custom_from_mask`` (an all-ones mask too, as
    ``torch.nn.utils.prune`` itself does for a layer it pruned by 0%). IP layers raise a
    ``ValueError``: their prunable tensor is the coefficients, not the spatial weight.
    Returns ``model``.
    """
    layers = []
    for name, module in model.named_modules():
        p = masked_parametrization(module) if isinstance(module, PRUNABLE_TYPES) else None
        if p is None:
            continue
        if not isinstance(p, MaskedWeight):
            raise ValueError(
                f"{name} holds IP coefficients, which have no spatial mask; "
                "torch.nn.utils.prune can only take SP (spatial) masks"
            )
        layers.append((module, p.mask.detach().clone()))
    for module, mask in layers:
        unparametrize_weight(module)
        torch_prune.custom_from_mask(module, "weight", mask.to(module.weight.dtype))
    return model


def load_torch_prune_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor]
) -> nn.Module:
    """Load a ``torch.nn.utils.prune`` model's state dict into a plain ``model`` (in place).

    ``model`` is built as its constructor makes it. Pairs ``<layer>.weight_orig`` /
    ``<layer>.weight_mask`` become SP masks (as :func:`from_torch_prune`); every other key
    loads as usual. Returns ``model``.
    """
    state = dict(state_dict)
    masks = {}
    for key in [k for k in state if k.endswith(".weight_mask")]:
        layer = key[: -len(".weight_mask")]
        orig = state.pop(f"{layer}.weight_orig", None)
        if orig is None:
            raise ValueError(f"state dict has {key} but no {layer}.weight_orig")
        mask = state.pop(key)
        _check_mask(mask, layer)
        state[f"{layer}.weight"] = orig * mask
        masks[layer] = mask
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"state dict does not fit {type(model).__name__}: {first}") from None
    modules = dict(model.named_modules())
    for layer, mask in masks.items():
        module = modules.get(layer)
        if not isinstance(module, PRUNABLE_TYPES):
            raise ValueError(f"{layer} is not an nn.Conv2d/nn.Linear of this model")
        attach_masks_to(module)
        PrunableTensor(layer, module).set_mask(mask.to(module.weight.device))
    return attach_masks(model)


def attach_masks_to(module: nn.Module) -> None:
    """An all-ones SP mask on one layer (idempotent)."""
    if masked_parametrization(module) is None:
        parametrize.register_parametrization(module, "weight", MaskedWeight(module.weight))


__all__ = ["from_torch_prune", "load_torch_prune_state_dict", "to_torch_prune"]
