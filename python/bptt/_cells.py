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
``forward(X, p, state0, cache, n_threads=1)``
    Runs the recurrence over X's timesteps from state0, filling cache;
    the compiled kernels split the batch over n_threads (bptt/_threads.py).
``hidden(cache) -> H`` and ``state_after(cache, t) -> state``
    The hidden states (T, B, H), and the state after step t in the
    contract's form (h, or (h, c)) as views into the cache.
``backward(X, p, state0, cache, dH, dstate_next, truncate, grads, accumulate, n_threads) -> dstate0``
    dH (T, B, H) is dL/dH from above and is consumed as workspace;
    ``dstate_next`` (or None) is dL/dstate after the last step, flowing in
    from later timesteps. Writes (or with ``accumulate`` adds) the cell's
    gradients into ``grads`` and returns dL/dstate0. Running it chunk by
    chunk from the end, passing each chunk's dstate0 on as the previous
    chunk's dstate_next, is BPTT over the whole sequence.
``stepper(p, state0, activation) -> Stepper``
    Streaming inference one timestep at a time (``RNN.stream``).

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

    def allocate(self, T, B, n_hidden, dtype):
        return (np.empty((T, B, n_hidden), dtype=dtype),)

    def hidden(self, cache):
        return cache[0]

    def state_after(self, cache, t):
        return cache[0][t]

    def forward(self, X, p, state0, cache, n_threads=1):
        self.kernels.elman_forward(X, p["W_xh"], p["W_hh"], p["b_h"], state0, self.relu,
                                   cache[0], n_threads)

    def stepper(self, p, state0, activation):
        return self.kernels.Stepper(p["W_xh"], p["W_hh"], p["b_h"], p["W_oh"], p["b_o"],
                                    state0, self.relu, activation)

    def backward(self, X, p, state0, cache, dH, dstate_next, truncate, grads,
                 accumulate=False, n_threads=1):
        if dstate_next is not None:
            dH[-1] += dstate_next
        dh0 = np.empty_like(state0)
        self.kernels.elman_backward(
            X, p["W_xh"], p["W_hh"], state0, cache[0], dH, self.relu, truncate,
            grads["W_xh"], grads["W_hh"], grads["b_h"], dh0, accumulate, None, n_threads,
        )
        return dh0


CELLS = {"rnn": ElmanCell}
