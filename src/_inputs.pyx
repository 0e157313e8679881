"""Input preparation the Python layer runs on every call: the finiteness
check and the batch-first to time-major copy (twins: the NumPy fallbacks in
bptt/_validation.py, all_finite and time_major).

NumPy's test for NaN and infinity either allocates a boolean array as large
as the input (np.isfinite(X).all()) or sums it pairwise (X.sum(), NaN and
inf propagating), about 7 us for the 51200 inputs of the M-size step. Here
one pass ORs the exponent bits' test over the array: integer operations, so
the compiler vectorizes the reduction (5.9 / 3.0 / 1.6 us there in the
baseline / AVX2 / AVX-512 builds), no floating-point flags are raised, and
nothing is allocated.

NumPy copies X (n, T, F) into (T, n, F) by a strided loop per row of F
values: 8.2 us for the M-size X; one copy per (t, sample) row here: 2.8 us.
"""
from cython cimport floating
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

from _checks cimport check_shape
from _parallel cimport bptt_parallel, import_threadpool

import_threadpool()


def all_finite(const floating[::1] x not None):
    """True when the 1-D contiguous array x holds no NaN and no infinity."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef uint32_t word32, bad32 = 0
    cdef uint64_t word64, bad64 = 0
    if n == 0:
        return True
    with nogil:
        if floating is float:
            for i in range(n):
                memcpy(&word32, &x[i], 4)
                # all exponent bits set: infinity or NaN
                bad32 |= (word32 & 0x7f800000u) == 0x7f800000u
        else:
            for i in range(n):
                memcpy(&word64, &x[i], 8)
                bad64 |= (word64 & 0x7ff0000000000000u) == 0x7ff0000000000000u
    return not (bad32 or bad64)


cdef struct CopyArgs:
    # one time_major call, for its slab parts on bptt's thread pool
    const void* X            # (n, T_all, F) batch-first
    void* out                # (slabs * steps, n / slabs, F)
    Py_ssize_t T_all, start, steps, rows, F
    bint is_double


cdef void copy_slab_of(CopyArgs* a, int slab, floating tag) noexcept nogil:
    # out[slab * steps + t, b] = X[slab * rows + b, start + t]
    cdef const floating* X = <const floating*>a.X + slab * a.rows * a.T_all * a.F
    cdef floating* out = <floating*>a.out + slab * a.steps * a.rows * a.F
    cdef Py_ssize_t t, b, f
    for t in range(a.steps):
        for b in range(a.rows):
            for f in range(a.F):
                out[(t * a.rows + b) * a.F + f] = X[(b * a.T_all + a.start + t) * a.F + f]


cdef void copy_slab(void* args, int slab, int n_slabs) noexcept nogil:
    if (<CopyArgs*>args).is_double:
        copy_slab_of(<CopyArgs*>args, slab, <double>0)
    else:
        copy_slab_of(<CopyArgs*>args, slab, <float>0)


def time_major(const floating[:, :, ::1] X not None,  # IN  (n, T, F) batch-first
               Py_ssize_t start, Py_ssize_t stop,
               floating[:, :, ::1] out not None,      # OUT (slabs * (stop - start), n / slabs, F)
               int slabs=1,                           # batch slabs (src/_cellparts.pxd)
               int n_threads=1):                      # threads copying the slabs
    """out[t - start, b] = X[b, t] for start <= t < stop.

    With ``slabs`` > 1, out[k * (stop - start) + t - start, b] = X[k * n/slabs
    + b, t]: the kernels' slab layout. The slabs are parts on bptt's thread
    pool, so the thread that works on a slab next has copied it itself.
    """
    cdef Py_ssize_t n = X.shape[0], F = X.shape[2], steps = stop - start
    cdef CopyArgs a
    cdef int slab
    if slabs < 1 or n % slabs:
        raise ValueError(f"slabs must divide n_samples={n}; got slabs={slabs}.")
    if not 0 <= start <= stop <= X.shape[1]:
        raise ValueError(f"need 0 <= start <= stop <= {X.shape[1]}; got {start}, {stop}.")
    check_shape("out", out.shape, 3, slabs * steps, n // slabs, F, True)
    if n == 0 or F == 0 or stop == start:
        return
    a.X, a.out, a.is_double = &X[0, 0, 0], &out[0, 0, 0], floating is double
    a.T_all, a.start, a.steps, a.rows, a.F = X.shape[1], start, steps, n // slabs, F
    with nogil:
        if slabs > 1 and n_threads > 1:
            bptt_parallel(copy_slab, &a, slabs, n_threads)
        else:
            for slab in range(slabs):
                copy_slab(&a, slab, slabs)

cdef struct GroupRowsArgs:
    # one rows_by_group call, for its groups' parts on bptt's thread pool
    const void* src          # (rows, F), rows src_row elements apart
    void* out                # (rows, F), rows out_row elements apart
    const int64_t* groups    # (groups, width): first row, sequences[, ...]
    Py_ssize_t width, src_row, out_row, F, T
    bint reverse, add, is_double


cdef void group_rows_of(GroupRowsArgs* a, int g, floating tag) noexcept nogil:
    # out[r0 + t*n + b] (+)= src[r0 + s*n + b], s = T-1-t reversed, else t
    cdef Py_ssize_t r0 = a.groups[a.width * g], n = a.groups[a.width * g + 1], t, s, b, f
    cdef const floating* x
    cdef floating* y
    for t in range(a.T):
        s = a.T - 1 - t if a.reverse else t
        for b in range(n):
            x = <const floating*>a.src + (r0 + s * n + b) * a.src_row
            y = <floating*>a.out + (r0 + t * n + b) * a.out_row
            if a.add:
                for f in range(a.F):
                    y[f] += x[f]
            else:
                memcpy(y, x, a.F * sizeof(floating))


cdef void group_rows(void* args, int g, int n_groups) noexcept nogil:
    if (<GroupRowsArgs*>args).is_double:
        group_rows_of(<GroupRowsArgs*>args, g, <double>0)
    else:
        group_rows_of(<GroupRowsArgs*>args, g, <float>0)


def rows_by_group(const floating[:, :] src not None,   # IN  (rows, F), rows of F contiguous
                  floating[:, :] out not None,         # OUT (rows, F), rows of F contiguous
                  const int64_t[:, ::1] groups not None,  # (groups, >= 2): first row, sequences
                  Py_ssize_t T,                        # timesteps of every sequence
                  bint reverse=False,                  # the timesteps in reverse order
                  bint add=False,                      # add into out instead of writing
                  int n_threads=1):                    # threads, one group a part
    """Copy (or add) the rows of groups of sequences of T timesteps each,
    packed time-major within each group: group g's rows r0.. r0 + T*n - 1
    hold its n sequences' timesteps one after another (further columns of
    ``groups`` are not read), and
    ``out[r0 + t*n + b] = src[r0 + s*n + b]`` with s = T-1-t when
    ``reverse`` (a bidirectional layer's other direction), else t.

    Each group is a part on bptt's thread pool: the kernels ran each group
    on a thread of its own (src/_cellparts.pxd, "groups"), so its rows are
    in that core's cache; one NumPy copy of the whole batch on the calling
    thread fetched half of them from the other core (about 12% of a 2-layer
    bidirectional Elman M step). src and out must not overlap; either may
    be a column block of a wider array.
    """
    cdef Py_ssize_t rows = src.shape[0], F = src.shape[1], item = sizeof(floating)
    cdef GroupRowsArgs a
    cdef int g
    check_shape("out", out.shape, 2, rows, F)
    if groups.shape[1] < 2:
        raise ValueError(f"groups must have shape (groups, 2 or more); got "
                         f"{(groups.shape[0], groups.shape[1])}.")
    if T < 0:
        raise ValueError(f"T must be >= 0; got {T}.")
    if F > 1 and (src.strides[1] != item or out.strides[1] != item):
        raise ValueError(f"src and out need rows of F contiguous elements; got strides "
                         f"{(src.strides[0], src.strides[1])} and "
                         f"{(out.strides[0], out.strides[1])}.")
    for g in range(groups.shape[0]):
        if groups[g, 0] < 0 or groups[g, 1] < 0 or groups[g, 0] + T * groups[g, 1] > rows:
            raise ValueError(f"group {g} (first row {groups[g, 0]}, {groups[g, 1]} "
                             f"sequences of {T} steps) is outside the {rows} rows.")
    if rows == 0 or F == 0 or T == 0 or groups.shape[0] == 0:
        return
    a.src, a.out, a.groups, a.width = &src[0, 0], &out[0, 0], &groups[0, 0], groups.shape[1]
    a.src_row, a.out_row = src.strides[0] // item, out.strides[0] // item
    a.F, a.T, a.reverse, a.add = F, T, reverse, add
    a.is_double = floating is double
    with nogil:
        if groups.shape[0] > 1 and n_threads > 1:
            bptt_parallel(group_rows, &a, <int>groups.shape[0], n_threads)
        else:
            for g in range(groups.shape[0]):
                group_rows(&a, g, <int>groups.shape[0])
