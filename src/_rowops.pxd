# Small row-major helpers shared by the kernels.
from cython cimport floating

from _blas cimport gemm
from _packed cimport recurrent_product


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


cdef inline void add_parts(floating* out, const floating* parts, Py_ssize_t size,
                           Py_ssize_t stride, int n_parts) noexcept nogil:
    """out[i] += sum_p parts[p * stride + i] for p < n_parts: the partial weight
    gradients of a kernel's later timestep ranges, into the first's."""
    cdef Py_ssize_t i
    cdef int p
    for p in range(n_parts):
        for i in range(size):
            out[i] += parts[p * stride + i]


cdef inline void weight_gradients(const floating* X, const floating* h0, const floating* H,
                                  const floating* dA, int T, int B, int I, int n_hidden,
                                  int n_gates, bint accumulate,
                                  floating* dW_xh, floating* dW_hh,
                                  floating* db_h) noexcept nogil:
    """The input and recurrent weight gradients of a cell whose pre-activation
    gradients dA (T, B, n_gates) feed W_xh (n_gates, I) and W_hh (n_gates, H):
    single GEMMs over the T timesteps (Elman: n_gates = H; LSTM: 4H)."""
    cdef floating beta = 1 if accumulate else 0
    # dW_xh (+)= dA.T @ X
    gemm(True, False, n_gates, I, T * B, 1, dA, n_gates, X, I, beta, dW_xh, I)
    # dW_hh (+)= dA[0].T @ h0 + dA[1:].T @ H[:-1]
    gemm(True, False, n_gates, n_hidden, B, 1, dA, n_gates, h0, n_hidden,
         beta, dW_hh, n_hidden)
    gemm(True, False, n_gates, n_hidden, (T - 1) * B, 1, dA + <Py_ssize_t>B * n_gates,
         n_gates, H, n_hidden, 1, dW_hh, n_hidden)
    # db_h (+)= sum_{t, b} dA
    column_sums(dA, <Py_ssize_t>T * B, n_gates, n_gates, accumulate, db_h)


cdef inline void weight_gradients_part(const floating* X, const floating* h0,
                                       const floating* H, const floating* dA, int T, int B,
                                       int I, int n_hidden, int n_gates, int part,
                                       int n_parts, bint accumulate, floating* dW_xh,
                                       floating* dW_hh, floating* db_h,
                                       floating* scratch) noexcept nogil:
    """Part ``part`` of ``n_parts`` of weight_gradients, split by timesteps.

    Each part packs only its own rows of X and H, which row splits would
    all pack again. Part 0 writes (or adds, with accumulate) into dW_xh,
    dW_hh, db_h; part p > 0 writes its sums to scratch block p - 1, laid
    out [dW_xh | dW_hh | db_h] (gradient_size elements), for
    add_gradient_parts.
    """
    cdef int t0 = part_start(T, part, n_parts), t1 = part_start(T, part + 1, n_parts)
    cdef Py_ssize_t row = <Py_ssize_t>t0 * B
    cdef Py_ssize_t size_xh = <Py_ssize_t>n_gates * I
    if part > 0:
        dW_xh = scratch + (part - 1) * gradient_size(n_gates, I, n_hidden)
        dW_hh = dW_xh + size_xh
        db_h = dW_hh + <Py_ssize_t>n_gates * n_hidden
        accumulate = False
    weight_gradients(X + row * I, h0 if t0 == 0 else H + (row - B) * n_hidden,
                     H + row * n_hidden, dA + row * n_gates, t1 - t0, B, I, n_hidden,
                     n_gates, accumulate, dW_xh, dW_hh, db_h)


cdef inline Py_ssize_t gradient_size(int n_gates, int I, int n_hidden) noexcept nogil:
    """Elements of one scratch block of weight_gradients_part."""
    return <Py_ssize_t>n_gates * (I + n_hidden + 1)


cdef inline void add_gradient_parts(floating* dW_xh, floating* dW_hh, floating* db_h,
                                    int n_gates, int I, int n_hidden,
                                    const floating* scratch, Py_ssize_t size,
                                    int n_parts) noexcept nogil:
    """Add the scratch blocks (``size`` elements apart, each starting
    [dW_xh | dW_hh | db_h]) of a split's parts 1..n_parts-1."""
    cdef Py_ssize_t size_xh = <Py_ssize_t>n_gates * I
    cdef Py_ssize_t size_hh = <Py_ssize_t>n_gates * n_hidden
    add_parts(dW_xh, scratch, size_xh, size, n_parts - 1)
    add_parts(dW_hh, scratch + size_xh, size_hh, size, n_parts - 1)
    add_parts(db_h, scratch + size_xh + size_hh, n_gates, size, n_parts - 1)


cdef inline void project_rows(const floating* X, const floating* W,
                              const floating* W_packed, int rows, int n_out,
                              int n_in, floating* A, int part, int parts) noexcept nogil:
    """Part ``part`` of ``parts`` of the rows of A (rows, n_out) = X @ W.T, with
    X (rows, n_in) and W (n_out, n_in): the input projection of every timestep
    (one GEMM when parts == 1), split by rows across threads. W_packed is
    pack_weights(W, transpose=True): the packed micro-kernel runs these
    shapes faster than OpenBLAS (NULL: BLAS)."""
    cdef int r0 = part_start(rows, part, parts), r1 = part_start(rows, part + 1, parts)
    if r1 > r0:
        recurrent_product(r1 - r0, n_out, n_in, X + <Py_ssize_t>r0 * n_in, n_in, W, True,
                          W_packed, 0, A + <Py_ssize_t>r0 * n_out, n_out)


cdef inline void backproject_rows(const floating* dA, const floating* W, int rows,
                                  int n_out, int n_in, floating* dX, int part,
                                  int parts) noexcept nogil:
    """Part ``part`` of ``parts`` of the rows of dX (rows, n_in) = dA @ W, the
    input gradient (for stacked layers), split by rows like project_rows."""
    cdef int r0 = part_start(rows, part, parts), r1 = part_start(rows, part + 1, parts)
    gemm(False, False, r1 - r0, n_in, n_out, 1, dA + <Py_ssize_t>r0 * n_out, n_out, W, n_in,
         0, dX + <Py_ssize_t>r0 * n_in, n_in)
