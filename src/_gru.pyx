"""GRU cell kernels: forward pass and BPTT (twin of bptt/reference/gru.py).

Design: time-major buffers, X (T, B, I), G (T, B, 3H) with the gates r, z, n
side by side in each row (PyTorch's order), HN and H (T, B, H). The input
projection of all three gates is one GEMM over all T*B rows; the recurrence
is one (B, H) x (H, 3H) GEMM per step into the work buffer Gh (the reset
gate multiplies W_hn h + b_hn, so the hidden products stay apart from A),
followed by one fused elementwise pass that the compiler vectorizes.
Backward reads the cached gate outputs and HN, overwrites G with dGh and HN
with dA_n in place, and accumulates dH[t] * z + dGh[t] @ W_hh straight into
dH[t-1] (beta = 1). The weight gradients are GEMMs after the loop (the
products with dA = [dGh_r | dGh_z | dA_n] split at row 2H). The whole time
loop runs without the GIL and allocates nothing.

    A      = X @ W_xh.T                  one GEMM, A lives in G
    Gh     = H[t-1] @ W_hh.T             per step (H[-1] := h0)
    r      = sigmoid(A[t]_r + Gh_r + b_r) ; z = sigmoid(A[t]_z + Gh_z + b_z)
    HN[t]  = Gh_n + b_hn ; n = tanh(A[t]_n + b_n + r * HN[t])
    H[t]   = (1 - z) * n + z * H[t-1]
    dA_n   = dH[t] (1 - z)(1 - n^2) ; dA_z = dH[t] (H[t-1] - n) z(1-z)
    dA_r   = dA_n HN[t] r(1-r) ; dGh = [dA_r | dA_z | dA_n r]
    dH[t-1] += dH[t] * z + dGh[t] @ W_hh
    dW_xh  = dA.T @ X ; dW_hh = dGh[1:].T @ H[:-1] + dGh[0].T @ h0
    db_h   = sum dA ; db_hn = sum dGh_n ; dX = dA @ W_xh
"""
from cython cimport floating

from _activations cimport sigmoid_, tanh_
from _blas cimport gemm
from _rowops cimport column_sums


cdef void gates_forward(floating* a, const floating* gh, const floating* b_h,
                        const floating* b_hn, const floating* h_prev, floating* hn,
                        floating* h, Py_ssize_t rows, Py_ssize_t n_hidden) noexcept nogil:
    """One step's elementwise pass: a (rows, 3H) <- [r | z | n], hn, h."""
    cdef Py_ssize_t r, j
    cdef Py_ssize_t H1 = n_hidden, H2 = 2 * n_hidden
    cdef floating gr, gz, gn, hnj
    for r in range(rows):
        for j in range(n_hidden):
            gr = sigmoid_(a[j] + gh[j] + b_h[j])
            gz = sigmoid_(a[H1 + j] + gh[H1 + j] + b_h[H1 + j])
            hnj = gh[H2 + j] + b_hn[j]
            gn = tanh_(a[H2 + j] + b_h[H2 + j] + gr * hnj)
            a[j] = gr
            a[H1 + j] = gz
            a[H2 + j] = gn
            hn[j] = hnj
            h[j] = (1 - gz) * gn + gz * h_prev[j]
        a += 3 * n_hidden
        gh += 3 * n_hidden
        h_prev += n_hidden
        hn += n_hidden
        h += n_hidden


cdef void gates_backward(floating* g, floating* hn, const floating* h_prev,
                         const floating* dh, floating* dh_prev, bint carry,
                         Py_ssize_t rows, Py_ssize_t n_hidden) noexcept nogil:
    """One step's elementwise pass backward: g becomes dGh, hn becomes dA_n.

    When ``carry``, dh_prev += dh * z (the direct path into H[t-1]).
    """
    cdef Py_ssize_t r, j
    cdef Py_ssize_t H1 = n_hidden, H2 = 2 * n_hidden
    cdef floating gr, gz, gn, dhj, dan
    for r in range(rows):
        for j in range(n_hidden):
            gr = g[j]
            gz = g[H1 + j]
            gn = g[H2 + j]
            dhj = dh[j]
            # backprop through h = (1 - z) * n + z * h_prev and the tanh of n
            dan = dhj * (1 - gz) * (1 - gn * gn)
            g[H1 + j] = dhj * (h_prev[j] - gn) * gz * (1 - gz)
            # backprop through n's pre-activation A_n + r * hn
            g[j] = dan * hn[j] * gr * (1 - gr)
            g[H2 + j] = dan * gr
            hn[j] = dan
            if carry:
                dh_prev[j] += dhj * gz
        g += 3 * n_hidden
        hn += n_hidden
        h_prev += n_hidden
        dh += n_hidden
        dh_prev += n_hidden


def gru_forward(const floating[:, :, ::1] X,       # IN  (T, B, I)
                const floating[:, ::1] W_xh,       # IN  (3H, I)
                const floating[:, ::1] W_hh,       # IN  (3H, H)
                const floating[::1] b_h,           # IN  (3H,)
                const floating[::1] b_hn,          # IN  (H,)
                const floating[:, ::1] h0,         # IN  (B, H)
                floating[:, :, ::1] G,             # OUT (T, B, 3H) gate outputs
                floating[:, :, ::1] HN,            # OUT (T, B, H) W_hn h + b_hn
                floating[:, :, ::1] H,             # OUT (T, B, H) hidden states
                floating[:, ::1] Gh):              # WORK (B, 3H)
    """Run the recurrence over all timesteps and keep what backward needs."""
    cdef int T = X.shape[0], B = X.shape[1], I = X.shape[2], n_hidden = W_hh.shape[1]
    cdef int n_gates = 3 * n_hidden
    cdef Py_ssize_t step = <Py_ssize_t>B * n_hidden
    cdef Py_ssize_t t
    cdef const floating* h_prev
    if T == 0 or B == 0 or n_hidden == 0:
        return
    with nogil:
        # A = X @ W_xh.T, all timesteps and gates in one GEMM
        gemm(False, True, T * B, n_gates, I, 1, &X[0, 0, 0], I, &W_xh[0, 0], I,
             0, &G[0, 0, 0], n_gates)
        h_prev = &h0[0, 0]
        for t in range(T):
            # Gh = H[t-1] @ W_hh.T
            gemm(False, True, B, n_gates, n_hidden, 1, h_prev, n_hidden,
                 &W_hh[0, 0], n_hidden, 0, &Gh[0, 0], n_gates)
            # G[t] = [r | z | n] ; HN[t] = Gh_n + b_hn ; H[t] = (1-z)*n + z*H[t-1]
            gates_forward(&G[0, 0, 0] + 3 * t * step, &Gh[0, 0], &b_h[0], &b_hn[0],
                          h_prev, &HN[0, 0, 0] + t * step, &H[0, 0, 0] + t * step,
                          B, n_hidden)
            h_prev = &H[0, 0, 0] + t * step


def gru_backward(const floating[:, :, ::1] X,      # IN  (T, B, I)
                 const floating[:, ::1] W_xh,      # IN  (3H, I), for dX
                 const floating[:, ::1] W_hh,      # IN  (3H, H)
                 const floating[:, ::1] h0,        # IN  (B, H)
                 floating[:, :, ::1] G,            # IN gate outputs, WORK: becomes dGh
                 floating[:, :, ::1] HN,           # IN W_hn h + b_hn, WORK: becomes dA_n
                 const floating[:, :, ::1] H,      # IN  (T, B, H) hidden states
                 floating[:, :, ::1] dH,           # IN dL/dH, WORK: gets the carries
                 int truncate,                     # window length, 0: full BPTT
                 floating[:, ::1] dW_xh,           # OUT (3H, I)
                 floating[:, ::1] dW_hh,           # OUT (3H, H)
                 floating[::1] db_h,               # OUT (3H,)
                 floating[::1] db_hn,              # OUT (H,)
                 floating[:, ::1] dh0,             # OUT (B, H)
                 bint accumulate=False,            # add into dW_xh, dW_hh, db_h, db_hn
                 floating[:, :, ::1] dX=None):     # OUT (T, B, I), optional
    """Backpropagate through time; see the module docstring for the maths.

    With ``accumulate`` the weight gradients are added to what the outputs
    hold, so a long sequence can be processed in chunks from the end (the
    later chunk's dh0 added into dH[-1]).
    """
    cdef int T = X.shape[0], B = X.shape[1], I = X.shape[2], n_hidden = W_hh.shape[1]
    cdef int n_gates = 3 * n_hidden, n2 = 2 * n_hidden
    cdef Py_ssize_t step = <Py_ssize_t>B * n_hidden
    cdef Py_ssize_t t, j
    cdef floating* dGh
    cdef floating* dAn
    cdef floating* dh_prev
    cdef const floating* h_prev
    cdef bint carry
    cdef bint want_dX = dX is not None
    cdef floating beta = 1 if accumulate else 0
    if T == 0 or B == 0 or n_hidden == 0:
        return
    dGh = &G[0, 0, 0]
    dAn = &HN[0, 0, 0]
    with nogil:
        # dh0 collects dH[0] * z, then dGh[0] @ W_hh, like any dH[t-1]
        dh_prev = &dh0[0, 0]
        for j in range(step):
            dh_prev[j] = 0
        for t in range(T - 1, -1, -1):
            if t > 0:
                h_prev = &H[0, 0, 0] + (t - 1) * step
                dh_prev = &dH[0, 0, 0] + (t - 1) * step
            else:
                h_prev = &h0[0, 0]
                dh_prev = &dh0[0, 0]
            carry = t == 0 or not (truncate > 0 and t % truncate == 0)
            # dGh[t], dA_n[t] from the gate outputs; dH[t-1] += dH[t] * z
            gates_backward(dGh + 3 * t * step, dAn + t * step, h_prev,
                           &dH[0, 0, 0] + t * step, dh_prev, carry, B, n_hidden)
            if carry:
                # dH[t-1] += dGh[t] @ W_hh
                gemm(False, False, B, n_hidden, n_gates, 1, dGh + 3 * t * step, n_gates,
                     &W_hh[0, 0], n_hidden, 1, dh_prev, n_hidden)
        # dW_xh (+)= dA.T @ X, dA = [dGh_r | dGh_z | dA_n]
        gemm(True, False, n2, I, T * B, 1, dGh, n_gates, &X[0, 0, 0], I,
             beta, &dW_xh[0, 0], I)
        gemm(True, False, n_hidden, I, T * B, 1, dAn, n_hidden, &X[0, 0, 0], I,
             beta, &dW_xh[n2, 0], I)
        # dW_hh (+)= dGh[0].T @ h0 + dGh[1:].T @ H[:-1]
        gemm(True, False, n_gates, n_hidden, B, 1, dGh, n_gates, &h0[0, 0], n_hidden,
             beta, &dW_hh[0, 0], n_hidden)
        gemm(True, False, n_gates, n_hidden, (T - 1) * B, 1, dGh + 3 * step, n_gates,
             &H[0, 0, 0], n_hidden, 1, &dW_hh[0, 0], n_hidden)
        # db_h (+)= sum dA ; db_hn (+)= sum dGh_n
        column_sums(dGh, <Py_ssize_t>T * B, n2, n_gates, accumulate, &db_h[0])
        column_sums(dAn, <Py_ssize_t>T * B, n_hidden, n_hidden, accumulate, &db_h[n2])
        column_sums(dGh + n2, <Py_ssize_t>T * B, n_hidden, n_gates, accumulate, &db_hn[0])
        if want_dX:
            # dX = dA @ W_xh = dGh[:, :, :2H] @ W_xh[:2H] + dA_n @ W_xh[2H:]
            gemm(False, False, T * B, I, n2, 1, dGh, n_gates, &W_xh[0, 0], I,
                 0, &dX[0, 0, 0], I)
            gemm(False, False, T * B, I, n_hidden, 1, dAn, n_hidden, &W_xh[n2, 0], I,
                 1, &dX[0, 0, 0], I)
