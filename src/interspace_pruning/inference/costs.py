"""Cost accounting: dense and effective FLOPs, nonzero parameters, bytes on disk.

FLOPs count a multiply-add as 2, as ``torch.utils.flop_counter`` does; the dense total comes
from it. Per prunable layer with ``P`` output pixels per sample:

- dense:  ``2 * C_out * (C_in/groups) * kh*kw * P`` (conv) or ``2 * in * out`` (linear);
- SP:     ``2 * nnz(W) * P``: every kept weight once per output pixel;
- IP:     ``2 * (U * kh*kw + nnz(Lambda)) * P``: the basis convolution for the ``U`` (input
  channel, basis filter) pairs that any kept coefficient uses (at most ``C_in * kh*kw``),
  then the sparse 1x1 convolution with the coefficients.

The sparse counts come from each layer's parametrisation (``sparse_flops``), the one
formula that sparse inference also decides by. A model never prepared reads as dense.

``bytes`` is the layer's share of the sparse file (see :mod:`.sparse_format`).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..bases import filter_bases
from ..foundations.modes import eval_mode
from ..interspace import fold
from ..masks import prunable
from .sparse_format import csr_nbytes, sparse_payload


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str  # "ip", "sp" or "dense"
    dense_flops: int
    sparse_flops: int
    nonzero: int
    params: int
    bytes: int


@dataclass
class CostReport:
    layers: list[LayerCost] = field(default_factory=list)
    #: FLOPs of the whole dense model (all layers, from torch.utils.flop_counter).
    dense_flops: int = 0
    #: The same with every prunable layer at its sparse cost.
    sparse_flops: int = 0
    #: Nonzero parameters: kept prunable entries, filter bases, all other parameters.
    nonzero_params: int = 0
    dense_params: int = 0
    basis_params: int = 0
    #: Size of the sparse file, and of the dense (folded) state dict, in bytes.
    sparse_bytes: int = 0
    dense_bytes: int = 0

    @property
    def flop_reduction(self) -> float:
        return self.dense_flops / self.sparse_flops if self.sparse_flops else float("inf")

    @property
    def compression(self) -> float:
        return self.dense_bytes / self.sparse_bytes if self.sparse_bytes else float("inf")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(flop_reduction=self.flop_reduction, compression=self.compression)
        return d

    def __str__(self) -> str:
        w = max([len(r.name) for r in self.layers] + [5])
        lines = [f"{'layer':<{w}}  kind   dense MFLOPs  sparse MFLOPs   nonzero    bytes"]
        for r in self.layers:
            lines.append(
                f"{r.name:<{w}}  {r.kind:<5} {r.dense_flops / 1e6:13.3f} "
                f"{r.sparse_flops / 1e6:14.3f}"
                f" {r.nonzero:9d} {r.bytes:8d}"
            )
        lines.append(
            f"total: {self.dense_flops / 1e6:.2f} -> {self.sparse_flops / 1e6:.2f} MFLOPs "
            f"({self.flop_reduction:.1f}x), {self.nonzero_params} of {self.dense_params} "
            f"parameters nonzero (FB {self.basis_params}), file {self.sparse_bytes} bytes vs "
            f"{self.dense_bytes} dense ({self.compression:.1f}x)"
        )
        return "\n".join(lines)


def _output_pixels(model: nn.Module, example: torch.Tensor) -> dict[nn.Module, int]:
    pixels: dict[nn.Module, int] = {}

    def hook(m, inp, out):
        pixels[m] = out[0].numel() // out.shape[1] if out.dim() > 2 else 1

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.no_grad():
        model(example)
    for h in handles:
        h.remove()
    return pixels


def costs(model: nn.Module, input_shape: tuple[int, ...]) -> CostReport:
    """Costs of one sample of shape ``input_shape`` through ``model`` (SP, IP or dense),
    measured in eval mode; the model's train/eval modes are restored afterwards."""
    with eval_mode(model):
        return _costs(model, input_shape)


def _costs(model: nn.Module, input_shape: tuple[int, ...]) -> CostReport:
    first = next(model.parameters())
    example = torch.zeros((1, *input_shape), dtype=first.dtype, device=first.device)
    plain = fold(model)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        plain(example)
    dense_total = counter.get_total_flops()
    pixels = _output_pixels(model, example)
    layers = []
    sparse_total = dense_total
    entries = [e for e in prunable(model) if e.is_masked]  # a pure query
    masked = bool(entries)
    payload = sparse_payload(model) if masked else None
    for e in entries:
        m = e.module
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            dense = 2 * m.out_channels * (m.in_channels // m.groups) * kh * kw * pixels[m]
        else:
            dense = 2 * m.in_features * m.out_features
        nnz = e.num_kept()
        sparse = e.parametrization.sparse_flops(m, pixels[m])
        sparse_total += sparse - dense
        tensors = payload["tensors"]
        nbytes = csr_nbytes(
            {k: tensors[f"layer/{e.name}/{k}"] for k in ("values", "col", "rowptr")}
        )
        layers.append(LayerCost(e.name, e.kind, dense, sparse, nnz, e.numel(), nbytes))
    basis = sum(fb.weight.numel() for fb in filter_bases(model))
    prunable_ids = {id(e.param) for e in entries} | {id(fb.weight) for fb in filter_bases(model)}
    others = sum(p.numel() for p in model.parameters() if id(p) not in prunable_ids)
    dense_params = sum(p.numel() for p in plain.parameters())
    buf = io.BytesIO()
    torch.save(plain.state_dict(), buf)
    sparse_buf = io.BytesIO()
    if masked:
        torch.save(payload, sparse_buf)
    return CostReport(
        layers=layers,
        dense_flops=dense_total,
        sparse_flops=sparse_total,
        nonzero_params=sum(r.nonzero for r in layers) + basis + others,
        dense_params=dense_params,
        basis_params=basis,
        sparse_bytes=len(sparse_buf.getvalue()) if masked else len(buf.getvalue()),
        dense_bytes=len(buf.getvalue()),
    )
