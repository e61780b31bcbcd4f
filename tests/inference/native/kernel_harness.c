/* Runs ips_conv (spconv.c, compiled in) on one case read from a file, on every kernel path
 * this CPU supports, and writes each path's output. Lets the tests check the paths of a
 * binary built for another architecture (e.g. aarch64 under qemu-user).
 *
 *   kernel_harness CASE OUT
 *
 * CASE: 12 int64 (C, cstride, LD, K, rows, O, L, P, relu, has_basis, has_residual, pool_w), then
 * the arrays, each as an int64 byte count and the bytes: idx, run, basis, nus, rowlist,
 * rowptr, cols, vals, bias, residual, x (basis / residual with 0 bytes when absent).
 * OUT: per path and thread count (1, 2) that ran, its name (16 bytes, NUL padded, "path/threads"),
 * ips_conv's status (int64: 0, or 1 for an input holding NaN or inf, the output then of no
 * use) and O * L floats (O * L / 4 with pool_w). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../src/interspace_pruning/inference/spconv.c"

static void* read_array(FILE* f) {
    int64_t n;
    if (fread(&n, 8, 1, f) != 1 || n < 0) exit(2);
    if (n == 0) return NULL;
    void* p = malloc((size_t)n);
    if (!p || fread(p, 1, (size_t)n, f) != (size_t)n) exit(2);
    return p;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: kernel_harness CASE OUT\n");
        return 2;
    }
    FILE* f = fopen(argv[1], "rb");
    if (!f) return 2;
    int64_t h[12];
    if (fread(h, 8, 12, f) != 12) return 2;
    const int64_t C = h[0], cstride = h[1], LD = h[2], K = h[3], rows = h[4], O = h[5], L = h[6],
                  P = h[7];
    const int relu = (int)h[8];
    const int32_t* idx = read_array(f);
    const int32_t* run = read_array(f);
    const float* basis = read_array(f);
    const int32_t* nus = read_array(f);
    const int32_t* rowlist = read_array(f);
    const int64_t* rowptr = read_array(f);
    const int32_t* cols = read_array(f);
    const float* vals = read_array(f);
    const float* bias = read_array(f);
    const float* res = read_array(f);
    const float* x = read_array(f);
    fclose(f);
    FILE* out = fopen(argv[2], "wb");
    if (!out) return 2;
    const int64_t n = h[11] ? O * L / 4 : O * L;
    float* y = malloc((size_t)n * sizeof(float));
    for (int p = 0; p < ips_num_paths(); p++) {
        if (ips_select_path(p) != 0) continue;
        for (int threads = 1; threads <= 2; threads++) {
            ips_set_threads(threads);
            /* unwritten outputs show: NaN in one run, 3.4e38 (finite) in the other */
            memset(y, threads == 1 ? 0xff : 0x7f, (size_t)n * sizeof(float));
            const int status = ips_conv(x, C, cstride, idx, run, LD, K, h[9] ? basis : NULL,
                                        rows, nus, rowlist, rowptr, cols, vals, bias, O, L, P,
                                        h[10] ? res : NULL, relu, h[11], y);
            if (status != 0 && status != 1) return 3;
            char name[16] = {0};
            snprintf(name, sizeof name, "%s/%d", ips_path_name(p), threads);
            const int64_t code = status;
            fwrite(name, 1, 16, out);
            fwrite(&code, sizeof code, 1, out);
            fwrite(y, sizeof(float), (size_t)n, out);
        }
    }
    fclose(out);
    return 0;
}
