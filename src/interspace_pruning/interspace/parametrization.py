"""The interspace representation of a convolution weight: ``W = (Lambda * M) F``."""

from __future__ import annotations

import torch
from torch import nn

from ..bases import FilterBasis
from ..masks.parametrization import MaskedParametrization

_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu")
_TORCH = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])


def _autocast_enabled(device_type: str) -> bool:
    if _TORCH >= (2, 4):
        return torch.is_autocast_enabled(device_type)
    if device_type == "cpu":  # torch < 2.4 had one query per device type
        return torch.is_autocast_cpu_enabled()
    return device_type == "cuda" and torch.is_autocast_enabled()


def _matmul_no_autocast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` in the inputs' own dtype, even inside an autocast region."""
    dev = a.device.type
    if dev in _AUTOCAST_DEVICES and _autocast_enabled(dev):
        with torch.autocast(dev, enabled=False):
            return torch.matmul(a, b)
    return torch.matmul(a, b)


#: Below this many filters the plain product is as fast: pairing's fixed cost (building
#: ``block_diag`` and its backward) is tens of microseconds (measured on a Zen 4 core).
_PAIR_MIN_FILTERS = 2048


def _basis_product(coeffs: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``coeffs @ basis``, rows ``(.., n) -> (.., kh*kw)``, two rows per GEMM row.

    ``(filters, 9) @ (9, 9)`` is a skinny GEMM that the CPU BLAS runs far below memory
    speed. Viewing the rows in pairs against ``block_diag(F, F)`` makes it a
    ``(filters/2, 18) @ (18, 18)`` product with the same nonzero terms (the off-diagonal
    blocks add exact zeros): on one Zen 4 core about 2.5x faster for a 512x512 layer,
    forward and backward, and 3% of an IP ResNet-18 training step
    (``benchmarks/ip_weight_product.py``). Small layers and odd row counts take the plain
    product.
    """
    n = basis.shape[0]
    filters = coeffs.numel() // n
    if filters < _PAIR_MIN_FILTERS or filters % 2:
        return _matmul_no_autocast(coeffs, basis)
    pairs = _matmul_no_autocast(coeffs.reshape(-1, 2 * n), torch.block_diag(basis, basis))
    return pairs.view(*coeffs.shape[:-1], basis.shape[1])


class InterspaceWeight(MaskedParametrization):
    """IP: each ``kh x kw`` filter is ``sum_n lambda_n g_n`` over a filter basis.

    The stored parameter is the coefficient tensor ``Lambda`` of shape
    ``(out_channels, in_channels // groups, n)``; the forward pass returns the dense spatial
    weight ``reshape((Lambda * M) @ F)``. ``basis`` may be shared between layers
    (``share="network"``); autograd then sums its gradient over all of them.

    Precision: the weight is formed in the dtype of ``Lambda`` and ``F`` (float32 in
    mixed-precision training), with autocast switched off for the small ``(Lambda*M) @ F``
    product. Autocast then casts the finished weight to bf16/fp16 inside the convolution,
    once, exactly as it casts an SP weight ``W * M``: both representations see one rounding
    of the same kind, and ``Lambda``, ``F`` and their gradients never pass through a 16-bit
    matmul (rounding ``Lambda`` and ``F`` separately would add error SP does not have). The
    product costs ``C_out * C_in * K^4`` multiply-adds, negligible beside the convolution.

    Layout: ``memory_format`` (set by ``training.device.set_channels_last``) is the layout
    of the returned weight; channels_last lets the convolution skip a layout conversion.
    """

    kind = "ip"
    #: Layout of the weight the forward pass returns.
    memory_format: torch.memory_format = torch.contiguous_format

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
        w = _basis_product(coeffs * self.mask, self.basis()).view(self.weight_shape)
        if self.memory_format is torch.contiguous_format:
            return w
        return w.contiguous(memory_format=self.memory_format)

    @torch.no_grad()
    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """Solve ``Lambda F = W`` (float64 for accuracy; the basis is invertible)."""
        out_c, in_c, kh, kw = weight.shape
        f = self.basis().to(torch.float64)
        w = weight.detach().reshape(-1, kh * kw).to(torch.float64)
        coeffs = torch.linalg.solve(f.T, w.T).T
        return coeffs.reshape(out_c, in_c, -1).to(weight.dtype)

    def full_gradient(self, weight_grad: torch.Tensor) -> torch.Tensor:
        """``dL/d(Lambda*M) = dL/dW_flat @ F^T`` (pruned coefficients included)."""
        basis = self.basis().detach()  # (n, kh*kw)
        return torch.matmul(weight_grad.reshape(*self.mask.shape[:2], -1), basis.T)

    def sparse_flops(self, module: nn.Module, pixels: int) -> int:
        """The basis convolution for the ``U`` (input channel, basis filter) pairs that any
        kept coefficient uses, then the sparse 1x1 convolution with the coefficients:
        ``2 * (U * kh*kw + nnz(Lambda)) * pixels``."""
        out_c, in_per_group, n = self.mask.shape
        groups = module.groups
        m = self.mask.bool().reshape(groups, out_c // groups, in_per_group, n)
        used = int(m.any(dim=1).sum())
        kh, kw = self.weight_shape[2:]
        return 2 * (used * kh * kw + int(self.mask.count_nonzero())) * pixels
