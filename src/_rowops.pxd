# Small row-major helpers shared by the kernels.
from cython cimport floating


cdef inline void column_sums(const floating* a, Py_ssize_t rows, Py_ssize_t cols,
                             Py_ssize_t lda, bint accumulate, floating* out) noexcept nogil:
    """out[j] (+)= sum_r a[r, j] over an (rows, cols) block with row stride lda."""
    cdef Py_ssize_t r, j
    if not accumulate:
        for j in range(cols):
            out[j] = 0
    for r in range(rows):
        for j in range(cols):
            out[j] += a[r * lda + j]


cdef inline int part_start(int total, int part, int parts) noexcept nogil:
    """Where part ``part`` of ``parts`` near-equal parts of range(total) starts."""
    return <int>((<long long>total * part) // parts)
