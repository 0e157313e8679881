"""Elman cell kernels: forward pass and BPTT (twin of bptt/reference/elman.py).

Design: time-major buffers, X (T, B, I), H (T, B, H). The input projection
and the weight gradients are single GEMMs over all T*B rows; only the
recurrence is sequential, one small GEMM per step (against W_hh packed once
per call, packedgemm.h) followed by one fused elementwise pass (bias +
activation forward, derivative backward) that the compiler vectorizes. The
backward recurrence accumulates dA[t] @ W_hh straight into dA[t-1] (beta =
1), so no carry buffer is needed; truncation skips that GEMM at window
starts. The whole time loop runs without the GIL and allocates nothing.

Threads: with n_threads > 1 the work splits into parts on bptt's thread
pool (threadpool.h): each part of the time loop is a slice of the batch for
every timestep (the sequences are independent, so the steps need no
synchronisation), and the large GEMMs split their rows; with slabs > 1 a
part is instead all the work of one slab of sequences (_cellparts.pxd,
"slabs"). BLAS itself runs single-threaded meanwhile (bptt/_threads.py
says why).

    A      = X @ W_xh.T                 one GEMM, A lives in H
    A[t]  += H[t-1] @ W_hh.T            per step (H[-1] := h0)
    H[t]   = f(A[t] + b_h)              fused elementwise pass
    dA[t]  = (dH[t] + dA[t+1] @ W_hh) * f'(H[t])
    dW_xh  = dA.T @ X ; dW_hh = dA[1:].T @ H[:-1] + dA[0].T @ h0
    db_h   = sum dA ; dh0 = dA[0] @ W_hh ; dX = dA @ W_xh

Gradient flow (optional): dh_out[t] = dH[t] + dA[t+1] @ W_hh, the total
dL/dH[t], copied from dA[t] just before f' turns it into dA[t], while its
rows are in cache; norms_out[0, t] the L2 norms of its rows, summed in the
same pass.
"""
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

cimport numpy as cnp
import numpy as np

from _activations cimport one_minus, tanh_
from _packed cimport pack_weights, recurrent_product
from _parallel cimport balanced_parts, bptt_parallel, import_threadpool
from _cellparts cimport (CellArgs, cell_args, check_backward, check_state_outs,
                        copy_rows, gradient_part, run_backward, run_forward)
from _checks cimport ANY, check_shape
from _rowops cimport part_start
from _stepping cimport (P_B_H, P_W_HH, P_W_HH_PACKED, P_W_XH,
                       P_W_XH_PACKED)

cnp.import_array()  # the Stepper and pack_weights use the NumPy C-API
import_threadpool()


cdef void bias_activate(floating* a, const floating* b_h, Py_ssize_t rows,
                        Py_ssize_t n_hidden, bint relu) noexcept nogil:
    """a[r, j] = f(a[r, j] + b_h[j]) in place."""
    cdef Py_ssize_t r, j
    cdef floating v
    for r in range(rows):
        if relu:
            for j in range(n_hidden):
                v = a[j] + b_h[j]
                # NaN must propagate, so test v <= 0 rather than v > 0
                a[j] = 0 if v <= 0 else v
        else:
            for j in range(n_hidden):
                a[j] = tanh_(a[j] + b_h[j])
        a += n_hidden


cdef void activation_backward(floating* da, const floating* h, Py_ssize_t size,
                              bint relu) noexcept nogil:
    """da *= f'(A), with f' taken from the outputs h = f(A)."""
    cdef Py_ssize_t i
    if relu:
        for i in range(size):
            da[i] = da[i] if h[i] > 0 else 0
    else:
        for i in range(size):
            da[i] = da[i] * one_minus(h[i] * h[i])


cdef void recurrence_forward(const floating* h0, const floating* W_hh,
                             const floating* W_hh_packed, const floating* b_h,
                             floating* H, int T, int B, int n_hidden, int b0, int b1,
                             bint relu) noexcept nogil:
    """The forward time loop for the batch rows b0..b1-1 (A already in H);
    W_hh_packed is pack_weights(W_hh, transpose=True)."""
    cdef Py_ssize_t step = <Py_ssize_t>B * n_hidden, t
    cdef int rows = b1 - b0
    cdef const floating* h_prev = h0 + <Py_ssize_t>b0 * n_hidden
    cdef floating* a
    if rows <= 0:
        return
    for t in range(T):
        a = H + t * step + <Py_ssize_t>b0 * n_hidden
        # A[t] += H[t-1] @ W_hh.T
        recurrent_product(rows, n_hidden, n_hidden, h_prev, n_hidden, W_hh, True,
                          W_hh_packed, 1, a, n_hidden)
        # H[t] = f(A[t] + b_h)
        bias_activate(a, b_h, rows, n_hidden, relu)
        h_prev = a


cdef void recurrence_backward(const floating* W_hh, const floating* W_hh_packed,
                              const floating* H, floating* dA,
                              floating* dh0, int T, int B, int n_hidden, int b0, int b1,
                              bint relu, int truncate, floating* dh_out,
                              Py_ssize_t out_step, Py_ssize_t out_row, double* norms,
                              Py_ssize_t norm_step, Py_ssize_t norm_row) noexcept nogil:
    """The backward time loop for the batch rows b0..b1-1 (dA holds dH on entry);
    W_hh_packed is pack_weights(W_hh, transpose=False); dh_out (T, B, H) with
    strides out_step, out_row, or NULL; norms (T, B) with strides norm_step,
    norm_row (the L2 norms of dh_out's rows), or NULL."""
    cdef Py_ssize_t step = <Py_ssize_t>B * n_hidden, t
    cdef Py_ssize_t offset = <Py_ssize_t>b0 * n_hidden
    cdef int rows = b1 - b0
    if rows <= 0:
        return
    for t in range(T - 1, -1, -1):
        if dh_out != NULL:
            # dh_out[t] = dH[t] + dA[t+1] @ W_hh, the total dL/dH[t]; its norms
            copy_rows(dA + t * step + offset, dh_out + t * out_step + b0 * out_row,
                      out_row, rows, n_hidden,
                      norms + t * norm_step + b0 * norm_row if norms != NULL else NULL,
                      norm_row)
        # dA[t] = (dH[t] + dA[t+1] @ W_hh) * f'(H[t]); the carry was added below
        activation_backward(dA + t * step + offset, H + t * step + offset,
                            <Py_ssize_t>rows * n_hidden, relu)
        if t > 0 and not (truncate > 0 and t % truncate == 0):
            # dA[t-1] (still dH[t-1]) += dA[t] @ W_hh
            recurrent_product(rows, n_hidden, n_hidden, dA + t * step + offset, n_hidden,
                              W_hh, False, W_hh_packed, 1, dA + (t - 1) * step + offset,
                              n_hidden)
    # dh0 = dA[0] @ W_hh
    recurrent_product(rows, n_hidden, n_hidden, dA + offset, n_hidden, W_hh, False,
                      W_hh_packed, 0, dh0 + offset, n_hidden)


cdef void forward_part_of(CellArgs* a, int part, int n_parts, floating tag) noexcept nogil:
    # the sequences b0..b1-1, every timestep
    recurrence_forward(<const floating*>a.state0[0], <const floating*>a.W_hh,
                       <const floating*>a.W_hh_packed, <const floating*>a.b_h,
                       <floating*>a.H, a.T, a.B, a.n_hidden, part_start(a.B, part, n_parts),
                       part_start(a.B, part + 1, n_parts), a.relu)


cdef void backward_part_of(CellArgs* a, int part, int n_parts, floating tag) noexcept nogil:
    # the sequences b0..b1-1, every timestep
    recurrence_backward(<const floating*>a.W_hh, <const floating*>a.W_hh_packed,
                        <const floating*>a.H, <floating*>a.A, <floating*>a.dstate0[0], a.T,
                        a.B, a.n_hidden, part_start(a.B, part, n_parts),
                        part_start(a.B, part + 1, n_parts), a.relu, a.truncate,
                        <floating*>a.state_out[0], a.out_strides[0], a.out_strides[1],
                        a.norms_out, a.norm_strides[1], a.norm_strides[2])


include "_cellentries.pxi"


def elman_forward(const floating[:, :, ::1] X not None,  # IN  (T, B, I)
                  const floating[:, ::1] W_xh not None,  # IN  (H, I)
                  const floating[:, ::1] W_hh not None,  # IN  (H, H)
                  const floating[::1] b_h not None,      # IN  (H,)
                  const floating[:, ::1] h0 not None,    # IN  (B, H)
                  bint relu,
                  floating[:, :, ::1] H not None,        # OUT (T, B, H)
                  int n_threads=1,                       # threads splitting the batch
                  int slabs=1,                           # batch slabs (_cellparts.pxd)
                  int slab_steps=0,                      # cache timesteps per slab (0: T)
                  const int64_t[:, ::1] segments=None):  # packed rows (_cellparts.pxd)
    """Run the recurrence over all timesteps and keep every hidden state.

    With ``slabs`` > 1, X (slabs*T, B, I), H likewise and h0 (slabs*B, H):
    independent slabs of sequences, one part each. With ``segments`` (int64
    (segments, 4): t0, t1, B, r0), X and H hold packed rows (rows, 1, .) of
    sequences of different lengths and h0 (n, H) (_cellparts.pxd,
    "segments").
    """
    cdef CellArgs a
    cell_args(&a, 1, slabs, slab_steps, X.shape, W_xh.shape, W_hh.shape, h0.shape,
              H.shape[0], segments)
    check_shape("b_h", b_h.shape, 1, W_hh.shape[0])
    check_shape("H", H.shape, 3, ANY, X.shape[1], W_hh.shape[1])
    if X.shape[0] == 0 or X.shape[1] == 0:
        return
    a.A = a.H = &H[0, 0, 0]  # A lives in H
    a.relu = relu
    run_forward(&a, X, W_xh, W_hh, b_h, h0, n_threads, slabs, forward_part)


def elman_backward(const floating[:, :, ::1] X not None,  # IN  (T, B, I)
                   const floating[:, ::1] W_xh not None,  # IN  (H, I), for dX
                   const floating[:, ::1] W_hh not None,  # IN  (H, H)
                   const floating[:, ::1] h0 not None,    # IN  (B, H)
                   const floating[:, :, ::1] H not None,  # IN  (T, B, H) from elman_forward
                   floating[:, :, ::1] dH not None,       # IN dL/dH, WORK: becomes dA
                   bint relu,
                   int truncate,                          # window length, 0: full BPTT
                   floating[:, ::1] dW_xh not None,       # OUT (H, I)
                   floating[:, ::1] dW_hh not None,       # OUT (H, H)
                   floating[::1] db_h not None,           # OUT (H,)
                   floating[:, ::1] dh0 not None,         # OUT (B, H)
                   bint accumulate=False,                 # add into dW_xh, dW_hh, db_h
                   floating[:, :, ::1] dX=None,           # OUT (T, B, I), optional
                   int n_threads=1,                       # threads splitting the work
                   int slabs=1,                           # batch slabs, as elman_forward
                   int slab_steps=0,                      # cache timesteps per slab (0: T)
                   floating[:, :, :] dh_out=None,         # OUT (T, B, H), optional
                   double[:, :, :] norms_out=None,        # OUT (1, T, B), optional
                   double[:, :] norm_means=None,          # OUT (1, T), optional
                   const int64_t[:, ::1] segments=None,   # packed pieces (_cellparts.pxd)
                   const int64_t[::1] lengths=None):      # sorted lengths, cuts by mask
    """Backpropagate through time; see the module docstring for the maths.

    With ``accumulate`` the weight gradients are added to what dW_xh, dW_hh
    and db_h hold, so a long sequence can be processed in chunks of
    timesteps (the caller passes H[s-1] as h0 and adds the returned dh0 of
    the later chunk into dH[-1]). The time loop splits the batch over
    ``n_threads``; the weight gradients split the timesteps. ``dh_out``
    (at least T steps, rows of H contiguous, other strides free: the
    time-major view of a batch-first array) receives the total dL/dH[t] of
    every step: dH[t] (with what the caller added into dH[-1]) plus the
    carry from step t+1 within the truncation window. With slabs it is (T,
    slabs*B, H), rows in h0's order. ``norms_out`` (float64, any strides; with
    dh_out only) receives the L2 norm of every row of dh_out, ``norms_out[0,
    t, b] = ||dh_out[t, b]||``, taken as the row is copied. With
    ``segments`` (int64 (pieces, 6): t0, t1, B, r0, truncate, cut) the
    arrays hold packed rows (rows, 1, .), dh_out and norms_out too, and
    truncate is 0 (_cellparts.pxd, "segments").

    ``norm_means`` (float64 (states, at least T), with norms_out and
    without segments) receives the mean over the rows of norms_out[k, t]
    (the batch's mean state-gradient norm per step).
    """
    cdef CellArgs a
    cdef floating[:, :, :] dc_out = None  # no cell state
    cell_args(&a, 1, slabs, slab_steps, X.shape, W_xh.shape, W_hh.shape, h0.shape,
              H.shape[0], segments, lengths, True)
    check_shape("H", H.shape, 3, ANY, X.shape[1], W_hh.shape[1])
    check_backward(X.shape, W_xh.shape, W_hh.shape, h0.shape, dH.shape, dW_xh.shape,
                   dW_hh.shape, db_h.shape, dh0.shape)
    check_state_outs(&a, X.shape, h0.shape, dX, dh_out, dc_out, norms_out,
                     norm_means)
    if X.shape[0] == 0 or X.shape[1] == 0:
        return
    # dA is built in dH (run_backward sets a.dH to it: slab_args offsets it
    # as a workspace)
    a.H, a.A, a.relu = &H[0, 0, 0], &dH[0, 0, 0], relu
    # the time loop turns dH into dA; then the weight gradients from dA
    run_backward(&a, X, W_xh, W_hh, h0, dH, dW_xh, dW_hh, db_h, dh0, dX, dh_out, dc_out,
                 norms_out, norm_means, truncate, accumulate, n_threads, slabs,
                 backward_part, gradient_part)


# ---------------------------------------------------------------- streaming

STEP_WORK = (1,)  # the pre-activations A (B, H)
STEP_GATES, STEP_STATES, STEP_EXTRA = 1, 1, 0  # gate blocks; (h,); no extra params


cdef void cell_step(const floating* x, floating** p, floating** s, floating** w,
                    int B, int I, int n_hidden, bint relu) noexcept nogil:
    """One timestep: h = f(x W_xh.T + h W_hh.T + b_h) (_stepper.pxi)."""
    cdef floating* a = w[0]
    # A = x @ W_xh.T
    recurrent_product(B, n_hidden, I, x, I, p[P_W_XH], True, p[P_W_XH_PACKED], 0,
                      a, n_hidden)
    # A += h @ W_hh.T
    recurrent_product(B, n_hidden, n_hidden, s[0], n_hidden, p[P_W_HH], True,
                      p[P_W_HH_PACKED], 1, a, n_hidden)
    # h = f(A + b_h)
    bias_activate(a, p[P_B_H], B, n_hidden, relu)
    memcpy(s[0], a, <size_t>B * n_hidden * sizeof(floating))


include "_stepper.pxi"
