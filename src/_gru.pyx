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

Threads: with n_threads > 1 the work splits into parts on bptt's thread
pool (threadpool.h): each part of the time loop is a slice of the batch for
every timestep (its rows of Gh too; the sequences are independent, so the
steps need no synchronisation); the input projection and dX split the T*B
rows, the weight gradients the timesteps (as rowops.pxd's
weight_gradients_part does). With slabs > 1 a part is instead all the
work of one slab of sequences (_cellparts.pxd, "slabs"). BLAS itself runs
single-threaded meanwhile (bptt/_threads.py says why).

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

Gradient flow (optional): dh_out[t] = dH[t], complete (carries included)
when step t begins; norms_out[0, t] the L2 norms of its rows, summed as they
are copied.
"""
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memset

from _activations cimport one_minus, sigmoid_, tanh_
from _blas cimport gemm
from _packed cimport pack_weights, recurrent_product
from _parallel cimport balanced_parts, bptt_parallel, import_threadpool
from _stepping cimport (P_B_H, P_EXTRA, P_W_HH, P_W_HH_PACKED, P_W_XH,
                       P_W_XH_PACKED)
from _cellparts cimport (CellArgs, cell_args, check_backward, check_cache_arrays,
                        check_state_outs, copy_rows, run_backward, run_forward)
from _checks cimport check_shape
from _rowops cimport column_sums, part_start

cimport numpy as cnp
import numpy as np

cnp.import_array()  # pack_weights allocates through the NumPy C-API
import_threadpool()


cdef void gates_forward(floating* a, const floating* gh, const floating* b_h,
                        const floating* b_hn, const floating* h_prev, floating* hn,
                        floating* h, Py_ssize_t rows, Py_ssize_t n_hidden) noexcept nogil:
    """One step's elementwise pass: a (rows, 3H) <- [r | z | n], hn, h."""
    cdef Py_ssize_t r, j
    cdef Py_ssize_t H1 = n_hidden, H2 = 2 * n_hidden
    cdef floating gr, gz, gn, hnj
    # Two loops per row, not one: r and z are one contiguous block, and loops
    # over fewer arrays need fewer of the run-time alias checks that come
    # before each vectorized loop (at H = 64 a row is only a few vectors).
    for r in range(rows):
        for j in range(H2):
            a[j] = sigmoid_(a[j] + gh[j] + b_h[j])
        for j in range(n_hidden):
            gr = a[j]
            gz = a[H1 + j]
            hnj = gh[H2 + j] + b_hn[j]
            gn = tanh_(a[H2 + j] + b_h[H2 + j] + gr * hnj)
            a[H2 + j] = gn
            hn[j] = hnj
            h[j] = one_minus(gz) * gn + gz * h_prev[j]
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
            dan = dhj * one_minus(gz) * one_minus(gn * gn)
            g[H1 + j] = dhj * (h_prev[j] - gn) * gz * one_minus(gz)
            # backprop through n's pre-activation A_n + r * hn
            g[j] = dan * hn[j] * gr * one_minus(gr)
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
                              int truncate, floating* dh_out, Py_ssize_t out_step,
                              Py_ssize_t out_row, double* norms, Py_ssize_t norm_step,
                              Py_ssize_t norm_row) noexcept nogil:
    """The backward time loop for the batch rows b0..b1-1 (dGh, dAn hold G, HN);
    dh_out (T, B, H) with strides out_step, out_row, or NULL; norms (T, B)
    with strides norm_step, norm_row (the L2 norms of dh_out's rows), or NULL."""
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
        if dh_out != NULL:
            # dh_out[t] = dH[t], which holds the carries from step t+1 by now; its norms
            copy_rows(dH + t * step + offset, dh_out + t * out_step + b0 * out_row,
                      out_row, rows, n_hidden,
                      norms + t * norm_step + b0 * norm_row if norms != NULL else NULL,
                      norm_row)
        # dGh[t], dA_n[t] from the gate outputs; dH[t-1] += dH[t] * z
        gates_backward(dGh + 3 * (t * step + offset), dAn + t * step + offset, h_prev,
                       dH + t * step + offset, dh_prev, carry, rows, n_hidden)
        if carry:
            # dH[t-1] += dGh[t] @ W_hh
            recurrent_product(rows, n_hidden, n_gates, dGh + 3 * (t * step + offset),
                              n_gates, W_hh, False, W_hh_packed, 1, dh_prev, n_hidden)


cdef void weight_gradients(const floating* X, const floating* h0, const floating* H,
                           const floating* dGh, const floating* dAn, int T, int B, int I,
                           int n_hidden, bint accumulate,
                           floating* dW_xh, floating* dW_hh, floating* db_h,
                           floating* db_hn) noexcept nogil:
    """The weight gradients over the T timesteps (and db_hn).

    dA = [dGh_r | dGh_z | dA_n]: rows below 2H come from dGh, the others
    from dA_n.
    """
    cdef int n_gates = 3 * n_hidden, n2 = 2 * n_hidden
    cdef Py_ssize_t TB = <Py_ssize_t>T * B
    cdef floating beta = 1 if accumulate else 0
    # dW_xh[:2H] (+)= dGh[..., :2H].T @ X ; db_h likewise
    gemm(True, False, n2, I, T * B, 1, dGh, n_gates, X, I, beta, dW_xh, I)
    column_sums(dGh, TB, n2, n_gates, accumulate, db_h)
    # dW_xh[2H:] (+)= dA_n.T @ X ; db_h likewise
    gemm(True, False, n_hidden, I, T * B, 1, dAn, n_hidden, X, I,
         beta, dW_xh + <Py_ssize_t>n2 * I, I)
    column_sums(dAn, TB, n_hidden, n_hidden, accumulate, db_h + n2)
    # db_hn (+)= sum dGh_n
    column_sums(dGh + n2, TB, n_hidden, n_gates, accumulate, db_hn)
    # dW_hh (+)= dGh[0].T @ h0 + dGh[1:].T @ H[:-1]
    gemm(True, False, n_gates, n_hidden, B, 1, dGh, n_gates, h0, n_hidden,
         beta, dW_hh, n_hidden)
    gemm(True, False, n_gates, n_hidden, (T - 1) * B, 1,
         dGh + <Py_ssize_t>B * n_gates, n_gates, H, n_hidden, 1, dW_hh, n_hidden)


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


cdef void forward_part_of(CellArgs* a, int part, int n_parts, floating tag) noexcept nogil:
    # the sequences b0..b1-1, every timestep
    recurrence_forward(<const floating*>a.state0[0], <const floating*>a.W_hh,
                       <const floating*>a.W_hh_packed, <const floating*>a.b_h,
                       <const floating*>a.extra[0], <floating*>a.A, <floating*>a.cache[0],
                       <floating*>a.H, <floating*>a.work, a.T, a.B, a.n_hidden,
                       part_start(a.B, part, n_parts), part_start(a.B, part + 1, n_parts))


cdef void backward_part_of(CellArgs* a, int part, int n_parts, floating tag) noexcept nogil:
    # the sequences b0..b1-1, every timestep
    recurrence_backward(<const floating*>a.W_hh, <const floating*>a.W_hh_packed,
                        <const floating*>a.state0[0], <const floating*>a.H,
                        <floating*>a.A, <floating*>a.cache[0], <floating*>a.dH,
                        <floating*>a.dstate0[0], a.T, a.B,
                        a.n_hidden, part_start(a.B, part, n_parts),
                        part_start(a.B, part + 1, n_parts), a.truncate,
                        <floating*>a.state_out[0], a.out_strides[0], a.out_strides[1],
                        a.norms_out, a.norm_strides[1], a.norm_strides[2])


include "_cellentries.pxi"


cdef void gru_gradient_part_of(CellArgs* a, int part, int n_parts,
                               floating tag) noexcept nogil:
    # timesteps t0..t1-1 of the weight gradients (dA = [dGh_r | dGh_z | dA_n]
    # splits at row 2H): part 0 into the outputs, the others into their
    # scratch blocks; rows of dX
    cdef int t0 = part_start(a.T, part, n_parts), t1 = part_start(a.T, part + 1, n_parts)
    cdef Py_ssize_t row = <Py_ssize_t>t0 * a.B
    cdef floating* dW_xh = <floating*>a.dW_xh
    cdef floating* dW_hh = <floating*>a.dW_hh
    cdef floating* db_h = <floating*>a.db_h
    cdef floating* db_hn = <floating*>a.dextra[0]
    cdef bint accumulate = a.accumulate
    if part > 0:
        dW_xh = <floating*>a.scratch + (part - 1) * a.gradient_block
        dW_hh = dW_xh + <Py_ssize_t>a.n_gates * a.n_input
        db_h = dW_hh + <Py_ssize_t>a.n_gates * a.n_hidden
        db_hn = db_h + a.n_gates
        accumulate = False
    weight_gradients(<const floating*>a.X + row * a.n_input,
                     <const floating*>a.state0[0] if t0 == 0 else
                     <const floating*>a.H + (row - a.B) * a.n_hidden,
                     <const floating*>a.H + row * a.n_hidden,
                     <const floating*>a.A + row * a.n_gates,
                     <const floating*>a.cache[0] + row * a.n_hidden, t1 - t0, a.B,
                     a.n_input,
                     a.n_hidden, accumulate, dW_xh, dW_hh, db_h, db_hn)
    if a.dX != NULL:
        input_gradient(<const floating*>a.A, <const floating*>a.cache[0],
                       <const floating*>a.W_xh, a.n_input, a.n_hidden,
                       part_start(a.T * a.B, part, n_parts),
                       part_start(a.T * a.B, part + 1, n_parts), <floating*>a.dX)


cdef void gru_gradient_part(void* args, int part, int n_parts) noexcept nogil:
    if (<CellArgs*>args).is_double:
        gru_gradient_part_of(<CellArgs*>args, part, n_parts, <double>0)
    else:
        gru_gradient_part_of(<CellArgs*>args, part, n_parts, <float>0)


def gru_forward(const floating[:, :, ::1] X not None,  # IN  (T, B, I)
                const floating[:, ::1] W_xh not None,  # IN  (3H, I)
                const floating[:, ::1] W_hh not None,  # IN  (3H, H)
                const floating[::1] b_h not None,      # IN  (3H,)
                const floating[::1] b_hn not None,     # IN  (H,)
                const floating[:, ::1] h0 not None,    # IN  (B, H)
                floating[:, :, ::1] G not None,        # OUT (T, B, 3H) gate outputs
                floating[:, :, ::1] HN not None,       # OUT (T, B, H) W_hn h + b_hn
                floating[:, :, ::1] H not None,        # OUT (T, B, H) hidden states
                floating[:, ::1] Gh not None,          # WORK (B, 3H)
                int n_threads=1,                       # threads splitting the batch
                int slabs=1,                           # batch slabs (_cellparts.pxd)
                int slab_steps=0,                      # cache timesteps per slab (0: T)
                const int64_t[:, ::1] segments=None):  # packed rows (_cellparts.pxd)
    """Run the recurrence over all timesteps and keep what backward needs:
    the gate outputs G, HN = W_hn h + b_hn and the hidden states H.

    With ``slabs`` > 1, X, G, HN and H are (slabs*T, B, .) and h0, Gh
    (slabs*B, .): independent slabs of sequences, one part each. With
    ``segments``, packed rows as elman_forward's (Gh (n, 3H)).
    """
    cdef CellArgs a
    cell_args(&a, 3, slabs, slab_steps, X.shape, W_xh.shape, W_hh.shape, h0.shape,
              H.shape[0], segments)
    check_shape("b_h", b_h.shape, 1, W_hh.shape[0])
    check_shape("b_hn", b_hn.shape, 1, W_hh.shape[1])
    check_cache_arrays(3, "HN", X.shape[1], W_hh.shape[1], G.shape, HN.shape, H.shape)
    check_shape("Gh", Gh.shape, 2, h0.shape[0], W_hh.shape[0])
    if X.shape[0] == 0 or X.shape[1] == 0 or W_hh.shape[1] == 0:
        return
    # A = X @ W_xh.T lives in G; HN is a cache array of width H, Gh the
    # work rows (3H wide)
    a.A, a.H, a.extra[0] = &G[0, 0, 0], &H[0, 0, 0], &b_hn[0]
    a.cache[0], a.cache_width[0], a.work, a.work_width = &HN[0, 0, 0], 1, &Gh[0, 0], 3
    run_forward(&a, X, W_xh, W_hh, b_h, h0, n_threads, slabs, forward_part)


def gru_backward(const floating[:, :, ::1] X not None,  # IN  (T, B, I)
                 const floating[:, ::1] W_xh not None,  # IN  (3H, I), for dX
                 const floating[:, ::1] W_hh not None,  # IN  (3H, H)
                 const floating[:, ::1] h0 not None,    # IN  (B, H)
                 floating[:, :, ::1] G not None,        # IN gate outputs, WORK: becomes dGh
                 floating[:, :, ::1] HN not None,       # IN W_hn h + b_hn, WORK: becomes dA_n
                 const floating[:, :, ::1] H not None,  # IN  (T, B, H) hidden states
                 floating[:, :, ::1] dH not None,       # IN dL/dH, WORK: gets the carries
                 int truncate,                          # window length, 0: full BPTT
                 floating[:, ::1] dW_xh not None,       # OUT (3H, I)
                 floating[:, ::1] dW_hh not None,       # OUT (3H, H)
                 floating[::1] db_h not None,           # OUT (3H,)
                 floating[::1] db_hn not None,          # OUT (H,)
                 floating[:, ::1] dh0 not None,         # OUT (B, H)
                 bint accumulate=False,                 # add into dW_xh, dW_hh, db_h, db_hn
                 floating[:, :, ::1] dX=None,           # OUT (T, B, I), optional
                 int n_threads=1,                       # threads splitting the work
                 int slabs=1,                           # batch slabs, as gru_forward
                 int slab_steps=0,                      # cache timesteps per slab (0: T)
                 floating[:, :, :] dh_out=None,         # OUT (T, B, H), optional
                 double[:, :, :] norms_out=None,        # OUT (1, T, B), optional
                 double[:, :] norm_means=None,          # OUT (1, T), optional
                 const int64_t[:, ::1] segments=None,   # packed pieces (_cellparts.pxd)
                 const int64_t[::1] lengths=None):      # sorted lengths, cuts by mask
    """Backpropagate through time; see the module docstring for the maths.

    With ``accumulate`` the weight gradients are added to what the outputs
    hold, so a long sequence can be processed in chunks from the end (the
    later chunk's dh0 added into dH[-1]). The time loop splits the batch
    over ``n_threads``; the weight gradients split the timesteps, dX its
    rows. ``dh_out`` (at least T steps, rows of H contiguous, other strides
    free: the time-major view of a batch-first array) receives the total
    dL/dH[t] of every step: dH[t] (with what the caller added into dH[-1])
    plus the carries from step t+1 within the truncation window. With slabs
    it is (T, slabs*B, H), rows in h0's order. ``norms_out`` (float64, any
    strides; with dh_out only) receives the L2 norm of every row of dh_out,
    ``norms_out[0, t, b] = ||dh_out[t, b]||``, taken as the row is copied.
    With ``segments``, packed rows as elman_backward's.

    ``norm_means`` (float64 (states, at least T), with norms_out and
    without segments) receives the mean over the rows of norms_out[k, t]
    (the batch's mean state-gradient norm per step).
    """
    cdef CellArgs a
    cdef floating[:, :, :] dc_out = None  # no cell state
    cell_args(&a, 3, slabs, slab_steps, X.shape, W_xh.shape, W_hh.shape, h0.shape,
              H.shape[0], segments, lengths, True)
    check_cache_arrays(3, "HN", X.shape[1], W_hh.shape[1], G.shape, HN.shape, H.shape)
    check_backward(X.shape, W_xh.shape, W_hh.shape, h0.shape, dH.shape, dW_xh.shape,
                   dW_hh.shape, db_h.shape, dh0.shape)
    check_shape("db_hn", db_hn.shape, 1, W_hh.shape[1])
    check_state_outs(&a, X.shape, h0.shape, dX, dh_out, dc_out, norms_out,
                     norm_means)
    if X.shape[0] == 0 or X.shape[1] == 0 or W_hh.shape[1] == 0:
        return
    a.A, a.H, a.cache[0], a.cache_width[0] = &G[0, 0, 0], &H[0, 0, 0], &HN[0, 0, 0], 1
    a.dextra[0], a.n_extra = &db_hn[0], 1
    # the time loop turns G into dGh, HN into dA_n; then the weight gradients
    run_backward(&a, X, W_xh, W_hh, h0, dH, dW_xh, dW_hh, db_h, dh0, dX, dh_out, dc_out,
                 norms_out, norm_means, truncate, accumulate, n_threads, slabs,
                 backward_part, gru_gradient_part)


# ---------------------------------------------------------------- streaming

STEP_WORK = (3, 3, 1)  # input pre-activations A, hidden products Gh, HN
STEP_GATES, STEP_STATES, STEP_EXTRA = 3, 1, 1  # gate blocks; (h,); b_hn


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
