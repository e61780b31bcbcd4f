/* Sparse convolution kernel for CPU inference, called through ctypes (see native.py).
 *
 * Both representations are one pipeline on NCHW activations, read and written in place. For
 * each tile of output pixels j = (b, oy, ox) of the whole batch, in parallel:
 *
 *   project: Z[r, j] for every used row r, into a per-thread buffer that stays in cache:
 *            IP: r = (c, m), Z = sum_t g_m[t] x_c[tap t of pixel j]   (the basis convolution)
 *            SP: r = (c, t), Z = x_c[tap t of pixel j]                (im2col of the kept taps)
 *   product: out[o, j] = epilogue(bias[o] + sum_{(o, r) kept} value * Z[r, j])  (CSR)
 *            epilogue: + residual[o, j] (a fused skip connection), then ReLU, both optional,
 *            or ReLU (optional) and a 2x2 max-pool
 *
 * NaN and infinities: dense torch multiplies every input by every weight, and 0 * nan and
 * 0 * inf are NaN, so one non-finite input makes every output that sees it non-finite, pruned
 * weights or not. The product above skips the pruned weights, so it cannot reproduce that: each
 * tile checks its share of the input for NaN and inf (cheap: in cache for the projection next),
 * and finding one, ips_conv says so and its output is not to be used; the caller then computes
 * the layer densely (native.py / engine.py). The epilogue follows torch for the non-finite
 * values it meets (from a residual, the bias, the weights, an overflow): the additions are plain
 * float additions, ReLU keeps NaN (relu(nan) = nan, relu(-inf) = 0) and the max-pool returns
 * NaN when its window holds one.
 *
 * Tap positions come from an index table (K x LD int32, -1 = zero padding), so stride,
 * dilation, padding and non-square kernels cost nothing here and no padded copy is made.
 * Where 16 consecutive pixels read 16 consecutive inputs (stride 1, inside a row), the table
 * marks it and a (masked) vector load replaces the gather. Only the basis filters (IP) or taps
 * (SP) that kept entries use are computed, per input channel.
 * The product keeps a tile (8 to 64 pixels) of one output row in vector registers while it
 * walks that row's kept entries; Z is computed once per tile and read from cache for all
 * output channels, never written to memory.
 *
 * Kernel paths: every path is compiled into this one binary (spconv_path.h, included once
 * per instruction set inside a target pragma) and the best one the CPU supports is picked
 * at load time (ips_select_path overrides it):
 *   x86-64:  avx512 (16-float vectors, masked loads, gathers), avx2 (8-float vectors with FMA,
 *            vmaskmovps loads, AVX2 gathers; register blocking for 16 ymm registers), scalar
 *   aarch64: neon (8-float vectors as register pairs, 32 registers), scalar
 * "scalar" is the plain C fallback: generic vectors at the baseline ISA, scalar gathers.
 *
 * A plain shared library (no Python headers needed), built as an extension so pip places it;
 * it is loaded with ctypes, never imported.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#define IPS_X86 1
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#define IPS_ARM64 1
#include <arm_neon.h>
#endif

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));
typedef int32_t i8 __attribute__((vector_size(32)));
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
typedef int32_t i16 __attribute__((vector_size(64)));

#define MAX_TILE 64   /* pixels per product tile, at most */
#define MAX_BASIS 64  /* basis filters per channel the projection supports (kernels up to 8x8) */
#define GATHER INT32_MIN
/* unroll the short constant loops completely, so that accumulator arrays become registers */
#if defined(__clang__)
#define PRAGMA_UNROLL _Pragma("unroll")
#else
#define PRAGMA_UNROLL _Pragma("GCC unroll 16")
#endif

/* Tell the threads how many to use (matching torch.get_num_threads()). */
void ips_set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n > 0 ? n : 1);
#else
    (void)n;
#endif
}

int ips_max_basis(void) { return MAX_BASIS; }

typedef void (*project_fn)(const float*, int64_t, int64_t, const int32_t*, const int32_t*,
                           int64_t, int64_t, const float*, int64_t, const int32_t*,
                           const int32_t*, int64_t, int, float*, int64_t);
typedef int (*nonfinite_fn)(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                            int64_t);
typedef void (*spmm_fn)(const float*, int64_t, const int64_t*, const int32_t*, const float*,
                        const float*, const float*, int, int64_t, int64_t, int64_t, int64_t,
                        int64_t, int64_t, int64_t, float*, int);

/* ---- scalar: the plain C fallback ---------------------------------------------------- */
#define SFX scalar
#define VW 8
#define VEC v8
#define VECU v8u
#define VINT i8
static inline v8 gather_scalar(const float* xc, const int32_t* idx, int32_t run) {
    (void)run;
    v8 r;
    for (int k = 0; k < 8; k++) r[k] = idx[k] >= 0 ? xc[idx[k]] : 0.0f;
    return r;
}
#include "spconv_path.h"
#undef SFX
#undef VW
#undef VEC
#undef VECU
#undef VINT

#ifdef IPS_X86
/* ---- avx2: 8-float vectors, FMA ------------------------------------------------------- */
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#endif
#define SFX avx2
#define VW 8
#define VEC v8
#define VECU v8u
#define VINT i8
static inline v8 gather_avx2(const float* xc, const int32_t* idx, int32_t run) {
    const __m256i i = _mm256_loadu_si256((const __m256i*)idx);
    const __m256i in = _mm256_cmpgt_epi32(i, _mm256_set1_epi32(-1));
    if (run != GATHER) {
        if (_mm256_movemask_ps(_mm256_castsi256_ps(in)) == 0xff)
            return (v8)_mm256_loadu_ps(xc + run);
        return (v8)_mm256_maskload_ps(xc + run, in); /* masked-off lanes are never read */
    }
    return (v8)_mm256_mask_i32gather_ps(_mm256_setzero_ps(), xc, i, _mm256_castsi256_ps(in), 4);
}
#include "spconv_path.h"
#undef SFX
#undef VW
#undef VEC
#undef VECU
#undef VINT
#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options

/* ---- avx512: 16-float vectors, mask registers ----------------------------------------- */
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#endif
#define SFX avx512
#define VW 16
#define VEC v16
#define VECU v16u
#define VINT i16
static inline v16 gather_avx512(const float* xc, const int32_t* idx, int32_t run) {
    const __m512i i = _mm512_loadu_si512(idx);
    const __mmask16 in = _mm512_cmpge_epi32_mask(i, _mm512_setzero_si512());
    if (run != GATHER) return (v16)_mm512_maskz_loadu_ps(in, xc + run);
    return (v16)_mm512_mask_i32gather_ps(_mm512_setzero_ps(), in, i, xc, 4);
}
#include "spconv_path.h"
#undef SFX
#undef VW
#undef VEC
#undef VECU
#undef VINT
#ifdef __clang__
#pragma clang attribute pop
#endif
#pragma GCC pop_options
#endif /* IPS_X86 */

#ifdef IPS_ARM64
/* ---- neon: 8-float vectors as pairs of q registers (32 of them) ----------------------- */
#define SFX neon
#define VW 8
#define VEC v8
#define VECU v8u
#define VINT i8
static inline v8 gather_neon(const float* xc, const int32_t* idx, int32_t run) {
    const int32x4_t lo = vld1q_s32(idx), hi = vld1q_s32(idx + 4);
    if (run != GATHER && vminvq_s32(vminq_s32(lo, hi)) >= 0) { /* whole run: two loads */
        v8 r;
        memcpy(&r, xc + run, sizeof r);
        return r;
    }
    v8 r;
    for (int k = 0; k < 8; k++) r[k] = idx[k] >= 0 ? xc[idx[k]] : 0.0f;
    return r;
}
#include "spconv_path.h"
#undef SFX
#undef VW
#undef VEC
#undef VECU
#undef VINT
#endif /* IPS_ARM64 */

/* ---- run-time choice of the path ------------------------------------------------------ */
typedef struct {
    const char* name;
    int vw;
    nonfinite_fn nonfinite;
    project_fn project;
    spmm_fn spmm;
} kernel_path;

enum { PATH_SCALAR, PATH_AVX2, PATH_AVX512, PATH_NEON, NPATHS };
static const kernel_path paths[NPATHS] = {
    {"scalar", 8, nonfinite_scalar, project_tile_scalar, spmm_tile_scalar},
#ifdef IPS_X86
    {"avx2", 8, nonfinite_avx2, project_tile_avx2, spmm_tile_avx2},
    {"avx512", 16, nonfinite_avx512, project_tile_avx512, spmm_tile_avx512},
#else
    {"avx2", 0, NULL, NULL, NULL},
    {"avx512", 0, NULL, NULL, NULL},
#endif
#ifdef IPS_ARM64
    {"neon", 8, nonfinite_neon, project_tile_neon, spmm_tile_neon},
#else
    {"neon", 0, NULL, NULL, NULL},
#endif
};

/* Whether path p (an index into paths) can run on this CPU. */
int ips_path_supported(int p) {
    switch (p) {
        case PATH_SCALAR:
            return 1;
#ifdef IPS_X86
        case PATH_AVX2:
            __builtin_cpu_init();
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case PATH_AVX512:
            __builtin_cpu_init();
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
                   __builtin_cpu_supports("fma");
#endif
#ifdef IPS_ARM64
        case PATH_NEON:
            return 1; /* Advanced SIMD is part of the AArch64 baseline */
#endif
        default:
            return 0;
    }
}

static int best_path(void) {
    static const int order[] = {PATH_AVX512, PATH_AVX2, PATH_NEON};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        if (ips_path_supported(order[i])) return order[i];
    return PATH_SCALAR;
}

static int current = -1;

int ips_num_paths(void) { return NPATHS; }
const char* ips_path_name(int p) { return p >= 0 && p < NPATHS ? paths[p].name : ""; }

/* The path in use (the best supported one unless ips_select_path chose another). */
int ips_path(void) {
    if (current < 0) current = best_path();
    return current;
}

/* Use path p from now on; -1 picks the best again. Returns 0, or -1 if p cannot run here. */
int ips_select_path(int p) {
    if (p == -1) {
        current = best_path();
        return 0;
    }
    if (p < 0 || p >= NPATHS || !ips_path_supported(p)) return -1;
    current = p;
    return 0;
}

/* Pixels per product tile for L output pixels on the current path. */
int64_t ips_tile(int64_t L) {
    const int64_t tile = L <= 8 ? 8 : L <= 16 ? 16 : L <= 64 ? 32 : MAX_TILE;
    const int64_t vw = paths[ips_path()].vw;
    return tile < vw ? vw : tile;
}

/* The whole sparse convolution, fused per tile of output pixels so that a tile's Z stays in
 * cache. x: input with channel c at x + c * cstride; idx: (K, LD) tap positions relative to
 * that; run: (K, LD / 16) contiguous-run starts or GATHER; cb: IP's used basis filters,
 * (C, rows, K) with channel c's nus[c] used ones first, or NULL for SP; rows: basis filters
 * (IP) or taps (SP) per channel; rowlist: (C, rows) the used rows of each channel first;
 * CSR (rowptr, cols, vals) is O x (C * rows); res: NULL or a tensor shaped like out, added
 * before the ReLU (relu != 0); out: (B, O, P) with L = B * P output pixels, or with
 * pool_w > 0 (the output row width), the 2x2 max-pool of that: (B, O, P / 4); this needs
 * whole tiles of whole row pairs (L and P multiples of 2 * pool_w, L of the tile, the tile of
 * 2 * pool_w) and no residual.
 * x (its L / P images of C channels) must be finite: the kernel cannot give dense torch's
 * result otherwise (see the top of this file), so it checks and, finding a NaN or an infinity,
 * returns 1, out then holding nothing of use. The residual and the weights may hold any value.
 * Returns 0, 1 for a non-finite input, -1 when out of memory, -2 for arguments the kernel does
 * not support. */
int ips_conv(const float* x, int64_t C, int64_t cstride, const int32_t* idx, const int32_t* run,
             int64_t LD, int64_t K, const float* cb, int64_t rows, const int32_t* nus,
             const int32_t* rowlist, const int64_t* rowptr, const int32_t* cols,
             const float* vals, const float* bias, int64_t O, int64_t L, int64_t P,
             const float* res, int relu, int64_t pool_w, float* out) {
    if ((cb && rows > MAX_BASIS) || rows < 1 || LD % 64 != 0 || P < 1) return -2;
    const kernel_path* kp = &paths[ips_path()];
    /* narrow tiles when there are few pixels (batch 1, deep layers); wide ones otherwise */
    const int64_t tile = ips_tile(L);
    if (pool_w && (pool_w % 2 || res || L % tile || tile % (2 * pool_w) || P % (2 * pool_w)))
        return -2;
    const int nvec = (int)(tile / kp->vw);
    const int64_t tiles = (L + tile - 1) / tile;
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
    int failed = 0, nonfinite = 0;
#pragma omp parallel
    {
        const size_t bytes = (size_t)(C * rows * tile) * sizeof(float);
        float* z = aligned_alloc(64, (bytes + 63) / 64 * 64);
        int64_t have = -1; /* the tile whose Z is in z */
        if (!z) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static) reduction(| : nonfinite)
        for (int64_t task = 0; task < tasks; task++) {
            if (!z) continue;
            const int64_t t = task / splits, part = task % splits;
            const int64_t j0 = t * tile, w = L - j0 < tile ? L - j0 : tile;
            /* the input check, tile by tile as it goes, split over the tile's tasks (a rare
               non-finite input then costs a convolution computed for nothing, never a pass
               over the input of its own) */
            nonfinite |= kp->nonfinite(x, C * part / splits, C * (part + 1) / splits, C, cstride,
                                       P, j0, w);
            if (t != have) {
                kp->project(x, C, cstride, idx, run, LD, K, cb, rows, nus, rowlist, j0, nvec, z,
                            tile);
                have = t;
            }
            const int64_t o0 = O * part / splits, o1 = O * (part + 1) / splits;
            kp->spmm(z, tile, rowptr, cols, vals, bias, res, relu, pool_w, o0, o1, O, P, j0, w,
                     out, nvec);
        }
        free(z);
    }
    return nonfinite ? 1 : failed ? -1 : 0;
}
