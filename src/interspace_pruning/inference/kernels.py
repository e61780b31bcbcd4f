"""Fused CPU kernels for sparse convolutions (numba; optional, with the torch path as fallback).

One kernel serves both representations. The output pixels of the whole batch are cut into
tiles; for each tile, in parallel:

1. gather the input patches of the tile (``C*kh*kw x T``, from the zero-padded input, any
   stride and dilation), skipping the taps no kept entry reads;
2. IP only: project them onto the basis filters that some kept coefficient uses
   (``z = F @ patches`` per input channel) -- the basis convolution, fused, never written out;
3. multiply by the CSR matrix (IP coefficients or SP weights): every kept entry is one
   multiply-add over the tile's contiguous pixels, with the tile in cache.

Tiles are runs of whole output rows across the batch, so copies along a row are contiguous
and deep layers with few pixels still get long inner loops. Nothing of size
``C*kh*kw x (B*H*W)`` is ever materialised.
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
    x, rowptr, cols, vals, basis, used, need, bias, out_h, out_w, kh, kw, sh, sw, dh, dw, tile
):
    # x is already zero-padded, so every tap of every output pixel is in range. A tile is a
    # run of whole output rows (b, oy) of the batch: copies along a row are contiguous.
    b_n, c_n, h_n, w_n = x.shape
    k_n = kh * kw
    n_basis = basis.shape[0]  # 0 for SP (no projection)
    rows_z = c_n * n_basis if n_basis > 0 else c_n * k_n
    o_n = rowptr.shape[0] - 1
    total_rows = b_n * out_h
    rows_per_tile = max(1, tile // out_w)
    n_tiles = (total_rows + rows_per_tile - 1) // rows_per_tile
    y = np.empty((b_n, o_n, out_h, out_w), dtype=np.float32)
    for t_i in numba.prange(n_tiles):
        first = t_i * rows_per_tile
        last = min(first + rows_per_tile, total_rows)
        t_n = (last - first) * out_w
        # 1. the patches the kept entries need (taps that no kept entry reads are skipped)
        patches = np.empty((c_n * k_n, t_n), dtype=np.float32)
        for c in range(c_n):
            for ky in range(kh):
                for kx in range(kw):
                    r = c * k_n + ky * kw + kx
                    if not need[r]:
                        continue
                    for rr in range(first, last):
                        b = rr // out_h
                        iy = (rr % out_h) * sh + ky * dh
                        base = (rr - first) * out_w
                        for ox in range(out_w):
                            patches[r, base + ox] = x[b, c, iy, ox * sw + kx * dw]
        # 2. IP: projections onto the basis filters that kept coefficients use
        if n_basis > 0:
            z = np.empty((rows_z, t_n), dtype=np.float32)
            for c in range(c_n):
                for m in range(n_basis):
                    r = c * n_basis + m
                    if not used[r]:
                        continue
                    f0 = basis[m, 0]
                    for j in range(t_n):
                        z[r, j] = f0 * patches[c * k_n, j]
                    for t in range(1, k_n):
                        f = basis[m, t]
                        src = c * k_n + t
                        for j in range(t_n):
                            z[r, j] += f * patches[src, j]
        else:
            z = patches
        # 3. the sparse product, one output channel at a time, with the tile in cache
        acc = np.empty(t_n, dtype=np.float32)
        for o in range(o_n):
            for j in range(t_n):
                acc[j] = bias[o]
            for q in range(rowptr[o], rowptr[o + 1]):
                v = vals[q]
                r = cols[q]
                for j in range(t_n):
                    acc[j] += v * z[r, j]
            for rr in range(first, last):
                b = rr // out_h
                oy = rr % out_h
                base = (rr - first) * out_w
                for ox in range(out_w):
                    y[b, o, oy, ox] = acc[base + ox]
    return y


if HAVE_NUMBA:
    sparse_conv = numba.njit(parallel=True, fastmath=True, cache=True)(_sparse_conv_impl)
else:  # pragma: no cover
    sparse_conv = None


def tile_size(rows: int) -> int:
    """Pixels per tile: keep the tile's patches and projections (~``rows`` each) in cache."""
    return int(max(16, min(512, (64 * 1024) // max(rows, 1))))
