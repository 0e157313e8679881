"""Recurrent cells: how :class:`bptt.RNN` drives each cell's kernels.

A cell object knows its parameter layout and calls the forward and BPTT
kernels of one backend (the compiled ``bptt._<cell>`` module or its NumPy
twin ``bptt.reference.<cell>``, which share function names and
signatures). Everything is time-major: X (T, B, I), H (T, B, H).

The interface every cell implements:

``gates``
    Rows of W_xh / W_hh per hidden unit (1 Elman, 4 LSTM, 3 GRU).
``recurrent_params``
    Names of the cell's parameters, in kernel argument order.
``forward(X, p, state0) -> (H, cache)``
    Runs the recurrence, returns the hidden states H (T, B, H) and what
    backward needs (``cache``, which includes H).
``last_state(cache) -> state``
    The state after the last step, in the contract's form (h, or (h, c)).
``backward(X, p, state0, cache, dH, truncate, grads, dX=None) -> dstate0``
    dH (T, B, H) and the cache are consumed as workspace; writes the cell's
    gradients into ``grads``, dL/dX into ``dX`` when given (T, B, I), and
    returns dL/dstate0 (a tuple (dh0, dc0) for the LSTM).

Optional class attributes, read by :class:`bptt.RNN`:

``extra_params``
    ``{name: shape}`` of parameters beyond W_xh, W_hh, b_h ("H" stands for
    hidden_size), initialised to zeros.
``initial_bias(H)``
    The initial b_h (zeros when absent).

Stacked layers feed ``dX`` of layer l+1 into ``dH`` of layer l; a reversed
direction runs the same kernels on X[::-1].
"""

import numpy as np


class ElmanCell:
    """h_t = f(W_xh x_t + W_hh h_{t-1} + b_h), f = tanh or relu."""

    gates = 1
    recurrent_params = ("W_xh", "W_hh", "b_h")

    def __init__(self, kernels, nonlinearity):
        self.kernels = kernels
        self.relu = nonlinearity == "relu"

    def forward(self, X, p, state0):
        T, B, _ = X.shape
        H = np.empty((T, B, p["W_hh"].shape[1]), dtype=X.dtype)
        self.kernels.elman_forward(X, p["W_xh"], p["W_hh"], p["b_h"], state0, self.relu, H)
        return H, H

    def last_state(self, cache):
        return cache[-1].copy()

    def backward(self, X, p, state0, cache, dH, truncate, grads, dX=None):
        dh0 = np.empty_like(state0)
        self.kernels.elman_backward(
            X, p["W_xh"], p["W_hh"], state0, cache, dH, self.relu, truncate,
            grads["W_xh"], grads["W_hh"], grads["b_h"], dh0, dX,
        )
        return dh0


class LSTMCell:
    """Gates i, f, g, o (PyTorch's order) stacked in W_xh, W_hh, b_h (4H rows).

    i, f, o = sigmoid(.), g = tanh(.) of W_xh x_t + W_hh h_{t-1} + b_h;
    c_t = f*c_{t-1} + i*g ; h_t = o*tanh(c_t). The state is (h, c).
    """

    gates = 4
    recurrent_params = ("W_xh", "W_hh", "b_h")

    def __init__(self, kernels, nonlinearity):
        self.kernels = kernels

    @staticmethod
    def initial_bias(n_hidden):
        """Forget-gate bias 1, the others 0 (Gers et al. 2000; Jozefowicz et
        al. 2015): the cell starts out remembering."""
        b_h = np.zeros(4 * n_hidden)
        b_h[n_hidden:2 * n_hidden] = 1.0
        return b_h

    def forward(self, X, p, state0):
        h0, c0 = state0
        T, B, _ = X.shape
        n_hidden = p["W_hh"].shape[1]
        G = np.empty((T, B, 4 * n_hidden), dtype=X.dtype)
        C = np.empty((T, B, n_hidden), dtype=X.dtype)
        H = np.empty((T, B, n_hidden), dtype=X.dtype)
        self.kernels.lstm_forward(X, p["W_xh"], p["W_hh"], p["b_h"], h0, c0, G, C, H)
        return H, (G, C, H)

    def last_state(self, cache):
        _, C, H = cache
        return H[-1].copy(), C[-1].copy()

    def backward(self, X, p, state0, cache, dH, truncate, grads, dX=None):
        h0, c0 = state0
        G, C, H = cache
        # dc0 enters as dL/dc after the last step (nothing flows in) and
        # leaves as dL/dc0
        dh0, dc0 = np.empty_like(h0), np.zeros_like(c0)
        self.kernels.lstm_backward(
            X, p["W_xh"], p["W_hh"], h0, c0, G, C, H, dH, truncate,
            grads["W_xh"], grads["W_hh"], grads["b_h"], dh0, dc0, dX=dX,
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
    recurrent_params = ("W_xh", "W_hh", "b_h", "b_hn")
    extra_params = {"b_hn": ("H",)}

    def __init__(self, kernels, nonlinearity):
        self.kernels = kernels

    def forward(self, X, p, state0):
        T, B, _ = X.shape
        n_hidden = p["W_hh"].shape[1]
        G = np.empty((T, B, 3 * n_hidden), dtype=X.dtype)
        HN = np.empty((T, B, n_hidden), dtype=X.dtype)
        H = np.empty((T, B, n_hidden), dtype=X.dtype)
        Gh = np.empty((B, 3 * n_hidden), dtype=X.dtype)
        self.kernels.gru_forward(X, p["W_xh"], p["W_hh"], p["b_h"], p["b_hn"], state0,
                                 G, HN, H, Gh)
        return H, (G, HN, H)

    def last_state(self, cache):
        return cache[2][-1].copy()

    def backward(self, X, p, state0, cache, dH, truncate, grads, dX=None):
        G, HN, H = cache
        dh0 = np.empty_like(state0)
        self.kernels.gru_backward(
            X, p["W_xh"], p["W_hh"], state0, G, HN, H, dH, truncate,
            grads["W_xh"], grads["W_hh"], grads["b_h"], grads["b_hn"], dh0, dX=dX,
        )
        return dh0


CELLS = {"rnn": ElmanCell, "lstm": LSTMCell, "gru": GRUCell}
