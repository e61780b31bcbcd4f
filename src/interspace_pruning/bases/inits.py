"""Initialisations of a filter basis (FB).

A basis for a ``kh x kw`` kernel is stored as an ``(n, kh*kw)`` matrix with ``n = kh*kw``:
row ``i`` is basis filter ``g_i`` flattened in row-major order. Every initialiser returns
an orthonormal basis, so converting a layer is exact and well conditioned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

BasisInit = Callable[[int, int, "Sequence[torch.Tensor] | None"], torch.Tensor]

_INITS: dict[str, BasisInit] = {}


def register_basis(name: str) -> Callable[[BasisInit], BasisInit]:
    """Register ``fn(kh, kw, filters) -> (kh*kw, kh*kw) tensor`` as basis ``name``."""

    def wrap(fn: BasisInit) -> BasisInit:
        _INITS[name] = fn
        return fn

    return wrap


def basis_names() -> list[str]:
    """Names accepted by ``to_interspace(basis=...)``."""
    return sorted(_INITS)


def dct_1d(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix; row ``u`` is the ``u``-th cosine."""
    x = torch.arange(n, dtype=torch.float64)
    u = x[:, None]
    mat = torch.cos(math.pi * (2 * x[None, :] + 1) * u / (2 * n))
    mat *= math.sqrt(2.0 / n)
    mat[0] /= math.sqrt(2.0)
    return mat


@register_basis("dct")
def dct_basis(kh: int, kw: int, filters: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Orthonormal 2-D DCT-II: ``g_(u,v)(x, y) = c_u(x) c_v(y)``, DC filter first."""
    return torch.kron(dct_1d(kh), dct_1d(kw))


@register_basis("standard")
def standard_basis(kh: int, kw: int, filters: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """The spatial basis (identity). Frozen and unnormalised, IP with it is exactly SP."""
    return torch.eye(kh * kw, dtype=torch.float64)


@register_basis("random")
def random_basis(kh: int, kw: int, filters: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """A random orthogonal basis (Haar distributed; uses torch's global RNG)."""
    n = kh * kw
    q, r = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    # Fixing the signs by diag(r) makes the distribution uniform over O(n).
    return (q * torch.sign(torch.diagonal(r))).T.contiguous()


@register_basis("pca")
def pca_basis(kh: int, kw: int, filters: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Principal directions of the given filters, strongest first.

    The rows are the right singular vectors of the uncentred ``(#filters, kh*kw)`` matrix,
    i.e. the basis in which the filters' energy is most concentrated, which is what
    magnitude pruning of a trained model wants. Signs are fixed so that each row's
    largest entry is positive (deterministic output).
    """
    if not filters:
        raise ValueError("basis 'pca' needs the layer's current filters; none were given")
    mat = torch.cat([f.detach().reshape(-1, kh * kw).to(torch.float64) for f in filters])
    _, _, vh = torch.linalg.svd(mat, full_matrices=True)
    idx = vh.abs().argmax(dim=1)
    signs = torch.sign(vh.gather(1, idx[:, None]))
    signs[signs == 0] = 1.0
    return vh * signs


def init_basis(
    name: str, kh: int, kw: int, filters: Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    """Build basis ``name`` for a ``kh x kw`` kernel as a float64 ``(kh*kw, kh*kw)`` matrix."""
    if name not in _INITS:
        raise ValueError(f"unknown basis {name!r}; choose one of {basis_names()}")
    return _INITS[name](kh, kw, filters)
