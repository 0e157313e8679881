# Small row-major helpers shared by the kernels.
from cython cimport floating

from _blas cimport gemm


cdef inline void column_sums(const floating* a, Py_ssize_t rows, Py_ssize_t cols,
                             Py_ssize_t lda, bint accumulate, floating* out) noexcept nogil:
    """out[j] (+)= sum_r a[r, j] over an (rows, cols) block with row stride lda."""
    cdef Py_ssize_t r, j
    if not accumulate:
        for j in range(cols):
            out[j] = 0
    for r in range(rows):
        for j in range(cols):
            out[j] += a[r * lda + j]


cdef inline int part_start(int total, int part, int parts) noexcept nogil:
    """Where part ``part`` of ``parts`` near-equal parts of range(total) starts."""
    return <int>((<long long>total * part) // parts)


cdef inline void weight_gradients(const floating* X, const floating* h0, const floating* H,
                                  const floating* dA, int T, int B, int I, int n_hidden,
                                  int n_gates, int j0, int j1, bint accumulate,
                                  floating* dW_xh, floating* dW_hh,
                                  floating* db_h) noexcept nogil:
    """Rows j0..j1-1 of the input and recurrent weight gradients of a cell whose
    pre-activation gradients dA (T, B, n_gates) feed W_xh (n_gates, I) and
    W_hh (n_gates, H): single GEMMs over all timesteps (Elman: n_gates = H;
    LSTM: 4H). The rows split across threads."""
    cdef int rows = j1 - j0
    cdef floating beta = 1 if accumulate else 0
    if rows <= 0:
        return
    # dW_xh (+)= dA.T @ X
    gemm(True, False, rows, I, T * B, 1, dA + j0, n_gates, X, I,
         beta, dW_xh + <Py_ssize_t>j0 * I, I)
    # dW_hh (+)= dA[0].T @ h0 + dA[1:].T @ H[:-1]
    gemm(True, False, rows, n_hidden, B, 1, dA + j0, n_gates, h0, n_hidden,
         beta, dW_hh + <Py_ssize_t>j0 * n_hidden, n_hidden)
    gemm(True, False, rows, n_hidden, (T - 1) * B, 1, dA + <Py_ssize_t>B * n_gates + j0,
         n_gates, H, n_hidden, 1, dW_hh + <Py_ssize_t>j0 * n_hidden, n_hidden)
    # db_h (+)= sum_{t, b} dA
    column_sums(dA + j0, <Py_ssize_t>T * B, rows, n_gates, accumulate, db_h + j0)
