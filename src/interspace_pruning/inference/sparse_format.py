"""A compact file for pruned models: nonzero entries in CSR, plus bases and the rest.

Each prunable tensor (IP coefficients or SP weights), viewed as ``(out_channels, rest)``,
is stored as CSR over its *mask* (so a kept entry that happens to be 0 survives): ``values``
(float), ``col`` (int16 when the row is shorter than 32,768, else int32) and ``rowptr``
(int32). Filter bases and every other tensor of the state dict (BN, biases) are stored
densely; masks are implied by the CSR pattern. The file is a ``torch.save`` of tensors,
strings and numbers only, read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import models
from ..bases import FilterBasis, filter_bases
from ..foundations.checkpoint import load_tensors
from ..foundations.io import atomic_write_bytes
from ..interspace import to_interspace
from ..interspace.parametrization import InterspaceWeight
from ..masks import PrunableTensor, attach_masks, prunable

FORMAT = "interspace-sparse"
VERSION = 1


def to_csr(values: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """CSR arrays of ``values`` over the nonzero pattern of ``mask`` (2-D views)."""
    rows = values.shape[0]
    v2, m2 = values.detach().reshape(rows, -1), mask.detach().reshape(rows, -1).bool()
    cols = v2.shape[1]
    counts = m2.sum(dim=1)
    rowptr = torch.zeros(rows + 1, dtype=torch.int64)
    rowptr[1:] = torch.cumsum(counts, 0)
    col = torch.nonzero(m2)[:, 1]
    return {
        "values": v2[m2].clone(),
        "col": col.to(torch.int16 if cols < 2**15 else torch.int32),
        "rowptr": rowptr.to(torch.int32 if int(rowptr[-1]) < 2**31 else torch.int64),
    }


def from_csr(
    csr: dict[str, torch.Tensor], shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense values and the 0/1 mask from CSR arrays."""
    rows = shape[0]
    cols = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
    rowptr = csr["rowptr"].long()
    if rowptr.numel() != rows + 1 or int(rowptr[-1]) != csr["values"].numel():
        raise ValueError("sparse file is corrupt: CSR row pointers do not match the values")
    row = torch.repeat_interleave(torch.arange(rows), rowptr[1:] - rowptr[:-1])
    col = csr["col"].long()
    if col.numel() and (int(col.max()) >= cols or int(col.min()) < 0):
        raise ValueError("sparse file is corrupt: a column index is out of range")
    dense = torch.zeros(rows, cols, dtype=csr["values"].dtype)
    mask = torch.zeros(rows, cols, dtype=csr["values"].dtype)
    dense[row, col] = csr["values"]
    mask[row, col] = 1.0
    return dense.reshape(shape), mask.reshape(shape)


def csr_nbytes(csr: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in csr.values())


def _layout(model: nn.Module, entries: list[PrunableTensor]) -> dict[str, Any]:
    bases = filter_bases(model)
    index = {id(fb): i for i, fb in enumerate(bases)}
    layers = []
    for e in entries:
        p = e.parametrization
        layers.append(
            {
                "name": e.name,
                "kind": e.kind,
                "shape": list(e.param.shape),
                "basis": index[id(p.basis)] if isinstance(p, InterspaceWeight) else None,
            }
        )
    ip_layers = [layer for layer in layers if layer["kind"] == "ip"]
    shared = len(bases) < len(ip_layers)
    return {
        "layers": layers,
        "bases": [
            {
                "kernel": list(fb.kernel_size),
                "normalize": fb.normalize,
                "trainable": bool(fb.weight.requires_grad),
            }
            for fb in bases
        ],
        "share": "network" if shared else "layer",
    }


def sparse_payload(model: nn.Module, spec: dict | None = None) -> dict[str, Any]:
    """What :func:`export_sparse` writes, as a dict (also used to count bytes)."""
    entries = prunable(model)
    if not all(e.is_masked for e in entries):  # unprepared layers are written as SP, unpruned
        model = attach_masks(copy.deepcopy(model))
        entries = prunable(model)
    layout = _layout(model, entries)
    tensors: dict[str, torch.Tensor] = {}
    for e in entries:
        for k, v in to_csr(e.param, e.mask).items():
            tensors[f"layer/{e.name}/{k}"] = v
    for i, fb in enumerate(filter_bases(model)):
        tensors[f"basis/{i}"] = fb.weight.detach().clone()
    skip = set()
    for e in entries:
        skip |= {
            f"{e.name}.parametrizations.weight.original",
            f"{e.name}.parametrizations.weight.0.mask",
        }
    for k, v in model.state_dict().items():
        if k in skip or ".parametrizations.weight.0.basis." in k:
            continue
        tensors[f"state/{k}"] = v.detach().clone()
    meta = {"format": FORMAT, "version": VERSION, "model": spec, **layout}
    return {"meta": json.dumps(meta), "tensors": tensors}


def export_sparse(model: nn.Module, path: str | Path, spec: dict | None = None) -> int:
    """Write ``model`` compactly to ``path`` (atomically); returns the file size in bytes.

    ``spec`` (``{"name", "num_classes", "in_channels"}`` of a :mod:`models` entry) lets
    :func:`load_sparse` rebuild the model without being given one.
    """
    buf = io.BytesIO()
    torch.save(sparse_payload(model, spec), buf)
    atomic_write_bytes(path, buf.getvalue())
    return len(buf.getvalue())


def load_sparse(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild the pruned model written by :func:`export_sparse`.

    ``model``: a freshly built model of the same architecture (plain, as the constructor
    makes it); not needed if the file names a model of the zoo.
    """
    payload = load_tensors(path)
    try:
        meta = json.loads(payload["meta"])
        tensors = payload["tensors"]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path} is not an interspace sparse file") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{path} is not an {FORMAT} v{VERSION} file")
    if model is None:
        spec = meta.get("model")
        if not spec:
            raise ValueError(f"{path} does not name its model; pass model= (same architecture)")
        model = models.get(spec["name"], spec["num_classes"], spec["in_channels"])
    if any(layer["kind"] == "ip" for layer in meta["layers"]):
        first = meta["bases"][0] if meta["bases"] else {"normalize": True, "trainable": True}
        to_interspace(model, "dct", meta["share"], first["trainable"], first["normalize"])
    entries = {e.name: e for e in prunable(attach_masks(model))}
    names = [layer["name"] for layer in meta["layers"]]
    if sorted(names) != sorted(entries):
        missing = sorted(set(names) - set(entries))
        extra = sorted(set(entries) - set(names))
        raise ValueError(
            f"{path} does not fit this model: layers only in the file {missing[:3]}, "
            f"only in the model {extra[:3]}"
        )
    state = {k[len("state/") :]: v for k, v in tensors.items() if k.startswith("state/")}
    for layer in meta["layers"]:
        e = entries[layer["name"]]
        if layer["kind"] != e.kind or list(e.param.shape) != layer["shape"]:
            raise ValueError(
                f"{path}: layer {layer['name']!r} is {layer['kind']} {layer['shape']} in the "
                f"file but {e.kind} {list(e.param.shape)} in the model"
            )
        csr = {k: tensors[f"layer/{e.name}/{k}"] for k in ("values", "col", "rowptr")}
        values, mask = from_csr(csr, tuple(layer["shape"]))
        state[f"{e.name}.parametrizations.weight.original"] = values
        state[f"{e.name}.parametrizations.weight.0.mask"] = mask
    index = {id(fb): i for i, fb in enumerate(filter_bases(model))}
    for name, m in model.named_modules(remove_duplicate=False):  # a shared FB: every name
        if isinstance(m, FilterBasis):
            state[f"{name}.weight"] = tensors[f"basis/{index[id(m)]}"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{path} does not fit this model: {first}") from None
    return model
