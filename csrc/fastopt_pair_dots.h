/*
 * fastopt_pair_dots.h -- the inner loop of L-BFGS's new-pair pass
 * (src/fastopt/second_order/_vectors.pyx, lbfgs_new_pair).
 *
 * For one history row (s_r, y_r) and a range of elements it sums five dot
 * products at once -- s_new . y_r, y_new . s_r, y_new . y_r, g_new . s_r,
 * g_new . y_r -- so the row is read once.  Each sum has two lanes, the even
 * and the odd elements of the range (an odd last element goes to the even
 * lane), added at the end: an order fixed by the range alone.
 *
 * Why C: written in Cython as ten scalar sums (or five two-element arrays),
 * GCC vectorizes the loop across iterations, and since it may not reorder
 * floating-point additions it keeps each lane's order with shuffles and
 * spills, which makes the pass compute-bound at about a third of memory
 * speed.  Here each sum is one two-lane vector (GCC/Clang vector extensions:
 * SSE2 on x86-64, NEON on AArch64), one load, multiply and add per operand
 * pair.  Other compilers (or FASTOPT_PAIR_DOTS_SCALAR defined) get the same
 * lanes as scalars; every lane does the same additions in the same order
 * either way (setup.py turns floating-point contraction off), so both give the
 * same bits (tests/test_second_order_kernels.py compiles both and compares).
 */
#ifndef FASTOPT_PAIR_DOTS_H
#define FASTOPT_PAIR_DOTS_H

#include <stddef.h>
#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && !defined(FASTOPT_PAIR_DOTS_SCALAR)
typedef double fastopt_v2 __attribute__((vector_size(16)));

static inline fastopt_v2 fastopt_v2_load(const double* p)
{
    fastopt_v2 v;
    memcpy(&v, p, sizeof v); /* unaligned load */
    return v;
}

static inline void fastopt_five_dots(const double* s_new, const double* y_new, const double* g_new,
                                     const double* sr, const double* yr, ptrdiff_t start, ptrdiff_t stop,
                                     double* out)
{
    fastopt_v2 sy = {0, 0}, ys = {0, 0}, yy = {0, 0}, gs = {0, 0}, gy = {0, 0};
    ptrdiff_t i = start, blocks = (stop - start) / 2, b;
    for (b = 0; b < blocks; b++, i += 2) {
        fastopt_v2 s = fastopt_v2_load(sr + i), y = fastopt_v2_load(yr + i);
        fastopt_v2 yn = fastopt_v2_load(y_new + i), gn = fastopt_v2_load(g_new + i);
        sy += fastopt_v2_load(s_new + i) * y;
        ys += yn * s;
        yy += yn * y;
        gs += gn * s;
        gy += gn * y;
    }
    if (i < stop) {
        sy[0] += s_new[i] * yr[i];
        ys[0] += y_new[i] * sr[i];
        yy[0] += y_new[i] * yr[i];
        gs[0] += g_new[i] * sr[i];
        gy[0] += g_new[i] * yr[i];
    }
    out[0] = sy[0] + sy[1];
    out[1] = ys[0] + ys[1];
    out[2] = yy[0] + yy[1];
    out[3] = gs[0] + gs[1];
    out[4] = gy[0] + gy[1];
}
#else
static inline void fastopt_five_dots(const double* s_new, const double* y_new, const double* g_new,
                                     const double* sr, const double* yr, ptrdiff_t start, ptrdiff_t stop,
                                     double* out)
{
    double acc[10] = {0};  /* acc[2 k + lane] */
    ptrdiff_t i = start, blocks = (stop - start) / 2, b;
    int lane;
    for (b = 0; b < blocks; b++, i += 2) {
        for (lane = 0; lane < 2; lane++) {
            acc[0 + lane] += s_new[i + lane] * yr[i + lane];
            acc[2 + lane] += y_new[i + lane] * sr[i + lane];
            acc[4 + lane] += y_new[i + lane] * yr[i + lane];
            acc[6 + lane] += g_new[i + lane] * sr[i + lane];
            acc[8 + lane] += g_new[i + lane] * yr[i + lane];
        }
    }
    if (i < stop) {
        acc[0] += s_new[i] * yr[i];
        acc[2] += y_new[i] * sr[i];
        acc[4] += y_new[i] * yr[i];
        acc[6] += g_new[i] * sr[i];
        acc[8] += g_new[i] * yr[i];
    }
    for (lane = 0; lane < 5; lane++)
        out[lane] = acc[2 * lane] + acc[2 * lane + 1];
}
#endif

#endif /* FASTOPT_PAIR_DOTS_H */
