"""A binary mask value type that validates itself."""

from __future__ import annotations

import torch


class Mask:
    """A binary keep-mask: ``True`` (1) keeps an entry, ``False`` (0) prunes it.

    Construction validates the values, so a ``Mask`` in hand is always binary. Use
    :meth:`check_shape` before applying it to a tensor.
    """

    __slots__ = ("_t",)

    def __init__(self, tensor: torch.Tensor | Mask) -> None:
        if isinstance(tensor, Mask):
            tensor = tensor.tensor
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"a mask must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dtype != torch.bool:
            t = tensor.detach()
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise ValueError("mask holds NaN or inf; a mask must contain only 0 and 1")
            if not ((t == 0) | (t == 1)).all():
                raise ValueError("mask holds values other than 0 and 1")
            tensor = t != 0
        self._t = tensor.detach()

    @classmethod
    def ones_like(cls, t: torch.Tensor) -> Mask:
        return cls(torch.ones_like(t, dtype=torch.bool))

    @property
    def tensor(self) -> torch.Tensor:
        """The mask as a bool tensor."""
        return self._t

    @property
    def shape(self) -> torch.Size:
        return self._t.shape

    def numel(self) -> int:
        return self._t.numel()

    def num_kept(self) -> int:
        return int(self._t.sum())

    @property
    def density(self) -> float:
        return self.num_kept() / max(self.numel(), 1)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def check_shape(self, shape: torch.Size | tuple[int, ...], what: str = "tensor") -> None:
        if tuple(self._t.shape) != tuple(shape):
            raise ValueError(
                f"mask shape {tuple(self._t.shape)} does not match {what} shape {tuple(shape)}"
            )

    def __and__(self, other: Mask) -> Mask:
        return Mask(self._t & Mask(other).tensor)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mask) and torch.equal(self._t, other._t)

    def __hash__(self) -> int:  # masks are mutable-by-content tensors; hash by identity
        return id(self)

    def __repr__(self) -> str:
        return f"Mask(shape={tuple(self.shape)}, density={self.density:.4f})"
