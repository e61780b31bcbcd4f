"""Compact storage of mostly-zero tensors, for checkpoints of sparse runs.

A pruned run's checkpoint is mostly zeros: its weights (or IP coefficients), their SGD
momentum and their masks are zero at every pruned position. :func:`encode` replaces each
such tensor in a nested state (dicts, lists, tuples) with a small dict: a bitmap of the
entries that are not zero (one bit per entry) and those entries' values, or one
value when they are all equal (a mask's ones). Tensors with the same bitmap share one
bitmap tensor, which ``torch.save`` stores once: a weight, its momentum and its mask cost
one bitmap. An ImageNet ResNet-18 pruned to 98% goes from 134 MB to about 3.5 MB (measured
in ``docs/campaign.md``), small enough to commit, so its run continues on the next machine.

Every value comes back with its exact bits (NaN payloads included), and every zero as
``+0.0``: the sign of a zero is not kept. Pruned entries are where it differs (an SP weight
multiplied by its zero mask is ``-0.0`` where it was negative), and no result depends on it:
``-0.0 == 0.0``, and a zero's sign reaches an output only through a division by it.
:func:`decode` restores the tensors, checking every field, and refuses a file whose
bitmaps would expand to more than the caller allows (one small bitmap named by many
entries is not a file this program writes).
"""

from __future__ import annotations

import math

import torch

#: The key that marks an encoded tensor (a state dict's keys are module paths, never this).
MARK = "__interspace_sparse__"
#: Tensors smaller than this stay as they are: the gain would be bytes.
MIN_NUMEL = 4096
#: A tensor is encoded when that takes at most this fraction of its bytes.
MAX_RATIO = 0.5
_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_MAX_DEPTH = 16


def _bit_weights(device: torch.device) -> torch.Tensor:
    return torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=device)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """A 1-D bool tensor as uint8, eight entries per byte (entry ``i`` is bit ``i % 8``)."""
    pad = (-bits.numel()) % 8
    if pad:
        bits = torch.cat([bits, bits.new_zeros(pad)])
    return (bits.view(-1, 8).to(torch.uint8) * _bit_weights(bits.device)).sum(1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """The inverse of :func:`pack_bits`: the first ``numel`` bits as a bool tensor."""
    bits = (packed.view(-1, 1) & _bit_weights(packed.device)) != 0
    return bits.view(-1)[:numel]


def _nonzero_bits(t: torch.Tensor) -> torch.Tensor:
    """Which entries of ``t`` are not zero (NaN counts as a value)."""
    return t.reshape(-1) != 0


def _encode_tensor(t: torch.Tensor, bitmaps: dict) -> dict | torch.Tensor:
    if (
        t.numel() < MIN_NUMEL
        or t.is_complex()
        or t.element_size() not in _INT_OF_SIZE
        or t.layout != torch.strided
    ):
        return t
    orig, t = t, t.detach().cpu().contiguous()
    bits = _nonzero_bits(t)
    values = t.reshape(-1)[bits]
    ints = values.view(_INT_OF_SIZE[t.element_size()])
    constant = ints.numel() > 0 and bool((ints == ints[0]).all())
    if constant:  # one value with its exact bits (a mask's ones)
        values = values[:1].clone()
    packed = pack_bits(bits)
    key = (t.numel(), packed.numel(), packed.numpy().tobytes())
    shared = key in bitmaps
    cost = (0 if shared else packed.numel()) + values.numel() * t.element_size()
    if cost > MAX_RATIO * t.numel() * t.element_size():
        return orig
    packed = bitmaps.setdefault(key, packed)
    return {
        MARK: 1,
        "shape": list(t.shape),
        "bitmap": packed,
        "values": values,
        "constant": constant,
    }


def encode(obj, _bitmaps: dict | None = None, _depth: int = 0):
    """``obj`` with each mostly-zero tensor replaced by its compact form (see the module);
    containers keep their types (an ``OrderedDict`` state dict keeps its ``_metadata``)."""
    bitmaps = {} if _bitmaps is None else _bitmaps
    if isinstance(obj, torch.Tensor):
        return _encode_tensor(obj, bitmaps)
    if _depth > _MAX_DEPTH:
        return obj
    if isinstance(obj, dict):
        out = type(obj)((k, encode(v, bitmaps, _depth + 1)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(encode(v, bitmaps, _depth + 1) for v in obj)
    return obj


def _is_encoded(obj) -> bool:
    return isinstance(obj, dict) and MARK in obj


class EncodingError(ValueError):
    """An encoded tensor that is malformed, or expands beyond what its reader allows."""


def _decode_tensor(d: dict, budget: list[int]) -> torch.Tensor:
    shape, packed, values, constant = (d.get(k) for k in ("shape", "bitmap", "values", "constant"))
    if (
        set(d) != {MARK, "shape", "bitmap", "values", "constant"}
        or not isinstance(shape, list)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        or not isinstance(packed, torch.Tensor)
        or packed.dtype != torch.uint8
        or packed.dim() != 1
        or not isinstance(values, torch.Tensor)
        or values.dim() != 1
        or values.element_size() not in _INT_OF_SIZE
        or values.is_complex()
        or values.is_quantized
        or not isinstance(constant, bool)
    ):
        raise EncodingError("an encoded tensor has missing or mistyped fields")
    numel = math.prod(shape)
    if packed.numel() != (numel + 7) // 8:
        raise EncodingError(f"an encoded tensor's bitmap does not fit its shape {shape}")
    size = numel * values.element_size()
    budget[0] -= size
    if budget[0] < 0:
        raise EncodingError("its encoded tensors expand to more than the file could hold")
    bits = unpack_bits(packed, numel)
    nnz = int(bits.sum())
    if (constant and (nnz == 0 or values.numel() != 1)) or (not constant and values.numel() != nnz):
        raise EncodingError("an encoded tensor's values do not match its bitmap")
    out = torch.zeros(numel, dtype=values.dtype)
    out[bits] = values.expand(nnz) if constant else values
    return out.view(shape)


def decode(obj, max_bytes: int, _budget: list[int] | None = None, _depth: int = 0):
    """``obj`` with every encoded tensor restored (containers keep their types). Raises
    :class:`EncodingError` on a malformed entry, or when the restored tensors would take
    more than ``max_bytes``."""
    budget = [max_bytes] if _budget is None else _budget
    if _is_encoded(obj):
        return _decode_tensor(obj, budget)
    if _depth > _MAX_DEPTH:
        raise EncodingError("it nests deeper than a state dict")
    if isinstance(obj, dict):
        out = type(obj)((k, decode(v, 0, budget, _depth + 1)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(decode(v, 0, budget, _depth + 1) for v in obj)
    return obj
