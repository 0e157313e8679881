/* The squared-error sum of the output layer's rows, vectorized.
 *
 * A plain loop `total += diff * diff` is one chain of dependent adds: GCC may
 * not reorder a floating-point sum without -ffast-math, so it stays scalar
 * (about 13 us for the 12800 outputs of the M-size step on one core, a
 * quarter of the whole output layer). `omp simd reduction` (compiled with
 * -fopenmp-simd: the pragma, no OpenMP runtime) allows the vector partial
 * sums; the total is still accumulated in double.
 *
 *   bptt_mse_rows_{s,d}(y, t, dz, size, scale)
 *       returns sum (y - t)^2 ; dz = scale * (y - t)
 */
#ifndef BPTT_LOSSROWS_H
#define BPTT_LOSSROWS_H

#define BPTT_DEFINE_MSE_ROWS(SUF, T)                                                    \
static inline double bptt_mse_rows_##SUF(const T *y, const T *t, T *dz, long size,      \
                                         T scale)                                       \
{                                                                                       \
    double total = 0;                                                                   \
    long r;                                                                             \
    _Pragma("omp simd reduction(+:total)")                                              \
    for (r = 0; r < size; r++) {                                                        \
        T diff = y[r] - t[r];                                                           \
        total += (double)diff * diff;                                                   \
        dz[r] = scale * diff;                                                           \
    }                                                                                   \
    return total;                                                                       \
}

BPTT_DEFINE_MSE_ROWS(s, float)
BPTT_DEFINE_MSE_ROWS(d, double)

#endif
