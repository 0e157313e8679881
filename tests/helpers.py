"""Shared test helpers: data for every loss/output, and gradient checks."""

import numpy as np

import bptt

# (output_activation, loss) pairs the contract allows
ACTIVATION_LOSSES = [
    ("identity", "mse"),
    ("sigmoid", "mse"),
    ("softmax", "mse"),
    ("sigmoid", "binary_cross_entropy"),
    ("softmax", "cross_entropy"),
]


def make_target(rng, loss, output, n, T, O):
    """A random target of the shape the contract asks for."""
    lead = (n, T) if output == "sequence" else (n,)
    if loss == "cross_entropy":
        return rng.integers(0, O, size=lead)
    if loss == "binary_cross_entropy":
        return rng.random(lead + (O,))
    return rng.standard_normal(lead + (O,))


def make_problem(seed, n, T, I, H, O, *, loss="mse", output="sequence", **net_kwargs):
    """A network, inputs and targets for one combination of options."""
    rng = np.random.default_rng(seed)
    net = bptt.RNN(I, H, O, random_state=seed, **net_kwargs)
    # perturb the biases so no gradient is trivially zero
    for name, value in net.params.items():
        if name.startswith("b"):
            net.params[name] = 0.1 * rng.standard_normal(value.shape)
    X = rng.standard_normal((n, T, I))
    y = make_target(rng, loss, output, n, T, O)
    return net, X, y


def windows(T, truncate):
    """[(start, stop), ...] of the truncation windows [0, k), [k, 2k), ..."""
    k = truncate or T
    return [(s, min(T, s + k)) for s in range(0, T, k)]


def window_states(net, X, truncate, h0=None):
    """The states entering each window, computed with the current parameters."""
    states, state = [], h0
    for start, stop in windows(X.shape[1], truncate):
        states.append(state)
        _, state = net.forward(X[:, start:stop], h0=state)
    return states


def detached_loss_and_grad(net, X, y, *, loss, output, truncate, states):
    """Loss and gradient with the state entering each window held fixed.

    This is truncated BPTT computed independently: each window is run as a
    separate sequence from its carried state, with full BPTT inside it, and
    the window losses are weighted to the contract's overall mean.
    """
    T = X.shape[1]
    total = 0.0
    grads = {name: np.zeros_like(value, dtype=np.float64) for name, value in net.params.items()}
    spans = windows(T, truncate)
    for (start, stop), state in zip(spans, states):
        if output == "sequence":
            weight = (stop - start) / T
            yw = y[:, start:stop]
        elif stop == T:
            weight, yw = 1.0, y
        else:
            continue
        value, g = net.loss_and_grad(X[:, start:stop], yw, loss=loss, output=output,
                                     h0=state)
        total += weight * value
        for name in grads:
            grads[name] += weight * g[name]
    return total, grads


def numerical_grad(loss_fn, params, eps=1e-6):
    """Central finite differences of ``loss_fn()`` w.r.t. every entry of params."""
    grads = {}
    for name, value in params.items():
        g = np.zeros(value.shape)
        for idx in np.ndindex(value.shape):
            old = value[idx]
            value[idx] = old + eps
            plus = loss_fn()
            value[idx] = old - eps
            minus = loss_fn()
            value[idx] = old
            g[idx] = (plus - minus) / (2 * eps)
        grads[name] = g
    return grads
