"""Recurrent cells: how :class:`bptt.RNN` drives each cell's kernels.

A cell object knows its parameter layout and calls the forward and BPTT
kernels of one backend (the compiled ``bptt._<cell>`` module or its NumPy
twin ``bptt.reference.<cell>``, which share function names and
signatures). Everything is time-major: X (T, B, I), H (T, B, H).

The interface every cell implements:

``gates``
    Rows of W_xh / W_hh per hidden unit (1 Elman, 4 LSTM, 3 GRU).
``allocate(T, B, H, dtype) -> cache``
    The arrays BPTT must keep, a tuple of arrays with time as the first
    axis (Elman: (H,); gated cells add their gate activations), so
    ``tuple(a[s:e] for a in cache)`` is the cache of timesteps s..e-1.
``forward(X, p, state0, cache, n_threads=1, slabs=1, slab_steps=0)``
    Runs the recurrence over X's timesteps from state0, filling cache;
    the compiled kernels split the batch over n_threads (bptt/_threads.py).
    With ``slabs`` > 1, X and the cache hold that many independent slabs of
    sequences one after another ((slabs*T, B/slabs, .), src/_cellparts.pxd
    says why), and state0 the slabs' states in batch order; the cache
    arrays may hold ``slab_steps`` timesteps per slab, of which this chunk
    is the first X.shape[0] / slabs (pass ``a[s:]`` of each).
``hidden(cache) -> H`` and ``state_after(cache, t) -> state``
    The hidden states (T, B, H), and the state after step t in the
    contract's form (h, or (h, c)) as views into the cache.
``backward(X, p, state0, cache, dH, dstate_next, truncate, grads, accumulate, n_threads, dX, slabs, slab_steps, dstate_out)``
    dH (T, B, H) is dL/dH from above; it and the gate activations of the
    cache are consumed as workspace;
    ``dstate_next`` (or None) is dL/dstate after the last step, flowing in
    from later timesteps. Writes (or with ``accumulate`` adds) the cell's
    gradients into ``grads`` and returns dL/dstate0 (for the LSTM a tuple
    (dh0, dc0)). Running it chunk by
    chunk from the end, passing each chunk's dstate0 on as the previous
    chunk's dstate_next, is BPTT over the whole sequence (with slabs,
    dstate_next enters at the last step of every slab). ``dstate_out`` (or
    None): a tuple of (T, B, H) arrays (with slabs (T, slabs*B, H), rows in
    state0's order; time-major views of batch-first arrays will do), one per
    state array (h, then the LSTM's c), that receive the total dL/dstate at
    every step (from dH, from later steps within the truncation window and
    from dstate_next); the kernels' ``dh_out`` (and ``dc_out``).
``stepper(p, state0, activation) -> Stepper or None``
    The compiled streaming stepper of the cell's kernels (``RNN.stream``,
    src/_stepper.pxi); None for the NumPy backend, which
    :class:`CellStepper` streams through its forward kernel.

Optional class attributes, read by :class:`bptt.RNN`:

``extra_params``
    ``{name: shape}`` of parameters beyond W_xh, W_hh, b_h ("H" stands for
    hidden_size), initialised to zeros.
``initial_bias(H)``
    The initial b_h (zeros when absent).

Stacked layers feed ``dX`` of layer l+1 into ``dH`` of layer l; a reversed
direction runs the same kernels on X[::-1].
"""

import functools

import numpy as np

from ._validation import check_state, coerce_step_input


class ElmanCell:
    """h_t = f(W_xh x_t + W_hh h_{t-1} + b_h), f = tanh or relu."""

    gates = 1

    def __init__(self, kernels, nonlinearity):
        self.kernels = kernels
        self.relu = nonlinearity == "relu"

    def allocate(self, T, B, n_hidden, dtype):
        return (np.empty((T, B, n_hidden), dtype=dtype),)

    def hidden(self, cache):
        return cache[0]

    def state_after(self, cache, t):
        return cache[0][t]

    def forward(self, X, p, state0, cache, n_threads=1, slabs=1, slab_steps=0):
        self.kernels.elman_forward(X, p["W_xh"], p["W_hh"], p["b_h"], state0, self.relu,
                                   cache[0], n_threads, slabs, slab_steps)

    def stepper(self, p, state0, activation):
        return _compiled_stepper(self, p, (state0,), self.relu, activation)

    def backward(self, X, p, state0, cache, dH, dstate_next, truncate, grads,
                 accumulate=False, n_threads=1, dX=None, slabs=1, slab_steps=0,
                 dstate_out=None):
        if dstate_next is not None:
            _last_steps(dH, slabs)[...] += _by_slab(dstate_next, slabs)
        dh0 = np.empty_like(state0)
        self.kernels.elman_backward(
            X, p["W_xh"], p["W_hh"], state0, cache[0], dH, self.relu, truncate,
            grads["W_xh"], grads["W_hh"], grads["b_h"], dh0, accumulate, dX, n_threads,
            slabs, slab_steps, *(dstate_out or ()),
        )
        return dh0


class LSTMCell:
    """Gates i, f, g, o (PyTorch's order) stacked in W_xh, W_hh, b_h (4H rows).

    i, f, o = sigmoid(.), g = tanh(.) of W_xh x_t + W_hh h_{t-1} + b_h;
    c_t = f*c_{t-1} + i*g ; h_t = o*tanh(c_t). The state is (h, c).
    """

    gates = 4

    def __init__(self, kernels, nonlinearity):
        self.kernels = kernels

    @staticmethod
    def initial_bias(n_hidden):
        """Forget-gate bias 1, the others 0 (Gers et al. 2000; Jozefowicz et
        al. 2015): the cell starts out remembering."""
        b_h = np.zeros(4 * n_hidden)
        b_h[n_hidden:2 * n_hidden] = 1.0
        return b_h

    def allocate(self, T, B, n_hidden, dtype):
        # gate outputs G, cell states C, hidden states H
        return (np.empty((T, B, 4 * n_hidden), dtype=dtype),
                np.empty((T, B, n_hidden), dtype=dtype),
                np.empty((T, B, n_hidden), dtype=dtype))

    def hidden(self, cache):
        return cache[2]

    def state_after(self, cache, t):
        return cache[2][t], cache[1][t]

    def forward(self, X, p, state0, cache, n_threads=1, slabs=1, slab_steps=0):
        h0, c0 = state0
        G, C, H = cache
        self.kernels.lstm_forward(X, p["W_xh"], p["W_hh"], p["b_h"], h0, c0, G, C, H,
                                  n_threads, slabs, slab_steps)

    def stepper(self, p, state0, activation):
        return _compiled_stepper(self, p, state0, False, activation)

    def backward(self, X, p, state0, cache, dH, dstate_next, truncate, grads,
                 accumulate=False, n_threads=1, dX=None, slabs=1, slab_steps=0,
                 dstate_out=None):
        h0, c0 = state0
        G, C, H = cache
        # dc0 enters as dL/dc after the last step and leaves as dL/dc0
        dh0 = np.empty_like(h0)
        if dstate_next is None:
            dc0 = np.zeros_like(c0)
        else:
            _last_steps(dH, slabs)[...] += _by_slab(dstate_next[0], slabs)
            dc0 = np.array(dstate_next[1], copy=True)
        self.kernels.lstm_backward(
            X, p["W_xh"], p["W_hh"], h0, c0, G, C, H, dH, truncate,
            grads["W_xh"], grads["W_hh"], grads["b_h"], dh0, dc0, accumulate, dX,
            n_threads, slabs, slab_steps, *(dstate_out or ()),
        )
        return dh0, dc0


class GRUCell:
    """Gates r, z, n (PyTorch's order) stacked in W_xh, W_hh, b_h (3H rows).

    r, z = sigmoid(.) of W_x x_t + W_h h_{t-1} + b_h (their rows);
    n = tanh(W_xn x_t + b_n + r*(W_hn h_{t-1} + b_hn));
    h_t = (1 - z)*n + z*h_{t-1}. b_hn (H,) is a parameter of its own because
    r multiplies it.
    """

    gates = 3
    extra_params = {"b_hn": ("H",)}

    def __init__(self, kernels, nonlinearity):
        self.kernels = kernels

    def allocate(self, T, B, n_hidden, dtype):
        # gate outputs G, W_hn h + b_hn per step HN, hidden states H
        return (np.empty((T, B, 3 * n_hidden), dtype=dtype),
                np.empty((T, B, n_hidden), dtype=dtype),
                np.empty((T, B, n_hidden), dtype=dtype))

    def hidden(self, cache):
        return cache[2]

    def state_after(self, cache, t):
        return cache[2][t]

    def forward(self, X, p, state0, cache, n_threads=1, slabs=1, slab_steps=0):
        G, HN, H = cache
        Gh = np.empty((state0.shape[0], G.shape[2]), dtype=X.dtype)
        self.kernels.gru_forward(X, p["W_xh"], p["W_hh"], p["b_h"], p["b_hn"], state0,
                                 G, HN, H, Gh, n_threads, slabs, slab_steps)

    def stepper(self, p, state0, activation):
        return _compiled_stepper(self, p, (state0,), False, activation, ("b_hn",))

    def backward(self, X, p, state0, cache, dH, dstate_next, truncate, grads,
                 accumulate=False, n_threads=1, dX=None, slabs=1, slab_steps=0,
                 dstate_out=None):
        G, HN, H = cache
        if dstate_next is not None:
            _last_steps(dH, slabs)[...] += _by_slab(dstate_next, slabs)
        dh0 = np.empty_like(state0)
        self.kernels.gru_backward(
            X, p["W_xh"], p["W_hh"], state0, G, HN, H, dH, truncate,
            grads["W_xh"], grads["W_hh"], grads["b_h"], grads["b_hn"], dh0, accumulate, dX,
            n_threads, slabs, slab_steps, *(dstate_out or ()),
        )
        return dh0


def _by_slab(state, slabs):
    """A (B, H) state as (slabs, B / slabs, H)."""
    return state.reshape(slabs, -1, state.shape[-1])


def _last_steps(dH, slabs):
    """dH[-1] of every slab of a (slabs*T, B/slabs, H) array, as (slabs, B/slabs, H)."""
    return dH.reshape(slabs, -1, *dH.shape[1:])[:, -1]


def _compiled_stepper(cell, p, state0, relu, activation, extra=()):
    """The cell kernels' compiled Stepper (src/_stepper.pxi), or None when
    they have none (the NumPy backend); its ``reset`` validates."""
    if not hasattr(cell.kernels, "Stepper"):
        return None
    params = tuple(p[name] for name in ("W_xh", "W_hh", "b_h", "W_oh", "b_o", *extra))
    stepper = _checked(cell.kernels.Stepper)(params, state0, relu, activation,
                                             coerce_step_input)
    stepper._state_form = _state_form(state0)
    return stepper


def _state_form(state0):
    """check_state's arguments after h0 for states like ``state0`` (a tuple
    of (n, H) arrays, two for the LSTM)."""
    n, n_hidden = state0[0].shape
    return n, n_hidden, state0[0].dtype.type, len(state0) == 2


class _CheckedReset:
    """``reset(h0)`` validated by check_state, as forward's h0 is: the
    compiled Stepper copies whatever it is given into its state buffers."""

    def reset(self, h0):
        """Set the state to ``h0`` (same form and shapes as ``state``)."""
        super().reset(check_state(h0, *self._state_form))


@functools.lru_cache(maxsize=None)
def _checked(stepper_type):
    # a Python subclass: step stays the compiled method, reset gains the check
    return type(stepper_type.__name__, (_CheckedReset, stepper_type),
                {"__module__": stepper_type.__module__, "__doc__": stepper_type.__doc__})


class CellStepper:
    """Streaming inference through a cell's forward kernel, one step at a time.

    :meth:`bptt.RNN.stream` for the NumPy backend: every buffer (a one-step
    cache, the time-major input, the outputs) is allocated here once, and each
    ``step`` runs the cell's forward kernel on T = 1 and the output layer.
    """

    def __init__(self, cell, out, p, state0, activation):
        n, n_hidden = (state0[0] if isinstance(state0, tuple) else state0).shape
        self._cell, self._out, self._activation = cell, out, activation
        self._p = {name: value.copy() for name, value in p.items()}  # a snapshot
        dtype = self._p["W_hh"].dtype
        self._n_in = self._p["W_xh"].shape[1]
        self._cache = cell.allocate(1, n, n_hidden, dtype)
        self._state = self._copy(state0)
        self._x = np.empty((1, n, self._n_in), dtype=dtype)
        self._z = np.empty((n, self._p["W_oh"].shape[0]), dtype=dtype)
        self.y = np.empty_like(self._z)

    @staticmethod
    def _copy(state):
        return tuple(a.copy() for a in state) if isinstance(state, tuple) else state.copy()

    @property
    def state(self):
        """A copy of the current state (h, or (h, c))."""
        return self._copy(self._state)

    def reset(self, h0):
        """Set the state (same form and shape as ``state``), validated as
        forward's h0 is."""
        state = check_state(h0, *_state_form(
            self._state if isinstance(self._state, tuple) else (self._state,)))
        self._set_state(state)

    def _set_state(self, state):
        if isinstance(self._state, tuple):
            for a, b in zip(self._state, state, strict=True):
                a[...] = b
        else:
            self._state[...] = state

    def step(self, x):
        """Advance one timestep: x (n, I) (or (I,) for n = 1) -> y (n, O)."""
        n = self._x.shape[1]
        self._x[0] = coerce_step_input(x, n, self._n_in, self._x.dtype)
        self._cell.forward(self._x, self._p, self._state, self._cache)
        self._set_state(self._cell.state_after(self._cache, 0))
        self._out.output_forward(self._cell.hidden(self._cache)[0], self._p["W_oh"],
                                 self._p["b_o"], self._activation, self._z, self.y)
        return self.y


CELLS = {"rnn": ElmanCell, "lstm": LSTMCell, "gru": GRUCell}
