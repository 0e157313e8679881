# The per-step recurrent products against weights packed once per call
# (packedgemm.h says why): pack_weights at a kernel's entry, with the GIL,
# then recurrent_product at every step, without it.
from cython cimport floating
cimport numpy as cnp

from _blas cimport BPTT_PACK_RECURRENT, gemm

cdef extern from "packedgemm.h" nogil:
    long bptt_packed_size_s(int k, int n)
    long bptt_packed_size_d(int k, int n)
    void bptt_pack_s(int k, int n, const float* b, long bps, long bcs, float* out)
    void bptt_pack_d(int k, int n, const double* b, long bps, long bcs, double* out)
    void bptt_gemm_packed_s(int m, int n, int k, float alpha, const float* a, long lda,
                            const float* bp, float beta, float* c, long ldc)
    void bptt_gemm_packed_d(int m, int n, int k, double alpha, const double* a, long lda,
                            const double* bp, double beta, double* c, long ldc)


cdef inline long packed_size(const floating[:, ::1] W, bint transpose) noexcept nogil:
    """Elements of pack_matrix's output for W."""
    cdef int rows = W.shape[0], cols = W.shape[1]
    if floating is float:
        return bptt_packed_size_s(cols if transpose else rows, rows if transpose else cols)
    else:
        return bptt_packed_size_d(cols if transpose else rows, rows if transpose else cols)


cdef inline void pack_matrix(const floating[:, ::1] W, bint transpose,
                             floating* out) noexcept nogil:
    """Pack op(W) (k, n) into ``out`` (packed_size elements): op(W) = W.T
    (W (n, k)) when ``transpose``, else W (W (k, n))."""
    cdef int rows = W.shape[0], cols = W.shape[1]
    cdef int k = cols if transpose else rows, n = rows if transpose else cols
    cdef long bps = 1 if transpose else cols, bcs = cols if transpose else 1
    if rows == 0 or cols == 0:
        return
    if floating is float:
        bptt_pack_s(k, n, &W[0, 0], bps, bcs, out)
    else:
        bptt_pack_d(k, n, &W[0, 0], bps, bcs, out)


cdef inline object pack_weights(const floating[:, ::1] W, bint transpose,
                                const floating** data):
    """W packed once as the right operand of every step's product.

    ``transpose``: the steps compute A @ W.T (forward; W is (n, k)), else
    A @ W (backward; W is (k, n)). Returns the array that owns the packed
    copy (keep it alive while using it) and points ``data`` at it; in builds
    where BLAS is faster (packedgemm.h) returns None and sets ``data`` to
    NULL, and recurrent_product calls gemm on W itself.
    """
    cdef cnp.npy_intp size = packed_size(W, transpose)
    data[0] = NULL
    if not BPTT_PACK_RECURRENT or W.shape[0] == 0 or W.shape[1] == 0:
        return None
    out = cnp.PyArray_EMPTY(1, &size, cnp.NPY_FLOAT32 if floating is float
                            else cnp.NPY_FLOAT64, 0)
    data[0] = <const floating*>cnp.PyArray_DATA(out)
    pack_matrix(W, transpose, <floating*>data[0])
    return out


cdef inline void recurrent_product(int m, int n, int k, const floating* a, int lda,
                                   const floating* W, bint transpose,
                                   const floating* packed, floating beta, floating* c,
                                   int ldc) noexcept nogil:
    """C (m, n) = A (m, k) @ op(W) + beta * C, op(W) = W.T (W (n, k)) when
    ``transpose`` else W (W (k, n)): through ``packed`` (pack_weights of W)
    when not NULL, else BLAS."""
    if packed != NULL:
        if floating is float:
            bptt_gemm_packed_s(m, n, k, 1, a, lda, packed, beta, c, ldc)
        else:
            bptt_gemm_packed_d(m, n, k, 1, a, lda, packed, beta, c, ldc)
    else:
        gemm(False, transpose, m, n, k, 1, a, lda, W, k if transpose else n, beta, c, ldc)
