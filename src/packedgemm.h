/* The recurrent product of every timestep against a weight matrix packed once.
 *
 * Each step of the recurrence multiplies a few rows (one batch slice) by the
 * same weight matrix: A[t] += H[t-1] @ W_hh.T forward, dH[t-1] += dA[t] @ W_hh
 * backward. A BLAS gemm repacks that matrix on every call (OpenBLAS spends
 * about as long packing as multiplying at 32x64x64) and takes a global lock
 * for its buffers, which serialises the batch slices of concurrent threads.
 * Here the matrix is packed once per kernel call into panels of NR columns,
 * each panel a contiguous (k, NR) block, and a register-tiled micro-kernel
 * computes MR rows x NR columns with broadcast-FMA over k. The panel slice in
 * use stays in L1 (k is blocked by KC); A is read in place.
 *
 * Written with GCC vector extensions, not intrinsics, so one source serves
 * every build: 64-byte vectors with AVX-512 (the _avx512 modules), 32-byte
 * with -mavx2 -mfma (the _avx2 modules), 16-byte SSE2 vectors in the
 * portable baseline. MR = 6 rows and two vectors per row keep 12
 * accumulators + 2 panel vectors + 1 broadcast within the 16 vector
 * registers of SSE2 and AVX2; AVX-512's 32 registers take MR = 8 (one core
 * at the M and XL step shapes: 263-273 GFLOP/s, against 238-266 with 6).
 * Each element is summed over k in order (a single row splits k four ways:
 * one chain of dependent FMAs would leave the FMA units idle), so the
 * results do not depend on how many rows share its tile, except for a row
 * left alone in one (m % MR == 1).
 *
 *   bptt_packed_size_{s,d}(k, n)                       elements of a packed B
 *   bptt_pack_{s,d}(k, n, b, bps, bcs, out)            B(p, j) = b[p*bps + j*bcs]
 *   bptt_gemm_packed_{s,d}(m, n, k, alpha, a, lda, bp, beta, c, ldc)
 *       C (m, n) = alpha * A (m, k) @ B + beta * C, A and C row-major;
 *       beta == 0 never reads C.
 *   bptt_gemm_tn_{s,d}(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
 *       C (m, n) = alpha * A.T @ B + beta * C, B packed block by block: the
 *       same micro-kernel for the weight gradients of small networks.
 */
#ifndef BPTT_PACKEDGEMM_H
#define BPTT_PACKEDGEMM_H

#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#define BPTT_VBYTES 64
#elif defined(__AVX__)
#define BPTT_VBYTES 32
#else
#define BPTT_VBYTES 16
#endif
/* Rows of a tile: 2 * MR accumulators + 2 panel vectors + 1 broadcast must fit
   the register file (16 vector registers up to AVX2, 32 with AVX-512). */
#ifndef BPTT_MR
#if defined(__AVX512F__)
#define BPTT_MR 8
#else
#define BPTT_MR 6
#endif
#endif
/* Without FMA (the portable SSE2 build) OpenBLAS's own kernels are faster
   above tiny sizes, so the kernels pack only in builds that have it. */
#if defined(__FMA__)
#define BPTT_PACK_RECURRENT 1
#else
#define BPTT_PACK_RECURRENT 0
#endif
#define BPTT_KC 256
#define BPTT_MC 96

typedef float bptt_vs __attribute__((vector_size(BPTT_VBYTES)));
typedef double bptt_vd __attribute__((vector_size(BPTT_VBYTES)));

/* One case of the leftover-rows switch below; rows >= BPTT_MR never occur
   there (they make a full tile), and the guard keeps the tile's accumulator
   array in bounds. */
#define BPTT_TILE_CASE(SUF, R)                                                          \
    case R:                                                                             \
        if (R < BPTT_MR)                                                                \
            bptt_tile_##SUF(R < BPTT_MR ? R : 1, kc, a + i * ars, ars, acs, bq, alpha,  \
                            beta, cq + i * ldc, ldc, w);                                \
        break;

#define BPTT_DEFINE_PACKED_GEMM(SUF, T, V)                                              \
enum { bptt_lanes_##SUF = BPTT_VBYTES / sizeof(T), bptt_nr_##SUF = 2 * bptt_lanes_##SUF }; \
                                                                                        \
static inline long bptt_packed_size_##SUF(int k, int n)                                 \
{                                                                                       \
    return (long)k * ((n + bptt_nr_##SUF - 1) / bptt_nr_##SUF) * bptt_nr_##SUF;         \
}                                                                                       \
                                                                                        \
static inline void bptt_pack_##SUF(int k, int n, const T *b, long bps, long bcs, T *out) \
{                                                                                       \
    enum { NR = bptt_nr_##SUF };                                                        \
    int q, p, j;                                                                        \
    for (q = 0; q * NR < n; q++) {                                                      \
        int w = n - q * NR < NR ? n - q * NR : NR;                                      \
        T *o = out + (long)q * k * NR;                                                  \
        const T *bq = b + (long)q * NR * bcs;                                           \
        if (w == NR && bcs == 1) {                                                      \
            /* whole contiguous panel rows: a fixed-size copy is a few vector          \
               moves, where the general loop below becomes a memcpy call per row */    \
            for (p = 0; p < k; p++)                                                     \
                memcpy(o + (long)p * NR, bq + p * bps, NR * sizeof(T));                 \
            continue;                                                                   \
        }                                                                               \
        for (p = 0; p < k; p++) {                                                       \
            for (j = 0; j < w; j++) o[(long)p * NR + j] = bq[p * bps + j * bcs];        \
            for (; j < NR; j++) o[(long)p * NR + j] = 0;                                \
        }                                                                               \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* MR rows x NR columns of C; w < NR stores only the first w columns. */                \
static inline __attribute__((always_inline)) void                                       \
bptt_tile_##SUF(int mr, int k, const T *a, long ars, long acs, const T *bp, T alpha,    \
                T beta, T *c, long ldc, int w)                                          \
{                                                                                       \
    enum { L = bptt_lanes_##SUF, NR = bptt_nr_##SUF };                                  \
    V acc[BPTT_MR][2];                                                                  \
    int r, v, p, j;                                                                     \
    for (r = 0; r < BPTT_MR; r++) acc[r][0] = acc[r][1] = (V){0};                       \
    /* mr is a constant in every call below, so each case unrolls fully */              \
    p = 0;                                                                              \
    if (mr == 1) {                                                                      \
        /* one row (n_samples = 1, streaming): two accumulators would make it a         \
           chain of dependent FMAs, so four steps of k run in separate ones */          \
        V part[3][2] = {{(V){0}, (V){0}}, {(V){0}, (V){0}}, {(V){0}, (V){0}}};          \
        for (; p + 4 <= k; p += 4) {                                                    \
            V b0, b1;                                                                   \
            int u;                                                                      \
            memcpy(&b0, bp + (long)p * NR, sizeof(V));                                  \
            memcpy(&b1, bp + (long)p * NR + L, sizeof(V));                              \
            acc[0][0] += (a[p * acs] - (V){0}) * b0;                                    \
            acc[0][1] += (a[p * acs] - (V){0}) * b1;                                    \
            for (u = 0; u < 3; u++) {                                                   \
                memcpy(&b0, bp + (long)(p + 1 + u) * NR, sizeof(V));                    \
                memcpy(&b1, bp + (long)(p + 1 + u) * NR + L, sizeof(V));                \
                part[u][0] += (a[(p + 1 + u) * acs] - (V){0}) * b0;                     \
                part[u][1] += (a[(p + 1 + u) * acs] - (V){0}) * b1;                     \
            }                                                                           \
        }                                                                               \
        acc[0][0] += (part[0][0] + part[1][0]) + part[2][0];                            \
        acc[0][1] += (part[0][1] + part[1][1]) + part[2][1];                            \
    }                                                                                   \
    for (; p < k; p++) {                                                                \
        V b0, b1;                                                                       \
        memcpy(&b0, bp + (long)p * NR, sizeof(V));                                      \
        memcpy(&b1, bp + (long)p * NR + L, sizeof(V));                                  \
        for (r = 0; r < mr; r++) {                                                      \
            /* x - 0 is x exactly, so this folds to a plain broadcast */                \
            V av = a[r * ars + p * acs] - (V){0};                                       \
            acc[r][0] += av * b0;                                                       \
            acc[r][1] += av * b1;                                                       \
        }                                                                               \
    }                                                                                   \
    for (r = 0; r < mr; r++) {                                                          \
        T *cr = c + r * ldc;                                                            \
        if (w == NR) {                                                                  \
            for (v = 0; v < 2; v++) {                                                   \
                V out = acc[r][v] * alpha;                                              \
                if (beta != 0) {                                                        \
                    V old;                                                              \
                    memcpy(&old, cr + v * L, sizeof(V));                                \
                    out += old * beta;                                                  \
                }                                                                       \
                memcpy(cr + v * L, &out, sizeof(V));                                    \
            }                                                                           \
        } else {                                                                        \
            T tmp[NR];                                                                  \
            memcpy(tmp, &acc[r][0], sizeof(V));                                         \
            memcpy(tmp + L, &acc[r][1], sizeof(V));                                     \
            for (j = 0; j < w; j++)                                                     \
                cr[j] = beta == 0 ? alpha * tmp[j] : alpha * tmp[j] + beta * cr[j];     \
        }                                                                               \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* C (m, n) = alpha * A @ B + beta * C over one block of kc rows of B, packed in        \
   panels panel_stride apart; A(i, p) = a[i*ars + p*acs]. Rows go in blocks of          \
   BPTT_MC so the A block in use stays in L2 while every panel passes over it. */       \
static inline void bptt_panels_##SUF(int m, int n, int kc, const T *a, long ars,        \
                                     long acs, const T *bp, long panel_stride, T alpha, \
                                     T beta, T *c, long ldc)                            \
{                                                                                       \
    enum { NR = bptt_nr_##SUF };                                                        \
    int i0, q, i;                                                                       \
    for (i0 = 0; i0 < m; i0 += BPTT_MC) {                                               \
        int i1 = m - i0 < BPTT_MC ? m : i0 + BPTT_MC;                                   \
        for (q = 0; q * NR < n; q++) {                                                  \
            int w = n - q * NR < NR ? n - q * NR : NR;                                  \
            const T *bq = bp + (long)q * panel_stride;                                  \
            T *cq = c + q * NR;                                                         \
            for (i = i0; i + BPTT_MR <= i1; i += BPTT_MR)                               \
                bptt_tile_##SUF(BPTT_MR, kc, a + i * ars, ars, acs, bq, alpha, beta,    \
                                cq + i * ldc, ldc, w);                                  \
            /* the rows left over, in a tile of their own size (constant mr) */          \
            switch (i1 - i) {                                                           \
            BPTT_TILE_CASE(SUF, 7) BPTT_TILE_CASE(SUF, 6) BPTT_TILE_CASE(SUF, 5)        \
            BPTT_TILE_CASE(SUF, 4) BPTT_TILE_CASE(SUF, 3) BPTT_TILE_CASE(SUF, 2)        \
            BPTT_TILE_CASE(SUF, 1)                                                      \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
}                                                                                       \
                                                                                        \
static inline void bptt_fill_##SUF(int m, int n, T beta, T *c, long ldc)                \
{                                                                                       \
    int i, j;                                                                           \
    for (i = 0; i < m; i++)                                                             \
        for (j = 0; j < n; j++)                                                         \
            c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];                     \
}                                                                                       \
                                                                                        \
static inline void bptt_gemm_packed_##SUF(int m, int n, int k, T alpha, const T *a,     \
                                          long lda, const T *bp, T beta, T *c, long ldc) \
{                                                                                       \
    enum { NR = bptt_nr_##SUF };                                                        \
    int k0;                                                                             \
    if (m <= 0 || n <= 0)                                                               \
        return;                                                                         \
    if (k <= 0) {                                                                       \
        bptt_fill_##SUF(m, n, beta, c, ldc);                                            \
        return;                                                                         \
    }                                                                                   \
    for (k0 = 0; k0 < k; k0 += BPTT_KC) {                                               \
        int kc = k - k0 < BPTT_KC ? k - k0 : BPTT_KC;                                   \
        bptt_panels_##SUF(m, n, kc, a + k0, lda, 1, bp + (long)k0 * NR, (long)k * NR,   \
                          alpha, k0 == 0 ? beta : 1, c, ldc);                           \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* C (m, n) = alpha * A.T @ B + beta * C for A (k, m), B (k, n) row-major: the          \
   weight gradients, sums over every timestep's rows (k = T*B). B is packed a           \
   block of BPTT_KC rows at a time into a heap buffer (OpenBLAS packs both              \
   operands; A is read in place here, by broadcasts along its rows). Returns 0          \
   when the buffer cannot be had, and the caller falls back to BLAS.             */     \
static inline int bptt_gemm_tn_##SUF(int m, int n, int k, T alpha, const T *a,          \
                                     long lda, const T *b, long ldb, T beta, T *c,      \
                                     long ldc)                                          \
{                                                                                       \
    enum { NR = bptt_nr_##SUF };                                                        \
    int k0;                                                                             \
    T *work;                                                                            \
    if (m <= 0 || n <= 0)                                                               \
        return 1;                                                                       \
    if (k <= 0) {                                                                       \
        bptt_fill_##SUF(m, n, beta, c, ldc);                                            \
        return 1;                                                                       \
    }                                                                                   \
    work = (T *)malloc(sizeof(T) * bptt_packed_size_##SUF(k < BPTT_KC ? k : BPTT_KC, n)); \
    if (work == NULL)                                                                   \
        return 0;                                                                       \
    for (k0 = 0; k0 < k; k0 += BPTT_KC) {                                               \
        int kc = k - k0 < BPTT_KC ? k - k0 : BPTT_KC;                                   \
        bptt_pack_##SUF(kc, n, b + (long)k0 * ldb, ldb, 1, work);                       \
        bptt_panels_##SUF(m, n, kc, a + (long)k0 * lda, 1, lda, work, (long)kc * NR,    \
                          alpha, k0 == 0 ? beta : 1, c, ldc);                           \
    }                                                                                   \
    free(work);                                                                         \
    return 1;                                                                           \
}

BPTT_DEFINE_PACKED_GEMM(s, float, bptt_vs)
BPTT_DEFINE_PACKED_GEMM(d, double, bptt_vd)

#endif
