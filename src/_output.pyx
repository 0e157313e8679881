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

from _activations cimport exp_
from _blas cimport gemm
from _outlayer cimport IDENTITY, SIGMOID, SOFTMAX, output_rows

import numpy as np


def output_forward(const floating[:, ::1] Hs,    # IN  (N, H)
                   const floating[:, ::1] W_oh,  # IN  (O, H)
                   const floating[::1] b_o,      # IN  (O,)
                   int activation,
                   floating[:, ::1] Z,           # OUT (N, O)
                   floating[:, ::1] Y):          # OUT (N, O)
    """Z = Hs @ W_oh.T + b_o ; Y = phi(Z)."""
    cdef int N = Hs.shape[0], n_hidden = Hs.shape[1], O = W_oh.shape[0]
    if N == 0:
        return
    with nogil:
        output_rows(&Hs[0, 0], &W_oh[0, 0], &b_o[0], N, n_hidden, O, activation,
                    &Z[0, 0], &Y[0, 0])


def mse_grad(const floating[:, ::1] Y,        # IN  (N, O)
             const floating[:, ::1] target,   # IN  (N, O)
             int activation,
             floating[:, ::1] dZ,             # OUT (N, O)
             double denominator):             # elements the mean runs over
    """Squared error summed over these rows / denominator; writes dL/dZ through phi."""
    cdef Py_ssize_t N = Y.shape[0], O = Y.shape[1], size = N * O, r, j
    cdef double total = 0, diff
    cdef floating scale = 2.0 / denominator
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
    return total / denominator


def binary_cross_entropy_grad(const floating[:, ::1] Z,       # IN  (N, O)
                              const floating[:, ::1] Y,       # IN  (N, O) sigmoid(Z)
                              const floating[:, ::1] target,  # IN  (N, O)
                              floating[:, ::1] dZ,            # OUT (N, O)
                              double denominator):            # elements of the mean
    """Binary cross-entropy from the logits, summed / denominator."""
    cdef Py_ssize_t size = <Py_ssize_t>Z.shape[0] * Z.shape[1], r
    cdef double total = 0, z
    cdef floating scale = 1.0 / denominator
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
    return total / denominator


def cross_entropy_grad(const floating[:, ::1] Z,       # IN  (N, O)
                       const floating[:, ::1] Y,       # IN  (N, O) softmax(Z)
                       const int64_t[::1] labels,      # IN  (N,)
                       floating[:, ::1] dZ,            # OUT (N, O)
                       double denominator):            # rows of the mean
    """Cross-entropy against integer labels, summed / denominator."""
    cdef Py_ssize_t N = Z.shape[0], O = Z.shape[1], r, j
    cdef double total = 0, zmax, sum_exp
    cdef floating scale = 1.0 / denominator
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
    return total / denominator


def output_backward(const floating[:, ::1] Hs,      # IN  (N, H)
                    const floating[:, ::1] W_oh,    # IN  (O, H)
                    const floating[:, ::1] dZ,      # IN  (N, O)
                    floating[:, ::1] dW_oh,         # OUT (O, H)
                    floating[::1] db_o,             # OUT (O,)
                    floating[:, ::1] dHs,           # OUT (N, H)
                    bint accumulate=False):         # add into dW_oh, db_o
    """dW_oh (+)= dZ.T @ Hs ; db_o (+)= sum_rows dZ ; dHs = dZ @ W_oh."""
    cdef int N = Hs.shape[0], n_hidden = Hs.shape[1], O = W_oh.shape[0]
    cdef Py_ssize_t r, j
    if N == 0:
        return
    # dW_oh.T (H, O) is the better-shaped product: O is small, and a GEMM
    # with few rows runs 1.4-2.7x slower than its transpose (both in
    # OpenBLAS and in packedgemm.h, measured at the M, L and XL sizes)
    cdef floating[:, ::1] dW_oh_T = np.empty(
        (n_hidden, O), dtype=np.float32 if floating is float else np.float64)
    with nogil:
        # dW_oh (+)= (Hs.T @ dZ).T
        gemm(True, False, n_hidden, O, N, 1, &Hs[0, 0], n_hidden, &dZ[0, 0], O,
             0, &dW_oh_T[0, 0], O)
        for r in range(O):
            for j in range(n_hidden):
                # dW_oh holds garbage when not accumulating: never read it then
                if accumulate:
                    dW_oh[r, j] += dW_oh_T[j, r]
                else:
                    dW_oh[r, j] = dW_oh_T[j, r]
        # db_o (+)= sum_rows dZ
        if not accumulate:
            for j in range(O):
                db_o[j] = 0
        for r in range(N):
            for j in range(O):
                db_o[j] += dZ[r, j]
        # dHs = dZ @ W_oh
        gemm(False, False, N, n_hidden, O, 1, &dZ[0, 0], O, &W_oh[0, 0], n_hidden,
             0, &dHs[0, 0], n_hidden)
