"""A compact file for pruned models: nonzero entries in CSR, plus bases and the rest.

Each prunable tensor (IP coefficients or SP weights), viewed as ``(out_channels, rest)``,
is stored as CSR over its *mask* (so a kept entry that happens to be 0 survives): ``values``
(float), ``col`` (int16 when the row is shorter than 32,768, else int32) and ``rowptr``
(int32). Filter bases and every other tensor of the state dict (BN, biases) are stored
densely; masks are implied by the CSR pattern. The file is a ``torch.save`` of tensors,
strings and numbers only, read back with ``torch.load(weights_only=True)``, with a checksum
(see :mod:`..foundations.checkpoint`). Version 2 also records each basis's initialisation and
the representation; version 1 files still load (the only version without a checksum: a later
file whose checksum is missing is refused). Every header field and tensor is checked against
the others before anything is built or allocated, the ``state/`` tensors included (finite,
variances not negative, biases and BN statistics of consistent sizes): a malformed file raises
a ``ValueError`` naming the field. The model is rebuilt from the header only when it names a
registered model (or the caller trusts its import path). What a file makes is bounded by what
it stores: each tensor holds the elements it claims (no stride-0 view of a few bytes), the
layers describe at most ``DENSE_PER_STORED`` dense weights per stored value, the model a
header names is sized on the meta device before it is built, and every value must stay finite
in the model's dtype.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import models
from ..bases import FilterBasis, filter_bases
from ..foundations.checkpoint import load_tensors, save_tensors
from ..interspace import to_interspace
from ..interspace.convert import SHARE_MODES
from ..interspace.parametrization import InterspaceWeight
from ..masks import PrunableTensor, attach_masks, prunable


class UnnamedModelError(ValueError):
    """A sparse file written without a model spec, loaded without a model to fill."""


FORMAT = "interspace-sparse"
VERSION = 2
READABLE_VERSIONS = (1, 2)
#: Largest kernel side a basis may have (a basis is (kh*kw)^2 floats).
MAX_KERNEL = 31
#: The header's layers may describe at most this many dense weights per value the file stores
#: (or MIN_DENSE_LIMIT, if more): a small file never makes a huge model.
DENSE_PER_STORED = 1024
MIN_DENSE_LIMIT = 2**24


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
                "init": fb.init,
                "normalize": fb.normalize,
                "trainable": bool(fb.weight.requires_grad),
            }
            for fb in bases
        ],
        "share": "network" if shared else "layer",
    }


def sparse_payload(
    model: nn.Module, spec: dict | None = None, tag: str | None = None
) -> dict[str, Any]:
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
    rep = "ip" if any(layer["kind"] == "ip" for layer in layout["layers"]) else "sp"
    meta = {"format": FORMAT, "version": VERSION, "model": spec, "representation": rep, **layout}
    if tag is not None:
        meta["tag"] = tag
    return {"meta": json.dumps(meta), "tensors": tensors}


def export_sparse(
    model: nn.Module, path: str | Path, spec: dict | None = None, tag: str | None = None
) -> int:
    """Write ``model`` compactly to ``path`` (atomically); returns the file size in bytes.

    ``spec`` (``{"name", "num_classes", "in_channels"}`` of a :mod:`models` entry) lets
    :func:`load_sparse` rebuild the model without being given one. ``tag`` (a run's
    configuration hash, say) is recorded so that :func:`load_sparse` can refuse the file of
    another run.
    """
    return save_tensors(path, sparse_payload(model, spec, tag))


def read_sparse(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The validated header and tensors of a sparse file (nothing built yet)."""
    payload = load_tensors(path, "sparse file", "export the model again", legacy=_legacy)
    return check_sparse_payload(payload, path)


def described_size(meta: dict, tensors: dict[str, torch.Tensor]) -> int:
    """How many values the model of a validated file holds: its layers' dense weights, its
    filter bases and the rest of its state (an upper bound for a model it may fill)."""
    rest = sum(t.numel() for k, t in tensors.items() if not k.startswith("layer/"))
    return _dense_size(meta["layers"]) + rest


def _legacy(payload: dict) -> bool:
    """Version 1 files were written before files had checksums."""
    try:
        return json.loads(payload["meta"]).get("version") == 1
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def load_sparse(
    path: str | Path,
    model: nn.Module | None = None,
    *,
    trust_model_imports: models.Trust = False,
    tag: str | None = None,
) -> nn.Module:
    """Rebuild the pruned model written by :func:`export_sparse`.

    ``model``: a freshly built model of the same architecture (plain, as the constructor
    makes it); not needed if the file names a registered model. A file that names its model
    by an import path (``package.module:callable``) needs ``model=``: a name read from a file
    is never imported, unless ``trust_model_imports`` (True, or the names you vouch for)
    admits it. The file is validated completely first (checksum, every header field, every
    tensor against the header). ``tag``: refuse a file not exported with this tag.
    """
    meta, tensors = read_sparse(path)
    return model_from_sparse(
        meta, tensors, path, model, trust_model_imports=trust_model_imports, tag=tag
    )


def model_from_sparse(
    meta: dict,
    tensors: dict[str, torch.Tensor],
    path: str | Path,
    model: nn.Module | None = None,
    *,
    trust_model_imports: models.Trust = False,
    tag: str | None = None,
) -> nn.Module:
    """:func:`load_sparse` for a file already read and validated by :func:`read_sparse`
    (``path`` names it in errors): for a caller that checks the header first."""
    if tag is not None and meta.get("tag") != tag:
        raise ValueError(
            f"{path} was exported from another run (tag {meta.get('tag')!r}, expected "
            f"{tag!r}); export this run's model again"
        )
    if model is None:
        spec = meta.get("model")
        if not spec:
            raise UnnamedModelError(
                f"{path} does not name its model; pass model= (same architecture), or export "
                "it with a spec: export_sparse(model, path, {'name': ..., 'num_classes': ..., "
                "'in_channels': ...})"
            )
        name = models.check_trusted(
            spec["name"], f"{path}: header field model.name", trust_model_imports
        )
        _check_model_size(name, spec, meta["layers"], tensors, path)
        model = models.get(name, spec["num_classes"], spec["in_channels"])
    bases_meta = meta["bases"]
    if any(layer["kind"] == "ip" for layer in meta["layers"]):
        first = bases_meta[0]
        # built with the data-free DCT, then every basis takes the saved filters and options
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
    bases = filter_bases(model)
    if len(bases) != len(bases_meta):
        raise ValueError(
            f"{path} does not fit this model: the file has {len(bases_meta)} filter bases, "
            f"the model {len(bases)} (share={meta['share']!r})"
        )
    index = {id(fb): i for i, fb in enumerate(bases)}
    state = {k[len("state/") :]: v for k, v in tensors.items() if k.startswith("state/")}
    own = {id(v): k for k, v in model.state_dict(keep_vars=True).items()}  # tensor -> its key
    for layer in meta["layers"]:
        e = entries[layer["name"]]
        if layer["kind"] != e.kind or list(e.param.shape) != layer["shape"]:
            raise ValueError(
                f"{path}: layer {layer['name']!r} is {layer['kind']} {layer['shape']} in the "
                f"file but {e.kind} {list(e.param.shape)} in the model"
            )
        p = e.parametrization
        if isinstance(p, InterspaceWeight) and index[id(p.basis)] != layer["basis"]:
            raise ValueError(
                f"{path}: layer {layer['name']!r} uses basis {layer['basis']} in the file but "
                f"{index[id(p.basis)]} in the model"
            )
        csr = {k: tensors[f"layer/{e.name}/{k}"] for k in ("values", "col", "rowptr")}
        values, mask = from_csr(csr, tuple(layer["shape"]))
        state[own[id(e.param)]] = values.to(e.param.dtype)
        state[own[id(e.mask)]] = mask.to(e.mask.dtype)
    for i, (fb, info) in enumerate(zip(bases, bases_meta, strict=True)):
        if list(fb.kernel_size) != info["kernel"]:
            raise ValueError(
                f"{path}: basis {i} is for {info['kernel']} kernels in the file but "
                f"{list(fb.kernel_size)} in the model"
            )
        fb.init = info.get("init", fb.init)
        fb.normalize = info["normalize"]
        fb.weight.requires_grad_(info["trainable"])
    for name, m in model.named_modules(remove_duplicate=False):  # a shared FB: every name
        if isinstance(m, FilterBasis):
            state[f"{name}.weight"] = tensors[f"basis/{index[id(m)]}"]
    current = model.state_dict()
    for key, value in state.items():  # finite in the file, but as the model's dtype?
        target = current.get(key)
        if target is None or not (value.is_floating_point() and target.is_floating_point()):
            continue
        if not bool(torch.isfinite(value.to(target.dtype)).all()):
            raise ValueError(f"{path}: tensor {key!r:.80} overflows the model's {target.dtype}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{path} does not fit this model: {first}") from None
    return model


def _field(path, where: str, problem: str) -> ValueError:
    return ValueError(f"{path} is not a valid sparse file: {where} {problem}")


def _int(value, path, where: str, low: int = 0, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _field(path, where, f"must be an integer, got {value!r:.40}")
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _field(path, where, f"must be {limit}, got {value}")
    return value


def _bool(value, path, where: str) -> bool:
    if not isinstance(value, bool):
        raise _field(path, where, f"must be true or false, got {value!r:.40}")
    return value


def _str(value, path, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _field(path, where, f"must be a non-empty string, got {value!r:.40}")
    return value


def _tensor(tensors: dict, key: str, path, dtypes: tuple, dim: int | None = 1) -> torch.Tensor:
    t = tensors.get(key)
    if t is None:
        raise _field(path, f"tensor {key!r}", "is missing")
    if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
        raise _field(path, f"tensor {key!r}", f"must be a dense tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise _field(path, f"tensor {key!r}", f"has dtype {t.dtype}, expected one of {dtypes}")
    if dim is not None and t.dim() != dim:
        raise _field(path, f"tensor {key!r}", f"must be {dim}-D, got shape {list(t.shape)}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise _field(path, f"tensor {key!r}", "holds NaN or infinite values")
    return t


FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INTS = (torch.int16, torch.int32, torch.int64)
STATE_DTYPES = (*FLOATS, *INTS, torch.int8, torch.uint8, torch.bool)


def check_sparse_payload(payload: Any, path: str | Path) -> tuple[dict, dict]:
    """Validate a loaded sparse file; returns ``(meta, tensors)`` or raises ``ValueError``
    naming the first malformed field."""
    if not isinstance(payload, dict) or not isinstance(payload.get("meta"), str):
        raise ValueError(f"{path} is not an interspace sparse file")
    try:
        meta = json.loads(payload["meta"])
    except ValueError:
        raise ValueError(
            f"{path} is not an interspace sparse file (its header is not JSON)"
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not an interspace sparse file (its header is not a mapping)")
    if meta.get("format") != FORMAT or meta.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"{path} is not an {FORMAT} v{VERSION} file")
    tensors = payload.get("tensors")
    if not isinstance(tensors, dict) or not all(isinstance(k, str) for k in tensors):
        raise _field(path, "'tensors'", "must map names to tensors")
    for key, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise _field(path, f"tensor {key!r}", f"must be a tensor, got {type(t).__name__}")
        if t.layout == torch.strided and t.numel() * t.element_size() > _storage_bytes(t):
            raise _field(  # a view with stride 0: a few stored bytes, billions of elements
                path, f"tensor {key!r:.80}", f"has {t.numel()} elements, more than the file stores"
            )
    share = meta.get("share")
    if share not in SHARE_MODES:
        raise _field(path, "header field 'share'", f"must be one of {list(SHARE_MODES)}")
    bases = meta.get("bases")
    if not isinstance(bases, list):
        raise _field(path, "header field 'bases'", "must be a list")
    for i, b in enumerate(bases):
        where = f"header field bases[{i}]"
        if not isinstance(b, dict):
            raise _field(path, where, "must be a mapping")
        kernel = b.get("kernel")
        if not isinstance(kernel, list) or len(kernel) != 2:
            raise _field(path, f"{where}.kernel", "must be [kh, kw]")
        kh, kw = (_int(k, path, f"{where}.kernel", 1, MAX_KERNEL) for k in kernel)
        _bool(b.get("normalize"), path, f"{where}.normalize")
        _bool(b.get("trainable"), path, f"{where}.trainable")
        if "init" in b:
            _str(b["init"], path, f"{where}.init")
        fb = _tensor(tensors, f"basis/{i}", path, FLOATS, dim=2)
        if list(fb.shape) != [kh * kw, kh * kw]:
            raise _field(
                path, f"tensor 'basis/{i}'", f"has shape {list(fb.shape)}, not {[kh * kw] * 2}"
            )
    layers = meta.get("layers")
    if not isinstance(layers, list) or not layers:
        raise _field(path, "header field 'layers'", "must be a non-empty list")
    seen = set()
    for j, layer in enumerate(layers):
        where = f"header field layers[{j}]"
        if not isinstance(layer, dict):
            raise _field(path, where, "must be a mapping")
        name = _str(layer.get("name"), path, f"{where}.name")
        if name in seen:
            raise _field(path, f"{where}.name", f"repeats layer {name!r}")
        seen.add(name)
        kind = layer.get("kind")
        if kind not in ("ip", "sp"):
            raise _field(path, f"{where}.kind", f"must be 'ip' or 'sp', got {kind!r:.40}")
        shape = layer.get("shape")
        if not isinstance(shape, list) or not 2 <= len(shape) <= 4:
            raise _field(
                path, f"{where}.shape", f"must be a list of 2 to 4 sizes, got {shape!r:.60}"
            )
        for d in shape:
            _int(d, path, f"{where}.shape", 1, 2**31 - 1)
        basis = layer.get("basis")
        if kind == "ip":
            _int(basis, path, f"{where}.basis", 0, len(bases) - 1)
            if shape[-1] != bases[basis]["kernel"][0] * bases[basis]["kernel"][1]:
                raise _field(path, f"{where}.shape", f"does not fit basis {basis}")
        elif basis is not None:
            raise _field(path, f"{where}.basis", "must be null for an SP layer")
        _check_csr(tensors, name, shape, path)
    if "ip" in {layer["kind"] for layer in layers} and not bases:
        raise _field(path, "header field 'bases'", "is empty but the file has IP layers")
    dense, limit = _dense_size(layers), _dense_limit(tensors)
    if dense > limit:
        raise _field(
            path,
            "header field 'layers'",
            f"describes {dense} weights, more than {limit} for the {_stored(tensors)} values "
            "the file stores",
        )
    tag = meta.get("tag")
    if tag is not None and (not isinstance(tag, str) or len(tag) > 200):
        raise _field(path, "header field 'tag'", f"must be a short string, got {tag!r:.40}")
    rep = meta.get("representation")
    if rep is not None and rep not in ("ip", "sp"):
        raise _field(
            path, "header field 'representation'", f"must be 'ip' or 'sp', got {rep!r:.40}"
        )
    spec = meta.get("model")
    if spec is not None:
        _check_spec(spec, tensors, layers, path)
    _check_state(tensors, layers, len(bases), path)
    return meta, tensors


def _storage_bytes(t: torch.Tensor) -> int:
    return t.untyped_storage().nbytes()


def _stored(tensors: dict) -> int:
    """How many values the file stores: each storage counted once (tensors may share one)."""
    sizes: dict[int, int] = {}
    for t in tensors.values():
        if t.layout == torch.strided:
            storage = t.untyped_storage()
            size = storage.nbytes() // t.element_size()
            sizes[storage.data_ptr()] = max(sizes.get(storage.data_ptr(), 0), size)
    return sum(sizes.values())


def _dense_size(layers: list[dict]) -> int:
    return sum(math.prod(layer["shape"]) for layer in layers)


def _dense_limit(tensors: dict) -> int:
    return max(MIN_DENSE_LIMIT, DENSE_PER_STORED * _stored(tensors))


class _SkipNormal(torch.overrides.TorchFunctionMode):
    """``normal_`` on the meta device imports torch's compiler (seconds, once per process);
    an initialiser changes no size, so the size probe skips it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) == "normal_":
            return args[0]
        return func(*args, **(kwargs or {}))


def _check_model_size(name: str, spec: dict, layers: list[dict], tensors: dict, path) -> None:
    """The model the header names, built on the meta device (nothing allocated), must not
    have more parameters than the file describes (its layers, dense, and its other tensors)."""
    try:
        with torch.device("meta"), _SkipNormal():
            probe = models.get(name, spec["num_classes"], spec["in_channels"])
    except Exception:  # a model that cannot be built on the meta device is built for real
        return
    size = sum(p.numel() for p in probe.parameters())
    described = _dense_size(layers) + _stored(tensors)
    if size > described:
        raise _field(
            path,
            "header field 'model'",
            f"names a model of {size} parameters, more than the {described} the file describes",
        )


def _check_state(tensors: dict, layers: list[dict], num_bases: int, path) -> None:
    """The other tensors (``state/``: BN statistics, biases): finite, variances not negative,
    shapes consistent with the header and with each other; no tensor outside the format."""
    expected = {f"basis/{i}" for i in range(num_bases)}
    expected |= {f"layer/{x['name']}/{k}" for x in layers for k in ("values", "col", "rowptr")}
    state = {}
    for key in tensors:
        if key.startswith("state/") and len(key) > len("state/"):
            state[key[len("state/") :]] = _tensor(tensors, key, path, STATE_DTYPES, dim=None)
        elif key not in expected:
            raise _field(path, f"tensor {key!r:.80}", "is not part of the format")
    out_channels = {x["name"]: x["shape"][0] for x in layers}
    for name, t in state.items():
        module, _, leaf = name.rpartition(".")
        where = f"tensor 'state/{name:.80}'"
        if leaf == "num_batches_tracked":
            if t.is_floating_point() or t.numel() != 1 or int(t.reshape(-1)[0]) < 0:
                raise _field(path, where, "must be one non-negative integer")
            continue
        if leaf == "running_var" and bool((t < 0).any()):
            raise _field(path, where, "holds a negative variance")
        if leaf == "bias" and module in out_channels and list(t.shape) != [out_channels[module]]:
            size = out_channels[module]
            raise _field(path, where, f"has shape {list(t.shape)}, not [{size}] (the layer's)")
        if leaf in ("running_mean", "running_var"):  # one BN: every per-channel tensor alike
            for other in ("running_mean", "running_var", "weight", "bias"):
                twin = state.get(f"{module}.{other}")
                if twin is not None and (t.dim() != 1 or twin.shape != t.shape):
                    raise _field(
                        path,
                        where,
                        f"has shape {list(t.shape)} but {module}.{other} has {list(twin.shape)}",
                    )


def _check_csr(tensors: dict, name: str, shape: list[int], path) -> None:
    rows = shape[0]
    cols = 1
    for d in shape[1:]:
        cols *= d
    key = f"layer/{name}/"
    values = _tensor(tensors, key + "values", path, FLOATS)
    col = _tensor(tensors, key + "col", path, INTS)
    rowptr = _tensor(tensors, key + "rowptr", path, (torch.int32, torch.int64))
    if rowptr.numel() != rows + 1:
        raise _field(path, f"tensor {key}rowptr", f"has {rowptr.numel()} entries, not {rows + 1}")
    r = rowptr.long()
    if int(r[0]) != 0:
        raise _field(path, f"tensor {key}rowptr", f"must start at 0, starts at {int(r[0])}")
    if bool((r[1:] < r[:-1]).any()):
        raise _field(path, f"tensor {key}rowptr", "must not decrease")
    nnz = int(r[-1])
    if nnz != values.numel() or nnz != col.numel():
        raise _field(
            path,
            f"tensor {key}rowptr",
            f"counts {nnz} entries but values has {values.numel()} and col {col.numel()}",
        )
    if nnz > rows * cols:
        raise _field(path, f"tensor {key}values", f"has {nnz} entries, more than {rows}x{cols}")
    c = col.long()
    if nnz and (int(c.min()) < 0 or int(c.max()) >= cols):
        raise _field(path, f"tensor {key}col", f"holds a column index outside 0..{cols - 1}")
    if nnz > 1:  # strictly increasing within each row: no repeated entries
        starts = torch.zeros(nnz, dtype=torch.bool)
        firsts = r[:-1][r[:-1] < nnz]
        starts[firsts] = True
        if bool(((c[1:] <= c[:-1]) & ~starts[1:]).any()):
            raise _field(path, f"tensor {key}col", "must increase strictly within each row")


def _check_spec(spec: Any, tensors: dict, layers: list[dict], path) -> None:
    """The model named in the header: its sizes must be ones the file's tensors have."""
    if not isinstance(spec, dict):
        raise _field(path, "header field 'model'", "must be a mapping or null")
    _str(spec.get("name"), path, "header field model.name")
    sizes = {d for layer in layers for d in layer["shape"]}
    sizes |= {d for t in tensors.values() for d in t.shape}
    for key in ("num_classes", "in_channels"):
        value = _int(spec.get(key), path, f"header field model.{key}", 1)
        if value not in sizes:  # bounded by what the file holds: never a huge allocation
            raise _field(
                path, f"header field model.{key}", f"is {value}, which no tensor in the file has"
            )
