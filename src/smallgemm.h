/* Small matrix products without a BLAS call.
 *
 * At the sizes of one recurrent step of a small network (a 16x16 or 64x64
 * matrix times a few rows) a BLAS call costs more in dispatch than in
 * arithmetic. These loops do the same row-major product inline: the inner
 * loops run over contiguous memory and are vectorized by `omp simd` (the
 * kernels are compiled with -fopenmp-simd: the pragmas, no OpenMP runtime),
 * reductions included, without
 * -ffast-math. The _blas.pxd gemm wrapper sends products of at most
 * BPTT_SMALL_GEMM multiply-adds here, for the three layouts the kernels use
 * (NN, NT, TN); anything else returns 0 and goes to BLAS.
 *
 * C (m, n) = alpha * op(A) @ op(B) + beta * C, row-major, as in _blas.pxd.
 */
#ifndef BPTT_SMALLGEMM_H
#define BPTT_SMALLGEMM_H

#define BPTT_SMALL_GEMM 32768

/* C[i, :] += alpha op(A)[i, p] B[p, :], the step of the NN / TN products */
#define BPTT_SMALL_UPDATE(T)                                                          \
    do {                                                                              \
        T aip_ = alpha * (ta ? a[(long)p * lda + i] : a[(long)i * lda + p]);          \
        T *ci_ = c + (long)i * ldc;                                                   \
        const T *bp_ = b + (long)p * ldb;                                             \
        _Pragma("omp simd")                                                           \
        for (j = 0; j < n; j++) ci_[j] += aip_ * bp_[j];                              \
    } while (0)

#define BPTT_DEFINE_SMALL_GEMM(NAME, T)                                               \
static inline int NAME(int ta, int tb, int m, int n, int k, T alpha, const T *a,      \
                       int lda, const T *b, int ldb, T beta, T *c, int ldc)           \
{                                                                                     \
    int i, j, p;                                                                      \
    if (ta && tb)                                                                     \
        return 0;                                                                     \
    if (!tb) {                                                                        \
        /* NN / TN: C[i, :] = beta C[i, :] + sum_p alpha op(A)[i, p] B[p, :] */       \
        for (i = 0; i < m; i++) {                                                     \
            T *ci = c + (long)i * ldc;                                                \
            if (beta == 0) {                                                          \
                for (j = 0; j < n; j++) ci[j] = 0;                                    \
            } else if (beta != 1) {                                                   \
                for (j = 0; j < n; j++) ci[j] *= beta;                                \
            }                                                                         \
        }                                                                             \
        /* With 4+ rows, p outer: k rank-1 updates. Row by row (i outer) every    \
           update of a C row waits for the store of the one before (C may alias    \
           A and B, so the row cannot stay in registers): 5-6 cycles per p; p     \
           outer puts m rows between updates of one row. Either way each element  \
           sums p in order. */                                                    \
        if (m >= 4) {                                                                 \
            for (p = 0; p < k; p++)                                                   \
                for (i = 0; i < m; i++)                                               \
                    BPTT_SMALL_UPDATE(T);                                             \
        } else {                                                                      \
            for (i = 0; i < m; i++)                                                   \
                for (p = 0; p < k; p++)                                               \
                    BPTT_SMALL_UPDATE(T);                                             \
        }                                                                             \
        return 1;                                                                     \
    }                                                                                 \
    /* NT: C[i, j] = beta C[i, j] + alpha dot(A[i, :], B[j, :]), four j at a time */  \
    for (i = 0; i < m; i++) {                                                         \
        const T *ai = a + (long)i * lda;                                              \
        T *ci = c + (long)i * ldc;                                                    \
        for (j = 0; j + 4 <= n; j += 4) {                                             \
            const T *b0 = b + (long)j * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb,          \
                    *b3 = b2 + ldb;                                                   \
            T s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                         \
            _Pragma("omp simd reduction(+:s0, s1, s2, s3)")                           \
            for (p = 0; p < k; p++) {                                                 \
                T ap = ai[p];                                                         \
                s0 += ap * b0[p];                                                     \
                s1 += ap * b1[p];                                                     \
                s2 += ap * b2[p];                                                     \
                s3 += ap * b3[p];                                                     \
            }                                                                         \
            if (beta == 0) {                                                          \
                ci[j] = alpha * s0; ci[j + 1] = alpha * s1;                           \
                ci[j + 2] = alpha * s2; ci[j + 3] = alpha * s3;                       \
            } else {                                                                  \
                ci[j] = alpha * s0 + beta * ci[j];                                    \
                ci[j + 1] = alpha * s1 + beta * ci[j + 1];                            \
                ci[j + 2] = alpha * s2 + beta * ci[j + 2];                            \
                ci[j + 3] = alpha * s3 + beta * ci[j + 3];                            \
            }                                                                         \
        }                                                                             \
        for (; j < n; j++) {                                                          \
            const T *bj = b + (long)j * ldb;                                          \
            T s = 0;                                                                  \
            _Pragma("omp simd reduction(+:s)")                                        \
            for (p = 0; p < k; p++) s += ai[p] * bj[p];                               \
            ci[j] = beta == 0 ? alpha * s : alpha * s + beta * ci[j];                 \
        }                                                                             \
    }                                                                                 \
    return 1;                                                                         \
}

BPTT_DEFINE_SMALL_GEMM(bptt_small_sgemm, float)
BPTT_DEFINE_SMALL_GEMM(bptt_small_dgemm, double)

#endif
