# The compiled streaming stepper, one source for every cell (see RNN.stream).
#
# Included by each cell module, which defines before the include:
#
#   STEP_WORK : tuple of int
#       The work buffers one step needs, as multiples of H columns.
#   STEP_GATES, STEP_STATES, STEP_EXTRA : int
#       Gate blocks of W_xh / W_hh / b_h, state arrays ((h,) or (h, c)) and
#       extra (H,) parameters after b_o (GRU: b_hn; MAX_EXTRA at most, at
#       p[P_EXTRA], p[P_EXTRA + 1], ...): what Stepper checks. They are the
#       cell's CellSpec (bptt/_cells.py) in the kernel; tests/test_cells.py
#       checks that the two agree.
#   cdef void cell_step(const floating* x, floating** p, floating** s,
#                       floating** w, int B, int I, int H, bint relu) noexcept nogil
#       One timestep of the cell on x (B, I): reads the parameters p (indexed
#       by the P_* constants below), updates the state s in place (s[0] = h,
#       s[1] = c for the LSTM) through the work buffers w.
#
# The stepper adds the output layer, input checks and the GIL policy, and
# allocates every buffer once, so a step allocates nothing.
from _checks cimport ANY, check_array, check_code, check_positive
from _fpmode cimport flush_enter, flush_leave, fp_mode
from _outlayer cimport output_rows
from _stepping cimport (MAX_EXTRA, MAX_POINTERS, MAX_STATES, P_B_O, P_W_HH, P_W_OH,
                       P_W_XH, P_W_XH_PACKED, all_finite, data_of)

cdef class Stepper:
    """Step-by-step inference for streams; see :meth:`bptt.RNN.stream`.

    Holds copies of the parameters and every buffer, allocated once; ``step``
    validates its input with a few C checks and runs one timestep without
    allocating. The GIL is released only when a step is long enough for that
    to pay off.

    Parameters
    ----------
    params : tuple of ndarray
        W_xh (G*H, I), W_hh (G*H, H), b_h (G*H,), W_oh (O, H), b_o (O,), then
        the cell's extra parameters (GRU: b_hn (H,)); copied.
    state0 : tuple of ndarray of shape (B, H)
        (h0,), or (h0, c0) for the LSTM; copied.
    relu : bool
        Elman nonlinearity (ignored by the gated cells).
    activation : int
        Output activation code (``bptt.rnn.OUTPUT_ACTIVATIONS``).
    coerce : callable
        ``coerce(x, B, I, dtype) -> ndarray``: converts and checks a step's
        input that is not already a C-contiguous (B, I) array of the dtype
        (bptt._validation.coerce_step_input; passed in so that the kernels
        import nothing of the Python package).
    """
    cdef object _keep            # the arrays the raw pointers below point into
    cdef object _coerce          # converts inputs the fast check refuses
    cdef readonly object y       # (B, O) outputs of the last step
    cdef tuple _state            # (h,) or (h, c), each (B, H)
    cdef void* p[MAX_POINTERS]
    cdef void* s[MAX_STATES]
    cdef void* w[MAX_POINTERS]
    cdef void* z
    cdef void* y_data
    cdef int B, n_in, n_hidden, O, activation, typenum
    cdef bint relu, release_gil

    def __init__(self, tuple params, tuple state0, bint relu, int activation, coerce):
        cdef const float* unused_s
        cdef const double* unused_d
        if (STEP_EXTRA > MAX_EXTRA or STEP_STATES > MAX_STATES
                or len(STEP_WORK) > MAX_POINTERS):
            # a cell's constants that the pointer arrays cannot hold
            raise ValueError(f"this cell's Stepper needs {STEP_EXTRA} extra parameters, "
                             f"{STEP_STATES} state arrays and {len(STEP_WORK)} work "
                             f"buffers; it holds at most {MAX_EXTRA}, {MAX_STATES} and "
                             f"{MAX_POINTERS} (src/_stepping.pxd).")
        # the raw pointers below trust these shapes (_checks.pxd)
        if len(params) != 5 + STEP_EXTRA or len(state0) != STEP_STATES:
            raise ValueError(f"this cell's Stepper takes {5 + STEP_EXTRA} parameter arrays "
                             f"and {STEP_STATES} state arrays; got {len(params)} and "
                             f"{len(state0)}.")
        dtype = np.asarray(params[P_W_HH]).dtype
        if dtype != np.float32 and dtype != np.float64:
            raise ValueError(f"the parameters must be float32 or float64; W_hh has dtype "
                             f"{dtype}.")
        check_code("activation", activation, 3)
        copies = [np.array(a, dtype=dtype, order="C", copy=True) for a in params]
        self._state = tuple(np.array(a, dtype=dtype, order="C", copy=True) for a in state0)
        check_array("h0", self._state[0], 2, ANY, ANY)
        B, n_hidden = self._state[0].shape
        check_positive("the number of samples", B)
        check_positive("the hidden size", n_hidden)
        if STEP_STATES > 1:
            check_array("c0", self._state[1], 2, B, n_hidden)
        check_array("W_hh", copies[P_W_HH], 2, STEP_GATES * n_hidden, n_hidden)
        check_array("W_xh", copies[P_W_XH], 2, STEP_GATES * n_hidden, ANY)
        check_positive("the input size (W_xh columns)", copies[P_W_XH].shape[1])
        check_array("b_h", copies[P_B_H], 1, STEP_GATES * n_hidden)
        check_array("W_oh", copies[P_W_OH], 2, ANY, n_hidden)
        O = copies[P_W_OH].shape[0]
        check_positive("the output size (W_oh rows)", O)
        check_array("b_o", copies[P_B_O], 1, O)
        for i in range(5, len(copies)):
            check_array(f"params[{i}]", copies[i], 1, n_hidden)
        self.y = np.empty((B, O), dtype=dtype)
        z = np.empty((B, O), dtype=dtype)
        work = [np.empty((B, m * n_hidden), dtype=dtype) for m in STEP_WORK]
        # the step's two products run against packed copies (packedgemm.h);
        # None (a NULL pointer) in builds that keep BLAS
        if dtype == np.float32:
            packed = [pack_weights[float](copies[i], True, &unused_s)
                      for i in (P_W_XH, P_W_HH)]
        else:
            packed = [pack_weights[double](copies[i], True, &unused_d)
                      for i in (P_W_XH, P_W_HH)]
        # the parameter pointers in P_* order
        owners = [*copies[:P_W_XH_PACKED], *packed, *copies[P_W_XH_PACKED:]]
        self._keep = (owners, work, z)
        for i in range(MAX_POINTERS):
            self.p[i] = NULL if i >= len(owners) or owners[i] is None else data_of(owners[i])
            self.w[i] = data_of(work[i]) if i < len(work) else NULL
        for i in range(len(self._state)):
            self.s[i] = data_of(self._state[i])
        self.z = data_of(z)
        self.y_data = data_of(self.y)
        self.B, self.n_hidden, self.O = B, n_hidden, O
        self.n_in = copies[P_W_XH].shape[1]
        self.relu = relu
        self.activation = activation
        self._coerce = coerce
        self.typenum = cnp.PyArray_TYPE(<cnp.ndarray>self._state[0])
        self.release_gil = (<double>B * copies[P_W_HH].shape[0]
                            * (n_hidden + self.n_in) > 1e5)

    @property
    def state(self):
        """A copy of the current state: h (B, H), or (h, c) for the LSTM."""
        if len(self._state) == 1:
            return self._state[0].copy()
        return tuple(a.copy() for a in self._state)

    def reset(self, h0):
        """Set the state to ``h0`` (same form and shapes as ``state``)."""
        values = (h0,) if len(self._state) == 1 else tuple(h0)
        if len(values) != len(self._state):
            raise ValueError(f"reset takes {len(self._state)} state arrays (h, c); got "
                             f"{len(values)}.")
        # exact shapes: a broadcast would set every sample from one row
        for a, value, name in zip(self._state, values, ("h0", "c0")):
            check_array(name, np.asarray(value), 2, self.B, self.n_hidden)
        for a, value in zip(self._state, values):
            a[...] = value

    def step(self, x):
        """Advance one timestep.

        Parameters
        ----------
        x : ndarray of shape (B, I), or (I,) when B == 1
            Inputs at this timestep; any other array-like is converted.

        Returns
        -------
        y : ndarray of shape (B, O)
            The outputs, in a buffer the next step overwrites (copy to keep).
        """
        cdef cnp.ndarray arr
        cdef Py_ssize_t size = <Py_ssize_t>self.B * self.n_in
        if (type(x) is np.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>x) == self.typenum
                and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>x)
                and cnp.PyArray_SIZE(<cnp.ndarray>x) == size
                and (cnp.PyArray_NDIM(<cnp.ndarray>x) == 2
                     or (cnp.PyArray_NDIM(<cnp.ndarray>x) == 1 and self.B == 1))):
            arr = <cnp.ndarray>x
        else:
            arr = self._coerce(x, self.B, self.n_in, self._state[0].dtype)
        cdef const void* data = cnp.PyArray_DATA(arr)
        if self.typenum == cnp.NPY_FLOAT:
            if not all_finite(<const float*>data, size):
                raise ValueError("Input x contains NaN or infinity.")
        elif not all_finite(<const double*>data, size):
            raise ValueError("Input x contains NaN or infinity.")
        if self.release_gil:
            with nogil:
                self._run(data)
        else:
            self._run(data)
        return self.y

    cdef void _run(self, const void* x) noexcept nogil:
        # one step runs outside the pool: subnormals flushed (_fpmode.pxd)
        cdef fp_mode saved = flush_enter()
        if self.typenum == cnp.NPY_FLOAT:
            cell_step(<const float*>x, <float**>self.p, <float**>self.s, <float**>self.w,
                      self.B, self.n_in, self.n_hidden, self.relu)
            output_rows(<const float*>self.s[0], <const float*>self.p[P_W_OH],
                        <const float*>self.p[P_B_O], self.B, self.n_hidden, self.O,
                        self.activation, <float*>self.z, <float*>self.y_data)
        else:
            cell_step(<const double*>x, <double**>self.p, <double**>self.s, <double**>self.w,
                      self.B, self.n_in, self.n_hidden, self.relu)
            output_rows(<const double*>self.s[0], <const double*>self.p[P_W_OH],
                        <const double*>self.p[P_B_O], self.B, self.n_hidden, self.O,
                        self.activation, <double*>self.z, <double*>self.y_data)
        flush_leave(saved)
