"""The interspace representation of a convolution weight: ``W = (Lambda * M) F``."""

from __future__ import annotations

import torch

from ..bases import FilterBasis
from ..masks.parametrization import MaskedParametrization


class InterspaceWeight(MaskedParametrization):
    """IP: each ``kh x kw`` filter is ``sum_n lambda_n g_n`` over a filter basis.

    The stored parameter is the coefficient tensor ``Lambda`` of shape
    ``(out_channels, in_channels // groups, n)``; the forward pass returns the dense spatial
    weight ``reshape((Lambda * M) @ F)``. ``basis`` may be shared between layers
    (``share="network"``); autograd then sums its gradient over all of them.
    """

    kind = "ip"

    def __init__(self, weight: torch.Tensor, basis: FilterBasis) -> None:
        if weight.dim() != 4:
            raise ValueError(f"expected a 4-D conv weight, got shape {tuple(weight.shape)}")
        out_c, in_c, kh, kw = weight.shape
        if (kh, kw) != basis.kernel_size:
            raise ValueError(f"basis for {basis.kernel_size} cannot represent a {kh}x{kw} kernel")
        super().__init__((out_c, in_c, basis.num_filters), weight)
        self.basis = basis
        self.weight_shape = (out_c, in_c, kh, kw)

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        return torch.matmul(coeffs * self.mask, self.basis()).view(self.weight_shape)

    @torch.no_grad()
    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """Solve ``Lambda F = W`` (float64 for accuracy; the basis is invertible)."""
        out_c, in_c, kh, kw = weight.shape
        f = self.basis().to(torch.float64)
        w = weight.detach().reshape(-1, kh * kw).to(torch.float64)
        coeffs = torch.linalg.solve(f.T, w.T).T
        return coeffs.reshape(out_c, in_c, -1).to(weight.dtype)
