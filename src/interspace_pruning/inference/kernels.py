"""Fused CPU kernels for sparse convolutions (numba; optional, with the torch path as fallback).

One kernel serves both representations. The output pixels of the whole batch are cut into
tiles; for each tile, in parallel:

1. gather the input patches of the tile (``C*kh*kw x T``, zero padding, any stride and
   dilation);
2. IP only: project them onto the basis filters that some kept coefficient uses
   (``z = F @ patches`` per input channel) -- the basis convolution, fused, never written out;
3. multiply by the CSR matrix (IP coefficients or SP weights): every kept entry is one
   multiply-add over the tile's contiguous pixels, with the tile in cache.

Tiles run over batch and pixels together, so deep layers with few pixels still get long
inner loops. Nothing of size ``C*kh*kw x (B*H*W)`` is ever materialised.
"""

from __future__ import annotations

import numpy as np

try:
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised when numba is missing
    numba = None
    HAVE_NUMBA = False


def _sparse_conv_impl(
    x, rowptr, cols, vals, basis, used, bias, out_h, out_w, kh, kw, sh, sw, ph, pw, dh, dw, tile
):
    b_n, c_n, h_n, w_n = x.shape
    k_n = kh * kw
    n_basis = basis.shape[0]  # 0 for SP (no projection)
    rows_z = c_n * n_basis if n_basis > 0 else c_n * k_n
    o_n = rowptr.shape[0] - 1
    total = b_n * out_h * out_w
    n_tiles = (total + tile - 1) // tile
    y = np.zeros((b_n, o_n, out_h * out_w), dtype=np.float32)
    for t_i in numba.prange(n_tiles):
        start = t_i * tile
        stop = min(start + tile, total)
        t_n = stop - start
        # where each pixel of the tile reads from: batch index and top-left input corner
        bj = np.empty(t_n, dtype=np.int64)
        y0 = np.empty(t_n, dtype=np.int64)
        x0 = np.empty(t_n, dtype=np.int64)
        for j in range(t_n):
            flat = start + j
            bj[j] = flat // (out_h * out_w)
            pix = flat % (out_h * out_w)
            y0[j] = (pix // out_w) * sh - ph
            x0[j] = (pix % out_w) * sw - pw
        patches = np.zeros((c_n * k_n, t_n), dtype=np.float32)
        for c in range(c_n):
            for ky in range(kh):
                for kx in range(kw):
                    row = c * k_n + ky * kw + kx
                    for j in range(t_n):  # contiguous writes, mostly contiguous reads
                        iy = y0[j] + ky * dh
                        ix = x0[j] + kx * dw
                        if 0 <= iy < h_n and 0 <= ix < w_n:
                            patches[row, j] = x[bj[j], c, iy, ix]
        if n_basis > 0:
            z = np.zeros((rows_z, t_n), dtype=np.float32)
            for c in range(c_n):
                for m in range(n_basis):
                    r = c * n_basis + m
                    if not used[r]:
                        continue
                    for t in range(k_n):
                        f = basis[m, t]
                        src = c * k_n + t
                        for j in range(t_n):
                            z[r, j] += f * patches[src, j]
        else:
            z = patches
        acc = np.empty(t_n, dtype=np.float32)
        for o in range(o_n):
            for j in range(t_n):
                acc[j] = bias[o]
            for q in range(rowptr[o], rowptr[o + 1]):
                v = vals[q]
                r = cols[q]
                for j in range(t_n):
                    acc[j] += v * z[r, j]
            for j in range(t_n):
                flat = start + j
                y[flat // (out_h * out_w), o, flat % (out_h * out_w)] = acc[j]
    return y


if HAVE_NUMBA:
    sparse_conv = numba.njit(parallel=True, fastmath=True, cache=True)(_sparse_conv_impl)
else:  # pragma: no cover
    sparse_conv = None


def tile_size(rows: int) -> int:
    """Pixels per tile: keep the tile's patches and projections (~``rows`` each) in cache."""
    return int(max(16, min(512, (64 * 1024) // max(rows, 1))))
