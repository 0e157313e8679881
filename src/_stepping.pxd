# Helpers shared by the cells' streaming steppers.
from cython cimport floating


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
