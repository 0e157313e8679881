"""LSTM cell kernels: forward pass and BPTT (twin of bptt/reference/lstm.py).

Design: time-major buffers, X (T, B, I), G (T, B, 4H) with the gates i, f,
g, o side by side in each row (PyTorch's order), C and H (T, B, H). The
input projection of all four gates is one GEMM over all T*B rows; the
recurrence is one (B, H) x (H, 4H) GEMM per step (W_hh packed once per call,
packedgemm.h) followed by one fused elementwise pass (bias, the four gate
nonlinearities, the cell update) that the compiler vectorizes. Backward
reads the cached gate outputs, overwrites G with dG in place and accumulates
dG[t] @ W_hh straight into dH[t-1] (beta = 1); the cell-state carry dc lives
in dc0. The weight gradients are single GEMMs after the loop. The whole time
loop runs without the GIL and allocates nothing.

Threads: with n_threads > 1 the work splits into parts on bptt's thread
pool (threadpool.h): each part of the time loop is a slice of the batch for
every timestep (the sequences are independent, so the steps need no
synchronisation); the input projection and dX split the T*B rows, the
weight gradients the timesteps (rowops.pxd, weight_gradients_part). With
slabs > 1 a part is instead all the work of one slab of sequences
(_cellparts.pxd, "slabs"). BLAS itself runs single-threaded meanwhile
(bptt/_threads.py says why).

    A      = X @ W_xh.T                  one GEMM, A lives in G
    A[t]  += H[t-1] @ W_hh.T             per step (H[-1] := h0, C[-1] := c0)
    i, f, o = sigmoid(A[t] + b_h) ; g = tanh(A[t] + b_h)     (their blocks)
    C[t]   = f * C[t-1] + i * g ; H[t] = o * tanh(C[t])
    dc     = dc + dH[t] * o * (1 - tanh(C[t])**2)
    dG[t]  = [dc g i(1-i) | dc C[t-1] f(1-f) | dc i (1-g^2) | dH[t] tanh(C[t]) o(1-o)]
    dc     = dc * f ; dH[t-1] += dG[t] @ W_hh
    dW_xh  = dG.T @ X ; dW_hh = dG[1:].T @ H[:-1] + dG[0].T @ h0
    db_h   = sum dG ; dh0 = dG[0] @ W_hh ; dc0 = dc ; dX = dG @ W_xh

Gradient flow (optional): dh_out[t] = dH[t], complete (carry included) when
step t begins, and dc_out[t] = the dc of the second line, dL/dC[t], copied
row by row between the two loops of gates_backward, while they are in cache;
norms_out[0, t] and norms_out[1, t] the L2 norms of their rows, summed as
they are copied.
"""
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memset

from _activations cimport one_minus, sigmoid_, tanh_
from _packed cimport pack_weights, recurrent_product
from _parallel cimport balanced_parts, bptt_parallel, import_threadpool
from _stepping cimport (P_B_H, P_W_HH, P_W_HH_PACKED, P_W_XH,
                       P_W_XH_PACKED)
from _cellparts cimport (CellArgs, bptt_prefetch_write, cell_args, check_backward,
                        check_cache_arrays, check_state_outs, copy_rows, gradient_part,
                        run_backward, run_forward)
from _checks cimport check_shape
from _rowops cimport part_start

cimport numpy as cnp
import numpy as np

cnp.import_array()  # pack_weights allocates through the NumPy C-API
import_threadpool()


cdef void gates_forward(floating* a, const floating* b_h, const floating* c_prev,
                        floating* c, floating* h, Py_ssize_t rows,
                        Py_ssize_t n_hidden) noexcept nogil:
    """One step's elementwise pass over the (rows, 4H) pre-activations a.

    a <- [i | f | g | o] gate outputs ; c = f * c_prev + i * g ; h = o * tanh(c).
    """
    cdef Py_ssize_t r, j
    cdef Py_ssize_t H1 = n_hidden, H2 = 2 * n_hidden, H3 = 3 * n_hidden
    cdef floating cj
    # One loop per gate block, then the cell update, not one fused loop: each
    # touches two or three arrays, so the vectorized loops need fewer run-time
    # alias checks, which at H = 64 cost as much as a row's few vectors
    # (measured: the gate pass 0.85 us against 1.1 us per 16 x 64 step).
    for r in range(rows):
        for j in range(H2):  # i, f
            a[j] = sigmoid_(a[j] + b_h[j])
        for j in range(H2, H3):  # g
            a[j] = tanh_(a[j] + b_h[j])
        for j in range(H3, 4 * n_hidden):  # o
            a[j] = sigmoid_(a[j] + b_h[j])
        for j in range(n_hidden):
            cj = a[H1 + j] * c_prev[j] + a[j] * a[H2 + j]
            c[j] = cj
            h[j] = a[H3 + j] * tanh_(cj)
        a += 4 * n_hidden
        c_prev += n_hidden
        c += n_hidden
        h += n_hidden


cdef void gates_backward(floating* g, const floating* c, const floating* c_prev,
                         const floating* dh, floating* dc, Py_ssize_t rows,
                         Py_ssize_t n_hidden, floating* dc_out,
                         Py_ssize_t out_row, double* dc_norms,
                         Py_ssize_t norm_row) noexcept nogil:
    """One step's elementwise pass backward: gate outputs g become dG in place.

    dc (rows, H) enters as the carry from step t+1 and leaves as dc * f, the
    carry into step t-1; dc_out (rows, H; rows out_row apart), unless NULL,
    gets dL/dC[t], and dc_norms (rows norm_row apart), unless NULL, its rows'
    L2 norms.
    """
    cdef Py_ssize_t r, j
    cdef Py_ssize_t H1 = n_hidden, H2 = 2 * n_hidden, H3 = 3 * n_hidden
    cdef floating gi, gf, gg, go, tc, dcj, dhj
    # two loops per row (fewer arrays each, so fewer run-time alias checks
    # before the vectorized loops; see gates_forward)
    for r in range(rows):
        for j in range(n_hidden):
            go = g[H3 + j]
            tc = tanh_(c[j])
            dhj = dh[j]
            # backprop through h = o * tanh(c); dc holds dL/dc[t] until the next loop
            dc[j] = dc[j] + dhj * go * one_minus(tc * tc)
            g[H3 + j] = dhj * tc * go * one_minus(go)
        if dc_out != NULL:
            if r + 4 < rows:
                # rows of a batch-first array: out_row apart (copy_rows says why)
                bptt_prefetch_write(dc_out + (r + 4) * out_row, n_hidden * sizeof(floating))
            copy_rows(dc, dc_out + r * out_row, out_row, 1, n_hidden,
                      dc_norms + r * norm_row if dc_norms != NULL else NULL, norm_row)
        for j in range(n_hidden):
            gi = g[j]
            gf = g[H1 + j]
            gg = g[H2 + j]
            dcj = dc[j]
            # backprop through c = f * c_prev + i * g and the gate nonlinearities
            g[j] = dcj * gg * gi * one_minus(gi)
            g[H1 + j] = dcj * c_prev[j] * gf * one_minus(gf)
            g[H2 + j] = dcj * gi * one_minus(gg * gg)
            dc[j] = dcj * gf
        g += 4 * n_hidden
        c += n_hidden
        c_prev += n_hidden
        dh += n_hidden
        dc += n_hidden


cdef void recurrence_forward(const floating* h0, const floating* c0, const floating* W_hh,
                             const floating* W_hh_packed, const floating* b_h,
                             floating* G, floating* C, floating* H,
                             int T, int B, int n_hidden, int b0, int b1) noexcept nogil:
    """The forward time loop for the batch rows b0..b1-1 (A already in G)."""
    cdef int n_gates = 4 * n_hidden, rows = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>B * n_hidden, t
    cdef Py_ssize_t offset = <Py_ssize_t>b0 * n_hidden
    cdef const floating* h_prev = h0 + offset
    cdef const floating* c_prev = c0 + offset
    cdef floating* a
    if rows <= 0:
        return
    for t in range(T):
        a = G + 4 * (t * step + offset)
        # A[t] += H[t-1] @ W_hh.T
        recurrent_product(rows, n_gates, n_hidden, h_prev, n_hidden, W_hh, True,
                          W_hh_packed, 1, a, n_gates)
        # G[t] = gates(A[t] + b_h) ; C[t] = f*C[t-1] + i*g ; H[t] = o*tanh(C[t])
        gates_forward(a, b_h, c_prev, C + t * step + offset, H + t * step + offset,
                      rows, n_hidden)
        h_prev = H + t * step + offset
        c_prev = C + t * step + offset


cdef void recurrence_backward(const floating* W_hh, const floating* W_hh_packed,
                              const floating* c0, floating* dG,
                              const floating* C, floating* dH, floating* dh0,
                              floating* dc0, int T, int B, int n_hidden, int b0, int b1,
                              int truncate, floating* dh_out, floating* dc_out,
                              Py_ssize_t out_step, Py_ssize_t out_row, double* norms,
                              const Py_ssize_t* norm_strides) noexcept nogil:
    """The backward time loop for the batch rows b0..b1-1 (dG holds the gate
    outputs); dh_out, dc_out (T, B, H) with strides out_step, out_row, or NULL;
    norms (2, T, B) with strides norm_strides (the L2 norms of dh_out's and
    dc_out's rows), or NULL."""
    cdef int n_gates = 4 * n_hidden, rows = b1 - b0
    cdef Py_ssize_t step = <Py_ssize_t>B * n_hidden, t, j
    cdef Py_ssize_t offset = <Py_ssize_t>b0 * n_hidden
    cdef Py_ssize_t size = <Py_ssize_t>rows * n_hidden
    cdef floating* dc = dc0 + offset
    cdef const floating* c_prev
    cdef double* step_norms = NULL
    if rows <= 0:
        return
    for t in range(T - 1, -1, -1):
        c_prev = C + (t - 1) * step + offset if t > 0 else c0 + offset
        if norms != NULL:
            step_norms = norms + t * norm_strides[1] + b0 * norm_strides[2]
        if dh_out != NULL:
            # dh_out[t] = dH[t], which holds the carry from step t+1 by now; its norms
            copy_rows(dH + t * step + offset, dh_out + t * out_step + b0 * out_row,
                      out_row, rows, n_hidden, step_norms, norm_strides[2])
        # dG[t] from the gate outputs; dc <- carry into C[t-1]
        gates_backward(dG + 4 * (t * step + offset), C + t * step + offset, c_prev,
                       dH + t * step + offset, dc, rows, n_hidden,
                       dc_out + t * out_step + b0 * out_row if dc_out != NULL else NULL,
                       out_row,
                       step_norms + norm_strides[0] if step_norms and dc_out else NULL,
                       norm_strides[2])
        if t > 0 and truncate > 0 and t % truncate == 0:
            # no gradient crosses a window boundary
            for j in range(size):
                dc[j] = 0
        elif t > 0:
            # dH[t-1] += dG[t] @ W_hh
            recurrent_product(rows, n_hidden, n_gates, dG + 4 * (t * step + offset),
                              n_gates, W_hh, False, W_hh_packed, 1,
                              dH + (t - 1) * step + offset, n_hidden)
    # dh0 = dG[0] @ W_hh (dc0 already holds dc * f of step 0)
    recurrent_product(rows, n_hidden, n_gates, dG + 4 * offset, n_gates, W_hh, False,
                      W_hh_packed, 0, dh0 + offset, n_hidden)


cdef void forward_part_of(CellArgs* a, int part, int n_parts, floating tag) noexcept nogil:
    # the sequences b0..b1-1, every timestep
    recurrence_forward(<const floating*>a.state0[0], <const floating*>a.state0[1],
                       <const floating*>a.W_hh, <const floating*>a.W_hh_packed,
                       <const floating*>a.b_h, <floating*>a.A, <floating*>a.cache[0],
                       <floating*>a.H, a.T, a.B, a.n_hidden, part_start(a.B, part, n_parts),
                       part_start(a.B, part + 1, n_parts))


cdef void backward_part_of(CellArgs* a, int part, int n_parts, floating tag) noexcept nogil:
    # the sequences b0..b1-1, every timestep
    recurrence_backward(<const floating*>a.W_hh, <const floating*>a.W_hh_packed,
                        <const floating*>a.state0[1], <floating*>a.A,
                        <const floating*>a.cache[0], <floating*>a.dH,
                        <floating*>a.dstate0[0], <floating*>a.dstate0[1], a.T, a.B,
                        a.n_hidden, part_start(a.B, part, n_parts),
                        part_start(a.B, part + 1, n_parts), a.truncate,
                        <floating*>a.state_out[0], <floating*>a.state_out[1],
                        a.out_strides[0], a.out_strides[1], a.norms_out, a.norm_strides)


include "_cellentries.pxi"


def lstm_forward(const floating[:, :, ::1] X not None,  # IN  (T, B, I)
                 const floating[:, ::1] W_xh not None,  # IN  (4H, I)
                 const floating[:, ::1] W_hh not None,  # IN  (4H, H)
                 const floating[::1] b_h not None,      # IN  (4H,)
                 const floating[:, ::1] h0 not None,    # IN  (B, H)
                 const floating[:, ::1] c0 not None,    # IN  (B, H)
                 floating[:, :, ::1] G not None,        # OUT (T, B, 4H) gate outputs
                 floating[:, :, ::1] C not None,        # OUT (T, B, H) cell states
                 floating[:, :, ::1] H not None,        # OUT (T, B, H) hidden states
                 int n_threads=1,                       # threads splitting the batch
                 int slabs=1,                           # batch slabs (_cellparts.pxd)
                 int slab_steps=0,                      # cache timesteps per slab (0: T)
                 const int64_t[:, ::1] segments=None):  # packed rows (_cellparts.pxd)
    """Run the recurrence over all timesteps and keep what backward needs:
    the gate outputs G, the cell states C and the hidden states H.

    With ``slabs`` > 1, X, G, C and H are (slabs*T, B, .) and h0, c0
    (slabs*B, H): independent slabs of sequences, one part each. With
    ``segments``, packed rows as elman_forward's.
    """
    cdef CellArgs a
    cell_args(&a, 4, slabs, slab_steps, X.shape, W_xh.shape, W_hh.shape, h0.shape,
              H.shape[0], segments)
    check_shape("b_h", b_h.shape, 1, W_hh.shape[0])
    check_shape("c0", c0.shape, 2, h0.shape[0], h0.shape[1])
    check_cache_arrays(4, "C", X.shape[1], W_hh.shape[1], G.shape, C.shape, H.shape)
    if X.shape[0] == 0 or X.shape[1] == 0 or W_hh.shape[1] == 0:
        return
    # A = X @ W_xh.T lives in G; the cell states C are a cache array of width H
    a.state0[1], a.A, a.H = &c0[0, 0], &G[0, 0, 0], &H[0, 0, 0]
    a.cache[0], a.cache_width[0], a.state_rows[1] = &C[0, 0, 0], 1, &C[0, 0, 0]
    run_forward(&a, X, W_xh, W_hh, b_h, h0, n_threads, slabs, forward_part)


def lstm_backward(const floating[:, :, ::1] X not None,  # IN  (T, B, I)
                  const floating[:, ::1] W_xh not None,  # IN  (4H, I), for dX
                  const floating[:, ::1] W_hh not None,  # IN  (4H, H)
                  const floating[:, ::1] h0 not None,    # IN  (B, H)
                  const floating[:, ::1] c0 not None,    # IN  (B, H)
                  floating[:, :, ::1] G not None,        # IN gate outputs, WORK: becomes dG
                  const floating[:, :, ::1] C not None,  # IN  (T, B, H) cell states
                  const floating[:, :, ::1] H not None,  # IN  (T, B, H) hidden states
                  floating[:, :, ::1] dH not None,       # IN dL/dH, WORK: gets the carries
                  int truncate,                          # window length, 0: full BPTT
                  floating[:, ::1] dW_xh not None,       # OUT (4H, I)
                  floating[:, ::1] dW_hh not None,       # OUT (4H, H)
                  floating[::1] db_h not None,           # OUT (4H,)
                  floating[:, ::1] dh0 not None,         # OUT (B, H)
                  floating[:, ::1] dc0 not None,  # IN dL/dC[T-1] from later steps, OUT (B, H)
                  bint accumulate=False,                 # add into dW_xh, dW_hh, db_h
                  floating[:, :, ::1] dX=None,           # OUT (T, B, I), optional
                  int n_threads=1,                       # threads splitting the work
                  int slabs=1,                           # batch slabs, as lstm_forward
                  int slab_steps=0,                      # cache timesteps per slab (0: T)
                  floating[:, :, :] dh_out=None,         # OUT (T, B, H), optional
                  floating[:, :, :] dc_out=None,         # OUT (T, B, H), optional
                  double[:, :, :] norms_out=None,        # OUT (2, T, B), optional
                  double[:, :] norm_means=None,          # OUT (2, T), optional
                  const int64_t[:, ::1] segments=None,   # packed pieces (_cellparts.pxd)
                  const int64_t[::1] lengths=None):      # sorted lengths, cuts by mask
    """Backpropagate through time; see the module docstring for the maths.

    dc0 carries the cell-state gradient: it enters as dL/dC[T-1] from later
    timesteps (zeros for a whole sequence) and leaves as dL/dc0. With
    ``accumulate`` the weight gradients are added to what the outputs hold,
    so a long sequence can be processed in chunks from the end. The time
    loop splits the batch over ``n_threads``; the weight gradients split
    the timesteps, dX its rows. ``dh_out`` and ``dc_out`` (at least T
    steps, rows of H contiguous, other strides free and the same for both:
    the time-major views of batch-first arrays) receive the total dL/dH[t]
    and dL/dC[t] of every step: from dH[t] (with what the caller added into
    dH[-1]), the carries from step t+1 within the truncation window, and
    the dc0 passed in. With slabs they are (T, slabs*B, H), rows in h0's
    order. ``norms_out`` (float64, any strides; with dh_out only; (1, T, B)
    without dc_out) receives the L2 norm of every row of dh_out and dc_out,
    ``norms_out[0, t, b] = ||dh_out[t, b]||``, ``norms_out[1, t, b] =
    ||dc_out[t, b]||``, taken as the rows are copied. With ``segments``,
    packed rows as elman_backward's; dc0 then enters unread (no state
    after the run's last step) and leaves as dL/dc0.

    ``norm_means`` (float64 (states, at least T), with norms_out and
    without segments) receives the mean over the rows of norms_out[k, t]
    (the batch's mean state-gradient norm per step).
    """
    cdef CellArgs a
    cell_args(&a, 4, slabs, slab_steps, X.shape, W_xh.shape, W_hh.shape, h0.shape,
              H.shape[0], segments, lengths, True)
    check_shape("c0", c0.shape, 2, h0.shape[0], h0.shape[1])
    check_cache_arrays(4, "C", X.shape[1], W_hh.shape[1], G.shape, C.shape, H.shape)
    check_backward(X.shape, W_xh.shape, W_hh.shape, h0.shape, dH.shape, dW_xh.shape,
                   dW_hh.shape, db_h.shape, dh0.shape)
    check_shape("dc0", dc0.shape, 2, h0.shape[0], h0.shape[1])
    check_state_outs(&a, X.shape, h0.shape, dX, dh_out, dc_out, norms_out,
                     norm_means)
    if X.shape[0] == 0 or X.shape[1] == 0 or W_hh.shape[1] == 0:
        return
    a.state0[1], a.A, a.H = &c0[0, 0], &G[0, 0, 0], &H[0, 0, 0]
    a.cache[0], a.cache_width[0], a.dstate0[1] = &C[0, 0, 0], 1, &dc0[0, 0]
    a.state_rows[1] = &C[0, 0, 0]
    # the time loop turns G into dG; then the weight gradients from dG
    run_backward(&a, X, W_xh, W_hh, h0, dH, dW_xh, dW_hh, db_h, dh0, dX, dh_out, dc_out,
                 norms_out, norm_means, truncate, accumulate, n_threads, slabs,
                 backward_part, gradient_part)


# ---------------------------------------------------------------- streaming

STEP_WORK = (4,)  # the gate pre-activations (B, 4H)
STEP_GATES, STEP_STATES, STEP_EXTRA = 4, 2, 0  # gate blocks; (h, c); no extra params


cdef void cell_step(const floating* x, floating** p, floating** s, floating** w,
                    int B, int I, int n_hidden, bint relu) noexcept nogil:
    """One timestep: gates of x W_xh.T + h W_hh.T + b_h, then (h, c) in place
    (_stepper.pxi)."""
    cdef int n_gates = 4 * n_hidden
    cdef floating* a = w[0]
    # A = x @ W_xh.T + h @ W_hh.T
    recurrent_product(B, n_gates, I, x, I, p[P_W_XH], True, p[P_W_XH_PACKED], 0,
                      a, n_gates)
    recurrent_product(B, n_gates, n_hidden, s[0], n_hidden, p[P_W_HH], True,
                      p[P_W_HH_PACKED], 1, a, n_gates)
    # c = f*c + i*g ; h = o*tanh(c)  (each element reads its old c first)
    gates_forward(a, p[P_B_H], s[1], s[1], s[0], B, n_hidden)


include "_stepper.pxi"
