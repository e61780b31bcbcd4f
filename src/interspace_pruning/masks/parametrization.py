"""Masked reparametrisations of a layer's ``weight`` (via ``torch.nn.utils.parametrize``).

Both representations share one mechanism: the stored parameter (spatial weights for SP,
coefficients for IP) is multiplied by a 0/1 ``mask`` buffer in the forward pass, so masked
entries get exactly zero gradient and, once zeroed, stay zero under any standard optimiser.
"""

from __future__ import annotations

import torch
from torch import nn


class MaskedParametrization(nn.Module):
    """Base class: holds the ``mask`` buffer over the stored (prunable) parameter.

    Everything that differs between representations is a method here, so generic code
    (growth criteria, cost accounting) never branches on :attr:`kind`. Sparse inference
    looks the layer's module up by parametrisation type in the table that ``inference``
    keeps (``inference.engine.register_sparse_conv``): masks never import inference.
    """

    #: "sp" for spatial weights, "ip" for filter-basis coefficients.
    kind: str = ""

    mask: torch.Tensor

    def __init__(self, param_shape: torch.Size | tuple[int, ...], like: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(param_shape, dtype=like.dtype, device=like.device))

    def full_gradient(self, weight_grad: torch.Tensor) -> torch.Tensor:
        """``dL/d(stored tensor * mask)`` from ``dL/dW``: the gradient pruned entries would get."""
        raise NotImplementedError

    def sparse_flops(self, module: nn.Module, pixels: int) -> int:
        """FLOPs (multiply-add = 2) of ``module`` computed through its sparsity, per sample."""
        raise NotImplementedError


class MaskedWeight(MaskedParametrization):
    """SP: ``W = W_orig * M``. The stored parameter is the spatial weight itself."""

    kind = "sp"

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__(weight.shape, weight)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight

    def full_gradient(self, weight_grad: torch.Tensor) -> torch.Tensor:
        return weight_grad

    def sparse_flops(self, module: nn.Module, pixels: int) -> int:
        # every kept weight once per output pixel
        return 2 * int(self.mask.count_nonzero()) * pixels


def unparametrize_weight(module: nn.Module) -> None:
    """Replace ``module``'s parametrized weight by its current dense value, in place.

    ``parametrize.remove_parametrizations`` deletes the weight property from the module's
    class, and ``copy.deepcopy`` shares that class between a module and its copy, so folding
    a copy would break the original. Restoring the plain class on the instance avoids that.
    """
    with torch.no_grad():
        dense = module.weight.detach().clone()
    requires_grad = module.parametrizations["weight"].original.requires_grad
    del module._modules["parametrizations"]
    module.__class__ = module.__class__.__bases__[0]
    params = {"weight": nn.Parameter(dense, requires_grad=requires_grad), **module._parameters}
    module._parameters.clear()
    module._parameters.update(params)
