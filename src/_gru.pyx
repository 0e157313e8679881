"""GRU cell kernels: forward pass and BPTT (twin of bptt/reference/gru.py).

Design: time-major buffers, X (T, B, I), G (T, B, 3H) with the gates r, z, n
side by side in each row (PyTorch's order), HN and H (T, B, H). The input
projection of all three gates is one GEMM over all T*B rows; the recurrence
is one (B, H) x (H, 3H) GEMM per step (W_hh packed once per call,
packedgemm.h) into the work buffer Gh (the reset gate multiplies W_hn h +
b_hn, so the hidden products stay apart from A), followed by one fused
elementwise pass that the compiler vectorizes. Backward reads the cached
gate outputs and HN, overwrites G with dGh and HN with dA_n in place, and
accumulates dH[t] * z + dGh[t] @ W_hh straight into dH[t-1] (beta = 1). The
weight gradients are GEMMs after the loop (the products with dA = [dGh_r |
dGh_z | dA_n] split at row 2H). The whole time loop runs without the GIL and
allocates nothing.

Threads: with n_threads > 1 each thread takes a slice of the batch for the
whole time loop (its rows of Gh too; the sequences are independent, so the
steps need no synchronisation), and the large GEMMs split their rows (the
input projection and dX the T*B rows, the weight gradients the 3H gate
rows, db_hn going with the n rows); BLAS itself runs single-threaded
meanwhile (bptt/_threads.py says why).

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
from cython.parallel cimport prange

from _activations cimport sigmoid_, tanh_
from _blas cimport gemm
from _packed cimport pack_weights, recurrent_product
from _stepping cimport (P_B_H, P_EXTRA, P_W_HH, P_W_HH_PACKED, P_W_XH,
                       P_W_XH_PACKED)
from _rowops cimport column_sums, part_start, project_rows

cimport numpy as cnp
import numpy as np

cnp.import_array()  # pack_weights allocates through the NumPy C-API


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


cdef void recurrence_forward(const floating* h0, const floating* W_hh,
                             const floating* W_hh_packed, const floating* b_h,
                             const floating* b_hn, floating* G, floating* HN, floating* H,
                             floating* Gh, int T, int B, int n_hidden, int b0,
                             int b1) noexcept nogil:
    """The forward time loop for the batch rows b0..b1-1 (A already in G).

    Uses rows b0..b1-1 of the work buffer Gh (B, 3H).
    """
    cdef int n_gates = 3 * n_hidden, rows = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>B * n_hidden, t
    cdef Py_ssize_t offset = <Py_ssize_t>b0 * n_hidden
    cdef const floating* h_prev = h0 + offset
    cdef floating* gh = Gh + <Py_ssize_t>b0 * n_gates
    if rows <= 0:
        return
    for t in range(T):
        # Gh = H[t-1] @ W_hh.T
        recurrent_product(rows, n_gates, n_hidden, h_prev, n_hidden, W_hh, True,
                          W_hh_packed, 0, gh, n_gates)
        # G[t] = [r | z | n] ; HN[t] = Gh_n + b_hn ; H[t] = (1-z)*n + z*H[t-1]
        gates_forward(G + 3 * (t * step + offset), gh, b_h, b_hn, h_prev,
                      HN + t * step + offset, H + t * step + offset, rows, n_hidden)
        h_prev = H + t * step + offset


cdef void recurrence_backward(const floating* W_hh, const floating* W_hh_packed,
                              const floating* h0, const floating* H,
                              floating* dGh, floating* dAn, floating* dH, floating* dh0,
                              int T, int B, int n_hidden, int b0, int b1,
                              int truncate) noexcept nogil:
    """The backward time loop for the batch rows b0..b1-1 (dGh, dAn hold G, HN)."""
    cdef int n_gates = 3 * n_hidden, rows = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>B * n_hidden, t, j
    cdef Py_ssize_t offset = <Py_ssize_t>b0 * n_hidden
    cdef Py_ssize_t size = <Py_ssize_t>rows * n_hidden
    cdef floating* dh_prev = dh0 + offset
    cdef const floating* h_prev
    cdef bint carry
    if rows <= 0:
        return
    # dh0 collects dH[0] * z, then dGh[0] @ W_hh, like any dH[t-1]
    for j in range(size):
        dh_prev[j] = 0
    for t in range(T - 1, -1, -1):
        if t > 0:
            h_prev = H + (t - 1) * step + offset
            dh_prev = dH + (t - 1) * step + offset
        else:
            h_prev = h0 + offset
            dh_prev = dh0 + offset
        carry = t == 0 or not (truncate > 0 and t % truncate == 0)
        # dGh[t], dA_n[t] from the gate outputs; dH[t-1] += dH[t] * z
        gates_backward(dGh + 3 * (t * step + offset), dAn + t * step + offset, h_prev,
                       dH + t * step + offset, dh_prev, carry, rows, n_hidden)
        if carry:
            # dH[t-1] += dGh[t] @ W_hh
            recurrent_product(rows, n_hidden, n_gates, dGh + 3 * (t * step + offset),
                              n_gates, W_hh, False, W_hh_packed, 1, dh_prev, n_hidden)


cdef void weight_gradients(const floating* X, const floating* h0, const floating* H,
                           const floating* dGh, const floating* dAn, int T, int B, int I,
                           int n_hidden, int j0, int j1, bint accumulate,
                           floating* dW_xh, floating* dW_hh, floating* db_h,
                           floating* db_hn) noexcept nogil:
    """Gate rows j0..j1-1 of the weight gradients (and db_hn's share of the n rows).

    dA = [dGh_r | dGh_z | dA_n]: rows below 2H come from dGh, the others
    from dA_n.
    """
    cdef int n_gates = 3 * n_hidden, n2 = 2 * n_hidden, rows = j1 - j0
    cdef int rz_end = j1 if j1 < n2 else n2      # rows j0..rz_end-1: r and z
    cdef int n_start = j0 if j0 > n2 else n2     # rows n_start..j1-1: n
    cdef Py_ssize_t TB = <Py_ssize_t>T * B
    cdef floating beta = 1 if accumulate else 0
    if rows <= 0:
        return
    if rz_end > j0:
        # dW_xh[j0:rz_end] (+)= dGh[..., j0:rz_end].T @ X ; db_h likewise
        gemm(True, False, rz_end - j0, I, T * B, 1, dGh + j0, n_gates, X, I,
             beta, dW_xh + <Py_ssize_t>j0 * I, I)
        column_sums(dGh + j0, TB, rz_end - j0, n_gates, accumulate, db_h + j0)
    if j1 > n_start:
        # dW_xh[n_start:j1] (+)= dA_n[..., n_start-2H:j1-2H].T @ X ; db_h likewise
        gemm(True, False, j1 - n_start, I, T * B, 1, dAn + (n_start - n2), n_hidden, X, I,
             beta, dW_xh + <Py_ssize_t>n_start * I, I)
        column_sums(dAn + (n_start - n2), TB, j1 - n_start, n_hidden, accumulate,
                    db_h + n_start)
        # db_hn (+)= sum dGh_n
        column_sums(dGh + n_start, TB, j1 - n_start, n_gates, accumulate,
                    db_hn + (n_start - n2))
    # dW_hh (+)= dGh[0].T @ h0 + dGh[1:].T @ H[:-1]
    gemm(True, False, rows, n_hidden, B, 1, dGh + j0, n_gates, h0, n_hidden,
         beta, dW_hh + <Py_ssize_t>j0 * n_hidden, n_hidden)
    gemm(True, False, rows, n_hidden, (T - 1) * B, 1,
         dGh + <Py_ssize_t>B * n_gates + j0, n_gates, H, n_hidden,
         1, dW_hh + <Py_ssize_t>j0 * n_hidden, n_hidden)


cdef void input_gradient(const floating* dGh, const floating* dAn, const floating* W_xh,
                         int I, int n_hidden, int r0, int r1,
                         floating* dX) noexcept nogil:
    """Rows r0..r1-1 (of T*B) of dX = dGh[..., :2H] @ W_xh[:2H] + dA_n @ W_xh[2H:]."""
    cdef int n_gates = 3 * n_hidden, n2 = 2 * n_hidden
    if r1 <= r0:
        return
    gemm(False, False, r1 - r0, I, n2, 1, dGh + <Py_ssize_t>r0 * n_gates, n_gates,
         W_xh, I, 0, dX + <Py_ssize_t>r0 * I, I)
    gemm(False, False, r1 - r0, I, n_hidden, 1, dAn + <Py_ssize_t>r0 * n_hidden, n_hidden,
         W_xh + <Py_ssize_t>n2 * I, I, 1, dX + <Py_ssize_t>r0 * I, I)


def gru_forward(const floating[:, :, ::1] X,       # IN  (T, B, I)
                const floating[:, ::1] W_xh,       # IN  (3H, I)
                const floating[:, ::1] W_hh,       # IN  (3H, H)
                const floating[::1] b_h,           # IN  (3H,)
                const floating[::1] b_hn,          # IN  (H,)
                const floating[:, ::1] h0,         # IN  (B, H)
                floating[:, :, ::1] G,             # OUT (T, B, 3H) gate outputs
                floating[:, :, ::1] HN,            # OUT (T, B, H) W_hn h + b_hn
                floating[:, :, ::1] H,             # OUT (T, B, H) hidden states
                floating[:, ::1] Gh,               # WORK (B, 3H)
                int n_threads=1):                  # threads splitting the batch
    """Run the recurrence over all timesteps and keep what backward needs."""
    cdef int T = X.shape[0], B = X.shape[1], I = X.shape[2], n_hidden = W_hh.shape[1]
    cdef int n_gates = 3 * n_hidden
    cdef int part, b0, b1
    cdef const floating* W_hh_packed
    cdef const floating* X_data
    cdef const floating* W_xh_data
    cdef floating* G_data
    if T == 0 or B == 0 or n_hidden == 0:
        return
    X_data = &X[0, 0, 0]
    W_xh_data = &W_xh[0, 0]
    G_data = &G[0, 0, 0]
    packed = pack_weights(W_hh, True, &W_hh_packed)
    n_threads = max(1, min(n_threads, B))
    with nogil:
        if n_threads == 1:
            # A = X @ W_xh.T, all timesteps in one GEMM
            project_rows(X_data, W_xh_data, T * B, n_gates, I, G_data, 0, 1)
            recurrence_forward(&h0[0, 0], &W_hh[0, 0], W_hh_packed,
                               &b_h[0], &b_hn[0], G_data,
                               &HN[0, 0, 0], &H[0, 0, 0], &Gh[0, 0], T, B, n_hidden, 0, B)
        else:
            for part in prange(n_threads, num_threads=n_threads, schedule="static",
                               chunksize=1):
                # rows of A = X @ W_xh.T
                project_rows(X_data, W_xh_data, T * B, n_gates, I, G_data, part, n_threads)
            for part in prange(n_threads, num_threads=n_threads, schedule="static",
                               chunksize=1):
                # the sequences b0..b1-1, every timestep
                b0 = part_start(B, part, n_threads)
                b1 = part_start(B, part + 1, n_threads)
                recurrence_forward(&h0[0, 0], &W_hh[0, 0], W_hh_packed,
                                   &b_h[0], &b_hn[0], G_data,
                                   &HN[0, 0, 0], &H[0, 0, 0], &Gh[0, 0], T, B, n_hidden,
                                   b0, b1)


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
                 floating[:, :, ::1] dX=None,      # OUT (T, B, I), optional
                 int n_threads=1):                 # threads splitting the work
    """Backpropagate through time; see the module docstring for the maths.

    With ``accumulate`` the weight gradients are added to what the outputs
    hold, so a long sequence can be processed in chunks from the end (the
    later chunk's dh0 added into dH[-1]). The time loop splits the batch
    over ``n_threads``; the weight gradients split their gate rows, dX its
    rows.
    """
    cdef int T = X.shape[0], B = X.shape[1], I = X.shape[2], n_hidden = W_hh.shape[1]
    cdef int n_gates = 3 * n_hidden
    cdef int part, b0, b1, j0, j1, r0, r1
    cdef floating* dGh
    cdef floating* dAn
    cdef const floating* W_hh_packed
    cdef const floating* W_xh_data
    cdef floating* dX_data = NULL
    cdef bint want_dX = dX is not None
    if T == 0 or B == 0 or n_hidden == 0:
        return
    dGh = &G[0, 0, 0]
    dAn = &HN[0, 0, 0]
    W_xh_data = &W_xh[0, 0]
    if want_dX:
        dX_data = &dX[0, 0, 0]
    packed = pack_weights(W_hh, False, &W_hh_packed)
    n_threads = max(1, n_threads)
    with nogil:
        if n_threads == 1:
            recurrence_backward(&W_hh[0, 0], W_hh_packed, &h0[0, 0], &H[0, 0, 0], dGh, dAn,
                                &dH[0, 0, 0], &dh0[0, 0], T, B, n_hidden, 0, B, truncate)
            weight_gradients(&X[0, 0, 0], &h0[0, 0], &H[0, 0, 0], dGh, dAn, T, B, I,
                             n_hidden, 0, n_gates, accumulate, &dW_xh[0, 0],
                             &dW_hh[0, 0], &db_h[0], &db_hn[0])
            if want_dX:
                input_gradient(dGh, dAn, W_xh_data, I, n_hidden, 0, T * B, dX_data)
        else:
            for part in prange(n_threads, num_threads=n_threads, schedule="static",
                               chunksize=1):
                # the sequences b0..b1-1, every timestep
                b0 = part_start(B, part, n_threads)
                b1 = part_start(B, part + 1, n_threads)
                recurrence_backward(&W_hh[0, 0], W_hh_packed,
                                    &h0[0, 0], &H[0, 0, 0], dGh, dAn,
                                    &dH[0, 0, 0], &dh0[0, 0], T, B, n_hidden, b0, b1,
                                    truncate)
            for part in prange(n_threads, num_threads=n_threads, schedule="static",
                               chunksize=1):
                # gate rows j0..j1-1 of dW_xh, dW_hh, db_h (and db_hn)
                j0 = part_start(n_gates, part, n_threads)
                j1 = part_start(n_gates, part + 1, n_threads)
                weight_gradients(&X[0, 0, 0], &h0[0, 0], &H[0, 0, 0], dGh, dAn, T, B, I,
                                 n_hidden, j0, j1, accumulate, &dW_xh[0, 0],
                                 &dW_hh[0, 0], &db_h[0], &db_hn[0])
                if want_dX:
                    # rows r0..r1-1 of dX
                    r0 = part_start(T * B, part, n_threads)
                    r1 = part_start(T * B, part + 1, n_threads)
                    input_gradient(dGh, dAn, W_xh_data, I, n_hidden, r0, r1, dX_data)


# ---------------------------------------------------------------- streaming

STEP_WORK = (3, 3, 1)  # input pre-activations A, hidden products Gh, HN


cdef void cell_step(const floating* x, floating** p, floating** s, floating** w,
                    int B, int I, int n_hidden, bint relu) noexcept nogil:
    """One timestep: A = x W_xh.T, Gh = h W_hh.T, then h in place (_stepper.pxi)."""
    cdef int n_gates = 3 * n_hidden
    # A = x @ W_xh.T ; Gh = h @ W_hh.T
    recurrent_product(B, n_gates, I, x, I, p[P_W_XH], True, p[P_W_XH_PACKED], 0,
                      w[0], n_gates)
    recurrent_product(B, n_gates, n_hidden, s[0], n_hidden, p[P_W_HH], True,
                      p[P_W_HH_PACKED], 0, w[1], n_gates)
    # h = (1 - z)*n + z*h  (each element reads its old h first)
    gates_forward(w[0], w[1], p[P_B_H], p[P_EXTRA], s[0], w[2], s[0], B, n_hidden)


include "_stepper.pxi"
