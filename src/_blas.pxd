# Row-major BLAS through scipy.linalg.cython_blas (the OpenBLAS SciPy ships:
# no link step, thread count controlled by threadpoolctl).
#
# BLAS is column-major: a row-major (m, n) matrix is its transpose. So
# C = op(A) @ op(B) in row-major is C.T = op(B).T @ op(A).T in column-major,
# which is one gemm call with the operands swapped. The swap lives here only;
# every call site states the NumPy equation it computes.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """C (m, n) = alpha * op(A) @ op(B) + beta * C, all row-major.

    op(A) is (m, k): A is stored (m, k) with row stride lda, or (k, m) when
    trans_a. Likewise op(B) (k, n). One row (m == 1) goes to gemv, which
    OpenBLAS runs much faster than a 1-row gemm.
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
