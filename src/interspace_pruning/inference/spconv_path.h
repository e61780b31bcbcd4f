/* One kernel path of spconv.c: the input check, the projection and the sparse product with its
 * epilogue, for vectors of VW floats.
 *
 * Included once per path by spconv.c, inside a `#pragma GCC target` region for that path's
 * instruction set, with these defined first:
 *   SFX   name suffix of the functions (scalar, avx2, avx512, neon)
 *   VW    floats per vector (a power of two, at most 16)
 *   VEC / VECU / VINT   vector types of VW floats (aligned, unaligned) and VW int32
 *   static VEC gather_SFX(const float* xc, const int32_t* idx, int32_t run):
 *         VW values xc[idx[i]], 0 where idx[i] < 0; unless run == GATHER, idx[i] = run + i
 *         wherever idx[i] >= 0 (one contiguous read).
 * Everything here is plain GCC/Clang vector code; the target region decides the instructions.
 */
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)

/* Z rows of one channel for the VW pixels from j: nu accumulators (IP: projections onto the
 * channel's used basis filters, cb is (nu, K)) held in registers across the K taps. Always
 * inlined so that with constant K and nu (3x3 kernels) the loops unroll. */
static inline __attribute__((always_inline)) void FN(project_vec)(
    const float* xc, const int32_t* idx, const int32_t* run, int64_t LD, int64_t K,
    const float* cb, const int32_t* rowof, int nu, int64_t j, float* zc, int64_t ld) {
    VEC acc[MAX_BASIS];
    PRAGMA_UNROLL
    for (int m = 0; m < nu; m++) acc[m] = (VEC){0};
    PRAGMA_UNROLL
    for (int64_t t = 0; t < K; t++) {
        const int64_t q = t * LD + j; /* LD is a multiple of 64, so q % 16 == j % 16 */
        const int32_t r = run[q / 16];
        const VEC xt = FN(gather)(xc, idx + q, r == GATHER ? GATHER : r + (int32_t)(q % 16));
        PRAGMA_UNROLL
        for (int m = 0; m < nu; m++) acc[m] += cb[m * K + t] * xt;
    }
    PRAGMA_UNROLL
    for (int m = 0; m < nu; m++) *(VEC*)(zc + (int64_t)rowof[m] * ld) = acc[m];
}

/* a[k] += x * 0 over the n floats from xc: a NaN for a NaN or an infinity among them (without
 * -ffast-math the compiler may not fold x * 0 to 0); eight accumulators hide the latency, so
 * that each vector costs one load and one fused multiply-add. */
static inline __attribute__((always_inline)) void FN(check_run)(const float* xc, int64_t n,
                                                                 VEC* a, float* s) {
    int64_t i = 0;
    for (; i + 8 * VW <= n; i += 8 * VW) {
        PRAGMA_UNROLL
        for (int k = 0; k < 8; k++) a[k] += *(const VECU*)(xc + i + k * VW) * 0.0f;
    }
    if (i + 4 * VW <= n) {
        PRAGMA_UNROLL
        for (int k = 0; k < 4; k++) a[k] += *(const VECU*)(xc + i + k * VW) * 0.0f;
        i += 4 * VW;
    }
    if (i + 2 * VW <= n) {
        a[4] += *(const VECU*)(xc + i) * 0.0f;
        a[5] += *(const VECU*)(xc + i + VW) * 0.0f;
        i += 2 * VW;
    }
    if (i + VW <= n) {
        a[6] += *(const VECU*)(xc + i) * 0.0f;
        i += VW;
    }
    for (; i < n; i++) *s += xc[i] * 0.0f;
}

/* Whether the input pixels that the output pixels [j0, j0 + w) own hold a NaN or an infinity,
 * in channels [c0, c1) of the C (cstride floats apart; P output pixels per image). The tiles
 * split each image's output pixels, and in proportion its input pixels (input pixel
 * floor(p * cstride / P) onwards from output pixel p), so tile by tile every input value is
 * checked once, just before the projection reads the same neighbourhood. The kernel computes
 * only the products with kept weights, where dense torch also multiplies by the zeros (and
 * 0 * inf is NaN), so ips_conv leaves a layer whose input holds such a value to the caller. */
static int FN(nonfinite)(const float* x, int64_t c0, int64_t c1, int64_t C, int64_t cstride,
                         int64_t P, int64_t j0, int64_t w) {
    VEC a[8];
    PRAGMA_UNROLL
    for (int k = 0; k < 8; k++) a[k] = (VEC){0};
    float s = 0.0f;
    for (int64_t j = j0; j < j0 + w;) { /* one run per image the tile touches */
        const int64_t b = j / P, p = j - b * P;
        const int64_t len = P - p < j0 + w - j ? P - p : j0 + w - j;
        const int64_t lo = p * cstride / P, hi = (p + len) * cstride / P;
        if (lo == 0 && hi == cstride) /* the whole image: its channels are one block */
            FN(check_run)(x + (b * C + c0) * cstride, (c1 - c0) * cstride, a, &s);
        else
            for (int64_t c = c0; c < c1; c++)
                FN(check_run)(x + (b * C + c) * cstride + lo, hi - lo, a, &s);
        j += len;
    }
    PRAGMA_UNROLL
    for (int k = 1; k < 8; k++) a[0] += a[k];
    for (int k = 0; k < VW; k++) s += a[0][k];
    return s != s;
}

/* torch.relu: negatives (-inf too) to 0; NaN, +-0 and positives unchanged. */
#define RELU_VEC(v) ((VEC)((VINT)(v) & ~(VINT)((v) < 0)))
/* One step of torch's max-pool over a window: the later value wins if larger or NaN, so that
 * a NaN anywhere in the window is the result (ties keep the earlier value). */
#define POOL_MAX(m, u) ((u) > (m) || (u) != (u) ? (u) : (m))

#define PROJECT_CASE(NU)                                                                 \
    case NU:                                                                             \
        for (int k = 0; k < nvec; k++)                                                   \
            FN(project_vec)(xc, idx, run, LD, 9, cbc, rl, NU, j0 + VW * k, zc + VW * k, ld); \
        break;

/* Z for the pixels [j0, j0 + VW * nvec) into z ((C * rows) x ld): per channel c, its nus[c]
 * used rows rowlist[c * rows + i]; IP (cb != NULL): projections onto the used basis filters
 * cb[c][i] (K floats each); SP: the used taps themselves (im2col of the kept taps). */
static void FN(project_tile)(const float* x, int64_t C, int64_t cstride, const int32_t* idx,
                             const int32_t* run, int64_t LD, int64_t K, const float* cb,
                             int64_t rows, const int32_t* nus, const int32_t* rowlist,
                             int64_t j0, int nvec, float* z, int64_t ld) {
    for (int64_t c = 0; c < C; c++) {
        const int nu = nus[c];
        if (nu == 0) continue; /* no kept entry reads this channel */
        const float* xc = x + c * cstride;
        const int32_t* rl = rowlist + c * rows;
        float* zc = z + c * rows * ld;
        if (!cb) {
            for (int i = 0; i < nu; i++) {
                const int64_t t = rl[i];
                for (int k = 0; k < nvec; k++) {
                    const int64_t q = t * LD + j0 + VW * k;
                    const int32_t r = run[q / 16];
                    *(VEC*)(zc + t * ld + VW * k) = FN(gather)(
                        xc, idx + q, r == GATHER ? GATHER : r + (int32_t)(q % 16));
                }
            }
            continue;
        }
        const float* cbc = cb + c * rows * K;
        if (K == 9) { /* 3x3: constant trip counts, accumulators in registers */
            switch (nu) {
                PROJECT_CASE(1)
                PROJECT_CASE(2)
                PROJECT_CASE(3)
                PROJECT_CASE(4)
                PROJECT_CASE(5)
                PROJECT_CASE(6)
                PROJECT_CASE(7)
                PROJECT_CASE(8)
                PROJECT_CASE(9)
                default:
                    for (int k = 0; k < nvec; k++)
                        FN(project_vec)(xc, idx, run, LD, 9, cbc, rl, nu, j0 + VW * k,
                                        zc + VW * k, ld);
            }
        } else {
            for (int k = 0; k < nvec; k++)
                FN(project_vec)(xc, idx, run, LD, K, cbc, rl, nu, j0 + VW * k, zc + VW * k, ld);
        }
    }
}
#undef PROJECT_CASE

/* Output rows [o0, o1) for the w <= VW * NV pixels from j0: the CSR product over z, with the
 * epilogue fused: + bias, + residual (same layout as out) if given, then ReLU if asked, all
 * with torch's NaN and inf semantics (relu(nan) = nan, a NaN in a pool window wins).
 * Written as NCHW: pixel j = b * P + p of row o goes to out[(b * O + o) * P + p]. */
static inline __attribute__((always_inline)) void FN(spmm_body)(
    const float* z, int64_t ld, const int64_t* rowptr, const int32_t* cols, const float* vals,
    const float* bias, const float* res, int relu, int64_t pool_w, int64_t o0, int64_t o1,
    int64_t O, int64_t P, int64_t j0, int64_t w, float* out, const int NV) {
    const int64_t b0 = j0 / P, p0 = j0 - b0 * P;
    const int whole = w == (int64_t)VW * NV && p0 + w <= P; /* the tile is one run of one image */
    for (int64_t o = o0; o < o1; o++) {
        VEC acc[16];
        PRAGMA_UNROLL
        for (int k = 0; k < NV; k++) acc[k] = (VEC){0} + bias[o];
        for (int64_t q = rowptr[o]; q < rowptr[o + 1]; q++) {
            const float v = vals[q];
            const VEC* s = (const VEC*)(z + (int64_t)cols[q] * ld);
            PRAGMA_UNROLL
            for (int k = 0; k < NV; k++) acc[k] += v * s[k];
        }
        if (pool_w) { /* 2x2 max-pool of whole row pairs (the driver checked the geometry) */
            float y[VW * 16];
            PRAGMA_UNROLL
            for (int k = 0; k < NV; k++) {
                VEC v = acc[k];
                if (relu) v = RELU_VEC(v);
                *(VECU*)(y + VW * k) = v;
            }
            const int64_t pw = pool_w / 2, pairs = (int64_t)VW * NV / (2 * pool_w);
            for (int64_t r = 0; r < pairs; r++) {
                const int64_t j = j0 + 2 * pool_w * r, b = j / P, p = j - b * P;
                float* d = out + (b * O + o) * (P / 4) + (p / pool_w / 2) * pw;
                const float* u = y + 2 * pool_w * r;
                for (int64_t i = 0; i < pw; i++) { /* torch's order: row by row */
                    float m = u[2 * i];
                    m = POOL_MAX(m, u[2 * i + 1]);
                    m = POOL_MAX(m, u[pool_w + 2 * i]);
                    d[i] = POOL_MAX(m, u[pool_w + 2 * i + 1]);
                }
            }
            continue;
        }
        if (whole) {
            const int64_t at = (b0 * O + o) * P + p0;
            PRAGMA_UNROLL
            for (int k = 0; k < NV; k++) {
                VEC y = acc[k];
                if (res) y += *(const VECU*)(res + at + VW * k);
                if (relu) y = RELU_VEC(y);
                *(VECU*)(out + at + VW * k) = y;
            }
            continue;
        }
        const float* a = (const float*)acc;
        for (int64_t j = j0; j < j0 + w;) { /* one run per image the tile touches */
            const int64_t b = j / P, p = j - b * P;
            const int64_t len = P - p < j0 + w - j ? P - p : j0 + w - j;
            const int64_t at = (b * O + o) * P + p;
            for (int64_t k = 0; k < len; k++) {
                float y = a[j - j0 + k];
                if (res) y += res[at + k];
                if (relu) y = y < 0.0f ? 0.0f : y;
                out[at + k] = y;
            }
            j += len;
        }
    }
}

static void FN(spmm_tile)(const float* z, int64_t ld, const int64_t* rowptr, const int32_t* cols,
                          const float* vals, const float* bias, const float* res, int relu,
                          int64_t pool_w, int64_t o0, int64_t o1, int64_t O, int64_t P,
                          int64_t j0, int64_t w, float* out, int nvec) {
#define SPMM_CASE(NV)                                                                       \
    case NV:                                                                                \
        FN(spmm_body)(z, ld, rowptr, cols, vals, bias, res, relu, pool_w, o0, o1, O, P, j0, w,  \
                      out, NV);                                                             \
        break;
    switch (nvec) {
        SPMM_CASE(1)
        SPMM_CASE(2)
        SPMM_CASE(4)
        SPMM_CASE(8)
        default:
            FN(spmm_body)(z, ld, rowptr, cols, vals, bias, res, relu, pool_w, o0, o1, O, P, j0, w,
                          out, 16);
    }
#undef SPMM_CASE
}

#undef RELU_VEC
#undef POOL_MAX
#undef FN
#undef CAT
#undef CAT_
