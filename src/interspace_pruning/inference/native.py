"""ctypes bindings of the native sparse-convolution kernel (``spconv.c``, built by ``pip install``).

``available()`` says whether the kernel was built (it needs a C compiler with OpenMP at install
time); without it the engine uses its pure-torch path. See ``spconv.c`` for the algorithm.

The kernel skips pruned weights, so it cannot give dense torch's answer for an input that holds
a NaN or an infinity (``0 * nan`` and ``0 * inf`` are NaN there); it checks the input, and
:func:`sparse_conv` returns None for such an input, for the caller to compute the layer densely.

The binary holds one kernel path per instruction set (``avx512``, ``avx2``, ``neon`` and the
plain C ``scalar``) and runs the best one the CPU supports; ``kernel_path()`` names it. The
environment variable ``INTERSPACE_KERNEL_PATH`` forces one (read at each call).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from functools import lru_cache

import torch

_P, _I = ctypes.c_void_p, ctypes.c_int64


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    spec = importlib.util.find_spec("interspace_pruning.inference._spconv")
    if spec is None or spec.origin is None or os.environ.get("INTERSPACE_NO_NATIVE"):
        return None
    # torch (imported above) has loaded its libgomp; the kernel binds to that same runtime,
    # so both share one thread pool
    try:
        lib = ctypes.CDLL(spec.origin)
    except OSError:
        return None
    lib.ips_set_threads.argtypes = [ctypes.c_int]
    lib.ips_max_basis.restype = ctypes.c_int
    lib.ips_num_paths.restype = ctypes.c_int
    lib.ips_path_name.restype = ctypes.c_char_p
    lib.ips_path_name.argtypes = [ctypes.c_int]
    lib.ips_path_supported.argtypes = [ctypes.c_int]
    lib.ips_path.restype = ctypes.c_int
    lib.ips_select_path.argtypes = [ctypes.c_int]
    lib.ips_conv.restype = ctypes.c_int
    lib.ips_conv.argtypes = [_P, _I, _I, _P, _P, _I, _I, _P, _I, _P, _P, _P, _P, _P, _P]
    lib.ips_conv.argtypes += [_I, _I, _I, _P, ctypes.c_int, _I, _P]
    lib.ips_tile.restype = ctypes.c_int64
    lib.ips_tile.argtypes = [ctypes.c_int64]
    return lib


PATH_ENV = "INTERSPACE_KERNEL_PATH"


@lru_cache(maxsize=1)
def _path_names() -> tuple[str, ...]:
    lib = _library()
    return tuple(lib.ips_path_name(p).decode() for p in range(lib.ips_num_paths()))


def available_paths() -> list[str]:
    """The kernel paths this CPU can run, best first (empty without the kernel)."""
    lib = _library()
    if lib is None:
        return []
    names = _path_names()
    order = ("avx512", "avx2", "neon", "scalar")
    return [n for n in order if n in names and lib.ips_path_supported(names.index(n))]


_forced: list[str | None] = [None]  # the INTERSPACE_KERNEL_PATH value last applied


def _apply_path() -> None:
    """Select the path ``INTERSPACE_KERNEL_PATH`` names (the best one when unset)."""
    wanted = os.environ.get(PATH_ENV) or None
    if wanted == _forced[0]:
        return
    lib, names = _library(), _path_names()
    if wanted is None:
        lib.ips_select_path(-1)
    elif wanted not in available_paths():
        raise ValueError(
            f"{PATH_ENV}={wanted} is not a kernel path this CPU can run; use one of "
            f"{', '.join(available_paths())} or unset it"
        )
    else:
        lib.ips_select_path(names.index(wanted))
    _forced[0] = wanted


def kernel_path() -> str:
    """The kernel path convolutions run on now: ``avx512``, ``avx2``, ``neon`` or ``scalar``
    (``INTERSPACE_KERNEL_PATH`` if set, else the best this CPU supports), or ``"torch"``
    when the kernel was not built."""
    lib = _library()
    if lib is None:
        return "torch"
    _apply_path()
    return _path_names()[lib.ips_path()]


def available() -> bool:
    """Whether the native kernel was built and loads."""
    return _library() is not None


def max_basis() -> int:
    """The most basis filters per channel the IP projection supports."""
    lib = _library()
    return lib.ips_max_basis() if lib is not None else 0


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p | None:
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def leading_dim(length: int) -> int:
    """Row stride of the tap table for ``length`` pixels: whole 64-pixel tiles, never a
    multiple of 256 entries (power-of-two strides map the rows the kernel reads together to
    the same cache sets)."""
    ld = -(-length // 64) * 64
    return ld + 64 if ld % 256 == 0 else ld


GATHER = -(2**31)  # a run start that says "not contiguous: gather"


def output_size(
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int]:
    """``(oh, ow)`` of a convolution over an ``(h, w)`` input."""
    return tuple(  # type: ignore[return-value]
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True)
    )


def tap_index(
    batch: int,
    channels: int,
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Where each tap of each output pixel reads channel 0 of a contiguous NCHW input
    (channel ``c`` is ``c*h*w`` further on).

    Returns ``(index, runs, oh, ow)``: ``index`` is ``(kh*kw, ld)`` int32 over the output
    pixels ``j = (b*oh + oy)*ow + ox`` of the batch, ``-1`` for zero padding (and past the
    batch); ``runs`` is ``(kh*kw, ld/16)`` int32: for each 16 pixels, ``s`` when every valid
    one reads ``s + i`` (a vector load does it), else ``GATHER``.
    """
    (h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = size, kernel, stride, padding, dilation
    oh, ow = output_size(size, kernel, stride, padding, dilation)
    # (kh, kw, batch, oh, ow) after broadcasting
    iy = (
        torch.arange(oh).view(1, 1, 1, oh, 1) * sh - ph + dh * torch.arange(kh).view(-1, 1, 1, 1, 1)
    )
    ix = (
        torch.arange(ow).view(1, 1, 1, 1, ow) * sw - pw + torch.arange(kw).view(1, -1, 1, 1, 1) * dw
    )
    b = torch.arange(batch).view(1, 1, batch, 1, 1)
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    pos = torch.where(inside, b * channels * h * w + iy * w + ix, torch.full((), -1))
    length = batch * oh * ow
    ld = leading_dim(length)
    index = torch.full((kh * kw, ld), -1, dtype=torch.int64)
    index[:, :length] = pos.reshape(kh * kw, length)
    chunks = index.view(kh * kw, ld // 16, 16)
    valid = chunks >= 0
    start = chunks - torch.arange(16)
    big = torch.iinfo(torch.int64).max
    lo = torch.where(valid, start, big).amin(-1)
    hi = torch.where(valid, start, -big).amax(-1)
    runs = torch.where(lo == hi, lo, torch.where(valid.any(-1), GATHER, 0))
    return index.to(torch.int32), runs.to(torch.int32), oh, ow


def can_pool(batch: int, size: tuple[int, int]) -> bool:
    """Whether the kernel can fuse a 2x2 max-pool into a ``(batch, *, *size)`` output on the
    current path: its pixel tiles must hold whole pairs of output rows."""
    (oh, ow), lib = size, _library()
    _apply_path()
    pixels = batch * oh * ow
    tile = lib.ips_tile(pixels)
    return oh % 2 == 0 and ow % 2 == 0 and pixels % tile == 0 and tile % (2 * ow) == 0


def sparse_conv(
    x: torch.Tensor,
    index: torch.Tensor,
    runs: torch.Tensor,
    size: tuple[int, int],
    basis: torch.Tensor | None,
    used_count: torch.Tensor,
    used_rows: torch.Tensor,
    rowptr: torch.Tensor,
    cols: torch.Tensor,
    vals: torch.Tensor,
    bias: torch.Tensor,
    residual: torch.Tensor | None = None,
    relu: bool = False,
    pool: bool = False,
) -> torch.Tensor | None:
    """The NCHW output ``(B, O, *size)`` of a sparse convolution of the contiguous NCHW input
    ``x``: ``relu?(bias + A @ Z + residual)`` with ``A`` the CSR matrix ``(rowptr, cols,
    vals)`` (int64, int32, float32; ``O`` rows) over ``Z``, the basis projections (IP) or the
    taps (SP) of each input channel, as :func:`tap_index` places them.

    ``used_rows`` (int32, ``(C, rows)``) lists per input channel the rows of ``Z`` that ``A``
    reads first, ``used_count[c]`` (int32) of them; ``basis`` is IP's ``(C, rows, kh*kw)``
    basis filters in that order (``None`` for SP). ``residual``, if given, is a contiguous
    float32 tensor shaped like the output, added before the optional ReLU (both fused).
    ``pool`` returns the 2x2 max-pool (stride 2) of the result instead, where
    :func:`can_pool` allows it. The epilogue treats NaN and infinities as torch does.

    Returns None (its result is dropped) when ``x`` holds a NaN or an infinity: dense torch
    multiplies those by the pruned (zero) weights too, making NaN, which a product over the
    kept weights cannot reproduce; compute such a layer densely."""
    lib = _library()
    _apply_path()
    batch, channels = x.shape[:2]
    k, ld = index.shape
    rows = used_rows.shape[1]
    out_rows, pixels = rowptr.numel() - 1, size[0] * size[1]
    if pool and (residual is not None or not can_pool(batch, size)):
        raise ValueError("sparse_conv: this output cannot be max-pooled in the kernel")
    out = torch.empty(batch, out_rows, *((n // 2 for n in size) if pool else size))
    if residual is not None and (
        residual.shape != out.shape or not residual.is_contiguous() or residual.dtype != out.dtype
    ):
        raise ValueError(
            f"sparse_conv: residual must be a contiguous float32 {tuple(out.shape)} tensor, "
            f"got {residual.dtype} {tuple(residual.shape)}"
        )
    lib.ips_set_threads(torch.get_num_threads())
    status = lib.ips_conv(
        _ptr(x),
        channels,
        x.shape[2] * x.shape[3],
        _ptr(index),
        _ptr(runs),
        ld,
        k,
        _ptr(basis),
        rows,
        _ptr(used_count),
        _ptr(used_rows),
        _ptr(rowptr),
        _ptr(cols),
        _ptr(vals),
        _ptr(bias),
        out_rows,
        batch * pixels,
        pixels,
        _ptr(residual),
        int(relu),
        size[1] if pool else 0,
        _ptr(out),
    )
    if status == 1:
        return None
    if status == -1:
        raise MemoryError("sparse_conv: out of memory for the per-thread tile buffers")
    if status != 0:
        raise ValueError("sparse_conv: the kernel rejected the layer's shape (too many rows?)")
    return out
