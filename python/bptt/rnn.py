"""The network: :class:`RNN`, a recurrent layer plus an output layer."""

from contextlib import nullcontext
import numbers
import os

import numpy as np

from ._cells import CELLS, CellStepper
# re-exported: the variant and loader have been importable from here
from ._kernels import SIMD_VARIANTS, compiled_helpers, compiled_variant, load_kernels  # noqa: F401
from . import _threads, interop
from ._threads import plan_threads, serial_blas
from ._validation import (
    as_numeric_array,
    cast_finite,
    check_choice,
    check_dtype,
    check_positive_int,
    check_sample_weight,
    check_sequences,
    check_state,
    check_target,
    time_major,
)

NONLINEARITIES = ("tanh", "relu")
OUTPUT_ACTIVATIONS = {"identity": 0, "sigmoid": 1, "softmax": 2}
INITS = ("orthogonal", "xavier", "identity", "uniform")
BACKENDS = ("cython", "numpy")
LOSSES = ("mse", "cross_entropy", "binary_cross_entropy")
OUTPUTS = ("sequence", "last")
# Each loss that is computed from the logits needs its matching output.
LOSS_ACTIVATION = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}
# forward() runs long sequences in chunks of timesteps holding about this many
# hidden values, so inference memory does not grow with T.
FORWARD_CHUNK_ELEMENTS = 1 << 18
# loss_and_grad() keeps the cache BPTT needs for every timestep, but its
# workspaces (the time-major input, dL/dH, the output layer's rows) cover one
# chunk of timesteps: at least this many rows (timesteps x samples), so the
# chunk GEMMs stay efficient, and at most about 1/10 of the sequence (the
# gradients and the packed recurrent weights share the rest of the 1.3x
# memory budget).
TRAIN_CHUNK_ROWS = 1024
# ... and at most this many rows, and rows of at most this many
# multiply-adds (gates x hidden x (hidden + input) a row): Python raises
# KeyboardInterrupt (Ctrl-C) only between kernel calls, so a chunk's time
# bounds how long it waits. On the loaded 2-core machine a tenth of a
# 40000-step sequence (32 samples, H=96) took 1-1.7 s a chunk, 2^14 rows
# 0.05-0.28 s; an LSTM at H=512 (n=128, T=2000) waited up to 1.9 s for its
# 2^14-row chunks. The S-XL benchmark sizes stay under both.
TRAIN_CHUNK_MAX_ROWS = 1 << 14
TRAIN_CHUNK_MAX_WORK = 1 << 32
# ... unless the workspaces of the whole sequence are this small anyway: then
# one chunk saves the driver's per-chunk calls (about 5% at the M size).
TRAIN_ONE_CHUNK_BYTES = 1 << 22
# loss_and_grad's buffers (cache and chunk workspaces) are kept for the next
# call with the same shapes when they take at most this much: a fresh
# allocation of a few MB comes from mmap and page-faults on first touch,
# which doubled the GRU's M-size training step (glibc trims the heap top
# after each call), and zeroing the fresh pages of the XL-size cache (52 MB)
# took 3% of its step (rnn XL 113-117 -> 108-115 ms kept). Larger buffers
# are freed: there the memory held between calls matters more.
KEEP_WORKSPACE_BYTES = 1 << 26
# what RNN.get_config describes: the constructor's arguments but the seed
_CONFIG_KEYS = ("input_size", "hidden_size", "output_size", "cell", "nonlinearity",
                "output_activation", "init", "dtype", "backend")

def _rng(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if random_state is None or (
        isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
    ):
        return np.random.default_rng(random_state)
    raise TypeError(
        f"random_state must be None, an int, a numpy Generator or RandomState; "
        f"got {random_state!r}."
    )


def _copy_state(state):
    if isinstance(state, tuple):
        return tuple(a.copy() for a in state)
    return state.copy()


def _slab_state(state, n):
    """A state (or tuple of states) of shape (slabs, n/slabs, H) as a
    C-contiguous (n, H), as the kernels take it: a view of the cache's rows
    when slabs is 1, else a copy. (A reshape alone is a strided view when the
    slabs hold one sample each: each row is then a timestep of its own slab.)"""
    if isinstance(state, tuple):
        return tuple(np.ascontiguousarray(a.reshape(n, -1)) for a in state)
    return np.ascontiguousarray(state.reshape(n, -1))


def _check_loss(value):
    if not np.isfinite(value):
        raise FloatingPointError(
            f"the loss is not finite ({value}): the parameters hold NaN/inf or "
            f"the activations overflowed."
        )


def param_shapes(cell, input_size, hidden_size, output_size):
    """The parameters' shapes, ``{name: shape}``, of a network of this
    configuration (see :class:`RNN`); bptt.load checks stored arrays
    against them before building the network."""
    G, H = CELLS[cell].gates, hidden_size
    shapes = {"W_xh": (G * H, input_size), "W_hh": (G * H, H), "b_h": (G * H,)}
    for name, shape in getattr(CELLS[cell], "extra_params", {}).items():
        shapes[name] = tuple(H if d == "H" else d for d in shape)
    shapes["W_oh"] = (output_size, H)
    shapes["b_o"] = (output_size,)
    return shapes


def physical_memory():
    """Bytes of physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # e.g. Windows
        return None


def _bytes(n):
    """n bytes for a message: 7.2 GB."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "bytes" else f"{n} bytes"
        n /= 1000


class Params(dict):
    """The network's parameters: a dict that keeps its arrays usable.

    The compiled kernels trust the parameter shapes, so every write checks
    them: ``params[name] = array``, ``update`` and ``|=`` check the name and
    shape, reject NaN/inf (after the cast to the network's dtype) and store a
    C-contiguous copy of the network's dtype (the caller's array is never
    aliased or modified). A bulk write checks every value before storing
    any. The keys are fixed: ``pop``, ``popitem``, ``clear``, ``del`` and
    ``setdefault`` of a new key raise TypeError. It stays a ``dict`` (the
    design's ``dict[str, ndarray]``): ``dict(params)``, ``params | other``
    and ``{**params}`` give plain dicts, ``copy`` and pickling give Params.
    """

    def __init__(self, shapes, dtype, values):
        if hasattr(self, "_shapes"):  # __init__ again would change the shapes
            raise TypeError("Params cannot be re-initialised; assign net.params instead.")
        super().__init__()
        self._shapes = dict(shapes)
        self._dtype = dtype
        dict.update(self, self._checked({name: values[name] for name in shapes}))

    def _checked(self, values):
        """``values`` (a dict of name to array-like) checked and converted,
        as a new dict; raises before anything is stored."""
        checked = {}
        for name, value in values.items():
            if name not in self._shapes:
                raise KeyError(
                    f"unknown parameter {name!r}; this network has {list(self._shapes)}."
                )
            arr = as_numeric_array(value, f"params[{name!r}]")
            if arr.shape != self._shapes[name]:
                raise ValueError(
                    f"params[{name!r}] must have shape {self._shapes[name]}; got an "
                    f"array of shape {arr.shape}."
                )
            checked[name] = cast_finite(arr, self._dtype, f"params[{name!r}]", copy=True)
        return checked

    def __setitem__(self, name, value):
        dict.update(self, self._checked({name: value}))

    def update(self, *args, **kwargs):
        dict.update(self, self._checked(dict(*args, **kwargs)))

    def __ior__(self, other):
        self.update(other)
        return self

    def setdefault(self, name, default=None):
        if name in self:  # a read: dict.setdefault writes only a missing key
            return self[name]
        raise TypeError("parameters cannot be added to a network")

    def __delitem__(self, name):
        raise TypeError("parameters cannot be removed from a network")

    def pop(self, *args):
        raise TypeError("parameters cannot be removed from a network")

    def popitem(self):
        raise TypeError("parameters cannot be removed from a network")

    def clear(self):
        raise TypeError("parameters cannot be removed from a network")

    def __reduce__(self):
        return (Params, (self._shapes, self._dtype, dict(self)))

    def copy(self):
        return Params(self._shapes, self._dtype, self)


class RNN:
    """A recurrent network trained by backpropagation through time.

    A recurrent layer (Elman, LSTM or GRU) followed by a dense output layer
    applied at every timestep::

        rnn:  h_t = f(W_xh x_t + W_hh h_{t-1} + b_h),  f = tanh or relu
        lstm: [i, f, g, o] = W_xh x_t + W_hh h_{t-1} + b_h    (4H rows, in this order)
              i, f, o = sigmoid(.), g = tanh(.)
              c_t = f * c_{t-1} + i * g ;  h_t = o * tanh(c_t)
        gru:  [r, z, n] blocks of W_xh, W_hh, b_h              (3H rows, in this order)
              r = sigmoid(W_xr x_t + W_hr h_{t-1} + b_r), z likewise
              n = tanh(W_xn x_t + b_n + r * (W_hn h_{t-1} + b_hn))
              h_t = (1 - z) * n + z * h_{t-1}
        y_t = phi(W_oh h_t + b_o),  phi = identity, sigmoid or softmax

    The gate order and formulas are PyTorch's (``torch.nn.LSTM``,
    ``torch.nn.GRU``), with PyTorch's two bias vectors folded into ``b_h``
    except GRU's ``b_hn``, which the reset gate multiplies; see
    :meth:`to_torch_state_dict` and :meth:`from_torch_state_dict`.

    Parameters
    ----------
    input_size : int
        Features per timestep, I.
    hidden_size : int
        Hidden units, H.
    output_size : int
        Outputs per timestep, O.
    cell : {"rnn", "lstm", "gru"}, default="rnn"
        The recurrent cell.
    nonlinearity : {"tanh", "relu"}, default="tanh"
        f of the Elman cell; the gated cells ignore it.
    output_activation : {"identity", "sigmoid", "softmax"}, default="identity"
        phi of the output layer.
    init : {"orthogonal", "xavier", "identity", "uniform"}, default="orthogonal"
        Scheme for W_hh (per gate block for gated cells): a random orthogonal
        matrix; Glorot uniform; the identity (for ReLU networks, Le et al.
        2015); or U(-1/sqrt(H), 1/sqrt(H)) as PyTorch does. W_xh and W_oh are
        always Glorot uniform, biases zero, except the LSTM's forget-gate
        bias b_h[H:2H], which starts at 1 so that the cell initially keeps
        its state (Gers et al. 2000; Jozefowicz et al. 2015).
    dtype : {"float32", "float64"}, default="float64"
        Floating type of the parameters and of every computation.
    backend : {"cython", "numpy"}, default="cython"
        The compiled kernels, or the NumPy reference they are tested against.
    random_state : int, numpy Generator or None, default=None
        Seeds the initial weights; the same seed gives the same network.

    Attributes
    ----------
    params : dict of str to ndarray
        ``W_xh`` (G*H, I), ``W_hh`` (G*H, H), ``b_h`` (G*H,), ``W_oh`` (O, H),
        ``b_o`` (O,), where G is 1 for rnn, 4 for lstm (gate blocks i, f, g,
        o), 3 for gru (gate blocks r, z, n; plus ``b_hn`` (H,)). Arrays can
        be replaced by arrays of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> import bptt
    >>> net = bptt.RNN(2, 8, 1, random_state=0)
    >>> X = np.zeros((4, 10, 2))
    >>> Y, h = net.forward(X)
    >>> Y.shape, h.shape
    ((4, 10, 1), (4, 8))
    >>> loss, grads = net.loss_and_grad(X, np.ones((4, 10)))
    >>> sorted(grads) == sorted(net.params)
    True
    >>> lstm = bptt.RNN(2, 8, 1, cell="lstm", random_state=0)
    >>> Y, (h, c) = lstm.forward(X)
    >>> lstm.params["W_hh"].shape, c.shape
    ((32, 8), (4, 8))
    """

    def __init__(self, input_size, hidden_size, output_size, *, cell="rnn",
                 nonlinearity="tanh", output_activation="identity",
                 init="orthogonal", dtype="float64", backend="cython",
                 random_state=None):
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.output_size = check_positive_int("output_size", output_size)
        self.cell = check_choice("cell", cell, CELLS)
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        self.output_activation = check_choice(
            "output_activation", output_activation, OUTPUT_ACTIVATIONS)
        self.init = check_choice("init", init, INITS)
        self.dtype = check_dtype(dtype)
        self.backend = check_choice("backend", backend, BACKENDS)
        self._bind_kernels()
        self._check_size()
        self._params = Params(self._param_shapes(), self.dtype,
                              self._initial_params(_rng(random_state)))

    def get_config(self):
        """The constructor arguments that rebuild this network, weights aside.

        Returns
        -------
        config : dict
            ``input_size``, ``hidden_size``, ``output_size``, ``cell``,
            ``nonlinearity``, ``output_activation``, ``init``, ``dtype`` (its
            name, "float32" or "float64") and ``backend``: plain Python
            values (JSON-serialisable). ``RNN.from_config(config)`` builds a
            network of the same shapes and settings; ``random_state`` is not
            part of it (the weights are in :attr:`params`).
        """
        config = {name: getattr(self, name) for name in _CONFIG_KEYS}
        config["dtype"] = np.dtype(self.dtype).name
        return config

    @classmethod
    def from_config(cls, config, *, params=None, random_state=None):
        """Build a network from :meth:`get_config`'s description.

        Parameters
        ----------
        config : mapping of str to object
            Constructor arguments, as :meth:`get_config` returns them (every
            key but ``input_size``, ``hidden_size``, ``output_size`` may be
            left out for its default).
        params : mapping of str to array-like, optional
            Weights to replace the initial ones (see :attr:`params`; same
            keys and shapes, validated as an assignment to it is).
        random_state : int, numpy Generator or None, default=None
            Seeds the initial weights.

        Returns
        -------
        net : RNN
        """
        try:
            keys = set(config)
        except TypeError:
            raise TypeError(f"config must be a mapping of str to values; got "
                            f"{type(config).__name__}.") from None
        unknown = keys - set(_CONFIG_KEYS)
        if unknown:
            raise TypeError(f"config has the unknown keys {sorted(unknown)}; expected "
                            f"some of {list(_CONFIG_KEYS)}.")
        net = cls(**config, random_state=random_state)
        if params is not None:
            net.params = params
        return net

    def _check_size(self):
        """Raise MemoryError, before allocating, for a network whose
        initialisation cannot fit in this machine's physical memory.

        The initial weights are drawn in float64 and then copied into
        ``dtype``, so at least that much is held at once; left to NumPy,
        RNN(3, 3 * 10**8, 2) filled 7 GB for 15 s before failing.
        """
        n_params = sum(int(np.prod(shape, dtype=object))
                       for shape in self._param_shapes().values())
        needed = n_params * (8 + np.dtype(self.dtype).itemsize)
        available = physical_memory()
        if available is not None and needed > available:
            raise MemoryError(
                f"{self!r} has {n_params:,} parameters: {_bytes(n_params * np.dtype(self.dtype).itemsize)} "
                f"of {np.dtype(self.dtype).name}, and initialising them needs at least "
                f"{_bytes(needed)}, more than this machine's {_bytes(available)} of "
                f"physical memory."
            )

    def _bind_kernels(self):
        self._cell = CELLS[self.cell](
            load_kernels(self.backend, self._cell_kernel_name()), self.nonlinearity)
        self._out = load_kernels(self.backend, "output")

    def _cell_kernel_name(self):
        # the kernel modules are bptt._elman, bptt._lstm, bptt._gru
        return {"rnn": "elman"}.get(self.cell, self.cell)

    # ------------------------------------------------------------------ params
    def _param_shapes(self):
        return param_shapes(self.cell, self.input_size, self.hidden_size, self.output_size)

    def _initial_params(self, rng):
        G, H, I, O = CELLS[self.cell].gates, self.hidden_size, self.input_size, self.output_size

        def glorot(rows, cols):
            bound = np.sqrt(6.0 / (rows + cols))
            return rng.uniform(-bound, bound, size=(rows, cols))

        def recurrent_block():
            if self.init == "orthogonal":
                q, r = np.linalg.qr(rng.standard_normal((H, H)))
                return q * np.where(np.diag(r) < 0, -1.0, 1.0)
            if self.init == "identity":
                return np.eye(H)
            if self.init == "xavier":
                return glorot(H, H)
            bound = 1.0 / np.sqrt(H)
            return rng.uniform(-bound, bound, size=(H, H))

        values = {
            "W_xh": glorot(G * H, I),
            "W_hh": np.vstack([recurrent_block() for _ in range(G)]),
            "b_h": np.zeros(G * H),
        }
        initial_bias = getattr(CELLS[self.cell], "initial_bias", None)
        if initial_bias is not None:
            values["b_h"] = initial_bias(H)
        for name in getattr(CELLS[self.cell], "extra_params", {}):
            values[name] = np.zeros(H)
        values["W_oh"] = glorot(O, H)
        values["b_o"] = np.zeros(O)
        return values

    @property
    def params(self):
        """dict of str to ndarray: the parameters (see the class docstring)."""
        return self._params

    @params.setter
    def params(self, values):
        if values is self._params:  # net.params |= {...}: validated in place
            return
        missing = set(self._params) - set(values)
        extra = set(values) - set(self._params)
        if missing or extra:
            raise KeyError(
                f"params must have exactly the keys {sorted(self._params)}; "
                f"missing {sorted(missing)}, unexpected {sorted(extra)}."
            )
        # Validate everything before replacing anything.
        self._params = Params(self._param_shapes(), self.dtype, values)

    # ------------------------------------------------------------------ checks
    def _check_state(self, h0, n_samples):
        """h0 of forward, loss_and_grad and stream (see check_state)."""
        return check_state(h0, n_samples, self.hidden_size, self.dtype,
                           pair=self.cell == "lstm")

    # ------------------------------------------------------------------ maths
    def forward(self, X, h0=None):
        """Run the network over sequences, keeping no per-step cache.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, input_size)
        h0 : ndarray of shape (n_samples, hidden_size), optional
            Initial hidden state (zeros when None); for "lstm" a tuple
            (h0, c0) of such arrays.

        Returns
        -------
        Y : ndarray of shape (n_samples, n_timesteps, output_size)
            Outputs after ``output_activation`` at every timestep.
        state : ndarray of shape (n_samples, hidden_size)
            The hidden state after the last step; for "lstm" a tuple
            (h_T, c_T). Pass it back as ``h0`` to continue the sequences.
        """
        X = check_sequences(X, self.input_size, self.dtype)
        n, T, _ = X.shape
        state = self._check_state(h0, n)
        p = self._params
        H, O = self.hidden_size, self.output_size
        act = OUTPUT_ACTIVATIONS[self.output_activation]
        chunk = max(1, min(T, FORWARD_CHUNK_ELEMENTS // (n * H * self._cell.gates)))
        cache = self._cell.allocate(chunk, n, H, self.dtype)
        Xc = np.empty((chunk, n, self.input_size), dtype=self.dtype)
        Yt = np.empty((T, n, O), dtype=self.dtype)
        Z = np.empty((chunk * n, O), dtype=self.dtype)
        with serial_blas() if self._holds_blas(n, T) else nullcontext(1) as budget:
            n_threads = self._plan_threads(budget, n)
            for start in range(0, T, chunk):
                stop = min(T, start + chunk)
                self._forward_chunk(X, start, stop, Xc, cache, state, Z, Yt, act,
                                    n_threads)
                state = _copy_state(self._cell.state_after(cache, stop - start - 1))
        if not np.isfinite(Yt).all():
            raise FloatingPointError(
                "forward produced non-finite outputs: the parameters hold NaN/inf "
                "or the inputs are too large for the network's dtype."
            )
        return np.ascontiguousarray(Yt.transpose(1, 0, 2)), state

    def stream(self, n_samples=1, h0=None):
        """Prepare step-by-step inference for live data (one timestep per call).

        The returned object holds a snapshot of the parameters and every
        buffer, so each step allocates nothing: its ``step(x)`` takes x of
        shape (n_samples, input_size) (or (input_size,) for one sample) and
        returns y of shape (n_samples, output_size) in a buffer that the next
        step overwrites. ``state`` gives a copy of the current state (h, or
        (h, c) for "lstm") and ``reset(h0)`` sets it, checking h0 as this
        method does. Feeding the timesteps of
        X one by one gives the same outputs as :meth:`forward` on X.

        Parameters
        ----------
        n_samples : int, default=1
            Sequences advanced together.
        h0 : ndarray of shape (n_samples, hidden_size), optional
            Initial state (zeros when None); for "lstm" a tuple (h0, c0).

        Returns
        -------
        stream : Stepper
            Has ``step(x) -> y``, ``state`` and ``reset(h0)``.

        Examples
        --------
        >>> import numpy as np, bptt
        >>> net = bptt.RNN(1, 8, 1, random_state=0)
        >>> s = net.stream()
        >>> for x_t in np.sin(np.linspace(0, 3, 5)):
        ...     y_t = s.step(np.array([x_t]))
        >>> y_t.shape
        (1, 1)
        """
        n_samples = check_positive_int("n_samples", n_samples)
        state = self._check_state(h0, n_samples)
        activation = OUTPUT_ACTIVATIONS[self.output_activation]
        stepper = self._cell.stepper(self._params, state, activation)
        if stepper is None:  # the NumPy backend steps through its forward
            stepper = CellStepper(self._cell, self._out, self._params, state, activation)
        return stepper

    def _step_work(self, n_samples):
        H, G = self.hidden_size, self._cell.gates
        return n_samples * G * H * (H + self.input_size)

    def _holds_blas(self, n_samples, n_timesteps):
        """Whether a call holds BLAS at one thread (serial_blas) for its run.

        True when the call splits its batch over threads, or when its GEMMs
        are large enough for OpenBLAS to thread them: left to itself,
        OpenBLAS's threads gain nothing at the M size and collapse it (1.4 ->
        5.6 ms) when another process holds a core. Tiny calls leave BLAS
        alone and skip the two calls that hold and restore it.
        """
        step = self._step_work(n_samples)
        return ((n_samples > 1 and step >= 2 * _threads.MIN_WORK_PER_THREAD)
                or step * n_timesteps >= _threads.BLAS_THREADED_WORK)

    def _plan_threads(self, budget, n_samples):
        return plan_threads(budget, n_samples, self._step_work(n_samples))

    def _forward_chunk(self, X, start, stop, Xc, cache, state, Z, Yt, act, n_threads):
        """forward() of timesteps start..stop-1 into Yt, through the cache buffers."""
        n, H, O = X.shape[0], self.hidden_size, self.output_size
        steps = stop - start
        part = tuple(a[:steps] for a in cache)
        self._cell.forward(time_major(X, start, stop, Xc), self._params, state, part,
                           n_threads)
        rows = steps * n
        self._out.output_forward(self._cell.hidden(part).reshape(rows, H),
                                 self._params["W_oh"], self._params["b_o"], act, Z[:rows],
                                 Yt[start:stop].reshape(rows, O))

    def loss_and_grad(self, X, y, *, loss="mse", output="sequence", truncate=None,
                      h0=None, sample_weight=None):
        """Loss and its gradient with respect to every parameter (BPTT).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, input_size)
        y : array-like
            ``output="sequence"``: (n_samples, n_timesteps, output_size), or
            (n_samples, n_timesteps) when output_size is 1 or for
            cross-entropy labels. ``output="last"``: (n_samples, output_size),
            or (n_samples,).
        loss : {"mse", "cross_entropy", "binary_cross_entropy"}, default="mse"
            Mean squared error over every element; cross-entropy of the softmax
            output against integer labels, averaged over samples (and
            timesteps); binary cross-entropy of the sigmoid output, averaged
            over every element.
        output : {"sequence", "last"}, default="sequence"
            Loss at every timestep (many-to-many) or at the last (many-to-one).
        truncate : int or None, default=None
            Truncated BPTT: the sequence is cut into windows [0, k), [k, 2k),
            ...; the state flows forward across window boundaries but no
            gradient flows back across them. None is full BPTT.
        h0 : ndarray of shape (n_samples, hidden_size), optional
            Initial state, as in :meth:`forward`.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sequence, not all zero: the loss is
            the weighted mean, sum_i w_i l_i / sum_i w_i, where l_i is
            sequence i's mean loss (over its timesteps and outputs, as
            above), and the gradient is that of the weighted mean. None
            weighs every sequence alike.

        Returns
        -------
        loss : float
        grads : dict of str to ndarray
            dloss/dparam, same keys and shapes as :attr:`params`.
        """
        value, grads, _ = self._loss_grad_state(X, y, loss, output, truncate, h0,
                                                sample_weight)
        return value, grads

    def _loss_grad_state(self, X, y, loss, output, truncate, h0, sample_weight=None):
        """loss_and_grad, plus the state after the last step (for the
        estimators' truncated training, which carries it into the next window)."""
        check_choice("loss", loss, LOSSES)
        check_choice("output", output, OUTPUTS)
        needed = LOSS_ACTIVATION.get(loss)
        if needed is not None and self.output_activation != needed:
            raise ValueError(
                f"loss={loss!r} needs output_activation={needed!r}; this network "
                f"has output_activation={self.output_activation!r}."
            )
        truncate = check_positive_int("truncate", truncate, allow_none=True)
        X = check_sequences(X, self.input_size, self.dtype)
        n, T, _ = X.shape
        target = check_target(y, loss, output, n, T, self.output_size, self.dtype)
        weights = check_sample_weight(sample_weight, n, self.dtype)
        state0 = self._check_state(h0, n)
        if not self._holds_blas(n, T):
            return self._bptt(X, target, loss, output, truncate or 0, state0,
                              weights=weights)
        with serial_blas() as budget:
            return self._bptt(X, target, loss, output, truncate or 0, state0,
                              self._plan_threads(budget, n), weights)

    def _chunk_steps(self, T, n, truncate):
        """Timesteps per chunk of loss_and_grad's workspaces."""
        workspace = T * n * (self.hidden_size + self.input_size + 3 * self.output_size)
        if workspace * np.dtype(self.dtype).itemsize <= TRAIN_ONE_CHUNK_BYTES:
            return T
        row_work = self._cell.gates * self.hidden_size * (self.hidden_size + self.input_size)
        rows = max(TRAIN_CHUNK_ROWS, min((T * n) // 10, TRAIN_CHUNK_MAX_ROWS,
                                         TRAIN_CHUNK_MAX_WORK // row_work))
        steps = min(T, max(1, -(-rows // n)))
        if truncate and steps < T:
            # chunk starts on window starts, so the kernels' t % truncate holds
            steps = min(T, -(-steps // truncate) * truncate)
        return steps

    def _bptt(self, X, target, loss, output, truncate, state0, n_threads=1, weights=None):
        """Forward over every timestep, then BPTT chunk by chunk from the end.

        X is batch-first and validated, target as from check_target.
        Returns the loss, the gradients and the state after the last step.
        """
        n, T, I = X.shape
        H, O = self.hidden_size, self.output_size
        steps = self._chunk_steps(T, n, truncate)
        starts = list(range(0, T, steps))
        sequence = output == "sequence"
        rows_max = steps * n if sequence else n
        # one slab of sequences per thread when the threads divide the batch:
        # each thread then works on its own rows from the first phase to the
        # last (src/_cellparts.pxd, "slabs")
        slabs = n_threads if n_threads > 1 and n % n_threads == 0 else 1
        # dict.pop is atomic: a concurrent call on this network allocates its own
        key = (T, n, steps, rows_max, slabs, self.dtype)
        workspace = self.__dict__.pop("_workspace", {}).get(key)
        if workspace is None:
            workspace = (self._cell.allocate(slabs * T, n // slabs, H, self.dtype),
                         np.empty((slabs * steps, n // slabs, I), dtype=self.dtype),
                         *(np.empty((rows_max, O), dtype=self.dtype) for _ in range(3)),
                         np.empty((slabs * steps, n // slabs, H), dtype=self.dtype))
        value, grads, final_state = self._bptt_in(workspace, X, target, loss, sequence,
                                                  truncate, state0, steps, starts,
                                                  n_threads, slabs, weights)
        if sum(a.nbytes for a in (*workspace[0], *workspace[1:])) <= KEEP_WORKSPACE_BYTES:
            self._workspace = {key: workspace}
        return value, grads, final_state

    def _loss_denominator(self, loss, sequence, n, T, weights=None):
        # with sample weights the mean runs over the weights: each row counts
        # its sequence's weight instead of 1
        loss_rows = (T if sequence else 1) * (n if weights is None else weights.sum())
        return loss_rows if loss == "cross_entropy" else loss_rows * self.output_size

    def _bptt_in(self, workspace, X, target, loss, sequence, truncate, state0, steps,
                 starts, n_threads, slabs, weights=None):
        """_bptt's work, in the buffers of ``workspace``, in ``slabs`` slabs of
        n / slabs sequences: the cache arrays are (slabs*T, n/slabs, .), slab
        k holding sequences k*n/slabs.. one timestep after another, the chunk
        workspaces likewise (slabs*steps, n/slabs, .), and the output layer's
        rows and target follow that order (src/_cellparts.pxd, "slabs"; one
        slab is the plain time-major layout)."""
        n, T, I = X.shape
        H = self.hidden_size
        cell, out, p = self._cell, self._out, self._params
        act = OUTPUT_ACTIVATIONS[self.output_activation]
        cache, Xc, Z, Y, dZ, dH = workspace
        rows = n // slabs
        # (slabs*T, rows, .) arrays seen as (T, slabs, rows, .): step t of
        # every slab, in batch order once reshaped to (n, .)
        by_step = tuple(a.reshape(slabs, T, rows, -1).swapaxes(0, 1) for a in cache)
        state = state0
        for s in starts:
            e = min(T, s + steps)
            cell.forward(time_major(X, s, e, Xc, slabs, n_threads), p, state,
                         tuple(a[s:] for a in cache), n_threads, slabs, T)
            state = _slab_state(cell.state_after(by_step, e - 1), n)
        # a copy, so the caller does not keep the whole cache alive through it
        final_state = _copy_state(state)

        denominator = self._loss_denominator(loss, sequence, n, T, weights)
        loss_code = LOSSES.index(loss)
        Hall = cell.hidden(cache).reshape(slabs * T * rows, H)
        grads = {name: np.empty_like(value) for name, value in p.items()}
        if sequence and slabs > 1:
            # target rows (T*n, ...) time-major, in slab order
            target = np.ascontiguousarray(
                target.reshape(T, slabs, rows, -1).swapaxes(0, 1)
            ).reshape(target.shape)
        if weights is not None and sequence:
            # one weight per output row (T*n, time-major), in the target's order
            weights = np.ascontiguousarray(np.broadcast_to(
                weights.reshape(slabs, 1, rows), (slabs, T, rows))).reshape(-1)
        value = 0.0
        carry = None
        for i, s in enumerate(reversed(starts)):
            e = min(T, s + steps)
            dHc = dH[: slabs * (e - s)]
            if sequence:
                # slab k's rows of this chunk: k*T*rows + s*rows onwards
                value += out.output_layer(
                    Hall[s * rows:], p["W_oh"], p["b_o"], act, loss_code, target[s * rows:],
                    denominator, Z[:n * (e - s)], Y[:n * (e - s)], dZ[:n * (e - s)],
                    grads["W_oh"], grads["b_o"], dHc.reshape(-1, H), i > 0, n_threads,
                    slabs, T * rows, None if weights is None else weights[s * rows:])
            elif i == 0:
                H_last = _slab_state(cell.hidden(by_step)[T - 1], n)
                dH_last = np.empty_like(H_last)
                value = out.output_layer(H_last, p["W_oh"], p["b_o"], act, loss_code, target,
                                         denominator, Z, Y, dZ, grads["W_oh"], grads["b_o"],
                                         dH_last, False, n_threads, slabs, 0, weights)
                dH_by_slab = dHc.reshape(slabs, e - s, rows, H)
                dH_by_slab[:, :-1] = 0
                dH_by_slab[:, -1] = dH_last.reshape(slabs, rows, H)
            elif carry is None:
                # loss at the last step only, and truncation stopped its
                # gradient: earlier timesteps contribute nothing
                break
            else:
                dHc[...] = 0
            if i == 0:
                _check_loss(value)
            chunk_state0 = (state0 if s == 0 else
                            _slab_state(cell.state_after(by_step, s - 1), n))
            # the last chunk forward is the first one backward: Xc still holds it
            Xt = Xc[: slabs * (e - s)] if i == 0 else time_major(X, s, e, Xc, slabs,
                                                                 n_threads)
            carry = cell.backward(Xt, p, chunk_state0, tuple(a[s:] for a in cache), dHc,
                                  carry, truncate, grads, i > 0, n_threads, None, slabs, T)
            if truncate and s % truncate == 0:
                carry = None  # no gradient crosses a window boundary
        _check_loss(value)
        return value, grads, final_state

    def release_buffers(self):
        """Free the buffers :meth:`loss_and_grad` keeps for its next call.

        A training loop's calls with the same shapes reuse them (up to
        ``bptt.rnn.KEEP_WORKSPACE_BYTES``, 64 MB); this frees them when
        training is over. The estimators call it at the end of ``fit`` (not
        of ``partial_fit``, whose next call often is one more batch). Nothing
        else changes: the next call allocates anew.
        """
        self.__dict__.pop("_workspace", None)

    def __getstate__(self):
        # kernel modules do not pickle; they are looked up again on load
        state = self.__dict__.copy()
        del state["_cell"], state["_out"]
        state.pop("_workspace", None)  # buffers, not state
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind_kernels()

    # ------------------------------------------------------------- interop
    def to_torch_state_dict(self, *, rnn_prefix="", output_prefix=""):
        """The parameters under PyTorch's names, as NumPy arrays.

        The keys are those of ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (one
        layer) and of the ``torch.nn.Linear`` output layer: ``weight_ih_l0``
        (G*H, I), ``weight_hh_l0`` (G*H, H), ``bias_ih_l0`` (G*H,),
        ``bias_hh_l0`` (G*H,), ``weight`` (O, H), ``bias`` (O,). bptt keeps
        one bias where PyTorch has two, so ``bias_ih_l0`` gets all of ``b_h``
        and ``bias_hh_l0`` is zero, except the n block of a GRU, which holds
        ``b_hn``. PyTorch computes the same function with these weights
        (the output activation is not a parameter: apply it yourself).

        Load into PyTorch with, e.g.::

            sd = net.to_torch_state_dict()
            lstm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()
                                  if k.endswith("_l0")})
            linear.load_state_dict({"weight": torch.from_numpy(sd["weight"]),
                                    "bias": torch.from_numpy(sd["bias"])})

        Parameters
        ----------
        rnn_prefix, output_prefix : str, default=""
            Prepended to the recurrent and the output layer's keys, for a
            module holding both (e.g. ``"rnn."`` and ``"fc."``).

        Returns
        -------
        state_dict : dict of str to ndarray
            New arrays of the network's dtype.
        """
        return interop.to_torch_state_dict(self, rnn_prefix=rnn_prefix,
                                           output_prefix=output_prefix)

    @classmethod
    def from_torch_state_dict(cls, state_dict, *, cell=None, nonlinearity="tanh",
                              output_activation="identity", dtype=None,
                              backend="cython", rnn_prefix="", output_prefix=""):
        """Build a network from PyTorch-named weights.

        The inverse of :meth:`to_torch_state_dict`, and the way to take over
        the weights of a one-layer unidirectional ``torch.nn.RNN`` / ``LSTM``
        / ``GRU`` followed by a ``torch.nn.Linear``: pass the two modules'
        state dicts merged (PyTorch tensors are accepted and copied to
        NumPy). The two PyTorch biases are folded, ``b_h = bias_ih_l0 +
        bias_hh_l0``, except the n block of a GRU: ``b_h[2H:]`` gets
        ``bias_ih_l0[2H:]`` and ``b_hn`` gets ``bias_hh_l0[2H:]``. A
        network's own dict round-trips exactly; a PyTorch dict comes back
        from :meth:`to_torch_state_dict` with the biases folded (the same
        function, bias_hh moved into bias_ih up to rounding).

        Parameters
        ----------
        state_dict : mapping of str to array-like
            ``weight_ih_l0`` (G*H, I), ``weight_hh_l0`` (G*H, H), ``weight``
            (O, H); optionally ``bias_ih_l0``, ``bias_hh_l0`` (G*H,) and
            ``bias`` (O,) (missing biases, as for ``bias=False`` modules, are
            zero). No other keys.
        cell : {"rnn", "lstm", "gru"} or None, default=None
            None infers it from the shapes: G = 1, 4 or 3 rows of
            ``weight_hh_l0`` per column.
        nonlinearity : {"tanh", "relu"}, default="tanh"
            The ``nonlinearity`` of a ``torch.nn.RNN``; not stored in its
            state dict.
        output_activation : {"identity", "sigmoid", "softmax"}, default="identity"
        dtype : {"float32", "float64"} or None, default=None
            None keeps ``weight_hh_l0``'s dtype when it is float32 or float64,
            else float64.
        backend : {"cython", "numpy"}, default="cython"
        rnn_prefix, output_prefix : str, default=""
            Prefixes of the recurrent and the output layer's keys.

        Returns
        -------
        net : RNN
        """
        return interop.from_torch_state_dict(
            cls, state_dict, cell=cell, nonlinearity=nonlinearity,
            output_activation=output_activation, dtype=dtype, backend=backend,
            rnn_prefix=rnn_prefix, output_prefix=output_prefix)

    def __repr__(self):
        return (f"RNN({self.input_size}, {self.hidden_size}, {self.output_size}, "
                f"cell={self.cell!r}, nonlinearity={self.nonlinearity!r}, "
                f"output_activation={self.output_activation!r}, init={self.init!r}, "
                f"dtype={np.dtype(self.dtype).name!r}, backend={self.backend!r})")
