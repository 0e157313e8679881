/* A row of a state gradient copied out, with its sum of squares, in one pass.
 *
 * The gradient-flow option (loss_and_grad(..., return_state_grads=True))
 * copies every row of dL/dh_t (dL/dc_t) out of the backward pass while it is
 * in cache (_cellparts.pxd, copy_rows) and reports the rows' L2 norms; taking
 * the squares here, on the values just loaded, saves reading the whole
 * (n, T, H) array again afterwards. The partial sums are written out as
 * vectors (GCC vector extensions: every build, as packedgemm.h), since GCC
 * does not form them from a plain loop without -ffast-math (lossrows.h);
 * the sum is taken in double, so float32 rows of large gradients do not
 * overflow.
 *
 *   bptt_copy_squares_{s,d}(src, dst, n)
 *       dst[j] = src[j] for j < n ; returns sum src[j]^2 (in double)
 */
#ifndef BPTT_STATEROWS_H
#define BPTT_STATEROWS_H

#include <string.h>

/* Asks for the cache lines of [p, p + bytes) for writing: the rows of a
   batch-first array that copy_rows writes one timestep at a time lie
   n_timesteps * H elements apart, each in lines no prefetcher foresees. */
static inline void bptt_prefetch_write(const void *p, long bytes)
{
    long o;
    for (o = 0; o < bytes; o += 64)
        __builtin_prefetch((const char *)p + o, 1, 3);
}

typedef double bptt_sq_v4d __attribute__((vector_size(32)));
typedef float bptt_sq_v4f __attribute__((vector_size(16)));

static inline double bptt_sq_sum(bptt_sq_v4d v)
{
    return (v[0] + v[1]) + (v[2] + v[3]);
}

/* Four independent sums: one accumulator made each row a chain of dependent
   adds (8 of them at H = 64, each waiting out the add latency), which cost
   rnn M's backward about 5% (36 of 724 us at one thread); with four the
   rows' adds overlap. The partial sums are in double (of float rows too),
   so the result does not depend on how the compiler schedules them beyond
   the order (s0 + s1) + (s2 + s3) of the lanes' sums.
   V: a 4-lane vector of T; TO_DOUBLE(v): its lanes as bptt_sq_v4d. */
#define BPTT_DEFINE_COPY_SQUARES(SUF, T, V, TO_DOUBLE)                                  \
static inline double bptt_copy_squares_##SUF(const T *src, T *dst, long n)              \
{                                                                                       \
    bptt_sq_v4d s[4] = {{0}, {0}, {0}, {0}};                                            \
    double total;                                                                       \
    long j = 0;                                                                         \
    int k;                                                                              \
    for (; j + 16 <= n; j += 16) {                                                      \
        for (k = 0; k < 4; k++) {                                                       \
            V a;                                                                        \
            bptt_sq_v4d x;                                                              \
            memcpy(&a, src + j + 4 * k, sizeof a);                                      \
            memcpy(dst + j + 4 * k, &a, sizeof a);                                      \
            x = TO_DOUBLE(a);                                                           \
            s[k] += x * x;                                                              \
        }                                                                               \
    }                                                                                   \
    total = bptt_sq_sum((s[0] + s[1]) + (s[2] + s[3]));                                 \
    for (; j < n; j++) {                                                                \
        dst[j] = src[j];                                                                \
        total += (double)src[j] * src[j];                                               \
    }                                                                                   \
    return total;                                                                       \
}

#define BPTT_FLOATS_TO_DOUBLE(v) __builtin_convertvector(v, bptt_sq_v4d)
#define BPTT_DOUBLES_AS_DOUBLE(v) (v)
BPTT_DEFINE_COPY_SQUARES(s, float, bptt_sq_v4f, BPTT_FLOATS_TO_DOUBLE)
BPTT_DEFINE_COPY_SQUARES(d, double, bptt_sq_v4d, BPTT_DOUBLES_AS_DOUBLE)

#endif
