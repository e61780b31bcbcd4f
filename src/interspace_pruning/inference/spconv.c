/* Sparse convolution kernel for CPU inference, called through ctypes (see native.py).
 *
 * Both representations are one pipeline on NCHW activations, read and written in place. For
 * each tile of output pixels j = (b, oy, ox) of the whole batch, in parallel:
 *
 *   project: Z[r, j] for every kept row r, into a per-thread buffer that stays in cache:
 *            IP: r = (c, m), Z = sum_t g_m[t] x_c[tap t of pixel j]   (the basis convolution)
 *            SP: r = (c, t), Z = x_c[tap t of pixel j]                (im2col of the kept taps)
 *   product: out[o, j] = bias[o] + sum_{(o, r) kept} value * Z[r, j]  (CSR, the sparse 1x1)
 *
 * Tap positions come from an index table (K x LD int32, -1 = zero padding), so stride,
 * dilation, padding and non-square kernels cost nothing here and no padded copy is made.
 * Where 16 consecutive pixels read 16 consecutive inputs (stride 1, inside a row), the table
 * marks it and a masked vector load replaces the gather.
 * The product keeps a tile (16, 32 or 64 pixels) of one output row in vector registers while
 * it walks that row's kept entries; Z is computed once per tile and read from cache for all
 * output channels, never written to memory.
 *
 * A plain shared library (no Python headers needed), built as an extension so pip places it;
 * it is loaded with ctypes, never imported. Written with GCC/Clang vector extensions, so it builds for any target; AVX-512 gathers are
 * used where the compiler targets them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __AVX512F__
#include <immintrin.h>
#endif

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
typedef int32_t i16 __attribute__((vector_size(64)));
typedef int32_t i16u __attribute__((vector_size(64), aligned(4)));

#define TILE 64 /* pixels per spmm tile: 4 vectors of 16 floats */
#define NVEC (TILE / 16)
#define MAX_BASIS 64 /* basis filters per channel the projection supports (kernels up to 8x8) */

/* Tell the threads how many to use (matching torch.get_num_threads()). */
void ips_set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n > 0 ? n : 1);
#else
    (void)n;
#endif
}

int ips_max_basis(void) { return MAX_BASIS; }

/* 16 values xc[idx[i]], 0 where idx[i] < 0. Unless run == GATHER, idx[i] = run + i wherever
 * idx[i] >= 0, and a masked load does it (masked-off lanes are never read). */
#define GATHER INT32_MIN
static inline v16 gather16(const float* xc, const int32_t* idx, int32_t run) {
#ifdef __AVX512F__
    __m512i i = _mm512_loadu_si512(idx);
    __mmask16 in = _mm512_cmpge_epi32_mask(i, _mm512_setzero_si512());
    if (run != GATHER) return (v16)_mm512_maskz_loadu_ps(in, xc + run);
    return (v16)_mm512_mask_i32gather_ps(_mm512_setzero_ps(), in, i, xc, 4);
#else
    (void)run;
    v16 r;
    for (int k = 0; k < 16; k++) r[k] = idx[k] >= 0 ? xc[idx[k]] : 0.0f;
    return r;
#endif
}

/* Basis projections of one channel for the 16 pixels from j; always inlined, so that with
 * constant n and K (3x3 kernels) the accumulators live in registers. */
static inline __attribute__((always_inline)) void project16(
    const float* xc, const int32_t* idx, const int32_t* run, int64_t LD, int64_t K,
    const float* basis, int64_t n, const uint8_t* u, int64_t j, float* zc, int64_t ld) {
    v16 acc[MAX_BASIS];
    for (int64_t m = 0; m < n; m++) acc[m] = (v16){0};
    for (int64_t t = 0; t < K; t++) {
        const v16 xt = gather16(xc, idx + t * LD + j, run[(t * LD + j) / 16]);
        for (int64_t m = 0; m < n; m++) acc[m] += basis[m * K + t] * xt;
    }
    for (int64_t m = 0; m < n; m++)
        if (u[m]) *(v16*)(zc + m * ld) = acc[m];
}

/* Z rows for the pixels [j0, j0 + 16 * nv) into z (rows * C, ld): the basis projections (IP)
 * or the taps themselves (SP, basis == NULL) of every row flagged in used. */
static void project_tile(const float* x, int64_t C, int64_t cstride, const int32_t* idx,
                         const int32_t* run, int64_t LD, int64_t K, const float* basis,
                         int64_t n, const uint8_t* used, int64_t j0, int nv, float* z,
                         int64_t ld) {
    const int64_t rows = basis ? n : K;
    for (int64_t c = 0; c < C; c++) {
        const float* xc = x + c * cstride;
        const uint8_t* u = used + c * rows;
        float* zc = z + c * rows * ld;
        for (int k = 0; k < nv; k++) {
            const int64_t j = j0 + 16 * k;
            if (!basis) {
                for (int64_t t = 0; t < K; t++)
                    if (u[t])
                        *(v16*)(zc + t * ld + 16 * k) =
                            gather16(xc, idx + t * LD + j, run[(t * LD + j) / 16]);
            } else if (K == 9 && n == 9) { /* 3x3: constants for the compiler */
                project16(xc, idx, run, LD, 9, basis, 9, u, j, zc + 16 * k, ld);
            } else {
                project16(xc, idx, run, LD, K, basis, n, u, j, zc + 16 * k, ld);
            }
        }
    }
}

/* Output rows [o0, o1) for the w <= 16 * NV pixels from j0: bias + CSR @ z, written as NCHW
 * (pixel j = b * P + p of row o goes to out[(b * O + o) * P + p]). */
#define SPMM_TILE(NV)                                                                      \
    static void spmm_tile_##NV(const float* z, int64_t ld, const int64_t* rowptr,          \
                               const int32_t* cols, const float* vals, const float* bias,  \
                               int64_t o0, int64_t o1, int64_t O, int64_t P, int64_t j0,   \
                               int64_t w, float* out) {                                    \
        for (int64_t o = o0; o < o1; o++) {                                                \
            v16 acc[NV];                                                                   \
            for (int k = 0; k < NV; k++) acc[k] = (v16){0} + bias[o];                      \
            for (int64_t q = rowptr[o]; q < rowptr[o + 1]; q++) {                          \
                const float v = vals[q];                                                   \
                const v16* s = (const v16*)(z + (int64_t)cols[q] * ld);                    \
                for (int k = 0; k < NV; k++) acc[k] += v * s[k];                           \
            }                                                                              \
            const float* a = (const float*)acc;                                            \
            for (int64_t j = j0; j < j0 + w;) { /* one run per image the tile touches */   \
                const int64_t b = j / P, p = j - b * P;                                    \
                const int64_t len = P - p < j0 + w - j ? P - p : j0 + w - j;               \
                float* d = out + (b * O + o) * P + p;                                      \
                for (int64_t k = 0; k < len; k++) d[k] = a[j - j0 + k];                    \
                j += len;                                                                  \
            }                                                                              \
        }                                                                                  \
    }
SPMM_TILE(1)
SPMM_TILE(2)
SPMM_TILE(4)

/* The whole sparse convolution, fused per tile of output pixels so that a tile's Z stays in
 * cache. x: input with channel c at x + c * cstride; idx: (K, LD) tap positions relative to
 * that; run: (K, LD / 16) contiguous-run starts or GATHER; basis: (n, K) or NULL for SP;
 * used: (C * rows) flags, rows = n or K; CSR (rowptr, cols, vals) is O x (C * rows);
 * out: (B, O, P) with L = B * P output pixels. Returns 0, or -1 when out of memory. */
int ips_conv(const float* x, int64_t C, int64_t cstride, const int32_t* idx,
              const int32_t* run, int64_t LD, int64_t K, const float* basis, int64_t n,
              const uint8_t* used, const int64_t* rowptr, const int32_t* cols,
              const float* vals, const float* bias, int64_t O, int64_t L, int64_t P,
              float* out) {
    const int64_t rows = basis ? n : K;
    /* narrow tiles when there are few pixels (batch 1, deep layers); wide ones otherwise */
    const int nv = L <= 16 ? 1 : L <= 64 ? 2 : 4;
    const int64_t tile = 16 * nv, tiles = (L + tile - 1) / tile;
#ifdef _OPENMP
    const int64_t threads = omp_get_max_threads();
#else
    const int64_t threads = 1;
#endif
    /* with fewer tiles than threads, split the output channels too (the tile's Z is then
       computed once per split, cheap next to the product) */
    int64_t splits = tiles >= 2 * threads ? 1 : (2 * threads + tiles - 1) / tiles;
    if (splits > O) splits = O;
    const int64_t tasks = tiles * splits;
    int failed = 0;
#pragma omp parallel
    {
        float* z = aligned_alloc(64, (size_t)(C * rows * tile) * sizeof(float));
        int64_t have = -1; /* the tile whose Z is in z */
        if (!z) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t task = 0; task < tasks; task++) {
            if (!z) continue;
            const int64_t t = task / splits, part = task % splits;
            const int64_t j0 = t * tile, w = L - j0 < tile ? L - j0 : tile;
            if (t != have) {
                project_tile(x, C, cstride, idx, run, LD, K, basis, n, used, j0, nv, z, tile);
                have = t;
            }
            const int64_t o0 = O * part / splits, o1 = O * (part + 1) / splits;
            if (nv == 1)
                spmm_tile_1(z, tile, rowptr, cols, vals, bias, o0, o1, O, P, j0, w, out);
            else if (nv == 2)
                spmm_tile_2(z, tile, rowptr, cols, vals, bias, o0, o1, O, P, j0, w, out);
            else
                spmm_tile_4(z, tile, rowptr, cols, vals, bias, o0, o1, O, P, j0, w, out);
        }
        free(z);
    }
    return failed ? -1 : 0;
}

