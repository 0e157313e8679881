"""Array versions of the kernels' inline building blocks, for tests, and the
CPU check that picks a build of the kernels (cpu_variants, read by
bptt._kernels.compiled_variant).

The kernels inline these functions (``_activations.pxd``, ``packedgemm.h``);
this module only exposes the same code to Python so tests/test_vmath.py can
check the activations' accuracy against NumPy over the whole float range
and the packed recurrent product against a matmul.
"""
from cython cimport floating

from _activations cimport exp_, tanh_, sigmoid_
from _checks cimport check_shape
from _packed cimport bptt_gemm_packed_d, bptt_gemm_packed_s, pack_matrix, packed_size

import numpy as np


def apply(str name, const floating[::1] x not None, floating[::1] out not None):
    """out = name(x) for name in {"exp", "tanh", "sigmoid"}."""
    cdef Py_ssize_t i, n = x.shape[0]
    if name not in ("exp", "tanh", "sigmoid"):
        raise ValueError(f"name must be 'exp', 'tanh' or 'sigmoid'; got {name!r}")
    cdef int which = ("exp", "tanh", "sigmoid").index(name)
    check_shape("out", out.shape, 1, n)
    with nogil:
        if which == 0:
            for i in range(n):
                out[i] = exp_(x[i])
        elif which == 1:
            for i in range(n):
                out[i] = tanh_(x[i])
        else:
            for i in range(n):
                out[i] = sigmoid_(x[i])


cdef extern from *:
    """
    /* libgcc's CPU model also checks that the OS saves the registers (XCR0). */
    static int bptt_cpu_has_avx2_fma(void) {
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    #else
        return 0;
    #endif
    }
    static int bptt_cpu_has_avx512(void) {
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return bptt_cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512bw");
    #else
        return 0;
    #endif
    }
    """
    int bptt_cpu_has_avx2_fma()
    int bptt_cpu_has_avx512()


def cpu_variants():
    """The builds of the kernels this CPU runs, narrowest first: "baseline"
    (SSE2), then "avx2" (AVX2 + FMA), then "avx512" (AVX-512 F, VL, DQ, BW)."""
    variants = ["baseline"]
    if bptt_cpu_has_avx2_fma():
        variants.append("avx2")
        if bptt_cpu_has_avx512():
            variants.append("avx512")
    return tuple(variants)


def packed_product(const floating[:, ::1] A not None, const floating[:, ::1] W not None,
                   bint transpose, floating beta, floating[:, ::1] C not None):
    """C = A @ op(W) + beta * C through packedgemm.h (pack W, then multiply),
    op(W) = W.T when ``transpose``. Packs in every build (the kernels pack
    only where BPTT_PACK_RECURRENT says), so every build's micro-kernel gets
    tested."""
    cdef int m = A.shape[0], k = A.shape[1]
    cdef int n = W.shape[0] if transpose else W.shape[1]
    if transpose:
        check_shape("W", W.shape, 2, n, k)
    else:
        check_shape("W", W.shape, 2, k, n)
    check_shape("C", C.shape, 2, m, n)
    cdef floating[::1] bp = np.empty(packed_size(W, transpose),
                                     dtype=np.float32 if floating is float else np.float64)
    if m == 0 or n == 0 or k == 0:
        return
    pack_matrix(W, transpose, &bp[0])
    if floating is float:
        bptt_gemm_packed_s(m, n, k, 1, &A[0, 0], k, &bp[0], beta, &C[0, 0], n)
    else:
        bptt_gemm_packed_d(m, n, k, 1, &A[0, 0], k, &bp[0], beta, &C[0, 0], n)
