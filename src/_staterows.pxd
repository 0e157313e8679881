# The state-gradient rows' copy with its squares (staterows.h), for the
# cells' backward kernels (_cellparts.pxd, copy_rows; _lstm.pyx).
cdef extern from "staterows.h" nogil:
    double bptt_copy_squares_s(const float* src, float* dst, long n)
    double bptt_copy_squares_d(const double* src, double* dst, long n)
    void bptt_prefetch_write(const void* p, long nbytes)
