# The argument checks every compiled entry point runs first, with the GIL,
# before it touches an array's memory. The kernels index raw pointers without
# bounds checks, so arrays whose shapes disagree would read or write out of
# bounds: a Python-level mistake must get a ValueError here instead.
#
# What Cython checks itself before a function's body runs: each typed
# memoryview argument's number of dimensions and C-contiguity, and that every
# array of a fused (``floating``) function has the one C type of the
# specialization the first picked (ValueError "Buffer dtype mismatch"
# otherwise). Required arrays are declared ``not None`` (TypeError). What is
# left, and checked here, is that the sizes agree.

cdef enum:
    ANY = -1   # a dimension left free (or checked by the caller)


cdef inline str shape_text(const Py_ssize_t* dims, int ndim, bint first_at_least):
    """"(3, 4)", "(3, 4, *)": the shape a check expects, ANY as "*"."""
    cdef int i
    parts = ["*" if dims[i] == ANY else str(dims[i]) for i in range(ndim)]
    return ("(" + ", ".join(parts) + ("," if ndim == 1 else "") + ")"
            + (" (or more rows)" if first_at_least else ""))


cdef inline int check_shape(str name, const Py_ssize_t* shape, int ndim,
                            Py_ssize_t d0, Py_ssize_t d1=ANY, Py_ssize_t d2=ANY,
                            bint first_at_least=False) except -1:
    """Raise ValueError unless an array ``name`` whose shape is ``shape``
    (``ndim`` dimensions, at most 3) has the dimensions d0, d1, d2 (ANY:
    any size; with ``first_at_least``, d0 is a minimum)."""
    cdef Py_ssize_t expected[3]
    cdef int i
    cdef bint ok = True
    expected[0], expected[1], expected[2] = d0, d1, d2
    for i in range(ndim):
        if expected[i] == ANY:
            continue
        if i == 0 and first_at_least:
            ok = ok and shape[0] >= expected[0]
        else:
            ok = ok and shape[i] == expected[i]
    if not ok:
        given = tuple([shape[i] for i in range(ndim)])
        raise ValueError(f"{name} must have shape "
                         f"{shape_text(expected, ndim, first_at_least)}; got shape "
                         f"{given}.")
    return 0


cdef inline int check_code(str name, int value, int n_codes) except -1:
    """Raise ValueError unless 0 <= value < n_codes (an activation or loss
    code: an unknown one would take a branch reading arrays not given)."""
    if not 0 <= value < n_codes:
        raise ValueError(f"{name} must be a code from 0 to {n_codes - 1}; got {value}.")
    return 0


cdef inline int check_positive(str name, Py_ssize_t value) except -1:
    """Raise ValueError unless a size is at least 1."""
    if value < 1:
        raise ValueError(f"{name} must be at least 1; got {value}.")
    return 0


cimport numpy as cnp


cdef inline int check_array(str name, object arr, int ndim, Py_ssize_t d0,
                            Py_ssize_t d1=ANY, Py_ssize_t d2=ANY) except -1:
    """check_shape for an ndarray that is not a typed memoryview: its number
    of dimensions too."""
    if not isinstance(arr, cnp.ndarray):
        raise TypeError(f"{name} must be a NumPy array; got {type(arr).__name__}.")
    if cnp.PyArray_NDIM(<cnp.ndarray>arr) != ndim:
        raise ValueError(f"{name} must have {ndim} dimension{'s' if ndim > 1 else ''}; "
                         f"got shape {arr.shape}.")
    return check_shape(name, <const Py_ssize_t*>cnp.PyArray_DIMS(<cnp.ndarray>arr), ndim,
                       d0, d1, d2)
