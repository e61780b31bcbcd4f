"""Sparse inference: the same function as the pruned model, computed through its sparsity.

IP layers use linearity, ``x * h = sum_n lambda_n (x * g_n)``: the input is projected onto the
basis filters (the basis convolution), and the projections are combined by a sparse matrix
product with the coefficients (a sparse 1x1 convolution). SP layers are the same pipeline with
the taps themselves in place of the projections (im2col of the kept taps, then a sparse
product with the spatial weights); linear layers are a sparse product. Each layer keeps its
dense convolution where the sparse path is not worth it: by measurement on an example input
(per layer, then the whole model against its all-dense and all-sparse forms, so that the
result is never slower than the dense model as measured), or by a FLOP threshold without one.

Convolutions run on the native kernel of :mod:`.native` (``spconv.c``) when it was built: it
reads and writes ordinary NCHW tensors, without im2col copies of the input. Without it they
run on the portable torch path (unfold and ``torch.sparse`` CSR products).

NaN and infinities come out as dense torch gives them: torch multiplies every input by every
weight, and ``0 * nan`` and ``0 * inf`` are NaN, so a non-finite input value reaches every
output whose receptive field holds it, through pruned weights too, which a sparse product
skips. A sparse layer whose input holds such a value (the kernel checks, tile by tile; the
torch path and the linear layers check the input's sum) is computed densely instead, with the
dense weight rebuilt from its sparse one. Finite inputs do not take that path (on the torch
path, unless their sum overflows float32).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..interspace import InterspaceWeight, fold
from ..masks import MaskedParametrization, MaskedWeight, PrunableTensor, prunable
from . import native, timing
from .epilogue import fuse_epilogues
from .fusion import fuse_batchnorm, set_module


def _block_csr(values: torch.Tensor, groups: int, group_cols: int) -> torch.Tensor:
    """A ``(out, groups*group_cols)`` CSR matrix from per-group rows ``(out, group_cols)``.

    Row ``o`` of group ``g = o // (out/groups)`` occupies columns ``g*group_cols ...``.
    """
    out = values.shape[0]
    per = out // groups
    v = values.reshape(out, group_cols)
    full = torch.zeros(out, groups * group_cols, dtype=v.dtype, device=v.device)
    for g in range(groups):
        full[g * per : (g + 1) * per, g * group_cols : (g + 1) * group_cols] = v[
            g * per : (g + 1) * per
        ]
    with _quiet_csr():
        return full.to_sparse_csr()


@contextlib.contextmanager
def _quiet_csr() -> Iterator[None]:
    """Silences torch's "sparse CSR tensor support is in beta" notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


BACKENDS = ("auto", "native", "torch")


def _finite(x: torch.Tensor) -> bool:
    """Whether ``x`` holds no NaN and no infinity: its sum is finite (a quarter of the time
    ``isfinite(x).all()`` takes). Finite values whose sum overflows say no too, sending the
    layer down the dense path, which gives torch's answer as well."""
    return math.isfinite(x.sum().item())


def check_conv_input(conv: _SparseConv, x: torch.Tensor) -> None:
    """Refuse input the layer was not built for, before any kernel reads it.

    The native kernel indexes the input through a tap table built for the layer's channels
    and the input's size, so a mismatch would read out of bounds. Raises ``RuntimeError``
    with one line, like ``torch.nn.functional.conv2d`` does for the same mistakes.
    """
    name = type(conv).__name__
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(x).__name__}")
    if x.layout != torch.strided:
        raise RuntimeError(f"{name}: expected a dense (strided) input, got layout {x.layout}")
    if x.dim() != 4:
        raise RuntimeError(
            f"{name}: expected 4D (batched) input of shape (N, C, H, W), but got input of "
            f"size: {list(x.shape)}"
        )
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise RuntimeError(f"{name}: expected a non-empty image, got input of size {list(x.shape)}")
    if x.shape[1] != conv.in_channels:
        raise RuntimeError(
            f"{name}: expected input{list(x.shape)} to have {conv.in_channels} channels, "
            f"but got {x.shape[1]} channels instead"
        )
    device, dtype = conv.weight_device, conv.weight_dtype
    if x.device != device:
        raise RuntimeError(
            f"{name}: input and weight should be on the same device, got {x.device} and {device}"
        )
    if x.dtype != dtype:
        raise RuntimeError(
            f"{name}: input type ({x.dtype}) and weight type ({dtype}) should be the same"
        )
    padded = [n + 2 * p for n, p in zip(x.shape[2:], conv.padding, strict=True)]
    span = [d * (k - 1) + 1 for k, d in zip(conv.kernel_size, conv.dilation, strict=True)]
    if padded[0] < span[0] or padded[1] < span[1]:
        raise RuntimeError(
            f"{name}: calculated padded input size per channel: ({padded[0]} x {padded[1]}); "
            f"kernel size: ({span[0]} x {span[1]}); kernel size can't be greater than actual "
            "input size"
        )


def _use_native(backend: str) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "native" and not native.available():
        raise ValueError(
            "backend 'native' needs the compiled kernel: reinstall with a C compiler "
            "(pip install -e .), or use backend='torch'"
        )
    return backend != "torch" and native.available()


class _SparseConv(nn.Module):
    """A sparse convolution: ``matrix`` (CSR over input channels x basis filters, or x taps
    when ``basis`` is None) applied to the basis projections (IP) or the taps (SP)."""

    def __init__(
        self,
        conv: nn.Conv2d,
        values: torch.Tensor,
        basis: torch.Tensor | None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        use_native = _use_native(backend)
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("sparse inference supports zero padding with explicit sizes only")
        self.kernel_size = conv.kernel_size
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.groups = conv.groups
        self.bias = None if conv.bias is None else conv.bias.detach().clone()
        self.basis = basis
        self._csr: torch.Tensor | None = None
        self.matrix = _block_csr(
            values.reshape(values.shape[0], -1), conv.groups, values[0].numel()
        )
        self.weight_device, self.weight_dtype = values.device, values.dtype
        self.kernel = use_native and (basis is None or basis.shape[0] <= native.max_basis())
        # epilogue work taken over from the graph (see .epilogue): out = relu?(conv + residual)
        self.fuse_relu = False
        self.fuse_residual = False
        self.fuse_pool = False  # a following 2x2 max-pool (stride 2)
        self._index_cache: dict[tuple[int, int, int], tuple] = {}
        if self.kernel:
            self._prepare_kernel()

    @property
    def matrix(self) -> torch.Tensor:
        """The CSR weight matrix. On the native kernel only its arrays are kept (a second
        copy as a torch CSR tensor would double the weights' memory); this rebuilds it."""
        if self._csr is None:
            with _quiet_csr():
                self._csr = torch.sparse_csr_tensor(
                    self._rowptr,
                    self._cols.to(torch.int64),
                    self._vals.to(self.weight_dtype),
                    (self.out_channels, self._in_rows),
                    check_invariants=False,
                )
        return self._csr

    @matrix.setter
    def matrix(self, value: torch.Tensor) -> None:
        self._csr = value

    def _patches(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        geometry = (self.kernel_size, self.stride, self.padding, self.dilation)
        oh, ow = native.output_size(tuple(x.shape[2:]), *geometry)
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        return cols, oh, ow

    def _index(self, x: torch.Tensor) -> tuple:
        key = (x.shape[0], x.shape[2], x.shape[3])
        if key not in self._index_cache:
            self._index_cache = {  # one input size at a time is the common case
                key: native.tap_index(
                    key[0],
                    self.in_channels,
                    key[1:],
                    self.kernel_size,
                    self.stride,
                    self.padding,
                    self.dilation,
                )
            }
        return self._index_cache[key]

    def _prepare_kernel(self) -> None:
        """CSR arrays, and per input channel the rows of Z that kept entries read (listed
        first) with, for IP, their basis filters in that order: the kernel computes only
        those."""
        matrix, basis = self.matrix, self.basis
        self._rowptr = matrix.crow_indices().to(torch.int64).contiguous()
        self._cols = matrix.col_indices().to(torch.int32).contiguous()
        self._vals = matrix.values().to(torch.float32).contiguous()
        rows = self.kernel_size[0] * self.kernel_size[1] if basis is None else basis.shape[0]
        used = torch.zeros(matrix.shape[1], dtype=torch.bool)
        used[self._cols.long()] = True
        used = used.view(self.in_channels, rows)
        order = torch.argsort((~used).to(torch.uint8), dim=1, stable=True)
        self._used_rows = order.to(torch.int32).contiguous()
        self._used_count = used.sum(1).to(torch.int32).contiguous()
        self._basis = (
            None if basis is None else basis.to(torch.float32)[order].contiguous()
        )  # (C, rows, kh*kw)
        bias = self.bias if self.bias is not None else torch.zeros(self.out_channels)
        self._bias = bias.to(torch.float32).contiguous()
        self._in_rows = matrix.shape[1]
        if matrix.values().dtype == torch.float32:  # the kernel's arrays hold it exactly
            self._csr = None

    @torch.no_grad()
    def rescale_outputs(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """Become ``scale * self(x) + shift`` per output channel (folds a BatchNorm in)."""
        m = self.matrix
        rows = torch.repeat_interleave(torch.arange(m.shape[0]), m.crow_indices().diff())
        values = m.values() * scale[rows].to(m.dtype)
        with _quiet_csr():
            self.matrix = torch.sparse_csr_tensor(
                m.crow_indices(), m.col_indices(), values, m.shape, check_invariants=False
            )
        bias = self.bias if self.bias is not None else torch.zeros(self.out_channels)
        self.bias = (bias * scale + shift).detach().clone()
        if self.kernel:
            self._prepare_kernel()

    def _native_ok(self, x: torch.Tensor) -> bool:
        # the kernel's tap table holds int32 positions
        return (
            self.kernel
            and x.dtype == torch.float32
            and x.device.type == "cpu"
            and 0 < x.numel() < 2**31
        )

    def _run_kernel(self, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        index, runs, oh, ow = self._index(x)
        shape = (x.shape[0], self.out_channels, oh, ow)
        fused = residual is not None and residual.shape == shape and residual.dtype == x.dtype
        pool = self.fuse_pool and residual is None and native.can_pool(x.shape[0], (oh, ow))
        y = native.sparse_conv(
            x.detach().contiguous(),
            index,
            runs,
            (oh, ow),
            self._basis,
            self._used_count,
            self._used_rows,
            self._rowptr,
            self._cols,
            self._vals,
            self._bias,
            residual.detach().contiguous() if fused else None,
            self.fuse_relu and (residual is None or fused),
            pool,
        )
        if y is None:  # the input holds NaN or inf: as dense torch computes it
            return self._dense(x, residual)
        if pool:
            return y
        if residual is None or fused:
            return F.max_pool2d(y, 2) if self.fuse_pool else y
        return self._epilogue(y, residual)

    def dense_weight(self) -> torch.Tensor:
        """The dense ``(out, in/groups, kh, kw)`` weight the layer computes with: zero where
        pruned, as in the folded model (IP: the coefficients times the basis filters, the
        same product as training's)."""
        out, groups = self.out_channels, self.groups
        if self._csr is None:  # the kernel's arrays (see matrix); not kept as a CSR tensor
            m = torch.zeros(out, self._in_rows, dtype=self.weight_dtype)
            rows = torch.repeat_interleave(torch.arange(out), self._rowptr.diff())
            m[rows, self._cols.long()] = self._vals.to(self.weight_dtype)
        else:
            m = self._csr.to_dense()
        cols = m.shape[1] // groups  # the block-diagonal matrix: each row's group block
        w = m.view(out, groups, cols)[torch.arange(out), torch.arange(out) // (out // groups)]
        cin = self.in_channels // groups
        if self.basis is not None:
            w = torch.matmul(w.view(out, cin, -1), self.basis.to(w.dtype))
        return w.reshape(out, cin, *self.kernel_size)

    def _dense(self, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        """The layer as dense torch computes it, for an input holding NaN or inf (the sparse
        product would skip the pruned weights' ``0 * nan`` and ``0 * inf``, which are NaN)."""
        w = self.dense_weight()
        bias = None if self.bias is None else self.bias.to(w.dtype)
        y = F.conv2d(x, w, bias, self.stride, self.padding, self.dilation, self.groups)
        return self._epilogue(y, residual)

    def _epilogue(self, y: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        """The fused work, done by torch (off the kernel, or what it cannot take)."""
        if residual is not None:
            y = y + residual
        y = torch.relu(y) if self.fuse_relu else y
        return F.max_pool2d(y, 2) if self.fuse_pool else y

    def extra_repr(self) -> str:
        path = native.kernel_path() if self.kernel else "torch"
        flags = {"residual": self.fuse_residual, "relu": self.fuse_relu, "pool": self.fuse_pool}
        fused = [n for n, f in flags.items() if f]
        return f"kernel_path={path}" + (f", fused={'+'.join(fused)}" if fused else "")

    def _product(self, matrix: torch.Tensor, z: torch.Tensor, oh: int, ow: int) -> torch.Tensor:
        if z.shape[0] == 0:  # an empty batch
            return z.new_zeros(0, self.out_channels, oh, ow)
        y = torch.stack([torch.sparse.mm(matrix, z[i]) for i in range(z.shape[0])])
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1)
        return y.view(z.shape[0], self.out_channels, oh, ow)


class SparseSPConv2d(_SparseConv):
    """im2col, then a sparse product with the kept spatial weights."""

    def __init__(self, conv: nn.Conv2d, entry: PrunableTensor, backend: str = "auto") -> None:
        super().__init__(conv, (entry.param * entry.mask).detach(), None, backend)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        check_conv_input(self, x)
        if self._native_ok(x):
            return self._run_kernel(x, residual)
        if not _finite(x):
            return self._dense(x, residual)
        cols, oh, ow = self._patches(x)
        return self._epilogue(self._product(self.matrix, cols, oh, ow), residual)


class SparseIPConv2d(_SparseConv):
    """Basis projection (im2col + per-channel ``n x kh*kw`` product), then sparse 1x1."""

    def __init__(self, conv: nn.Conv2d, entry: PrunableTensor, backend: str = "auto") -> None:
        basis = entry.parametrization.basis().detach().clone()  # (n, kh*kw), as in training
        lam = (entry.param * entry.mask).detach()  # (out, in/groups, n)
        super().__init__(conv, lam, basis, backend)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        check_conv_input(self, x)
        if self._native_ok(x):
            return self._run_kernel(x, residual)
        if not _finite(x):
            return self._dense(x, residual)
        cols, oh, ow = self._patches(x)  # (b, c*k, p)
        b, _, p = cols.shape
        k = self.basis.shape[1]
        z = torch.matmul(self.basis, cols.view(b, self.in_channels, k, p))  # (b, c, n, p)
        y = self._product(self.matrix, z.reshape(b, z.shape[1] * z.shape[2], p), oh, ow)
        return self._epilogue(y, residual)


class SparseLinear(nn.Module):
    def __init__(self, linear: nn.Linear, entry: PrunableTensor) -> None:
        super().__init__()
        with _quiet_csr():
            self.weight = (entry.param * entry.mask).detach().to_sparse_csr()
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = self.weight.shape
        if x.dim() == 0 or x.shape[-1] != cols:
            raise RuntimeError(
                f"SparseLinear: input of size {list(x.shape)} cannot be multiplied with a "
                f"weight of size [{rows}, {cols}] (expected {cols} features in the last dimension)"
            )
        if not _finite(x):  # dense torch's 0 * nan = nan, which a sparse product skips
            return F.linear(x, self.weight.to_dense(), self.bias)
        y = torch.sparse.mm(self.weight, x.reshape(-1, cols).t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], rows)


#: The sparse convolution module of each parametrisation type, ``cls(conv, entry, backend)``;
#: a type not listed uses its nearest listed base class. Inference registers what it can
#: run: it builds on masks and interspace, which never import it.
SPARSE_CONVS: dict[type[MaskedParametrization], Callable[..., nn.Module]] = {}


def register_sparse_conv(
    kind: type[MaskedParametrization], module: Callable[..., nn.Module]
) -> None:
    """Run convolutions parametrised by ``kind`` (or a subclass) as ``module(conv, entry,
    backend)`` in :func:`sparse_inference`."""
    SPARSE_CONVS[kind] = module


register_sparse_conv(MaskedWeight, SparseSPConv2d)
register_sparse_conv(InterspaceWeight, SparseIPConv2d)


def _sparse_module(entry: PrunableTensor, plain: nn.Module, backend: str) -> nn.Module:
    """The sparse inference module replacing ``plain`` (the folded ``entry.module``)."""
    if isinstance(plain, nn.Linear):
        return SparseLinear(plain, entry)
    for kind in type(entry.parametrization).__mro__:
        if kind in SPARSE_CONVS:
            return SPARSE_CONVS[kind](plain, entry, backend)
    raise NotImplementedError(
        f"no sparse convolution for {type(entry.parametrization).__name__}; "
        "register one with inference.engine.register_sparse_conv"
    )


def layer_inputs(
    model: nn.Module, example: torch.Tensor, names: set[str]
) -> dict[str, torch.Tensor]:
    """The input each named submodule of ``model`` gets when ``model(example)`` runs."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_pre_hook(lambda m, inp, n=n: seen.setdefault(n, inp[0].detach()))
        for n, m in model.named_modules()
        if n in names
    ]
    with torch.no_grad():
        model(example)
    for h in handles:
        h.remove()
    return seen


def sparse_inference(
    model: nn.Module,
    example: torch.Tensor | None = None,
    mode: str = "auto",
    min_density_gain: float = 2.0,
    repeats: int = 5,
    backend: str = "auto",
    fuse_bn: bool = True,
    fuse_epilogue: bool = True,
) -> nn.Module:
    """A copy of ``model`` for inference whose pruned layers compute through their sparsity.

    Args:
        example: an input batch. With it, ``auto`` mode never returns a model slower than
            the dense one: each layer first keeps whichever path (dense or sparse) measures
            faster on the input it really gets, then that per-layer plan, the all-sparse plan
            and the all-dense (folded) model are timed whole, interleaved, on ``example``,
            and the fastest is returned (fusions change a layer's cost, so per-layer
            timings alone can mislead).
        mode: ``"auto"`` (decide by measurement, or by FLOPs without ``example``),
            ``"sparse"`` (every pruned layer sparse) or ``"dense"`` (none: the folded model,
            BatchNorm fused as below).
        min_density_gain: without ``example``, a layer goes sparse when its dense FLOPs
            exceed its sparse FLOPs by this factor.
        repeats: timed calls per layer; the whole-model check times 4x as many per plan.
        backend: ``"native"`` (the compiled kernel of :mod:`.native`), ``"torch"`` (the
            portable ``torch.sparse`` path) or ``"auto"`` (native when it was built).
        fuse_bn: fold each BatchNorm2d into the convolution that feeds it (dense or sparse;
            see :mod:`.fusion`), as inference engines do.
        fuse_epilogue: let sparse convolutions on the native kernel apply the residual
            addition, ReLU and 2x2 max-pool that follow them (see :mod:`.epilogue`); the
            result is then an ``fx.GraphModule`` with the same submodule names.

    Returns an eval-mode module with the same outputs (to float round-off; NaN and
    infinities exactly where the dense model has them, see the top of this module); its ``plan``
    attribute maps layer names to ``"sparse"`` or ``"dense"``, ``fused_bn`` lists the
    ``(conv, batchnorm)`` pairs folded, ``fused_epilogue`` the sparse layers that took over
    a following ReLU or residual addition, ``kernel_path`` names the code the sparse
    convolutions run on (``native.kernel_path()``: ``"avx512"``, ``"avx2"``, ``"neon"``,
    ``"scalar"``, or ``"torch"`` off the native kernel), and ``auto_timings`` (``auto``
    mode with ``example``) gives the whole-model median milliseconds of each plan timed.
    """
    _use_native(backend)  # validates
    if mode not in ("auto", "sparse", "dense"):
        raise ValueError(f"mode must be 'auto', 'sparse' or 'dense', got {mode!r}")
    entries = [e for e in prunable(model) if e.is_masked]
    if not entries:
        raise ValueError("the model has no masks; prune it first (sparse_inference needs sparsity)")
    build = lambda choose: _assemble(model, entries, choose, backend, fuse_bn, fuse_epilogue)  # noqa: E731
    if mode != "auto":
        return build(mode == "sparse")

    def cheaper(e: PrunableTensor, plain: nn.Module, sparse: nn.Module) -> bool:
        return _density_gain(e, plain) >= min_density_gain

    if example is None:
        return build(cheaper)
    inputs = layer_inputs(fold(model).eval(), example, {e.name for e in entries})

    def faster(e: PrunableTensor, plain: nn.Module, sparse: nn.Module) -> bool:
        x = inputs.get(e.name)
        if x is None:  # a layer the example does not reach: the FLOP rule
            return cheaper(e, plain, sparse)
        t = timing.interleaved_medians({"sparse": sparse, "dense": plain}, x, repeats, settle=0)
        return t["sparse"] < t["dense"]

    candidates = {"per-layer": build(faster), "sparse": None, "dense": None}
    if set(candidates["per-layer"].plan.values()) != {"sparse"}:
        candidates["sparse"] = build(True)
    if set(candidates["per-layer"].plan.values()) != {"dense"}:
        candidates["dense"] = build(False)
    candidates = {k: m for k, m in candidates.items() if m is not None}
    timings = timing.interleaved_medians(candidates, example, 4 * repeats)
    best = min(timings, key=timings.get)
    out = candidates[best]
    out.auto_timings = {k: round(t * 1e3, 4) for k, t in timings.items()}
    return out


def _assemble(
    model: nn.Module,
    entries: list[PrunableTensor],
    choose: bool | Callable[[PrunableTensor, nn.Module, nn.Module], bool],
    backend: str,
    fuse_bn: bool,
    fuse_epilogue: bool,
) -> nn.Module:
    """The folded copy of ``model``, each entry sparse where ``choose(entry, plain, sparse)``
    (or everywhere / nowhere for ``choose=True`` / ``False``)."""
    out = fold(model).eval()  # a copy; the sparse modules only read (and clone) model's tensors
    modules = dict(out.named_modules())
    plan: dict[str, str] = {}
    for e in entries:
        plain = modules[e.name]
        if choose is False:  # no sparse module to build
            plan[e.name] = "dense"
            continue
        try:
            sparse = _sparse_module(e, plain, backend)
        except ValueError:  # a layer the sparse path does not cover stays dense
            plan[e.name] = "dense"
            continue
        use = choose is True or bool(choose(e, plain, sparse))
        plan[e.name] = "sparse" if use else "dense"
        if use:
            set_module(out, e.name, sparse)
    fused_bn = fuse_batchnorm(out, (_SparseConv, SparseLinear)) if fuse_bn else []
    fused_epilogue: list[str] = []
    if fuse_epilogue and any(getattr(m, "kernel", False) for m in out.modules()):
        out, fused_epilogue = fuse_epilogues(out, (_SparseConv, SparseLinear))
    out.plan, out.fused_bn, out.fused_epilogue = plan, fused_bn, fused_epilogue
    on_kernel = any(isinstance(m, _SparseConv) and m.kernel for m in out.modules())
    out.kernel_path = native.kernel_path() if on_kernel else "torch"
    out.auto_timings = {}
    return out


def _density_gain(entry: PrunableTensor, plain: nn.Module) -> float:
    """Dense over sparse FLOPs of one layer (per output pixel; the formula of ``costs``)."""
    sparse = entry.parametrization.sparse_flops(plain, 1)
    return 2 * plain.weight.numel() / max(sparse, 2)
