"""Sparsity accounting: per-layer and global sparsity, nonzeros and FB overhead."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

from ..bases import FilterBasis, filter_bases
from .prunable import PrunableTensor, prunable


@dataclass(frozen=True)
class LayerSparsity:
    name: str
    kind: str  # "ip", "sp" or "dense" (a layer not under a mask)
    shape: tuple[int, ...]  # shape of the prunable tensor (coefficients for IP)
    total: int
    nonzero: int  # entries kept by the mask

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.total if self.total else 0.0


@dataclass(frozen=True)
class SparsityReport:
    """What ``sparsity_report(model)`` returns."""

    layers: list[LayerSparsity] = field(default_factory=list)
    #: Parameters of all filter bases (each shared FB counted once).
    basis_params: int = 0
    #: Parameters of the equivalent dense (folded) model: spatial weights, biases, BN, ...
    dense_model_params: int = 0

    @property
    def total(self) -> int:
        return sum(layer.total for layer in self.layers)

    @property
    def nonzero(self) -> int:
        return sum(layer.nonzero for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Global sparsity over all prunable tensors."""
        return 1.0 - self.nonzero / self.total if self.total else 0.0

    @property
    def basis_overhead(self) -> float:
        """FB parameters as a fraction of the dense model's parameters."""
        return self.basis_params / self.dense_model_params if self.dense_model_params else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        for row, layer in zip(d["layers"], self.layers, strict=True):
            row["sparsity"] = layer.sparsity
        d.update(
            total=self.total,
            nonzero=self.nonzero,
            sparsity=self.sparsity,
            basis_overhead=self.basis_overhead,
        )
        return d

    def __str__(self) -> str:
        w = max([len(r.name) for r in self.layers] + [5])
        lines = [f"{'layer':<{w}}  kind  {'nonzero':>10}  {'total':>10}  sparsity"]
        for r in self.layers:
            lines.append(
                f"{r.name:<{w}}  {r.kind:<4}  {r.nonzero:>10}  {r.total:>10}  {r.sparsity:8.2%}"
            )
        lines.append(
            f"{'total':<{w}}  {'':<4}  {self.nonzero:>10}  {self.total:>10}  {self.sparsity:8.2%}"
        )
        lines.append(
            f"filter bases: {self.basis_params} parameters "
            f"({self.basis_overhead:.4%} of the dense model's {self.dense_model_params})"
        )
        return "\n".join(lines)


def dense_parameter_count(model: nn.Module, entries: list[PrunableTensor]) -> int:
    """Parameters of the folded model: spatial weights instead of coefficients and FBs."""
    replaced = {id(e.param) for e in entries}
    skip = {id(m.weight) for m in model.modules() if isinstance(m, FilterBasis)}
    other = sum(
        p.numel() for p in model.parameters() if id(p) not in replaced and id(p) not in skip
    )
    return other + sum(e.weight_shape.numel() for e in entries)


def sparsity_report(model: nn.Module) -> SparsityReport:
    """Per-layer and global sparsity, nonzero counts and FB overhead of ``model``.

    A pure query: a model never given to :func:`~interspace_pruning.prepare` reads as dense
    (sparsity 0) and is left unchanged.
    """
    entries = prunable(model)
    layers = [
        LayerSparsity(e.name, e.kind, tuple(e.param.shape), e.numel(), e.num_kept())
        for e in entries
    ]
    return SparsityReport(
        layers=layers,
        basis_params=sum(fb.weight.numel() for fb in filter_bases(model)),
        dense_model_params=dense_parameter_count(model, entries),
    )
