# Row-major BLAS through scipy.linalg.cython_blas (the OpenBLAS SciPy ships:
# no link step, thread count controlled by threadpoolctl).
#
# BLAS is column-major: a row-major (m, n) matrix is its transpose. So
# C = op(A) @ op(B) in row-major is C.T = op(B).T @ op(A).T in column-major,
# which is one gemm call with the operands swapped. The swap lives here only;
# every call site states the NumPy equation it computes.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv

cdef extern from "smallgemm.h" nogil:
    const long long BPTT_SMALL_GEMM
    int bptt_small_sgemm(int ta, int tb, int m, int n, int k, float alpha,
                         const float* a, int lda, const float* b, int ldb,
                         float beta, float* c, int ldc)
    int bptt_small_dgemm(int ta, int tb, int m, int n, int k, double alpha,
                         const double* a, int lda, const double* b, int ldb,
                         double beta, double* c, int ldc)

cdef extern from "packedgemm.h" nogil:
    const bint BPTT_PACK_RECURRENT
    int bptt_gemm_tn_s(int m, int n, int k, float alpha, const float* a, long lda,
                       const float* b, long ldb, float beta, float* c, long ldc)
    int bptt_gemm_tn_d(int m, int n, int k, double alpha, const double* a, long lda,
                       const double* b, long ldb, double beta, double* c, long ldc)


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """C (m, n) = alpha * op(A) @ op(B) + beta * C, all row-major.

    op(A) is (m, k): A is stored (m, k) with row stride lda, or (k, m) when
    trans_a. Likewise op(B) (k, n). Products of at most BPTT_SMALL_GEMM
    multiply-adds run inline (smallgemm.h: a BLAS call costs more than the
    arithmetic there); A.T @ B of small networks' weight gradients runs on
    packedgemm.h's micro-kernel in the AVX2 and AVX-512 builds; one row
    (m == 1) goes to gemv, which OpenBLAS runs much faster than a 1-row gemm.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int inc_a = lda if trans_a else 1
    cdef int one = 1
    cdef int i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0:
        # empty sum: C = beta * C (BLAS would do the same, but say it here)
        for i in range(n):
            for j in range(m):
                c[j * ldc + i] = beta * c[j * ldc + i] if beta != 0 else 0
        return
    if <long long>m * n * k <= BPTT_SMALL_GEMM:
        if floating is float:
            if bptt_small_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
                return
        else:
            if bptt_small_dgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
                return
    if (BPTT_PACK_RECURRENT and trans_a and not trans_b and m >= 32
            and <long long>m * n <= 65536):
        # the weight gradients of small networks: OpenBLAS spends as long
        # packing both operands as multiplying; packedgemm.h packs B only
        # (measured 1.03-1.38x faster at these shapes, slower above them)
        if floating is float:
            if bptt_gemm_tn_s(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
                return
        else:
            if bptt_gemm_tn_d(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
                return
    if m == 1:
        # c (n,) = alpha * op(B).T @ a + beta * c ; op(B) (k, n) row-major is
        # (n, k) column-major, so gemv 'N' when B is stored (k, n), 'T' when (n, k)
        if floating is float:
            if trans_b:
                sgemv(b'T', &k, &n, &alpha, <float*>b, &ldb, <float*>a, &inc_a, &beta, c, &one)
            else:
                sgemv(b'N', &n, &k, &alpha, <float*>b, &ldb, <float*>a, &inc_a, &beta, c, &one)
        else:
            if trans_b:
                dgemv(b'T', &k, &n, &alpha, <double*>b, &ldb, <double*>a, &inc_a, &beta, c, &one)
            else:
                dgemv(b'N', &n, &k, &alpha, <double*>b, &ldb, <double*>a, &inc_a, &beta, c, &one)
        return
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>b, &ldb, <double*>a, &lda,
              &beta, c, &ldc)

