"""One optimizer step over one parameter array in one pass (twins: the
get_updates methods of bptt/optimizers.py, in NumPy).

Design: the NumPy form of an Adam step is about ten ufunc calls per
parameter array, each allocating a temporary; at the M size (five arrays of
up to 64 x 64) that is 60-70 us per training batch, a third of the
gradient computation. Here each step is one loop per array that reads the
gradient once, updates the optimizer's state in place, writes the new
parameter values to ``new`` and reports whether all of them are finite, so
the caller can refuse a diverging step before anything of the network is
overwritten. ``scale`` multiplies the gradient first (gradient clipping).

    sgd:       new = param - lr * (scale g)
    momentum:  velocity = momentum * velocity - lr * (scale g) ; new = param + velocity
    adam:      m = beta_1 m + (1 - beta_1) (scale g) ; v = beta_2 v + (1 - beta_2) (scale g)^2
               new = param - lr_t m / (sqrt(v) + epsilon)
"""
from cython cimport floating

from _checks cimport check_shape
from _fpmode cimport flush_enter, flush_leave, fp_mode

cdef extern from "math.h" nogil:
    float sqrtf(float x)
    double sqrt(double x)


cdef inline bint finite(floating x) noexcept nogil:
    # x - x is 0 for every finite x and NaN for inf and NaN; no library call,
    # so the loops below vectorize
    return x - x == 0


cdef inline floating sqrt_(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


def sgd_step(const floating[::1] param not None,  # IN  (n,)
             const floating[::1] grad not None,   # IN  (n,)
             floating[::1] new not None,          # OUT (n,)
             double learning_rate, double scale):
    """new = param - learning_rate * (scale * grad). Returns True when every
    new value is finite."""
    cdef Py_ssize_t i, n = param.shape[0]
    cdef floating lr = learning_rate, s = scale, g
    cdef bint ok = True
    check_shape("grad", grad.shape, 1, n)
    check_shape("new", new.shape, 1, n)
    cdef fp_mode saved
    with nogil:
        saved = flush_enter()  # subnormals flushed (_fpmode.pxd)
        for i in range(n):
            g = s * grad[i]
            new[i] = param[i] - lr * g
            ok = ok & finite(new[i])
        flush_leave(saved)
    return ok


def momentum_step(const floating[::1] param not None,  # IN  (n,)
                  const floating[::1] grad not None,   # IN  (n,)
                  floating[::1] velocity not None,     # IN/OUT (n,)
                  floating[::1] new not None,          # OUT (n,)
                  double learning_rate, double momentum, double scale):
    """velocity = momentum * velocity - learning_rate * (scale * grad) ;
    new = param + velocity. Returns True when every new value is finite."""
    cdef Py_ssize_t i, n = param.shape[0]
    cdef floating lr = learning_rate, mu = momentum, s = scale, g, u
    cdef bint ok = True
    check_shape("grad", grad.shape, 1, n)
    check_shape("velocity", velocity.shape, 1, n)
    check_shape("new", new.shape, 1, n)
    cdef fp_mode saved
    with nogil:
        saved = flush_enter()  # subnormals flushed (_fpmode.pxd)
        for i in range(n):
            g = s * grad[i]
            u = mu * velocity[i] - lr * g
            velocity[i] = u
            new[i] = param[i] + u
            ok = ok & finite(new[i])
        flush_leave(saved)
    return ok


def adam_step(const floating[::1] param not None,  # IN  (n,)
              const floating[::1] grad not None,   # IN  (n,)
              floating[::1] m not None,            # IN/OUT (n,) first moment
              floating[::1] v not None,            # IN/OUT (n,) second moment
              floating[::1] new not None,          # OUT (n,)
              double lr_t, double beta_1, double beta_2, double epsilon,
              double scale):
    """m = beta_1 m + (1 - beta_1) g ; v = beta_2 v + (1 - beta_2) g^2 with
    g = scale * grad ; new = param - lr_t m / (sqrt(v) + epsilon). lr_t holds
    the bias correction. Returns True when every new value is finite."""
    cdef Py_ssize_t i, n = param.shape[0]
    cdef floating b1 = beta_1, b2 = beta_2, c1 = 1 - beta_1, c2 = 1 - beta_2
    cdef floating lr = lr_t, eps = epsilon, s = scale, g, mi, vi
    cdef bint ok = True
    check_shape("grad", grad.shape, 1, n)
    check_shape("m", m.shape, 1, n)
    check_shape("v", v.shape, 1, n)
    check_shape("new", new.shape, 1, n)
    cdef fp_mode saved
    with nogil:
        saved = flush_enter()  # subnormals flushed (_fpmode.pxd)
        for i in range(n):
            g = s * grad[i]
            mi = b1 * m[i] + c1 * g
            vi = b2 * v[i] + c2 * (g * g)
            m[i] = mi
            v[i] = vi
            new[i] = param[i] - lr * mi / (sqrt_(vi) + eps)
            ok = ok & finite(new[i])
        flush_leave(saved)
    return ok
