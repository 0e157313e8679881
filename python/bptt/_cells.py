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
``stepper(p, state0, activation) -> Stepper``
    Streaming inference one timestep at a time (``RNN.stream``).
``backward(X, p, state0, cache, dH, truncate, grads) -> dstate0``
    dH (T, B, H) is consumed as workspace; writes the cell's gradients
    into ``grads`` and returns dL/dstate0.

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

    def stepper(self, p, state0, activation):
        return self.kernels.Stepper(p["W_xh"], p["W_hh"], p["b_h"], p["W_oh"], p["b_o"],
                                    state0, self.relu, activation)

    def backward(self, X, p, state0, cache, dH, truncate, grads):
        dh0 = np.empty_like(state0)
        self.kernels.elman_backward(
            X, p["W_xh"], p["W_hh"], state0, cache, dH, self.relu, truncate,
            grads["W_xh"], grads["W_hh"], grads["b_h"], dh0,
        )
        return dh0


CELLS = {"rnn": ElmanCell}
