/* A row of a state gradient copied out, with its sum of squares, in one pass.
 *
 * The gradient-flow option (loss_and_grad(..., return_state_grads=True))
 * copies every row of dL/dh_t (dL/dc_t) out of the backward pass while it is
 * in cache (_cellparts.pxd, copy_rows) and reports the rows' L2 norms; taking
 * the squares here, on the values just loaded, saves reading the whole
 * (n, T, H) array again afterwards. `omp simd reduction` (-fopenmp-simd: the
 * pragma, no OpenMP runtime) allows the vector partial sums, which GCC may
 * not form from a plain loop without -ffast-math (lossrows.h); the sum is
 * taken in double, so float32 rows of large gradients do not overflow.
 *
 *   bptt_copy_squares_{s,d}(src, dst, n)
 *       dst[j] = src[j] for j < n ; returns sum src[j]^2 (in double)
 */
#ifndef BPTT_STATEROWS_H
#define BPTT_STATEROWS_H

#define BPTT_DEFINE_COPY_SQUARES(SUF, T)                                                \
static inline double bptt_copy_squares_##SUF(const T *src, T *dst, long n)              \
{                                                                                       \
    double total = 0;                                                                   \
    long j;                                                                             \
    _Pragma("omp simd reduction(+:total)")                                              \
    for (j = 0; j < n; j++) {                                                           \
        T v = src[j];                                                                   \
        dst[j] = v;                                                                     \
        total += (double)v * v;                                                         \
    }                                                                                   \
    return total;                                                                       \
}

BPTT_DEFINE_COPY_SQUARES(s, float)
BPTT_DEFINE_COPY_SQUARES(d, double)

#endif
