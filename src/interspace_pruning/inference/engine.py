"""Sparse inference: the same function as the pruned model, computed through its sparsity.

IP layers use linearity, ``x * h = sum_n lambda_n (x * g_n)``: the input is projected onto the
basis filters (im2col, then one small ``n x kh*kw`` matrix per input channel), and the
projections are combined by a sparse matrix product with the coefficients. SP layers are
im2col followed by a sparse product with the spatial weights; linear layers are a sparse
product. Each layer keeps its dense convolution where the sparse path is not worth it: by
measurement on an example input, or by a FLOP threshold without one.

Convolutions run on the fused numba kernel of :mod:`.kernels` when numba is installed, else
on the portable torch path (im2col and ``torch.sparse`` CSR products).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..interspace import fold
from ..masks import PrunableTensor, has_masks, prunable
from . import kernels


def _block_csr(values: torch.Tensor, groups: int, group_cols: int) -> torch.Tensor:
    """A ``(out, groups*group_cols)`` CSR matrix from per-group rows ``(out, group_cols)``.

    Row ``o`` of group ``g = o // (out/groups)`` occupies columns ``g*group_cols ...``.
    """
    out = values.shape[0]
    per = out // groups
    v = values.reshape(out, group_cols)
    full = torch.zeros(out, groups * group_cols, dtype=v.dtype)
    for g in range(groups):
        full[g * per : (g + 1) * per, g * group_cols : (g + 1) * group_cols] = v[
            g * per : (g + 1) * per
        ]
    return full.to_sparse_csr()


def _use_kernel(backend: str) -> bool:
    if backend not in ("auto", "numba", "torch"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
    if backend == "numba" and not kernels.HAVE_NUMBA:
        raise ValueError("backend 'numba' needs numba: pip install numba")
    return backend != "torch" and kernels.HAVE_NUMBA


class _SparseConv(nn.Module):
    def __init__(self, conv: nn.Conv2d, backend: str = "auto") -> None:
        super().__init__()
        self.kernel = _use_kernel(backend)
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("sparse inference supports zero padding with explicit sizes only")
        self.kernel_size = conv.kernel_size
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.out_channels = conv.out_channels
        self.bias = None if conv.bias is None else conv.bias.detach().clone()

    def _out_size(self, x: torch.Tensor) -> tuple[int, int]:
        (kh, kw), (ph, pw), (dh, dw), (sh, sw) = (
            self.kernel_size,
            self.padding,
            self.dilation,
            self.stride,
        )
        h, w = x.shape[-2:]
        return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (
            w + 2 * pw - dw * (kw - 1) - 1
        ) // sw + 1

    def _patches(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        oh, ow = self._out_size(x)
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        return cols, oh, ow

    def _prepare_kernel(self, matrix: torch.Tensor, basis: torch.Tensor | None) -> None:
        """CSR arrays and the basis as numpy, for the fused kernel."""
        self._rowptr = matrix.crow_indices().numpy().astype(np.int64)
        self._cols = matrix.col_indices().numpy().astype(np.int64)
        self._vals = matrix.values().numpy().astype(np.float32)
        k = self.kernel_size[0] * self.kernel_size[1]
        used = np.zeros(matrix.shape[1], dtype=np.bool_)
        used[self._cols] = True
        if basis is None:  # SP: the matrix columns are the taps themselves
            self._basis = np.zeros((0, k), dtype=np.float32)
            self._used, self._need = used, used
        else:  # IP: a channel's taps are needed if any of its basis filters is used
            self._basis = basis.numpy().astype(np.float32)
            self._used = used
            per_channel = used.reshape(-1, self._basis.shape[0]).any(axis=1)
            self._need = np.repeat(per_channel, k)
        bias = self.bias if self.bias is not None else torch.zeros(self.out_channels)
        self._bias = bias.numpy().astype(np.float32)
        self._tile = kernels.tile_size(len(self._need))

    def _run_kernel(self, x: torch.Tensor) -> torch.Tensor:
        oh, ow = self._out_size(x)
        kh, kw = self.kernel_size
        kernels.numba.set_num_threads(
            max(1, min(torch.get_num_threads(), kernels.numba.config.NUMBA_NUM_THREADS))
        )
        ph, pw = self.padding
        padded = F.pad(x.detach(), (pw, pw, ph, ph)) if ph or pw else x.detach()
        args = (self._rowptr, self._cols, self._vals, self._basis, self._used, self._need)
        y = kernels.sparse_conv(
            padded.contiguous().numpy(),
            *args,
            self._bias,
            oh,
            ow,
            kh,
            kw,
            *self.stride,
            *self.dilation,
            self._tile,
        )
        return torch.from_numpy(y)

    def _product(self, matrix: torch.Tensor, z: torch.Tensor, oh: int, ow: int) -> torch.Tensor:
        y = torch.stack([torch.sparse.mm(matrix, z[i]) for i in range(z.shape[0])])
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1)
        return y.view(z.shape[0], self.out_channels, oh, ow)


class SparseSPConv2d(_SparseConv):
    """im2col, then a sparse product with the kept spatial weights."""

    def __init__(self, conv: nn.Conv2d, entry: PrunableTensor, backend: str = "auto") -> None:
        super().__init__(conv, backend)
        w = (entry.param * entry.mask).detach()
        g = conv.groups
        self.weight = _block_csr(w.reshape(w.shape[0], -1), g, w[0].numel())
        if self.kernel:
            self._prepare_kernel(self.weight, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel and x.dtype == torch.float32 and x.device.type == "cpu":
            return self._run_kernel(x)
        cols, oh, ow = self._patches(x)
        return self._product(self.weight, cols, oh, ow)


class SparseIPConv2d(_SparseConv):
    """Basis projection (im2col + per-channel ``n x kh*kw`` product), then sparse 1x1."""

    def __init__(self, conv: nn.Conv2d, entry: PrunableTensor, backend: str = "auto") -> None:
        super().__init__(conv, backend)
        p = entry.parametrization
        self.basis = p.basis().detach().clone()  # (n, kh*kw), normalised as in training
        lam = (entry.param * entry.mask).detach()  # (out, in/groups, n)
        self.groups, self.in_channels = conv.groups, conv.in_channels
        self.coeffs = _block_csr(lam.reshape(lam.shape[0], -1), conv.groups, lam[0].numel())
        if self.kernel:
            self._prepare_kernel(self.coeffs, self.basis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel and x.dtype == torch.float32 and x.device.type == "cpu":
            return self._run_kernel(x)
        cols, oh, ow = self._patches(x)  # (b, c*k, p)
        b, _, p = cols.shape
        k = self.basis.shape[1]
        z = torch.matmul(self.basis, cols.view(b, self.in_channels, k, p))  # (b, c, n, p)
        return self._product(self.coeffs, z.reshape(b, -1, p), oh, ow)


class SparseLinear(nn.Module):
    def __init__(self, linear: nn.Linear, entry: PrunableTensor) -> None:
        super().__init__()
        self.weight = (entry.param * entry.mask).detach().to_sparse_csr()
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sparse.mm(self.weight, x.reshape(-1, x.shape[-1]).t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], -1)


def _sparse_module(entry: PrunableTensor, plain: nn.Module, backend: str) -> nn.Module:
    if isinstance(plain, nn.Linear):
        return SparseLinear(plain, entry)
    if entry.kind == "ip":
        return SparseIPConv2d(plain, entry, backend)
    return SparseSPConv2d(plain, entry, backend)


def median_time(fn, x: torch.Tensor, repeats: int) -> float:
    """Median wall time of ``fn(x)`` in seconds (after one warm-up call, without grad)."""
    with torch.no_grad():
        fn(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _layer_inputs(
    model: nn.Module, example: torch.Tensor, names: set[str]
) -> dict[str, torch.Tensor]:
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
) -> nn.Module:
    """A copy of ``model`` for inference whose pruned layers compute through their sparsity.

    Args:
        example: an input batch; with it each layer keeps whichever path (dense or sparse)
            measures faster on the input it really gets.
        mode: ``"auto"`` (decide per layer), ``"sparse"`` (every pruned layer sparse) or
            ``"dense"`` (none; the folded model).
        min_density_gain: without ``example``, a layer goes sparse when its dense FLOPs
            exceed its sparse FLOPs by this factor.
        backend: ``"numba"`` (the fused kernel of :mod:`.kernels`), ``"torch"`` (portable
            ``torch.sparse`` path) or ``"auto"`` (numba when installed).

    Returns an eval-mode module with the same outputs (to float round-off); its ``plan``
    attribute maps layer names to ``"sparse"`` or ``"dense"``.
    """
    _use_kernel(backend)  # validates
    if mode not in ("auto", "sparse", "dense"):
        raise ValueError(f"mode must be 'auto', 'sparse' or 'dense', got {mode!r}")
    if not has_masks(model):
        raise ValueError("the model has no masks; prune it first (sparse_inference needs sparsity)")
    out = fold(model).eval()  # a copy; the sparse modules only read (and clone) model's tensors
    entries = prunable(model)
    modules = dict(out.named_modules())
    inputs = _layer_inputs(out, example, {e.name for e in entries}) if example is not None else {}
    plan: dict[str, str] = {}
    for e in entries:
        plain = modules[e.name]
        if mode == "dense":
            plan[e.name] = "dense"
            continue
        try:
            sparse = _sparse_module(e, plain, backend)
        except ValueError:
            plan[e.name] = "dense"
            continue
        if mode == "sparse":
            use = True
        elif e.name in inputs:
            x = inputs[e.name]
            use = median_time(sparse, x, repeats) < median_time(plain, x, repeats)
        else:
            use = _density_gain(e, plain) >= min_density_gain
        plan[e.name] = "sparse" if use else "dense"
        if use:
            parent_name, _, child = e.name.rpartition(".")
            parent = modules[parent_name] if parent_name else out
            setattr(parent, child, sparse)
    out.plan = plan
    return out


def _density_gain(entry: PrunableTensor, plain: nn.Module) -> float:
    """Dense over sparse FLOPs of one layer (per output pixel)."""
    nnz = max(entry.num_kept(), 1)
    if isinstance(plain, nn.Conv2d) and entry.kind == "ip":
        kh, kw = plain.kernel_size
        return plain.weight.numel() / (plain.in_channels * kh * kw * entry.param.shape[-1] + nnz)
    return plain.weight.numel() / nnz
