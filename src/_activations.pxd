# Elementwise maths shared by the kernels: fused float/double wrappers over
# the vectorizable functions of vmath.h. ``if floating is float`` is resolved
# at compile time, so each wrapper inlines to one C call that GCC vectorizes
# inside the callers' loops.
from cython cimport floating

cdef extern from "vmath.h" nogil:
    double bptt_exp(double x)
    double bptt_tanh(double x)
    double bptt_sigmoid(double x)
    float bptt_expf(float x)
    float bptt_tanhf(float x)
    float bptt_sigmoidf(float x)


cdef inline floating exp_(floating x) noexcept nogil:
    if floating is float:
        return bptt_expf(x)
    else:
        return bptt_exp(x)


cdef inline floating tanh_(floating x) noexcept nogil:
    if floating is float:
        return bptt_tanhf(x)
    else:
        return bptt_tanh(x)


cdef inline floating sigmoid_(floating x) noexcept nogil:
    if floating is float:
        return bptt_sigmoidf(x)
    else:
        return bptt_sigmoid(x)


cdef inline floating one_minus(floating x) noexcept nogil:
    """1 - x in x's type. Cython writes a bare ``1 - x`` as ``1.0 - x``, a
    double, which silently turns the float32 build's loops into double
    arithmetic with conversions (LSTM M backward: 352 against 324 us)."""
    return <floating>1 - x
