# Helpers shared by the cells' streaming steppers (_stepper.pxi).
from cython cimport floating

# indices into a stepper's parameter pointers
cdef enum:
    P_W_XH = 0
    P_W_HH = 1
    P_B_H = 2
    P_W_OH = 3
    P_B_O = 4
    P_W_XH_PACKED = 5   # pack_weights(W_xh, transpose=True), or NULL
    P_W_HH_PACKED = 6   # pack_weights(W_hh, transpose=True), or NULL
    P_EXTRA = 7         # the cell's own parameters (GRU: b_hn), MAX_EXTRA at most
    MAX_EXTRA = 4
    MAX_POINTERS = 11   # P_EXTRA + MAX_EXTRA; also the most work buffers (STEP_WORK)
    MAX_STATES = 2      # (h,) or (h, c)


cdef inline bint all_finite(const floating* x, Py_ssize_t size) noexcept nogil:
    """False when x holds NaN or infinity (x - x is NaN exactly then)."""
    cdef Py_ssize_t i
    cdef floating acc = 0
    for i in range(size):
        acc = acc + (x[i] - x[i])
    return acc == 0


cimport numpy as cnp


cdef inline void* data_of(object arr):
    """The data pointer of a C-contiguous ndarray the caller keeps alive."""
    return cnp.PyArray_DATA(<cnp.ndarray>arr)
