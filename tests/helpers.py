"""Shared test helpers: random problems, an independent NumPy loss, and
finite differences (including the truncated-BPTT loss with detached state).

Nothing here calls the library's loss or gradient code: the losses are
written again from the contract's definitions, so a test comparing
``net.loss_and_grad`` with these helpers checks one against the other.
"""

import numpy as np

# (loss, output_activation) pairs the contract allows
LOSS_ACTIVATIONS = [
    ("mse", "identity"),
    ("mse", "sigmoid"),
    ("mse", "softmax"),
    ("binary_cross_entropy", "sigmoid"),
    ("cross_entropy", "softmax"),
]


def randomize_params(net, rng, scale=0.5):
    """Replace every parameter (biases included) with N(0, scale^2) values."""
    for name, value in net.params.items():
        net.params[name] = rng.normal(0.0, scale, value.shape)


def make_problem(rng, n, T, I, O, loss, output):
    """Inputs X (n, T, I) and targets y of the form the loss expects."""
    X = rng.normal(size=(n, T, I))
    lead = (n, T) if output == "sequence" else (n,)
    if loss == "cross_entropy":
        y = rng.integers(0, O, size=lead)
    elif loss == "binary_cross_entropy":
        y = rng.uniform(size=lead + (O,))
    else:
        y = rng.normal(size=lead + (O,))
    return X, y


def make_state(rng, cell, n, H, scale=0.5):
    """A random initial state of the cell's form (a tuple for lstm)."""
    if cell == "lstm":
        return (rng.normal(0, scale, (n, H)), rng.normal(0, scale, (n, H)))
    return rng.normal(0, scale, (n, H))


def loss_value(Y, y, loss, output):
    """The contract's loss of outputs Y (n, T, O), after the activation."""
    Y = Y if output == "sequence" else Y[:, -1]
    if loss == "cross_entropy":
        picked = np.take_along_axis(Y, np.asarray(y)[..., None], axis=-1)
        return -np.mean(np.log(picked))
    y = np.asarray(y, dtype=float)
    if y.ndim == Y.ndim - 1:
        y = y[..., None]
    if loss == "binary_cross_entropy":
        return -np.mean(y * np.log(Y) + (1 - y) * np.log(1 - Y))
    return np.mean((Y - y) ** 2)


def window_starts(T, truncate):
    """First timestep of each truncated-BPTT window (one window when None)."""
    return list(range(0, T, truncate or T))


def boundary_states(net, X, truncate, h0=None):
    """The state entering each window, computed once with the current params."""
    k = truncate or X.shape[1]
    states, state = [], h0
    for start in window_starts(X.shape[1], truncate):
        states.append(state)
        _, state = net.forward(X[:, start:start + k], h0=state)
    return states


def detached_loss(net, X, y, loss, output, truncate=None, h0=None):
    """The loss as a function of the params with each window's entering state
    held fixed: truncated BPTT computes exactly the gradient of this function
    (with truncate=None it is the plain loss).

    Returns a callable ``f()`` reading ``net.params`` at call time.
    """
    k = truncate or X.shape[1]
    starts = window_starts(X.shape[1], truncate)
    states = boundary_states(net, X, truncate, h0)

    def f():
        Y = np.concatenate([net.forward(X[:, s:s + k], h0=state)[0]
                            for s, state in zip(starts, states)], axis=1)
        return loss_value(Y, y, loss, output)

    return f


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to the array x,
    which f must read (x is perturbed in place and restored)."""
    grad = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        up = f()
        x[idx] = old - eps
        down = f()
        x[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


def numerical_param_grads(net, f, eps=1e-6):
    """Central differences of f() with respect to every parameter of net."""
    grads = {}
    for name in list(net.params):
        value = net.params[name].copy()

        def g(name=name, value=value):
            net.params[name] = value
            return f()

        grads[name] = numerical_gradient(g, value, eps)
        net.params[name] = value
    return grads


def assert_grads_close(actual, expected, rtol, atol=0.0, scale_atol=True):
    """Compare gradient dicts key by key; with ``scale_atol`` the absolute
    tolerance is ``atol`` times the largest |expected| of that parameter."""
    assert sorted(actual) == sorted(expected)
    for name in expected:
        exp = np.asarray(expected[name], dtype=np.float64)
        tol = atol * max(np.abs(exp).max(), 1e-300) if scale_atol else atol
        np.testing.assert_allclose(actual[name], exp, rtol=rtol, atol=tol,
                                   err_msg=f"gradient of {name}")
