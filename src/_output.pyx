"""Output layer and losses (twin of bptt/reference/output.py).

Design: rows are timesteps x samples flattened (N = T * B, or B for a loss
at the last step). Training calls output_layer once per chunk of rows:
forward, loss and backward, split into row parts on bptt's thread pool
(threadpool.h): two per thread, or with ``parts`` the cells' slabs, one
each (rows in slab order; _cellparts.pxd, "slabs"). Within a part the projections are GEMMs over its rows and
the activation and the loss gradient one elementwise pass each; dW_oh and
db_o are summed per part and added up after. Losses are accumulated in
double whatever the dtype.

    Z = Hs @ W_oh.T + b_o ; Y = phi(Z)     phi: 0 identity, 1 sigmoid, 2 softmax
    mse:   L = mean((Y - y)^2),                dY = 2 (Y - y) / (N O), chained through phi
    bce:   L = mean(max(z,0) - z y + log1p(exp(-|z|))),  dZ = (Y - y) / (N O)
    ce:    L = mean(logsumexp(z) - z[label]),  dZ = (Y - onehot) / N
    dW_oh = dZ.T @ Hs ; db_o = sum_rows dZ ; dHs = dZ @ W_oh

With row weights w (the estimators' sample weights, one per row), every
row's loss and its dZ are multiplied by its w, and the caller's denominator
is the weights' sum (times O for mse and bce): the loss and gradient of the
weighted mean.
"""
from cython cimport floating
from libc.math cimport log, log1p, fabs
from libc.stdint cimport int64_t

from _activations cimport exp_, one_minus
cdef extern from "lossrows.h" nogil:
    double bptt_mse_rows_s(const float* y, const float* t, float* dz, long size, float scale)
    double bptt_mse_rows_d(const double* y, const double* t, double* dz, long size,
                           double scale)
from _blas cimport gemm
from _checks cimport ANY, check_code, check_positive, check_shape
from _fpmode cimport flush_enter, flush_leave, fp_mode
from _outlayer cimport IDENTITY, SIGMOID, SOFTMAX, output_rows
from _parallel cimport balanced_parts, bptt_parallel, import_threadpool
from _rowops cimport column_sums, part_start

cimport numpy as cnp
import numpy as np

cnp.import_array()
import_threadpool()

# output_layer's loss codes: positions in bptt.rnn.LOSSES
cdef enum:
    MSE = 0
    CROSS_ENTROPY = 1
    BINARY_CROSS_ENTROPY = 2


cdef int check_output_shapes(const Py_ssize_t* Hs, const Py_ssize_t* W_oh,
                             const Py_ssize_t* b_o, int activation) except -1:
    """The arguments both entry points share (_checks.pxd): W_oh (O, H) with
    O >= 1 (softmax and the cross-entropy read a row's first logit), b_o (O,)
    and a known activation code."""
    check_shape("W_oh", W_oh, 2, ANY, Hs[1])
    check_positive("output_size (the rows of W_oh)", W_oh[0])
    check_shape("b_o", b_o, 1, W_oh[0])
    return check_code("activation", activation, 3)


cdef int check_labels(const int64_t[::1] labels, int O, int N, int n_parts,
                      Py_ssize_t part_stride) except -1:
    """Raise ValueError unless every label output_layer reads (the rows of
    its parts, as layer_part_of finds them) lies in [0, O): a label indexes
    the row's logits and gradients."""
    cdef int part, r0, r1
    cdef Py_ssize_t r, start, bad = -1
    with nogil:
        for part in range(n_parts):
            r0, r1 = part_start(N, part, n_parts), part_start(N, part + 1, n_parts)
            start = part * part_stride if part_stride > 0 else r0
            for r in range(start, start + r1 - r0):
                if labels[r] < 0 or labels[r] >= O:
                    bad = r
                    break
            if bad >= 0:
                break
    if bad >= 0:
        raise ValueError(f"cross_entropy labels must lie in [0, {O}); target[{bad}] is "
                         f"{labels[bad]}.")
    return 0


def output_forward(const floating[:, ::1] Hs not None,    # IN  (N, H)
                   const floating[:, ::1] W_oh not None,  # IN  (O, H)
                   const floating[::1] b_o not None,      # IN  (O,)
                   int activation,
                   floating[:, ::1] Z not None,           # OUT (N, O)
                   floating[:, ::1] Y not None):          # OUT (N, O)
    """Z = Hs @ W_oh.T + b_o ; Y = phi(Z)."""
    cdef int N = Hs.shape[0], n_hidden = Hs.shape[1], O = W_oh.shape[0]
    check_output_shapes(Hs.shape, W_oh.shape, b_o.shape, activation)
    check_shape("Z", Z.shape, 2, N, O)
    check_shape("Y", Y.shape, 2, N, O)
    if N == 0:
        return
    cdef fp_mode saved
    with nogil:
        saved = flush_enter()  # one GEMM and a pass, outside the pool (_fpmode.pxd)
        output_rows(&Hs[0, 0], &W_oh[0, 0], &b_o[0], N, n_hidden, O, activation,
                    &Z[0, 0], &Y[0, 0])
        flush_leave(saved)


cdef double mse_rows(const floating* y, const floating* t, const floating* w,
                     int activation, floating* dz, Py_ssize_t N, Py_ssize_t O,
                     floating scale) noexcept nogil:
    """Sum of w_r (Y - y)^2 over N rows (w NULL: all 1); dz = dL/dZ with
    dY = scale w_r (Y - y)."""
    cdef Py_ssize_t size = N * O, r, j
    cdef double total = 0
    cdef floating dot
    # dY = 2 (Y - y) / (N O), the sum of squares vectorized (lossrows.h)
    if w == NULL:
        if floating is float:
            total = bptt_mse_rows_s(y, t, dz, size, scale)
        else:
            total = bptt_mse_rows_d(y, t, dz, size, scale)
    else:
        # one row at a time: dY_r = (scale w_r) (Y_r - y_r)
        for r in range(N):
            if floating is float:
                total += w[r] * bptt_mse_rows_s(y + r * O, t + r * O, dz + r * O, O,
                                                scale * w[r])
            else:
                total += w[r] * bptt_mse_rows_d(y + r * O, t + r * O, dz + r * O, O,
                                                scale * w[r])
    if activation == SIGMOID:
        # sigmoid' = Y (1 - Y)
        for r in range(size):
            dz[r] = dz[r] * y[r] * one_minus(y[r])
    elif activation == SOFTMAX:
        # dZ = Y * (dY - sum(dY * Y)) per row
        for r in range(N):
            dot = 0
            for j in range(O):
                dot = dot + dz[r * O + j] * y[r * O + j]
            for j in range(O):
                dz[r * O + j] = y[r * O + j] * (dz[r * O + j] - dot)
    return total


cdef double binary_cross_entropy_rows(const floating* zp, const floating* y,
                                      const floating* t, const floating* w, floating* dz,
                                      Py_ssize_t N, Py_ssize_t O,
                                      floating scale) noexcept nogil:
    """Sum of the binary cross-entropy from the logits, row r's weighted by
    w_r (w NULL: all 1); dz = scale w_r (Y - y)."""
    cdef Py_ssize_t r, k, size = N * O
    cdef double total = 0, z, row
    cdef floating wscale
    if w == NULL:
        for r in range(size):
            z = zp[r]
            # max(z, 0) - z y + log(1 + exp(-|z|))
            total += (z if z > 0 else 0) - z * t[r] + log1p(exp_(-fabs(z)))
            # dZ = (sigmoid(z) - y) / (N O)
            dz[r] = scale * (y[r] - t[r])
        return total
    for r in range(N):
        row = 0
        wscale = scale * w[r]
        for k in range(r * O, r * O + O):
            z = zp[k]
            row += (z if z > 0 else 0) - z * t[k] + log1p(exp_(-fabs(z)))
            # dZ = w_r (sigmoid(z) - y) / denominator
            dz[k] = wscale * (y[k] - t[k])
        total += w[r] * row
    return total


cdef double cross_entropy_rows(const floating* z, const floating* y,
                               const int64_t* labels, const floating* w, floating* dz,
                               Py_ssize_t N, Py_ssize_t O, floating scale) noexcept nogil:
    """Sum of the cross-entropy against labels, row r's weighted by w_r (w
    NULL: all 1); dz = scale w_r (Y - onehot)."""
    cdef Py_ssize_t r, j
    cdef double total = 0, zmax, sum_exp
    cdef floating row_scale = scale
    for r in range(N):
        if w != NULL:
            row_scale = scale * w[r]
        zmax = z[r * O]
        for j in range(1, O):
            zmax = z[r * O + j] if z[r * O + j] > zmax else zmax
        sum_exp = 0
        for j in range(O):
            sum_exp += exp_(<double>(z[r * O + j] - zmax))
        # -log softmax(z)[label] = max z + log sum exp(z - max z) - z[label]
        if w == NULL:
            total += zmax + log(sum_exp) - z[r * O + labels[r]]
        else:
            total += w[r] * (zmax + log(sum_exp) - z[r * O + labels[r]])
        # dZ = w_r (softmax(z) - onehot(label)) / N
        for j in range(O):
            dz[r * O + j] = row_scale * y[r * O + j]
        dz[r * O + labels[r]] -= row_scale
    return total


cdef struct Args:
    # one output_layer call, for its row parts on the thread pool; the
    # pointers are float* or double* as is_double says
    const void* Hs          # (N, H)
    const void* W_oh        # (O, H)
    const void* b_o         # (O,)
    const void* target      # (N, O), or NULL for labels
    const int64_t* labels   # (N,), or NULL
    const void* weights     # (N,) row weights, or NULL (all 1)
    void* Z                 # (N, O)
    void* Y                 # (N, O)
    void* dZ                # (N, O)
    void* dHs               # (N, H)
    void* scratch           # per part: [dW_oh (O, H) | db_o (O,)]
    double* losses          # per part: its rows' loss sum
    double denominator
    int N, n_hidden, O, activation, loss
    Py_ssize_t part_stride  # > 0: part p's rows of Hs and target start at p * part_stride
    bint is_double


cdef void layer_part_of(Args* a, int part, int n_parts, floating tag) noexcept nogil:
    cdef int r0 = part_start(a.N, part, n_parts), r1 = part_start(a.N, part + 1, n_parts)
    cdef int rows = r1 - r0, H = a.n_hidden, O = a.O
    # where this part's rows of Hs and of the target start
    cdef Py_ssize_t h0 = <Py_ssize_t>part * a.part_stride if a.part_stride > 0 else r0
    cdef const floating* Hs = <const floating*>a.Hs + h0 * H
    cdef floating* Z = <floating*>a.Z + <Py_ssize_t>r0 * O
    cdef floating* Y = <floating*>a.Y + <Py_ssize_t>r0 * O
    cdef floating* dZ = <floating*>a.dZ + <Py_ssize_t>r0 * O
    cdef floating* dW_oh_part = <floating*>a.scratch + <Py_ssize_t>part * (H + 1) * O
    cdef const floating* w = (<const floating*>a.weights + h0 if a.weights != NULL
                              else NULL)
    cdef floating scale
    if rows <= 0:
        return
    # Z = Hs @ W_oh.T + b_o ; Y = phi(Z)
    output_rows(Hs, <const floating*>a.W_oh, <const floating*>a.b_o, rows, H, O,
                a.activation, Z, Y)
    if a.loss == MSE:
        scale = 2.0 / a.denominator
        a.losses[part] = mse_rows(Y, <const floating*>a.target + h0 * O, w,
                                  a.activation, dZ, rows, O, scale)
    elif a.loss == BINARY_CROSS_ENTROPY:
        scale = 1.0 / a.denominator
        a.losses[part] = binary_cross_entropy_rows(
            Z, Y, <const floating*>a.target + h0 * O, w, dZ, rows, O, scale)
    else:
        scale = 1.0 / a.denominator
        a.losses[part] = cross_entropy_rows(Z, Y, a.labels + h0, w, dZ, rows, O, scale)
    # this part's dW_oh = dZ.T @ Hs
    gemm(True, False, O, H, rows, 1, dZ, O, Hs, H, 0, dW_oh_part, H)
    # this part's db_o = sum_rows dZ
    column_sums(dZ, rows, O, O, False, dW_oh_part + <Py_ssize_t>H * O)
    # dHs = dZ @ W_oh
    gemm(False, False, rows, H, O, 1, dZ, O, <const floating*>a.W_oh, H, 0,
         <floating*>a.dHs + <Py_ssize_t>r0 * H, H)


cdef void layer_part(void* args, int part, int n_parts) noexcept nogil:
    if (<Args*>args).is_double:
        layer_part_of(<Args*>args, part, n_parts, <double>0)
    else:
        layer_part_of(<Args*>args, part, n_parts, <float>0)


def output_layer(const floating[:, ::1] Hs not None,    # IN  (N, H)
                 const floating[:, ::1] W_oh not None,  # IN  (O, H)
                 const floating[::1] b_o not None,      # IN  (O,)
                 int activation,
                 int loss,  # 0 mse, 1 cross_entropy, 2 binary_cross_entropy
                 target,                                # IN  (N, O) floats, or (N,) int64 labels
                 double denominator,                    # elements (CE: rows) the mean runs over
                 floating[:, ::1] Z not None,           # OUT (N, O)
                 floating[:, ::1] Y not None,           # OUT (N, O)
                 floating[:, ::1] dZ not None,          # OUT (N, O)
                 floating[:, ::1] dW_oh not None,       # OUT (O, H)
                 floating[::1] db_o not None,           # OUT (O,)
                 floating[:, ::1] dHs not None,         # OUT (N, H)
                 bint accumulate=False,                 # add into dW_oh, db_o
                 int n_threads=1,                       # threads splitting the rows
                 int parts=0,                           # > 0: that many equal row parts
                 Py_ssize_t part_stride=0,              # > 0: Hs/target rows between parts
                 row_weights=None):                     # IN  (N,) like target's rows, or None
    """Forward, loss and backward of the output layer over N rows.

    Z = Hs @ W_oh.T + b_o ; Y = phi(Z) ; the loss summed over these rows /
    denominator (returned) ; dZ = dL/dZ ; dW_oh (+)= dZ.T @ Hs ;
    db_o (+)= sum_rows dZ ; dHs = dZ @ W_oh.

    With ``part_stride`` > 0 (the cells' slabs of a chunk of timesteps, each
    slab's rows part of a longer cache), N is dHs's rows, in ``parts``
    equal parts; part p reads N / parts rows of Hs and of the target from
    row p * part_stride on, and writes Z, Y, dZ and dHs rows p * N / parts on.

    ``row_weights`` (rows laid out as the target's) weights each row's loss
    and dZ; the denominator is then the weights' sum (times O for mse and
    binary_cross_entropy), giving the weighted mean.
    """
    cdef int N = Hs.shape[0] if part_stride == 0 else dHs.shape[0]
    cdef int n_hidden = Hs.shape[1], O = W_oh.shape[0]
    # parts: the cell kernels' batch slabs (_cellparts.pxd), so that each
    # thread reads the hidden states it wrote and writes the dL/dH it reads next
    cdef int n_parts = parts if 1 < parts <= N else balanced_parts(n_threads, N)
    cdef int part, r, j
    cdef Py_ssize_t needed = N  # rows of Hs and of the target read
    cdef Args a
    cdef const floating[:, ::1] target_rows
    cdef const int64_t[::1] labels
    cdef const floating[::1] weights
    cdef floating* block
    cdef double total = 0
    check_output_shapes(Hs.shape, W_oh.shape, b_o.shape, activation)
    check_code("loss", loss, 3)
    check_shape("Z", Z.shape, 2, N, O)
    check_shape("Y", Y.shape, 2, N, O)
    check_shape("dZ", dZ.shape, 2, N, O)
    check_shape("dW_oh", dW_oh.shape, 2, O, n_hidden)
    check_shape("db_o", db_o.shape, 1, O)
    check_shape("dHs", dHs.shape, 2, N, n_hidden)
    if part_stride < 0:
        raise ValueError(f"part_stride must be >= 0; got {part_stride}.")
    if part_stride > 0 and N > 0:
        needed = (parts - 1) * part_stride + N // parts if parts >= 1 else -1
        if parts < 1 or N % parts or needed > Hs.shape[0]:
            raise ValueError(
                f"part_stride={part_stride} needs parts >= 1 dividing N={N} and Hs of at "
                f"least (parts - 1) * part_stride + N / parts rows; got parts={parts}, "
                f"{Hs.shape[0]} rows."
            )
    if target is None:
        raise TypeError("target must be an array; got None.")
    if loss == CROSS_ENTROPY:
        labels = target
        check_shape("target (labels)", labels.shape, 1, needed, ANY, ANY, True)
        check_labels(labels, O, N, n_parts if n_parts == parts else 1,
                     part_stride if n_parts == parts else 0)
        a.labels, a.target = &labels[0] if N > 0 else NULL, NULL
    else:
        target_rows = target
        check_shape("target", target_rows.shape, 2, needed, O, ANY, True)
        a.labels, a.target = NULL, &target_rows[0, 0] if N > 0 else NULL
    a.weights = NULL
    if row_weights is not None:
        weights = row_weights
        check_shape("row_weights", weights.shape, 1, needed, ANY, ANY, True)
        a.weights = &weights[0] if N > 0 else NULL
    if N == 0:
        return 0.0
    scratch = np.empty(n_parts * (n_hidden + 1) * O,
                       dtype=np.float64 if floating is double else np.float32)
    losses = np.empty(n_parts, dtype=np.float64)
    a.Hs, a.W_oh, a.b_o = &Hs[0, 0], &W_oh[0, 0], &b_o[0]
    a.Z, a.Y, a.dZ, a.dHs = &Z[0, 0], &Y[0, 0], &dZ[0, 0], &dHs[0, 0]
    a.scratch, a.losses = cnp.PyArray_DATA(scratch), <double*>cnp.PyArray_DATA(losses)
    a.denominator, a.N, a.n_hidden, a.O = denominator, N, n_hidden, O
    # one part: its rows start at 0 (and may split across the threads)
    a.part_stride = part_stride if n_parts == parts else 0
    a.activation, a.loss, a.is_double = activation, loss, floating is double
    cdef fp_mode saved
    with nogil:
        # the parts' sums run outside the pool: flush here too (_fpmode.pxd)
        saved = flush_enter()
        bptt_parallel(layer_part, &a, n_parts, n_threads)
        # dW_oh (+)= the parts' dW_oh ; db_o likewise ; the loss
        for part in range(n_parts):
            block = <floating*>a.scratch + <Py_ssize_t>part * (n_hidden + 1) * O
            for r in range(O):
                for j in range(n_hidden):
                    # dW_oh holds garbage when not accumulating: never read it then
                    if accumulate or part > 0:
                        dW_oh[r, j] += block[r * n_hidden + j]
                    else:
                        dW_oh[r, j] = block[r * n_hidden + j]
                if accumulate or part > 0:
                    db_o[r] += block[n_hidden * O + r]
                else:
                    db_o[r] = block[n_hidden * O + r]
            total += a.losses[part]
        flush_leave(saved)
    return total / denominator
