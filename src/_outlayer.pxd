# The output layer's forward rows, shared by the training path (_output.pyx)
# and the per-cell streaming steppers: Z = Hs @ W_oh.T + b_o ; Y = phi(Z).
from cython cimport floating

from _activations cimport exp_, sigmoid_
from _blas cimport gemm

cdef enum:
    IDENTITY = 0
    SIGMOID = 1
    SOFTMAX = 2


cdef inline void softmax_rows(const floating* z, floating* y, Py_ssize_t rows,
                              Py_ssize_t cols) noexcept nogil:
    """y[r] = exp(z[r] - max z[r]) / sum exp(z[r] - max z[r])."""
    cdef Py_ssize_t r, j
    cdef floating zmax, total
    for r in range(rows):
        zmax = z[0]
        for j in range(1, cols):
            zmax = z[j] if z[j] > zmax else zmax
        total = 0
        for j in range(cols):
            y[j] = exp_(z[j] - zmax)
            total = total + y[j]
        for j in range(cols):
            y[j] = y[j] / total
        z += cols
        y += cols


cdef inline void output_rows(const floating* Hs,     # IN  (N, H)
                             const floating* W_oh,   # IN  (O, H)
                             const floating* b_o,    # IN  (O,)
                             int N, int n_hidden, int O, int activation,
                             floating* Z,            # OUT (N, O)
                             floating* Y) noexcept nogil:  # OUT (N, O), may be Z
    """Z = Hs @ W_oh.T + b_o ; Y = phi(Z)."""
    cdef Py_ssize_t r, j, size = <Py_ssize_t>N * O
    for r in range(N):
        for j in range(O):
            Z[r * O + j] = b_o[j]
    # Z = Hs @ W_oh.T + Z(= b_o)
    gemm(False, True, N, O, n_hidden, 1, Hs, n_hidden, W_oh, n_hidden, 1, Z, O)
    if activation == SIGMOID:
        for r in range(size):
            Y[r] = sigmoid_(Z[r])
    elif activation == SOFTMAX:
        softmax_rows(Z, Y, N, O)
    elif Y != Z:
        for r in range(size):
            Y[r] = Z[r]
