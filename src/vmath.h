/* Branch-free exp, expm1, tanh and sigmoid that GCC auto-vectorizes.
 *
 * libm's scalar tanh/exp cannot be vectorized by the compiler without
 * -ffast-math and a vector math library, and calling them element by element
 * costs 10-50x NumPy's SIMD loops. These versions use only +, *, /, min/max,
 * copysign and 64/32-bit integer adds and shifts, so a loop over an array of
 * them becomes SIMD code at -O3 on any x86-64 (SSE2 baseline) or AArch64.
 *
 * Method: x = k ln2 + r with |r| <= ln2/2 (Cody-Waite, k rounded with the
 * 1.5 * 2^52 shifter), expm1(r) by its Taylor polynomial to r^13 (double) or
 * r^7 (float), 2^k assembled in the exponent bits. Accuracy: a few ulp, checked
 * against NumPy in tests/test_vmath.py.
 */
#ifndef BPTT_VMATH_H
#define BPTT_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline double bptt_d_from_bits(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
static inline uint64_t bptt_bits_from_d(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
static inline float bptt_f_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t bptt_bits_from_f(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* y = k ln2 + r: returns expm1(r) and sets *scale = 2^k. |y| <= 708. */
static inline double bptt_expm1_parts(double y, double *scale)
{
    const double shifter = 0x1.8p52;
    const double log2e = 0x1.71547652b82fep0;
    const double ln2_hi = 0x1.62e42fee00000p-1;
    const double ln2_lo = 0x1.a39ef35793c76p-33;
    double kd = y * log2e + shifter;
    uint64_t k_bits = bptt_bits_from_d(kd) - bptt_bits_from_d(shifter);
    kd -= shifter;
    double r = (y - kd * ln2_hi) - kd * ln2_lo;
    double p = 1.0 / 6227020800.0;               /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    *scale = bptt_d_from_bits((k_bits + 1023u) << 52);
    return r + (r * r) * p;
}

static inline double bptt_exp(double y)
{
    double scale;
    y = y < -708.0 ? -708.0 : y;
    y = y > 708.0 ? 708.0 : y;
    double p = bptt_expm1_parts(y, &scale);
    return scale + scale * p;
}

static inline double bptt_tanh(double x)
{
    /* tanh(x) = sign(x) e / (e + 2), e = expm1(2|x|); tanh(20) == 1.0 in double */
    double ax = fabs(x);
    ax = ax > 20.0 ? 20.0 : ax;  /* written so NaN passes through */
    double scale;
    double p = bptt_expm1_parts(2.0 * ax, &scale);
    double e = scale * p + (scale - 1.0);
    return copysign(e / (e + 2.0), x);
}

static inline double bptt_sigmoid(double x)
{
    return 1.0 / (1.0 + bptt_exp(-x));
}

static inline float bptt_expm1f_parts(float y, float *scale)
{
    const float shifter = 0x1.8p23f;
    const float log2e = 0x1.715476p0f;
    const float ln2_hi = 0x1.62e4p-1f;
    const float ln2_lo = 0x1.7f7d1cp-20f;
    float kd = y * log2e + shifter;
    uint32_t k_bits = bptt_bits_from_f(kd) - bptt_bits_from_f(shifter);
    kd -= shifter;
    float r = (y - kd * ln2_hi) - kd * ln2_lo;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    *scale = bptt_f_from_bits((k_bits + 127u) << 23);
    return r + (r * r) * p;
}

static inline float bptt_expf(float y)
{
    float scale;
    y = y < -87.0f ? -87.0f : y;
    y = y > 88.0f ? 88.0f : y;
    float p = bptt_expm1f_parts(y, &scale);
    return scale + scale * p;
}

static inline float bptt_tanhf(float x)
{
    float ax = fabsf(x);
    ax = ax > 10.0f ? 10.0f : ax;
    float scale;
    float p = bptt_expm1f_parts(2.0f * ax, &scale);
    float e = scale * p + (scale - 1.0f);
    return copysignf(e / (e + 2.0f), x);
}

static inline float bptt_sigmoidf(float x)
{
    return 1.0f / (1.0f + bptt_expf(-x));
}

#endif
