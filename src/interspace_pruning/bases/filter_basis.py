"""The trainable filter basis module."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .inits import init_basis


class FilterBasis(nn.Module):
    """A filter basis (FB) ``{g_1, ..., g_n}`` for ``kh x kw`` kernels, ``n = kh*kw``.

    ``weight`` is an ``(n, kh*kw)`` parameter whose rows are the flattened basis filters.
    Calling the module returns the basis used in the forward pass: with ``normalize`` each
    row is scaled to unit L2 norm, so coefficient magnitudes stay comparable while the FB
    trains (magnitude-based criteria rely on that).
    """

    def __init__(
        self,
        kernel_size: tuple[int, int],
        init: str = "dct",
        trainable: bool = True,
        normalize: bool = True,
        filters: Sequence[torch.Tensor] | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        kh, kw = kernel_size
        self.kernel_size = (int(kh), int(kw))
        self.init = init
        self.normalize = normalize
        basis = init_basis(init, kh, kw, filters).to(dtype=dtype, device=device)
        self.weight = nn.Parameter(basis, requires_grad=trainable)

    @property
    def num_filters(self) -> int:
        return self.weight.shape[0]

    def forward(self) -> torch.Tensor:
        if not self.normalize:
            return self.weight
        return self.weight / self.weight.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def filters(self) -> torch.Tensor:
        """The basis filters as an ``(n, kh, kw)`` tensor (normalised if enabled)."""
        return self().detach().reshape(-1, *self.kernel_size)

    def extra_repr(self) -> str:
        kh, kw = self.kernel_size
        return (
            f"kernel_size=({kh}, {kw}), init={self.init!r}, "
            f"trainable={self.weight.requires_grad}, normalize={self.normalize}"
        )


def filter_bases(model: nn.Module) -> list[FilterBasis]:
    """The distinct filter bases used by ``model`` (a shared FB is listed once)."""
    seen: dict[int, FilterBasis] = {}
    for m in model.modules():
        if isinstance(m, FilterBasis):
            seen.setdefault(id(m), m)
    return list(seen.values())
