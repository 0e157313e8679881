# The cells' kernel calls split into parts on bptt's thread pool
# (_parallel.pxd): one argument block for every cell, and the parts they
# share. A part function takes (args, part, n_parts); its typed body is a
# fused function that a tag argument specializes, and the untyped entry
# picks float or double by is_double.
cimport cython
from cython cimport floating

from libc.limits cimport INT_MAX
from libc.math cimport sqrt
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from _checks cimport ANY, check_shape
from _fpmode cimport flush_enter, flush_leave, fp_mode
from _packed cimport pack_weights
from _parallel cimport balanced_parts, bptt_parallel, bptt_part_fn
from _stepping cimport MAX_EXTRA, MAX_STATES
from _rowops cimport (add_gradient_parts, add_parts, backproject_rows, gradient_size,
                     part_start, project_rows, weight_gradients_part)

cimport numpy as cnp
import numpy as np

from _staterows cimport bptt_copy_squares_d, bptt_copy_squares_s, bptt_prefetch_write


# The slots a cell's own arrays go in: no field of CellArgs names a cell, so
# a new cell's arrays need no edit here. The bounds are the stepper's
# (_stepping.pxd: MAX_STATES state arrays, MAX_EXTRA extra parameters) and
# MAX_CACHE cache arrays beside A and H (LSTM: C; GRU: HN).
cdef enum:
    MAX_CACHE = 4


cdef struct CellArgs:
    # pointers are float* or double* as is_double says; G = n_gates / n_hidden
    const void* X            # (T, B, I)
    const void* W_xh         # (G*H, I)
    const void* W_xh_packed  # pack_weights(W_xh, transpose=True), forward only
    const void* W_hh         # (G*H, H)
    const void* W_hh_packed  # pack_weights(W_hh): transpose forward, not backward
    const void* b_h          # (G*H,)
    const void* extra[MAX_EXTRA]    # the cell's (H,) parameters after b_h (GRU: b_hn)
    const void* state0[MAX_STATES]  # (B, H) each: h0 (LSTM: and c0)
    void* A                  # (T, B, G*H) pre-activations, then their gradients
    void* H                  # (T, B, H) hidden states (Elman: A itself)
    void* cache[MAX_CACHE]   # the cell's other cache arrays (T, B, cache_width[k]*H)
    int cache_width[MAX_CACHE]  # in units of H (LSTM: C 1; GRU: HN 1)
    void* work               # (B, work_width*H) the cell's work rows (GRU: Gh 3)
    int work_width
    void* dH                 # (T, B, H) dL/dH (Elman: A itself)
    void* dstate0[MAX_STATES]  # (B, H) each: dh0 (LSTM: and dc0)
    void* dW_xh
    void* dW_hh
    void* db_h
    void* dextra[MAX_EXTRA]  # the gradients of extra, n_extra of them
    int n_extra
    void* dX                 # (T, B, I) or NULL
    # (T, B, H) strided, one per state array (dh_out, dc_out): the total
    # dL/dstate at every step, or NULL; with segments, packed rows (rows, 1,
    # H) or, with out_by_step, (steps, n, H) by step and sequence (below)
    void* state_out[MAX_STATES]
    Py_ssize_t out_strides[2]  # state_out's step and row strides, in elements
    bint out_by_step         # segments: state_out and norms_out by (step, sequence)
    int out_steps            # the steps of state_out, norms_out and norm_means
    double* norms_out        # (states, T, B) strided: L2 norms of state_out's rows
    Py_ssize_t norm_strides[3]  # norms_out's state, step and row strides, in elements
    void* scratch            # the gradient parts' blocks (weight_gradients_part)
    Py_ssize_t gradient_block  # elements of one scratch block (slabs: slab_args)
    bptt_part_fn slab_first  # slab_part runs both on a whole slab, in this order
    bptt_part_fn slab_second
    int T, B, n_input, n_hidden, n_gates, truncate   # (no "I": complex.h defines it)
    int cache_steps          # slabs: timesteps per slab of the cache arrays (>= T)
    bint relu, accumulate, is_double
    # packed segments ("segments" below); segments NULL: off
    const int64_t* segments  # (n_segments, seg_width): t0, t1, B, r0[, truncate, cut]
    Py_ssize_t n_segments
    int seg_width
    const int64_t* lengths   # the sorted lengths, for cuts by mask (backward), or NULL
    int n_groups             # groups of sequences in the table ("groups" below)
    # the cache array (rows, H) that holds state k after each row's step
    # (h: H, every cell; the LSTM's c: C); forward and backward read a
    # segment's initial state from it
    const void* state_rows[MAX_STATES]
    void* previous           # backward: (block rows, H), each row's previous hidden state
    Py_ssize_t block_row     # backward: the packed row of previous's first
    bptt_part_fn gradient    # backward: the cell's gradient part, over the packed rows


cdef inline void project_part_of(CellArgs* a, int part, int n_parts,
                                 floating tag) noexcept nogil:
    # rows of A = X @ W_xh.T
    project_rows(<const floating*>a.X, <const floating*>a.W_xh,
                 <const floating*>a.W_xh_packed, a.T * a.B, a.n_gates, a.n_input,
                 <floating*>a.A, part, n_parts)


cdef inline void project_part(void* args, int part, int n_parts) noexcept nogil:
    if (<CellArgs*>args).is_double:
        project_part_of(<CellArgs*>args, part, n_parts, <double>0)
    else:
        project_part_of(<CellArgs*>args, part, n_parts, <float>0)


cdef inline void gradient_part_of(CellArgs* a, int part, int n_parts,
                                  floating tag) noexcept nogil:
    # timesteps of dW_xh, dW_hh, db_h from dA (one (T, B, G*H) block); rows
    # of dX = dA @ W_xh
    weight_gradients_part(<const floating*>a.X, <const floating*>a.state0[0],
                          <const floating*>a.H, <const floating*>a.A, a.T, a.B, a.n_input,
                          a.n_hidden, a.n_gates, part, n_parts, a.accumulate,
                          <floating*>a.dW_xh, <floating*>a.dW_hh, <floating*>a.db_h,
                          <floating*>a.scratch)
    if a.dX != NULL:
        backproject_rows(<const floating*>a.A, <const floating*>a.W_xh, a.T * a.B,
                         a.n_gates, a.n_input, <floating*>a.dX, part, n_parts)


cdef inline void gradient_part(void* args, int part, int n_parts) noexcept nogil:
    if (<CellArgs*>args).is_double:
        gradient_part_of(<CellArgs*>args, part, n_parts, <double>0)
    else:
        gradient_part_of(<CellArgs*>args, part, n_parts, <float>0)


cdef inline object gradient_scratch(CellArgs* a, int n_parts, Py_ssize_t block):
    """Scratch for the gradient parts 1..n_parts-1, ``block`` elements each;
    points a.scratch at it and returns its owner (keep it alive)."""
    scratch = np.empty((n_parts - 1) * block,
                       dtype=np.float64 if a.is_double else np.float32)
    a.scratch = cnp.PyArray_DATA(scratch)
    return scratch


# ---------------------------------------------------------------- slabs
#
# With slabs > 1 a kernel's (T', B, .) arrays hold that many independent
# batch slabs one after another (T' = slabs * T; slab s is the sequences
# s*B..(s+1)*B-1 of the (slabs*B, .) state arrays); the cache arrays (the
# hidden states and gate activations BPTT keeps, A included except where A
# is dH) may hold cache_steps >= T timesteps per slab, the whole sequence of
# which a chunk of T timesteps is passed. One part does all of
# a slab's work: projection and time loop forward; time loop and weight
# gradients backward. The thread that claims part s (the caller claims the
# first) then finds the rows it reads in its own cache, phase after phase
# and call after call. When a time loop splits the batch and the other
# phases split rows or timesteps, about half of every array moves between
# the cores each time: cheap when the two cores share an L3, but this
# machine's two virtual cores sometimes run on different dies, where a
# cache line takes 4x longer to pass between them, and the 2-thread M step
# then ran 1.8x slower, slower than on one thread.

cdef inline void own_gradients(const CellArgs* a, int part, CellArgs* s) noexcept nogil:
    """Part ``part`` > 0 of a slabs' or groups' split writes its weight
    gradients into block part - 1 of a.scratch, laid out [dW_xh | dW_hh |
    db_h | dextra[0] | ...] (added to the real ones once
    every part is done), not accumulating; no scratch: nothing to do."""
    cdef Py_ssize_t item = sizeof(double) if a.is_double else sizeof(float)
    cdef Py_ssize_t H = a.n_hidden, G = a.n_gates, I = a.n_input
    cdef int k
    if a.scratch == NULL:
        return
    s.dW_xh = offset(a.scratch, (part - 1) * a.gradient_block * item)
    s.dW_hh = offset(s.dW_xh, G * I * item)
    s.db_h = offset(s.dW_hh, G * H * item)
    for k in range(a.n_extra):
        s.dextra[k] = offset(s.db_h, (G + k * H) * item)
    s.accumulate = False


cdef inline void slab_args(const CellArgs* a, int slab, CellArgs* s) noexcept nogil:
    """s = the arguments of slab ``slab`` of a (a.T, a.B are one slab's).

    Slab 0 writes (or adds) the weight gradients into the outputs; slab
    s > 0 writes its own into scratch block s - 1, laid out [dW_xh | dW_hh |
    db_h | dextra[0] | ...], for add_gradient_parts (and run_backward's
    sums of the extras)."""
    cdef Py_ssize_t rows = <Py_ssize_t>a.T * a.B * slab, batch = <Py_ssize_t>a.B * slab
    cdef Py_ssize_t cached = <Py_ssize_t>a.cache_steps * a.B * slab
    cdef Py_ssize_t item = sizeof(double) if a.is_double else sizeof(float)
    cdef Py_ssize_t H = a.n_hidden, G = a.n_gates, I = a.n_input
    cdef int k
    s[0] = a[0]
    s.X = offset(a.X, rows * I * item)
    s.A = offset(a.A, (rows if a.A == a.dH else cached) * G * item)
    s.H = offset(a.H, cached * H * item)
    for k in range(MAX_CACHE):
        s.cache[k] = offset(a.cache[k], cached * a.cache_width[k] * H * item)
    for k in range(MAX_STATES):
        s.state0[k] = offset(a.state0[k], batch * H * item)
        s.dstate0[k] = offset(a.dstate0[k], batch * H * item)
        # state_out (T, slabs*B, H): slab s is rows s*B.., as for the states
        s.state_out[k] = offset(a.state_out[k], batch * a.out_strides[1] * item)
    s.norms_out = <double*>offset(a.norms_out, batch * a.norm_strides[2] * sizeof(double))
    s.dH = offset(a.dH, rows * H * item)
    s.dX = offset(a.dX, rows * I * item)
    s.work = offset(a.work, batch * a.work_width * H * item)
    if slab > 0:
        own_gradients(a, slab, s)


cdef inline void slab_part(void* args, int slab, int n_slabs) noexcept nogil:
    """Part ``slab`` of bptt_parallel(slab_part, a, slabs, ...): a.slab_first
    and then a.slab_second, each as the one part of that slab's work (a
    cell's projection and time loop forward; time loop and weight
    gradients backward)."""
    cdef CellArgs s
    slab_args(<CellArgs*>args, slab, &s)
    s.slab_first(&s, 0, 1)
    s.slab_second(&s, 0, 1)


cdef inline void run_phases(CellArgs* a, int slabs, int n_threads, bptt_part_fn first,
                            int first_parts, bptt_part_fn second,
                            int second_parts) noexcept nogil:
    """A kernel's two phases on the thread pool: ``first`` split into
    first_parts parts, then ``second`` into second_parts; with slabs > 1,
    both on each slab as one part (slab_part) instead."""
    if slabs > 1:
        a.slab_first, a.slab_second = first, second
        bptt_parallel(slab_part, a, slabs, n_threads)
    else:
        bptt_parallel(first, a, first_parts, n_threads)
        bptt_parallel(second, a, second_parts, n_threads)


# ---------------------------------------------------------------- segments
#
# Sequences of different lengths run *packed* (bptt/_bptt.py, Layout): sorted
# longest first, then time-major with only the sequences still running at
# each timestep, so X, the cache arrays, dH, dX and the state outputs are
# (rows, 1, .) arrays of packed rows. A *segment* is a run of timesteps
# t0..t1-1 with the same batch B, rows r0.. onwards: a (t1-t0, B, .) block
# of every array, which the cells' part functions run as they run a whole
# call (block_args points a CellArgs at it). One kernel call runs a whole
# run of a cell: the table of segments (int64, one row each: t0, t1, B, r0)
# is looped here, without the GIL, so the weights are packed, the input
# projection and the weight gradients are GEMMs over all rows, and the
# arguments are checked once a call instead of once a segment.
#
# A segment's initial state is the state after timestep t0-1 of its B
# sequences: the first B rows of that step in the cache array that holds
# each state (state_rows; t0 = 0: the call's state0). Backward, the table's
# rows are *pieces* (Layout.pieces: segments cut further at truncation
# windows) with two more columns: the piece's truncate (its kernel window,
# in its own time) and its cut, what crosses its start t0 > 0 backward: 0
# every row's gradient, -1 none, k > 0 all but that of the rows j with
# (lengths[j] - t0) % k == 0 (a reversed run's windows, each at its own
# sequence's phase). The gradient w.r.t. the state before a piece, which
# the cell's time loop leaves in dstate0, is the carry into the piece
# before it (segments_backward), as the driver passed it between calls:
# state 0's (h) enters added into dH at that piece's last step, the others
# (the LSTM's c) through dstate0 itself, which the cell reads as dL/dstate
# after its last step; rows the later piece did not have carry nothing.
#
# A table may hold several *groups* of sequences one after another: a row
# with t0 = 0 after the first starts a group, whose sequences are the next
# rows of state0 (and of lengths and dstate0) and whose rows follow the
# rows of the group before it. A call then runs each group whole as one
# part on the thread pool (group_args; its own time loops, projections and
# weight gradients, one thread each), as a slab does, so the driver splits
# a batch over threads in one call per run; the groups' weight gradients
# are added at the end as the slabs' are.
#
# The state gradients (dh_out, dc_out and their norms) may be given either
# as packed rows, (rows, 1, H), or *by step*: (steps, n, H) with n = h0's
# rows, any strides, where a segment's row j at timestep t is the element
# (t, p + j), p its group's first row of h0 (sorted longest first, a
# segment's B sequences are its group's first B). So the driver passes the
# time-major view of the batch-first arrays it returns, a reversed run's
# with its steps reversed (a negative step stride) on sequences of one
# length, and no second pass copies packed rows into them: that pass cost
# a 2-layer bidirectional Elman M step 6%. (With n = 1 both forms are the
# same.)

cdef inline int check_segments(const int64_t[:, ::1] table, const int64_t[::1] lengths,
                               bint backward, Py_ssize_t rows, Py_ssize_t n) except -1:
    """Raise ValueError unless ``table`` is a segments table (see above) of
    ``rows`` packed rows whose groups' first timesteps have n rows in all:
    (segments, 4 or more) forward, (pieces, 6) backward, consecutive,
    non-increasing batches within a group, each piece's r0 where the one
    before it ends; cuts by mask need ``lengths`` (n,). Returns the number
    of groups."""
    cdef Py_ssize_t i, t = 0, r = 0, batch = n, width = 6 if backward else 4, states = 0
    cdef int groups = 0
    cdef int64_t t0, t1, B, r0
    if table.shape[0] == 0 or (table.shape[1] != 6 if backward else table.shape[1] < 4):
        raise ValueError(f"segments must have shape (segments, {width}"
                         f"{'' if backward else ' or more'}) with at least one row; got "
                         f"{(table.shape[0], table.shape[1])}.")
    for i in range(table.shape[0]):
        t0, t1, B, r0 = table[i, 0], table[i, 1], table[i, 2], table[i, 3]
        if t0 == 0:  # a group starts: its sequences are the next rows of h0
            t, batch = 0, n - states
            groups += 1
        if (t0 != t or t1 <= t0 or B < 1 or B > batch or r0 != r
                or (i == 0 and t0 != 0)):
            raise ValueError(
                f"segments row {i} (t0, t1, B, r0) = {(t0, t1, B, r0)} does not follow "
                f"the rows before it: expected t0 = {t} (or 0, a new group), t1 > t0, "
                f"1 <= B <= {batch} (h0's rows not taken by a group before it) and "
                f"r0 = {r}.")
        if t0 == 0:
            states += B
        if backward and (table[i, 4] < 0 or table[i, 5] < -1
                         or (table[i, 5] > 0 and lengths is None)):
            raise ValueError(
                f"segments row {i}: truncate must be >= 0 and cut -1, 0 or a window "
                f"k > 0 (which needs lengths); got truncate {table[i, 4]}, cut "
                f"{table[i, 5]}.")
        t, r, batch = t1, r0 + (t1 - t0) * B, B
        if t > INT_MAX:
            raise ValueError(f"segments run to timestep {t}: too many for the kernels.")
    if states != n:
        raise ValueError(f"the segments' groups start with {states} sequences in all; h0 "
                         f"has {n} rows.")
    if r != rows:
        raise ValueError(f"segments cover {r} rows; X has {rows}.")
    if lengths is not None and lengths.shape[0] != n:
        raise ValueError(f"lengths must have shape ({n},); got ({lengths.shape[0]},).")
    return groups


cdef enum:
    # Rows of a block: forward, the input projection runs block by block
    # just before the block's time loop reads it, so the block's A (at most
    # this many bytes) is still in L2; backward, the weight gradients run
    # every BLOCK_ROWS rows or so, just after the time loop wrote their dA,
    # as the one-layer driver's chunks do (TRAIN_CHUNK_ROWS). One pass over
    # all rows at the end read them back from L3 (GRU: its backward took
    # as long as the call per segment it replaced).
    BLOCK_BYTES = 1 << 18
    BLOCK_ROWS = 1024


cdef inline void block_args(const CellArgs* a, Py_ssize_t r0, Py_ssize_t previous,
                            Py_ssize_t t, int T, int B, CellArgs* s) noexcept nogil:
    """s = the arguments of T timesteps of B packed rows from row r0, which
    is timestep t's first, from the state in the rows from ``previous``
    (state_rows; -1: the call's state0). dstate0 and work stay the call's
    (a block's B rows are their first), as do state_out's and norms_out's
    rows by step (out_by_step; group_args offsets them)."""
    cdef Py_ssize_t item = sizeof(double) if a.is_double else sizeof(float)
    cdef Py_ssize_t H = a.n_hidden, G = a.n_gates, I = a.n_input
    cdef int k
    s[0] = a[0]
    s.T, s.B = T, B
    s.X = offset(a.X, r0 * I * item)
    s.A = offset(a.A, r0 * G * item)
    s.H = offset(a.H, r0 * H * item)
    for k in range(MAX_CACHE):
        s.cache[k] = offset(a.cache[k], r0 * a.cache_width[k] * H * item)
    for k in range(MAX_STATES):
        if previous >= 0 and a.state0[k] != NULL:
            s.state0[k] = offset(a.state_rows[k], previous * H * item)
        if a.out_by_step:  # (steps, n, H): step t's row j is (t, j)
            s.state_out[k] = offset(a.state_out[k], t * a.out_strides[0] * item)
        else:  # (rows, 1, H): packed row r0 + u*B + j is step u's row j
            s.state_out[k] = offset(a.state_out[k], r0 * a.out_strides[0] * item)
    if a.out_by_step:
        s.norms_out = <double*>offset(a.norms_out, t * a.norm_strides[1] * sizeof(double))
    else:
        s.out_strides[0], s.out_strides[1] = B * a.out_strides[0], a.out_strides[0]
        s.norms_out = <double*>offset(a.norms_out, r0 * a.norm_strides[1] * sizeof(double))
        s.norm_strides[1], s.norm_strides[2] = B * a.norm_strides[1], a.norm_strides[1]
    s.dH = offset(a.dH, r0 * H * item)
    s.dX = offset(a.dX, r0 * I * item)


cdef inline Py_ssize_t previous_row(const CellArgs* a, Py_ssize_t i) noexcept nogil:
    """The first row of the timestep before segment i (the last of segment
    i - 1), or -1 for segment 0."""
    cdef const int64_t* row = a.segments + i * a.seg_width
    return row[3] - row[2 - a.seg_width] if row[0] > 0 else -1


cdef inline int block_steps(int B, Py_ssize_t rows, int truncate) noexcept nogil:
    """Timesteps of a block of about ``rows`` rows of B, a multiple of
    ``truncate`` (a block starts a window, as a call's first step does)."""
    cdef Py_ssize_t steps = max(1, rows // B)
    if truncate > 0:
        steps = (steps + truncate - 1) // truncate * truncate
    return <int>min(steps, <Py_ssize_t>INT_MAX)


cdef inline void segments_forward(CellArgs* a, int n_threads,
                                  bptt_part_fn forward_part) noexcept nogil:
    """Every segment in turn, block by block: the block's input projection
    (split by rows), then its time loop (split by batch rows, as a call's)."""
    cdef CellArgs s
    cdef Py_ssize_t i, t0, r0, prev
    cdef int T, B, u, steps
    cdef Py_ssize_t item = sizeof(double) if a.is_double else sizeof(float)
    for i in range(a.n_segments):
        t0 = a.segments[i * a.seg_width]
        T = <int>(a.segments[i * a.seg_width + 1] - t0)
        B = <int>a.segments[i * a.seg_width + 2]
        r0, prev = a.segments[i * a.seg_width + 3], previous_row(a, i)
        steps = block_steps(B, BLOCK_BYTES // max(1, a.n_gates * item), 0)
        u = 0
        while u < T:
            block_args(a, r0 + <Py_ssize_t>u * B, prev, t0 + u, min(steps, T - u), B, &s)
            bptt_parallel(project_part, &s, balanced_parts(n_threads, s.T * B), n_threads)
            bptt_parallel(forward_part, &s, min(n_threads, B), n_threads)
            prev = r0 + <Py_ssize_t>(u + s.T - 1) * B
            u += steps


@cython.cdivision(True)
cdef inline void segments_backward_of(CellArgs* a, int n_threads,
                                      bptt_part_fn backward_part,
                                      floating tag) noexcept nogil:
    """The pieces from the last, block by block: each block's time loop
    with the carry from the block after it (dstate0 holds it, ``valid`` of
    its rows; section above), and the weight gradients of the rows since
    the last ones' once there are BLOCK_ROWS of them (segments_gradients)."""
    cdef CellArgs s
    cdef Py_ssize_t i, j, r, H = a.n_hidden, valid = 0, t0, cut, r0, prev, end = a.T
    cdef int k, T, B, steps, u, truncate
    cdef bint first = True
    cdef floating* last
    cdef const floating* carry = <const floating*>a.dstate0[0]
    # end: the rows after the table's last (a.T rows in all; a group's own)
    end = a.segments[(a.n_segments - 1) * 6 + 3] + (
        a.segments[(a.n_segments - 1) * 6 + 1]
        - a.segments[(a.n_segments - 1) * 6]) * a.segments[(a.n_segments - 1) * 6 + 2]
    for i in range(a.n_segments - 1, -1, -1):
        t0, T = a.segments[i * 6], <int>(a.segments[i * 6 + 1] - a.segments[i * 6])
        B, r0 = <int>a.segments[i * 6 + 2], a.segments[i * 6 + 3]
        truncate, cut = <int>a.segments[i * 6 + 4], a.segments[i * 6 + 5]
        steps = block_steps(B, BLOCK_ROWS, truncate)
        u = (T - 1) // steps * steps
        while u >= 0:
            prev = r0 + <Py_ssize_t>(u - 1) * B if u > 0 else previous_row(a, i)
            block_args(a, r0 + <Py_ssize_t>u * B, prev, t0 + u, min(steps, T - u), B, &s)
            s.truncate = truncate
            # h's carry into dH at the block's last step
            last = <floating*>s.dH + <Py_ssize_t>(s.T - 1) * B * H
            for j in range(valid * H):
                last[j] += carry[j]
            # the others' through dstate0; none where the later block had no row
            for k in range(1, MAX_STATES):
                if a.dstate0[k] != NULL and B > valid:
                    memset(<floating*>a.dstate0[k] + valid * H, 0,
                           <size_t>((B - valid) * H) * sizeof(floating))
            bptt_parallel(backward_part, &s, min(n_threads, B), n_threads)
            if u > 0:
                # a block starts a window of the piece's truncate
                valid = 0 if truncate > 0 else B
            elif t0 > 0:
                valid = 0 if cut == -1 else B
                if cut > 0:
                    for j in range(B):
                        if (a.lengths[j] - t0) % cut == 0:
                            for k in range(MAX_STATES):
                                if a.dstate0[k] != NULL:
                                    memset(<floating*>a.dstate0[k] + j * H, 0,
                                           <size_t>H * sizeof(floating))
            r = r0 + <Py_ssize_t>u * B
            if end - r >= BLOCK_ROWS or r == a.segments[3]:
                segments_gradients(a, r, end, first, n_threads, tag)
                first, end = False, r
            u -= steps


cdef inline void segments_gradients(CellArgs* a, Py_ssize_t start, Py_ssize_t stop,
                                    bint first, int n_threads,
                                    floating tag) noexcept nogil:
    """The weight gradients of packed rows start..stop-1 (written, or added
    when not ``first`` or with accumulate), in parts (segments_gradient_part;
    at most run_backward's scratch holds, none empty) whose sums add up as
    run_backward's do."""
    cdef CellArgs g
    cdef Py_ssize_t size = gradient_size(a.n_gates, a.n_input, a.n_hidden)
    cdef int k, gradient_parts = balanced_parts(n_threads, <int>(stop - start))
    block_args(a, start, -1, 0, <int>(stop - start), 1, &g)
    g.H, g.block_row = a.H, start  # gather_previous reads the whole cache
    g.accumulate = a.accumulate or not first
    bptt_parallel(segments_gradient_part, &g, gradient_parts, n_threads)
    add_gradient_parts(<floating*>a.dW_xh, <floating*>a.dW_hh, <floating*>a.db_h,
                       a.n_gates, a.n_input, a.n_hidden, <floating*>a.scratch,
                       a.gradient_block, gradient_parts)
    for k in range(a.n_extra):
        add_parts(<floating*>a.dextra[k], <floating*>a.scratch + size + k * a.n_hidden,
                  a.n_hidden, a.gradient_block, gradient_parts - 1)


cdef inline void segments_backward(CellArgs* a, int n_threads,
                                   bptt_part_fn backward_part) noexcept nogil:
    if a.is_double:
        segments_backward_of(a, n_threads, backward_part, <double>0)
    else:
        segments_backward_of(a, n_threads, backward_part, <float>0)


cdef inline Py_ssize_t largest_block(const CellArgs* a) noexcept nogil:
    """The most rows segments_gradients is given at once (a.previous's)."""
    cdef Py_ssize_t i, B, T, most = 0
    for i in range(a.n_segments):
        T = a.segments[i * 6 + 1] - a.segments[i * 6]
        B = a.segments[i * 6 + 2]
        most = max(most, min(T, <Py_ssize_t>block_steps(<int>B, BLOCK_ROWS,
                                                        <int>a.segments[i * 6 + 4])) * B)
    return min(<Py_ssize_t>a.T, BLOCK_ROWS - 1 + most)


cdef inline void gather_previous(const CellArgs* a, Py_ssize_t r_start,
                                 Py_ssize_t r_stop) noexcept nogil:
    """Rows r_start..r_stop-1 (absolute) of each packed row's previous
    hidden state, into a.previous from its row a.block_row: row r - B
    within its segment, the first B rows of the step before it at its
    first step (state0 at t = 0)."""
    cdef Py_ssize_t i, t0, B, r0, r1, lo, hi, prev = 0
    cdef Py_ssize_t item = sizeof(double) if a.is_double else sizeof(float)
    cdef Py_ssize_t row = a.n_hidden * item
    cdef char* out = <char*>a.previous - a.block_row * row
    cdef const char* H = <const char*>a.H
    for i in range(a.n_segments):
        t0, B, r0 = a.segments[i * a.seg_width], a.segments[i * a.seg_width + 2], \
            a.segments[i * a.seg_width + 3]
        r1 = r0 + (a.segments[i * a.seg_width + 1] - t0) * B
        if r0 < r_stop and r1 > r_start:
            # the first step's rows: from the step before (or state0)
            lo, hi = max(r_start, r0), min(r_stop, r0 + B)
            if hi > lo:
                memcpy(out + lo * row,
                       (H + (prev + lo - r0) * row) if t0 > 0 else
                       (<const char*>a.state0[0] + (lo - r0) * row),
                       <size_t>((hi - lo) * row))
            # the others: the row B before
            lo, hi = max(r_start, r0 + B), min(r_stop, r1)
            if hi > lo:
                memcpy(out + lo * row, H + (lo - B) * row, <size_t>((hi - lo) * row))
        prev = r1 - B


cdef inline void segments_gradient_part(void* args, int part, int n_parts) noexcept nogil:
    """Part ``part`` of the weight gradients of a block of packed rows (its
    X, A, cache and dX from the block's first row a.block_row): its rows of
    a.previous gathered, then the cell's gradient part as over one sequence
    of T = rows steps (B = 1) whose hidden states, one step late, are
    a.previous: dW_hh pairs each row's dA with its previous state."""
    cdef CellArgs* a = <CellArgs*>args
    cdef CellArgs g
    cdef Py_ssize_t item = sizeof(double) if a.is_double else sizeof(float)
    gather_previous(a, a.block_row + part_start(a.T, part, n_parts),
                    a.block_row + part_start(a.T, part + 1, n_parts))
    g = a[0]
    g.state0[0] = a.previous
    g.H = offset(a.previous, a.n_hidden * item)
    a.gradient(&g, part, n_parts)


cdef inline void group_args(const CellArgs* a, int group, CellArgs* s) noexcept nogil:
    """s = the arguments of group ``group`` of a's table (section
    "segments"): its rows of the table, its rows of state0, dstate0, work,
    lengths and (out_by_step) state_out and norms_out, its own block of
    a.previous (backward); group g > 0 writes its weight gradients into
    scratch block g - 1 (own_gradients), for run_backward to add."""
    cdef Py_ssize_t item = sizeof(double) if a.is_double else sizeof(float)
    cdef Py_ssize_t H = a.n_hidden
    cdef Py_ssize_t i, first = 0, base = 0, count
    cdef int g = -1, k
    for i in range(a.n_segments):
        if a.segments[i * a.seg_width] == 0:
            g += 1
            if g == group:
                first = i
                break
            base += a.segments[i * a.seg_width + 2]
    count = 1
    while (first + count < a.n_segments
           and a.segments[(first + count) * a.seg_width] != 0):
        count += 1
    s[0] = a[0]
    s.segments, s.n_segments, s.n_groups = a.segments + first * a.seg_width, count, 1
    for k in range(MAX_STATES):
        s.state0[k] = offset(a.state0[k], base * H * item)
        s.dstate0[k] = offset(a.dstate0[k], base * H * item)
        if a.out_by_step:
            s.state_out[k] = offset(a.state_out[k], base * a.out_strides[1] * item)
    if a.out_by_step:
        s.norms_out = <double*>offset(a.norms_out, base * a.norm_strides[2] * sizeof(double))
    s.work = offset(a.work, base * a.work_width * H * item)
    if a.lengths != NULL:
        s.lengths = a.lengths + base
    if a.previous != NULL:  # backward (a table of pieces)
        s.previous = offset(a.previous, group * largest_block(a) * H * item)
    if group > 0:
        own_gradients(a, group, s)


cdef inline void group_forward_part(void* args, int group, int n_groups) noexcept nogil:
    """Part ``group``: that group's segments_forward on one thread, with the
    cell's time loop a.slab_second."""
    cdef CellArgs s
    group_args(<CellArgs*>args, group, &s)
    segments_forward(&s, 1, s.slab_second)


cdef inline void group_backward_part(void* args, int group, int n_groups) noexcept nogil:
    """Part ``group``: that group's segments_backward on one thread, with the
    cell's time loop a.slab_second."""
    cdef CellArgs s
    group_args(<CellArgs*>args, group, &s)
    segments_backward(&s, 1, s.slab_second)


cdef inline void* offset(const void* p, Py_ssize_t nbytes) noexcept nogil:
    """p + nbytes, NULL kept NULL."""
    return NULL if p == NULL else <void*>(<const char*>p + nbytes)


cdef inline int check_slabs(int slabs, Py_ssize_t steps, Py_ssize_t rows,
                            Py_ssize_t state_rows) except -1:
    """One slab's T for a kernel given slabs; raises ValueError on shapes
    that do not split."""
    if slabs < 1 or steps % slabs or state_rows != rows * slabs:
        raise ValueError(
            f"slabs={slabs} needs X of shape (slabs*T, B, I) and states of "
            f"shape (slabs*B, H); got {steps} timesteps, B={rows} and "
            f"{state_rows} state rows."
        )
    return <int>(steps // slabs)


cdef inline int check_cache(int slabs, int T, int slab_steps,
                            Py_ssize_t cache_rows) except -1:
    """The cache arrays' timesteps per slab (slab_steps, or T when 0); raises
    ValueError when cache arrays of cache_rows timesteps cannot hold them."""
    cdef int steps = slab_steps if slab_steps > 0 else T
    if steps < T or (slabs - 1) * <Py_ssize_t>steps + T > cache_rows:
        raise ValueError(
            f"slab_steps={slab_steps} needs slab_steps >= T={T} and cache arrays of "
            f"at least {(slabs - 1) * <Py_ssize_t>steps + T} timesteps for "
            f"slabs={slabs}; got {cache_rows}."
        )
    return steps


cdef inline int check_cell(int gates, int slabs, int slab_steps, const Py_ssize_t* X,
                           const Py_ssize_t* W_xh, const Py_ssize_t* W_hh,
                           const Py_ssize_t* h0, Py_ssize_t cache_rows,
                           int* cache_steps, bint packed=False) except -1:
    """The shapes every cell kernel's arguments share (_checks.pxd): X
    (slabs*T, B, I), W_xh (G*H, I), W_hh (G*H, H), h0 (slabs*B, H), cache
    arrays of cache_rows timesteps (check_cache), H = W_hh.shape[1] and G =
    ``gates``; ``packed`` (segments): X (rows, 1, I), one slab, h0 (n, H)
    (check_segments checks n). Returns one slab's T (packed: the rows) and
    sets ``cache_steps``; raises ValueError on the first that disagrees."""
    cdef Py_ssize_t H = W_hh[1]
    check_shape("W_hh", W_hh, 2, gates * H, H)
    check_shape("W_xh", W_xh, 2, gates * H, X[2])
    # the kernels count rows (T*B), gate rows and inputs in int
    if X[0] * X[1] > INT_MAX or gates * H > INT_MAX or X[2] > INT_MAX:
        raise ValueError(f"arrays of {X[0]} x {X[1]} rows, {gates * H} gate rows and "
                         f"{X[2]} inputs are too large for the kernels (int sizes).")
    if packed:
        if slabs != 1 or X[1] != 1:
            raise ValueError(f"segments take X of packed rows, shape (rows, 1, I), and "
                             f"slabs=1; got X of shape {(X[0], X[1], X[2])} and "
                             f"slabs={slabs}.")
        check_shape("h0", h0, 2, ANY, H)
        cache_steps[0] = check_cache(1, <int>X[0], slab_steps, cache_rows)
        return <int>X[0]
    T = check_slabs(slabs, X[0], X[1], h0[0])
    check_shape("h0", h0, 2, slabs * X[1], H)
    cache_steps[0] = check_cache(slabs, T, slab_steps, cache_rows)
    return T


cdef inline void copy_rows(const floating* src, floating* dst, Py_ssize_t dst_row,
                           Py_ssize_t rows, Py_ssize_t n, double* norms,
                           Py_ssize_t norm_row) noexcept nogil:
    """dst[r, :n] = src[r, :n] for r < rows: src rows n apart, dst rows
    dst_row apart (a step of a batch-first array seen time-major); unless
    norms is NULL, norms[r * norm_row] = the L2 norm of row r, its squares
    summed in double as it is copied (staterows.h)."""
    cdef Py_ssize_t r
    if norms != NULL:
        for r in range(rows):
            if r + 4 < rows and dst_row != n:
                bptt_prefetch_write(dst + (r + 4) * dst_row, n * sizeof(floating))
            if floating is float:
                norms[r * norm_row] = sqrt(bptt_copy_squares_s(src + r * n,
                                                               dst + r * dst_row, n))
            else:
                norms[r * norm_row] = sqrt(bptt_copy_squares_d(src + r * n,
                                                               dst + r * dst_row, n))
    elif dst_row == n:
        memcpy(dst, src, <size_t>(rows * n) * sizeof(floating))
    else:
        for r in range(rows):
            memcpy(dst + r * dst_row, src + r * n, <size_t>n * sizeof(floating))


cdef inline int check_state_out(str name, const Py_ssize_t* shape,
                                const Py_ssize_t* byte_strides, int T, Py_ssize_t rows,
                                Py_ssize_t H, Py_ssize_t item,
                                Py_ssize_t* strides) except -1:
    """A kernel's dh_out / dc_out: (at least T, rows, H) with rows of H
    contiguous, other strides free (the (T, B, H) view of a batch-first
    (B, T, H) array is what the driver passes). Sets ``strides`` (step,
    row) in elements; a second array must have the first's."""
    check_shape(name, shape, 3, T, rows, H, True)
    if ((H > 1 and byte_strides[2] != item) or byte_strides[0] % item
            or byte_strides[1] % item):
        raise ValueError(f"{name} must have contiguous rows of H elements; got strides "
                         f"{(byte_strides[0], byte_strides[1], byte_strides[2])}.")
    if strides[0] != 0 and (strides[0] != byte_strides[0] // item
                            or strides[1] != byte_strides[1] // item):
        raise ValueError(f"{name} must have dh_out's strides; got "
                         f"{(byte_strides[0], byte_strides[1], byte_strides[2])}.")
    strides[0], strides[1] = byte_strides[0] // item, byte_strides[1] // item
    return 0


cdef inline int check_norms_out(const Py_ssize_t* shape, const Py_ssize_t* byte_strides,
                                int states, int T, Py_ssize_t rows,
                                Py_ssize_t* strides) except -1:
    """A kernel's norms_out: float64 (states, at least T, rows), any strides,
    where ``states`` is how many of dh_out (and the LSTM's dc_out) were
    given (0: ValueError, the norms are of their rows). Sets ``strides``
    (state, step, row) in elements."""
    cdef int k
    if states == 0:
        raise ValueError("norms_out needs dh_out: it receives the L2 norms of dh_out's "
                         "rows (and of dc_out's).")
    if shape[0] != states or shape[1] < T or shape[2] != rows:
        raise ValueError(f"norms_out must have shape ({states}, {T} or more, {rows}); got "
                         f"shape {(shape[0], shape[1], shape[2])}.")
    for k in range(3):
        if byte_strides[k] % <Py_ssize_t>sizeof(double):
            raise ValueError(f"norms_out's strides must be whole float64 elements; got "
                             f"{(byte_strides[0], byte_strides[1], byte_strides[2])}.")
        strides[k] = byte_strides[k] // <Py_ssize_t>sizeof(double)
    return 0


cdef inline int check_gradients(const Py_ssize_t* W_xh, const Py_ssize_t* W_hh,
                                const Py_ssize_t* dW_xh, const Py_ssize_t* dW_hh,
                                const Py_ssize_t* db_h) except -1:
    """The weight gradients have their weights' shapes (_checks.pxd)."""
    check_shape("dW_xh", dW_xh, 2, W_xh[0], W_xh[1])
    check_shape("dW_hh", dW_hh, 2, W_hh[0], W_hh[1])
    check_shape("db_h", db_h, 1, W_hh[0])
    return 0


cdef inline int check_cache_arrays(int gates, str second, Py_ssize_t B, Py_ssize_t H,
                                   const Py_ssize_t* G, const Py_ssize_t* S,
                                   const Py_ssize_t* Hs) except -1:
    """A gated cell's cache arrays (_checks.pxd): the hidden states Hs (.,
    B, H), the gate activations G (., B, gates*H) and the cell's second state
    array ``second`` (LSTM: C, GRU: HN) (., B, H), all with Hs's timesteps
    (which check_cell checked against the chunk)."""
    check_shape("H", Hs, 3, ANY, B, H)
    check_shape("G", G, 3, Hs[0], B, gates * H)
    return check_shape(second, S, 3, Hs[0], B, H)


# ---------------------------------------------------------------- entry points
#
# What every cell's forward and backward do around their own arrays: the
# arguments they share checked and set (cell_args, check_backward,
# check_state_outs), then run_forward / run_backward. A cell's entry point
# checks and sets only its own arrays (state0[1], cache, extra, work and
# their gradients) in between and passes its part functions.

cdef inline int cell_args(CellArgs* a, int gates, int slabs, int slab_steps,
                          const Py_ssize_t* X, const Py_ssize_t* W_xh,
                          const Py_ssize_t* W_hh, const Py_ssize_t* h0,
                          Py_ssize_t cache_rows, const int64_t[:, ::1] segments=None,
                          const int64_t[::1] lengths=None, bint backward=False) except -1:
    """Zeroes a, checks the shapes every cell's kernel takes (check_cell)
    and sets one slab's T, the sizes and n_gates = gates * H; with
    ``segments`` (not None) the packed layout and its table
    (check_segments; the caller keeps both arrays alive)."""
    memset(a, 0, sizeof(CellArgs))
    a.T = check_cell(gates, slabs, slab_steps, X, W_xh, W_hh, h0, cache_rows,
                     &a.cache_steps, segments is not None)
    a.B, a.n_input, a.n_hidden = <int>X[1], <int>X[2], <int>W_hh[1]
    a.n_gates = gates * a.n_hidden
    if segments is not None:
        a.n_groups = check_segments(segments, lengths, backward, X[0], h0[0])
        a.segments, a.n_segments = &segments[0, 0], segments.shape[0]
        a.seg_width = <int>segments.shape[1]
        a.lengths = &lengths[0] if lengths is not None else NULL
    elif lengths is not None:
        raise ValueError("lengths are read with segments only (cuts by mask); got "
                         "lengths without segments.")
    return 0


cdef inline int run_forward(CellArgs* a, const floating[:, :, ::1] X,
                            const floating[:, ::1] W_xh, const floating[:, ::1] W_hh,
                            const floating[::1] b_h, const floating[:, ::1] h0,
                            int n_threads, int slabs, bptt_part_fn forward_part) except -1:
    """A cell's forward once cell_args and the cell have filled a: A = X @
    W_xh.T over all rows (split by rows), then the time loop
    (forward_part), both weights packed once for them; with segments, both
    block by block (segments_forward)."""
    cdef const floating* W_hh_packed
    cdef const floating* W_xh_packed
    packed = pack_weights(W_hh, True, &W_hh_packed)
    packed_xh = pack_weights(W_xh, True, &W_xh_packed)
    a.X, a.W_xh, a.W_xh_packed = &X[0, 0, 0], &W_xh[0, 0], W_xh_packed
    a.W_hh, a.W_hh_packed, a.b_h = &W_hh[0, 0], W_hh_packed, &b_h[0]
    a.state0[0], a.is_double = &h0[0, 0], floating is double
    if a.state_rows[0] == NULL:
        a.state_rows[0] = a.H  # every cell's h
    if a.segments != NULL:
        # segments_forward projects each block just before its time loop,
        # every row once (a projection of all rows here as well doubled the
        # forward's projection time)
        n_threads = max(1, n_threads)
        with nogil:
            if a.n_groups > 1:
                a.slab_second = forward_part
                bptt_parallel(group_forward_part, a, a.n_groups, n_threads)
            else:
                segments_forward(a, n_threads, forward_part)
        return 0
    # slabs: all of a slab's work is one part, so the time loop's batch
    # split need not be capped
    n_threads = max(1, n_threads if slabs > 1 else min(n_threads, a.B))
    with nogil:
        run_phases(a, slabs, n_threads, project_part, balanced_parts(n_threads, a.T * a.B),
                   forward_part, n_threads)
    return 0


cdef inline int check_backward(const Py_ssize_t* X, const Py_ssize_t* W_xh,
                               const Py_ssize_t* W_hh, const Py_ssize_t* h0,
                               const Py_ssize_t* dH, const Py_ssize_t* dW_xh,
                               const Py_ssize_t* dW_hh, const Py_ssize_t* db_h,
                               const Py_ssize_t* dh0) except -1:
    """dH (T, B, H), the weight gradients and dh0 (_checks.pxd)."""
    check_shape("dH", dH, 3, X[0], X[1], W_hh[1])
    check_gradients(W_xh, W_hh, dW_xh, dW_hh, db_h)
    return check_shape("dh0", dh0, 2, h0[0], h0[1])


cdef inline int check_state_outs(CellArgs* a, const Py_ssize_t* X, const Py_ssize_t* h0,
                                 floating[:, :, ::1] dX, floating[:, :, :] dh_out,
                                 floating[:, :, :] dc_out,
                                 double[:, :, :] norms_out,
                                 double[:, :] norm_means) except -1:
    """The optional outputs: dX (T, B, I), dh_out and dc_out (a cell with a
    cell state) as check_state_out says, the norms of their rows as
    check_norms_out says, and the norms' means over the rows: float64
    (norms_out's states, at least T), any strides, sequences of one length
    (with segments: by step, every sequence running every step); each
    may be None. With segments, dh_out (rows, 1, H) is packed rows and
    (steps, n, H) by step (section "segments"; n = h0's rows, steps the
    table's last timestep; for one sequence the two are the same), and
    norms_out follows dh_out's form."""
    # the state rows of a step: h0's (packed: one row a step, as X's)
    cdef Py_ssize_t rows = h0[0] if a.segments == NULL else X[1]
    cdef int T = a.T
    cdef Py_ssize_t i, B = 0
    cdef bint every_step = a.segments == NULL
    if dX is not None:
        check_shape("dX", dX.shape, 3, X[0], X[1], X[2])
    if a.segments != NULL and dh_out is not None and (dh_out.shape[1] != 1 or h0[0] == 1):
        a.out_by_step, rows, T, every_step = True, h0[0], 0, True
        for i in range(a.n_segments):
            T = max(T, <int>a.segments[i * a.seg_width + 1])
            # a group's batch at its first step, which every row must keep
            if a.segments[i * a.seg_width] == 0:
                B = a.segments[i * a.seg_width + 2]
            every_step = every_step and a.segments[i * a.seg_width + 2] == B
        for i in range(a.n_segments):  # every group runs to the last step
            if i + 1 == a.n_segments or a.segments[(i + 1) * a.seg_width] == 0:
                every_step = every_step and a.segments[i * a.seg_width + 1] == T
        if dh_out.shape[1] != rows:
            raise ValueError(
                f"with segments dh_out must be packed rows, shape ({a.T}, 1, {h0[1]}), or "
                f"by step, shape ({T} or more, {rows}, {h0[1]}); got shape "
                f"{(dh_out.shape[0], dh_out.shape[1], dh_out.shape[2])}.")
    if dh_out is not None:
        check_state_out("dh_out", dh_out.shape, dh_out.strides, T, rows, h0[1],
                        sizeof(floating), a.out_strides)
    if dc_out is not None:
        check_state_out("dc_out", dc_out.shape, dc_out.strides, T, rows, h0[1],
                        sizeof(floating), a.out_strides)
    if norms_out is not None:
        check_norms_out(norms_out.shape, norms_out.strides,
                        0 if dh_out is None else 1 + (dc_out is not None), T, rows,
                        a.norm_strides)
    if norm_means is not None:
        if norms_out is None:
            raise ValueError("norm_means needs norms_out: it receives the mean of "
                             "norms_out's rows at every step.")
        if not every_step:
            raise ValueError("norm_means takes sequences of one length: with segments, "
                             "dh_out by step and every sequence running every step.")
        if norm_means.shape[0] != norms_out.shape[0] or norm_means.shape[1] < T:
            raise ValueError(f"norm_means must have shape ({norms_out.shape[0]}, {T} or "
                             f"more); got shape {(norm_means.shape[0], norm_means.shape[1])}.")
    a.out_steps = T
    return 0


cdef inline void mean_rows(double[:, :, :] norms, double[:, :] means,
                           int T) noexcept nogil:
    """means[k, t] = the mean of norms[k, t, :] for t < T: the batch's mean
    state-gradient norm per step, taken here because the same reduction in
    NumPy after the kernel cost the 2-thread Elman M step 3.5% (30 us: the
    interpreter's and NumPy's code and data cold after the kernel)."""
    cdef Py_ssize_t k, t, r, rows = norms.shape[2]
    cdef double total
    for k in range(norms.shape[0]):
        for t in range(T):
            total = 0
            for r in range(rows):
                total += norms[k, t, r]
            means[k, t] = total / rows


cdef inline void add_own_gradients(CellArgs* a, floating* dW_xh, floating* dW_hh,
                                   floating* db_h, int parts) noexcept nogil:
    """The weight gradients (and a.dextra's) += the blocks parts 1..parts-1
    wrote into a.scratch (own_gradients)."""
    cdef Py_ssize_t size = a.gradient_block - <Py_ssize_t>a.n_extra * a.n_hidden
    cdef int k
    add_gradient_parts(dW_xh, dW_hh, db_h, a.n_gates, a.n_input, a.n_hidden,
                       <floating*>a.scratch, a.gradient_block, parts)
    for k in range(a.n_extra):
        add_parts(<floating*>a.dextra[k], <floating*>a.scratch + size + k * a.n_hidden,
                  a.n_hidden, a.gradient_block, parts - 1)


cdef inline int run_backward(CellArgs* a, const floating[:, :, ::1] X,
                             const floating[:, ::1] W_xh, const floating[:, ::1] W_hh,
                             const floating[:, ::1] h0, floating[:, :, ::1] dH,
                             floating[:, ::1] dW_xh, floating[:, ::1] dW_hh,
                             floating[::1] db_h, floating[:, ::1] dh0,
                             floating[:, :, ::1] dX, floating[:, :, :] dh_out,
                             floating[:, :, :] dc_out, double[:, :, :] norms_out,
                             double[:, :] norm_means, int truncate, bint accumulate,
                             int n_threads, int slabs, bptt_part_fn backward_part,
                             bptt_part_fn gradient_part) except -1:
    """A cell's backward once the cell has filled in its arrays (A, H,
    cache, dstate0[1], dextra and n_extra): the time loop (backward_part,
    split by batch rows), then the weight gradients (gradient_part, split
    by timesteps or by slab) and the sum of the parts' (scratch blocks laid
    out as slab_args says)."""
    cdef const floating* W_hh_packed
    cdef Py_ssize_t size = gradient_size(a.n_gates, a.n_input, a.n_hidden)
    cdef int gradient_parts = slabs if slabs > 1 else balanced_parts(n_threads, a.T)
    cdef int groups = a.n_groups if a.segments != NULL else 1
    cdef int k
    cdef fp_mode saved
    packed = pack_weights(W_hh, False, &W_hh_packed)
    a.X, a.W_xh, a.W_hh, a.W_hh_packed = &X[0, 0, 0], &W_xh[0, 0], &W_hh[0, 0], W_hh_packed
    a.state0[0], a.dH, a.dstate0[0] = &h0[0, 0], &dH[0, 0, 0], &dh0[0, 0]
    a.dW_xh, a.dW_hh, a.db_h = &dW_xh[0, 0], &dW_hh[0, 0], &db_h[0]
    a.dX = &dX[0, 0, 0] if dX is not None else NULL
    a.state_out[0] = &dh_out[0, 0, 0] if dh_out is not None else NULL
    a.state_out[1] = &dc_out[0, 0, 0] if dc_out is not None else NULL
    a.norms_out = &norms_out[0, 0, 0] if norms_out is not None else NULL
    a.truncate, a.accumulate, a.is_double = truncate, accumulate, floating is double
    if a.segments != NULL and truncate != 0:
        raise ValueError(f"with segments the pieces' truncate column sets each one's "
                         f"window; truncate must be 0, got {truncate}.")
    a.gradient_block = size + <Py_ssize_t>a.n_extra * a.n_hidden
    scratch = gradient_scratch(a, max(gradient_parts, groups), a.gradient_block)
    if a.state_rows[0] == NULL:
        a.state_rows[0] = a.H  # every cell's h
    if a.segments != NULL:
        previous = np.empty(groups * largest_block(a) * a.n_hidden,
                            dtype=np.float64 if a.is_double else np.float32)
        a.previous, a.gradient = cnp.PyArray_DATA(previous), gradient_part
    n_threads = max(1, n_threads)
    with nogil:
        # the parts' sums run outside the pool: flush here too (_fpmode.pxd)
        saved = flush_enter()
        if a.segments != NULL and groups > 1:
            # each group whole on one thread, then the groups' gradients added
            a.slab_second = backward_part
            bptt_parallel(group_backward_part, a, groups, n_threads)
            add_own_gradients(a, &dW_xh[0, 0], &dW_hh[0, 0], &db_h[0], groups)
        elif a.segments != NULL:
            # the time loops and the weight gradients block by block
            segments_backward(a, n_threads, backward_part)
        else:
            run_phases(a, slabs, n_threads, backward_part, min(n_threads, a.B),
                       gradient_part, gradient_parts)
            add_own_gradients(a, &dW_xh[0, 0], &dW_hh[0, 0], &db_h[0], gradient_parts)
        if norm_means is not None:
            mean_rows(norms_out, norm_means, a.out_steps)
        flush_leave(saved)
    return 0
