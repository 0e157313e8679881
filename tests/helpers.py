"""Shared test helpers: random problems, independent losses, gradient checks.

The loss helpers are written again from the contract's definitions, so a
test comparing ``net.loss_and_grad`` with them checks one against the
other; truncated BPTT is checked against losses whose state is held fixed
at each window start.

Tests mirror the modules: each module of ``python/bptt/`` and each kernel
family of ``src/`` has its test file, ``test_<module>.py`` where the names
match, else the one below; the files not listed here test behaviour across
modules (test_property, test_learning, test_docs, test_fork, test_interrupt,
test_fpmode, test_kernel_checks, test_batch_budgets, test_zero_timesteps, test_truncation,
test_torch_interop).

==============================  ===============================================
module                          tests
==============================  ===============================================
_kernels                        test_kernels
_threads                        test_threads (thread plans, BLAS), test_threadpool
_validation                     test_bad_input, test_inputs (src/_inputs.pyx)
_cells                          test_cells
_elman / _lstm / _gru, and      test_elman, test_lstm, test_gru (kernel and
reference/elman, lstm, gru      reference of one cell in one file; the gated
                                cells share cell_suite.py)
_output, reference/output       test_output
reference (the plain maths)     test_reference
optimizers, src/_optim.pyx      test_optimizers
_bptt                           test_bptt, test_chunking, test_workspace;
                                test_layers and test_ragged (its layered path),
                                test_gradient_flow (state gradients)
rnn                             test_rnn, test_params, test_stream
interop                         test_interop, test_torch_interop
persistence                     test_persistence, test_load_hardening
estimators                      test_estimators, test_estimator_training
gradcheck, plot, preprocessing  test_gradcheck, test_plot, test_preprocessing
_gradient_demo, __main__        test_gradient_demo, test_cli
src/vmath.h, src/_vmath.pyx     test_vmath
src/threadpool.h                test_threadpool
the package's imports           test_imports (FLOORS)
==============================  ===============================================
"""

import importlib.util

import numpy as np

import bptt
from bptt import _cells, _vmath
from bptt._kernels import load_kernels

# the cells, as RNN(cell=...) names them, from the registry: parametrize over it
CELLS = tuple(_cells.CELLS)
# rows of W_xh / W_hh per hidden unit
GATES = {cell: _cells.CELLS[cell].n_gates for cell in CELLS}
# whether a cell's state is a tuple (h, c) rather than one array h
HAS_CELL_STATE = {cell: _cells.CELLS[cell].has_cell_state for cell in CELLS}
# (cell, nonlinearity) of every recurrence: the Elman cell's two, the gated cells'
CELL_NONLINEARITIES = [(cell, nl) for cell in CELLS
                       for nl in (("tanh", "relu") if _cells.CELLS[cell].nonlinearity else ("tanh",))]
# the cells with a PyTorch counterpart (CellSpec.torch_module), which the
# tests against PyTorch and of the state-dict exchange run
TORCH_CELLS = tuple(cell for cell in CELLS if _cells.CELLS[cell].torch_module is not None)
TORCH_CELL_NONLINEARITIES = [(cell, nl) for cell, nl in CELL_NONLINEARITIES
                             if cell in TORCH_CELLS]

# the builds of the compiled kernels this CPU runs, narrowest first:
# "baseline" and, on x86-64, "avx2" and "avx512" where they are built
BUILDS = ["baseline"] + [variant for variant in _vmath.cpu_variants()[1:]
                         if importlib.util.find_spec(f"bptt._vmath_{variant}")]

# (output_activation, loss) pairs the contract allows
ACTIVATION_LOSSES = [
    ("identity", "mse"),
    ("sigmoid", "mse"),
    ("softmax", "mse"),
    ("sigmoid", "binary_cross_entropy"),
    ("softmax", "cross_entropy"),
]


def cell_kernels(backend, cell):
    """The kernel module of a cell, as its registry entry names it ("rnn"
    runs bptt._elman / reference.elman)."""
    return load_kernels(backend, _cells.CELLS[cell].kernel)


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


def randomize_params(net, rng, scale=0.5):
    """Replace every parameter (biases included) with N(0, scale^2) values."""
    for name, value in net.params.items():
        net.params[name] = rng.normal(0.0, scale, value.shape)


def make_data(rng, n, T, I, O, loss, output):
    """Inputs X (n, T, I) and targets y of the form the loss expects."""
    X = rng.standard_normal((n, T, I))
    return X, make_target(rng, loss, output, n, T, O)


def make_net(cell, I, H, O, *, backend="cython", dtype="float64", act="identity",
             seed=0):
    """A network whose every parameter is random (randomize_params)."""
    net = bptt.RNN(I, H, O, cell=cell, output_activation=act, backend=backend,
                   dtype=dtype, random_state=seed)
    randomize_params(net, np.random.default_rng(seed + 100))
    return net


def twin(net, backend, dtype=None):
    """A network of another backend / dtype with the same parameters."""
    other = bptt.RNN(net.input_size, net.hidden_size, net.output_size, cell=net.cell,
                     nonlinearity=net.nonlinearity, output_activation=net.output_activation,
                     backend=backend, dtype=dtype or np.dtype(net.dtype).name)
    other.params = {k: v for k, v in net.params.items()}
    return other


def make_state(rng, cell, n, H, scale=0.5):
    """A random initial state of the cell's form (a tuple (h, c) for lstm)."""
    spec = _cells.CELLS[cell]
    return spec.state_of([rng.normal(0, scale, (n, H)) for _ in spec.state])


def as_list(state):
    """A state as a list of arrays: [h], or [h, c] for the LSTM."""
    return list(state) if isinstance(state, tuple) else [state]


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


def detached_loss(net, X, y, loss, output, truncate=None, h0=None):
    """The loss as a function of the params with each window's entering state
    held fixed: truncated BPTT computes exactly the gradient of this function
    (with truncate=None it is the plain loss).

    Returns a callable ``f()`` reading ``net.params`` at call time.
    """
    spans = windows(X.shape[1], truncate)
    states = window_states(net, X, truncate, h0)

    def f():
        Y = np.concatenate([net.forward(X[:, s:e], h0=state)[0]
                            for (s, e), state in zip(spans, states)], axis=1)
        return loss_value(Y, y, loss, output)

    return f


def central_difference(f, x, idx, eps=1e-6):
    """d f() / d x[idx] by central differences; f must read the array x,
    which is perturbed in place and restored."""
    old = x[idx]
    x[idx] = old + eps
    up = f()
    x[idx] = old - eps
    down = f()
    x[idx] = old
    return (up - down) / (2 * eps)


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of x."""
    grad = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        grad[idx] = central_difference(f, x, idx, eps)
    return grad


def numerical_param_grads(net, f, eps=1e-6):
    """Central differences of f() with respect to every parameter of net
    (each parameter array is perturbed in place, where the net reads it)."""
    return {name: numerical_gradient(f, value, eps) for name, value in net.params.items()}


def assert_grads_close(actual, expected, rtol, atol=0.0, scale_atol=True):
    """Compare gradient dicts key by key; with ``scale_atol`` the absolute
    tolerance is ``atol`` times the largest |expected| of that parameter."""
    assert sorted(actual) == sorted(expected)
    for name in expected:
        exp = np.asarray(expected[name], dtype=np.float64)
        tol = atol * max(np.abs(exp).max(), 1e-300) if scale_atol else atol
        np.testing.assert_allclose(actual[name], exp, rtol=rtol, atol=tol,
                                   err_msg=f"gradient of {name}")


# scikit-learn's checks that the series transformers (bptt.SequenceScaler,
# SequencePatcher) fail by design: a 2-D X is a batch of univariate series
# (n_samples, n_timesteps), so its second axis is time, which a fitted
# transformer accepts at any length, and n_features_in_ counts channels.
VARIABLE_LENGTH = (
    "a 2-D X is (n_samples, n_timesteps) univariate series: series of another "
    "length are valid input, and n_features_in_ counts features per timestep (1)"
)
SERIES_TRANSFORMER_EXPECTED_FAILED = {
    "check_n_features_in": VARIABLE_LENGTH,
    "check_n_features_in_after_fitting": VARIABLE_LENGTH,
    "check_transformer_general": VARIABLE_LENGTH + " (it ends by expecting X[:, :-1] "
    "to be rejected)",
    "check_estimators_empty_data_messages": "the second axis of a 2-D X is time: "
    "the message for shape (12, 0) says '0 timestep(s)', not '0 feature(s)'",
    "check_transformer_data_not_an_array": "a list is a list of series (the "
    "design's ragged input) and comes back as a list of arrays, not as one array",
}
