"""Output layer and losses (twin of bptt/reference/output.py).

Design: rows are timesteps x samples flattened (N = T * B, or B for a loss
at the last step). The projections are single GEMMs over all rows; the
activation and the loss gradient are one elementwise pass each. Losses are
accumulated in double whatever the dtype.

    Z = Hs @ W_oh.T + b_o ; Y = phi(Z)     phi: 0 identity, 1 sigmoid, 2 softmax
    mse:   L = mean((Y - y)^2),                dY = 2 (Y - y) / (N O), chained through phi
    bce:   L = mean(max(z,0) - z y + log1p(exp(-|z|))),  dZ = (Y - y) / (N O)
    ce:    L = mean(logsumexp(z) - z[label]),  dZ = (Y - onehot) / N
    dW_oh = dZ.T @ Hs ; db_o = sum_rows dZ ; dHs = dZ @ W_oh
"""
from cython cimport floating
from libc.math cimport log, log1p, fabs
from libc.stdint cimport int64_t

from _activations cimport exp_, sigmoid_
from _blas cimport gemm

DEF IDENTITY = 0
DEF SIGMOID = 1
DEF SOFTMAX = 2


cdef void softmax_rows(const floating* z, floating* y, Py_ssize_t rows,
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


def output_forward(const floating[:, ::1] Hs,    # IN  (N, H)
                   const floating[:, ::1] W_oh,  # IN  (O, H)
                   const floating[::1] b_o,      # IN  (O,)
                   int activation,
                   floating[:, ::1] Z,           # OUT (N, O)
                   floating[:, ::1] Y):          # OUT (N, O)
    """Z = Hs @ W_oh.T + b_o ; Y = phi(Z)."""
    cdef int N = Hs.shape[0], n_hidden = Hs.shape[1], O = W_oh.shape[0]
    cdef Py_ssize_t r, j, size = <Py_ssize_t>N * O
    cdef floating* z
    if N == 0:
        return
    with nogil:
        z = &Z[0, 0]
        for r in range(N):
            for j in range(O):
                z[r * O + j] = b_o[j]
        # Z = Hs @ W_oh.T + Z(= b_o)
        gemm(False, True, N, O, n_hidden, 1, &Hs[0, 0], n_hidden, &W_oh[0, 0],
             n_hidden, 1, z, O)
        if activation == SIGMOID:
            sigmoid_rows(z, &Y[0, 0], size)
        elif activation == SOFTMAX:
            softmax_rows(z, &Y[0, 0], N, O)
        else:
            for r in range(size):
                (&Y[0, 0])[r] = z[r]


cdef void sigmoid_rows(const floating* z, floating* y, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        y[i] = sigmoid_(z[i])


def mse_grad(const floating[:, ::1] Y,        # IN  (N, O)
             const floating[:, ::1] target,   # IN  (N, O)
             int activation,
             floating[:, ::1] dZ):            # OUT (N, O)
    """Mean squared error; writes dL/dZ through phi. Returns the loss."""
    cdef Py_ssize_t N = Y.shape[0], O = Y.shape[1], size = N * O, r, j
    cdef double total = 0, diff
    cdef floating scale = 2.0 / size
    cdef floating dot
    cdef const floating* y = &Y[0, 0]
    cdef const floating* t = &target[0, 0]
    cdef floating* dz = &dZ[0, 0]
    with nogil:
        for r in range(size):
            diff = y[r] - t[r]
            total += diff * diff
            # dY = 2 (Y - y) / (N O)
            dz[r] = scale * (y[r] - t[r])
        if activation == SIGMOID:
            # sigmoid' = Y (1 - Y)
            for r in range(size):
                dz[r] = dz[r] * y[r] * (1 - y[r])
        elif activation == SOFTMAX:
            # dZ = Y * (dY - sum(dY * Y)) per row
            for r in range(N):
                dot = 0
                for j in range(O):
                    dot = dot + dz[r * O + j] * y[r * O + j]
                for j in range(O):
                    dz[r * O + j] = y[r * O + j] * (dz[r * O + j] - dot)
    return total / size


def binary_cross_entropy_grad(const floating[:, ::1] Z,       # IN  (N, O)
                              const floating[:, ::1] Y,       # IN  (N, O) sigmoid(Z)
                              const floating[:, ::1] target,  # IN  (N, O)
                              floating[:, ::1] dZ):           # OUT (N, O)
    """Binary cross-entropy from the logits; returns the loss."""
    cdef Py_ssize_t size = <Py_ssize_t>Z.shape[0] * Z.shape[1], r
    cdef double total = 0, z
    cdef floating scale = 1.0 / size
    cdef const floating* zp = &Z[0, 0]
    cdef const floating* y = &Y[0, 0]
    cdef const floating* t = &target[0, 0]
    cdef floating* dz = &dZ[0, 0]
    with nogil:
        for r in range(size):
            z = zp[r]
            # max(z, 0) - z y + log(1 + exp(-|z|))
            total += (z if z > 0 else 0) - z * t[r] + log1p(exp_(-fabs(z)))
            # dZ = (sigmoid(z) - y) / (N O)
            dz[r] = scale * (y[r] - t[r])
    return total / size


def cross_entropy_grad(const floating[:, ::1] Z,       # IN  (N, O)
                       const floating[:, ::1] Y,       # IN  (N, O) softmax(Z)
                       const int64_t[::1] labels,      # IN  (N,)
                       floating[:, ::1] dZ):           # OUT (N, O)
    """Cross-entropy against integer labels; returns the loss."""
    cdef Py_ssize_t N = Z.shape[0], O = Z.shape[1], r, j
    cdef double total = 0, zmax, sum_exp
    cdef floating scale = 1.0 / N
    cdef const floating* z = &Z[0, 0]
    cdef const floating* y = &Y[0, 0]
    cdef floating* dz = &dZ[0, 0]
    with nogil:
        for r in range(N):
            zmax = z[r * O]
            for j in range(1, O):
                zmax = z[r * O + j] if z[r * O + j] > zmax else zmax
            sum_exp = 0
            for j in range(O):
                sum_exp += exp_(<double>(z[r * O + j] - zmax))
            # -log softmax(z)[label] = max z + log sum exp(z - max z) - z[label]
            total += zmax + log(sum_exp) - z[r * O + labels[r]]
            # dZ = (softmax(z) - onehot(label)) / N
            for j in range(O):
                dz[r * O + j] = scale * y[r * O + j]
            dz[r * O + labels[r]] -= scale
    return total / N


def output_backward(const floating[:, ::1] Hs,      # IN  (N, H)
                    const floating[:, ::1] W_oh,    # IN  (O, H)
                    const floating[:, ::1] dZ,      # IN  (N, O)
                    floating[:, ::1] dW_oh,         # OUT (O, H)
                    floating[::1] db_o,             # OUT (O,)
                    floating[:, ::1] dHs):          # OUT (N, H)
    """dW_oh = dZ.T @ Hs ; db_o = sum_rows dZ ; dHs = dZ @ W_oh."""
    cdef int N = Hs.shape[0], n_hidden = Hs.shape[1], O = W_oh.shape[0]
    cdef Py_ssize_t r, j
    if N == 0:
        return
    with nogil:
        # dW_oh = dZ.T @ Hs
        gemm(True, False, O, n_hidden, N, 1, &dZ[0, 0], O, &Hs[0, 0], n_hidden,
             0, &dW_oh[0, 0], n_hidden)
        # db_o = sum_rows dZ
        for j in range(O):
            db_o[j] = 0
        for r in range(N):
            for j in range(O):
                db_o[j] += dZ[r, j]
        # dHs = dZ @ W_oh
        gemm(False, False, N, n_hidden, O, 1, &dZ[0, 0], O, &W_oh[0, 0], n_hidden,
             0, &dHs[0, 0], n_hidden)
