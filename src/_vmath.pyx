"""Array versions of the kernels' elementwise functions, for tests.

The kernels inline these functions (``_activations.pxd``); this module only
exposes the same code to Python so tests/test_vmath.py can check its
accuracy against NumPy over the whole float range.
"""
from cython cimport floating

from _activations cimport exp_, tanh_, sigmoid_


def apply(str name, const floating[::1] x, floating[::1] out):
    """out = name(x) for name in {"exp", "tanh", "sigmoid"}."""
    cdef Py_ssize_t i, n = x.shape[0]
    if name not in ("exp", "tanh", "sigmoid"):
        raise ValueError(f"name must be 'exp', 'tanh' or 'sigmoid'; got {name!r}")
    cdef int which = ("exp", "tanh", "sigmoid").index(name)
    with nogil:
        if which == 0:
            for i in range(n):
                out[i] = exp_(x[i])
        elif which == 1:
            for i in range(n):
                out[i] = tanh_(x[i])
        else:
            for i in range(n):
                out[i] = sigmoid_(x[i])


cdef extern from *:
    """
    static int bptt_cpu_has_avx2_fma(void) {
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    #else
        return 0;
    #endif
    }
    """
    int bptt_cpu_has_avx2_fma()


def cpu_has_avx2_fma():
    """True when this CPU runs the AVX2 + FMA builds of the kernels."""
    return bool(bptt_cpu_has_avx2_fma())
