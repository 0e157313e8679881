"""The Elman cell (src/_elman.pyx, python/bptt/reference/elman.py): the
compiled kernels against the NumPy reference for every option and dtype, and
BPTT gradients against central finite differences."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bptt
from helpers import (ACTIVATION_LOSSES, detached_loss_and_grad, make_problem, make_target,
                     numerical_param_grads, window_states)

SHAPES = [  # n, T, I, H, O
    (1, 1, 1, 1, 1),
    (1, 9, 1, 16, 1),
    (5, 1, 3, 4, 2),
    (4, 11, 3, 1, 3),
    (7, 13, 5, 9, 4),
]


def pair(seed, I, H, O, dtype="float64", **kwargs):
    """The same network on both backends (the cython one in ``dtype``)."""
    ref = bptt.RNN(I, H, O, backend="numpy", random_state=seed, **kwargs)
    fast = bptt.RNN(I, H, O, backend="cython", random_state=seed, dtype=dtype, **kwargs)
    rng = np.random.default_rng(seed)
    for name, value in ref.params.items():
        if name.startswith("b"):
            ref.params[name] = 0.1 * rng.standard_normal(value.shape)
        fast.params[name] = ref.params[name]
    return ref, fast


def assert_parity(ref, fast, X, y, h0, tol, **kwargs):
    loss_r, g_r = ref.loss_and_grad(X, y, h0=h0, **kwargs)
    loss_f, g_f = fast.loss_and_grad(X, y, h0=h0, **kwargs)
    assert loss_f == pytest.approx(loss_r, rel=tol, abs=tol)
    for name in g_r:
        assert g_f[name].dtype == fast.dtype
        scale = max(1.0, np.abs(g_r[name]).max())
        np.testing.assert_allclose(g_f[name], g_r[name], rtol=tol, atol=tol * scale,
                                   err_msg=name)
    Y_r, h_r = ref.forward(X, h0=h0)
    Y_f, h_f = fast.forward(X, h0=h0)
    assert Y_f.dtype == fast.dtype and h_f.dtype == fast.dtype
    np.testing.assert_allclose(Y_f, Y_r, rtol=tol, atol=tol)
    np.testing.assert_allclose(h_f, h_r, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("truncate", [None, 3])
@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("activation,loss", ACTIVATION_LOSSES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_parity_every_option(shape, nonlinearity, activation, loss, output, truncate,
                             dtype, tol):
    n, T, I, H, O = shape
    if loss == "cross_entropy" and O == 1:
        O = 2
    ref, fast = pair(7, I, H, O, dtype, nonlinearity=nonlinearity,
                     output_activation=activation)
    rng = np.random.default_rng(8)
    X = rng.standard_normal((n, T, I))
    y = make_target(rng, loss, output, n, T, O)
    h0 = 0.3 * rng.standard_normal((n, H))
    assert_parity(ref, fast, X, y, h0, tol, loss=loss, output=output, truncate=truncate)


@pytest.mark.parametrize("init", ["orthogonal", "xavier", "identity", "uniform"])
def test_parity_every_init(init):
    ref, fast = pair(3, 2, 6, 2, init=init, nonlinearity="relu" if init == "identity" else "tanh")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 8, 2))
    assert_parity(ref, fast, X, rng.standard_normal((3, 8, 2)), None, 1e-10)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-9), ("float32", 1e-3)])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_parity_long_sequence_is_stable(nonlinearity, dtype, tol):
    ref, fast = pair(11, 3, 16, 2, dtype, nonlinearity=nonlinearity,
                     init="identity" if nonlinearity == "relu" else "orthogonal")
    if nonlinearity == "relu":  # keep a ReLU network with identity W_hh bounded
        scaled = 0.95 * ref.params["W_hh"]
        for net in (ref, fast):
            net.params["W_hh"] = scaled
    rng = np.random.default_rng(12)
    X = 0.5 * rng.standard_normal((2, 1000, 3))
    y = rng.standard_normal((2, 1000, 2))
    assert_parity(ref, fast, X, y, None, tol)
    _, grads = fast.loss_and_grad(X, y)
    assert all(np.isfinite(g).all() for g in grads.values())


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), T=st.integers(1, 12), I=st.integers(1, 5),
       H=st.integers(1, 10), O=st.integers(1, 4),
       truncate=st.one_of(st.none(), st.integers(1, 6)),
       output=st.sampled_from(["sequence", "last"]),
       nonlinearity=st.sampled_from(["tanh", "relu"]),
       seed=st.integers(0, 2**16))
def test_parity_random_shapes(n, T, I, H, O, truncate, output, nonlinearity, seed):
    ref, fast = pair(seed, I, H, O, nonlinearity=nonlinearity)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, I))
    y = make_target(rng, "mse", output, n, T, O)
    assert_parity(ref, fast, X, y, None, 1e-10, output=output, truncate=truncate)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_input_gradient_for_stacking(backend):
    # dX = dA @ W_xh, the hook stacked layers use: check it by finite differences
    from bptt.rnn import load_kernels
    k = load_kernels(backend, "elman")
    rng = np.random.default_rng(0)
    T, B, I, H = 5, 2, 3, 4
    X = rng.standard_normal((T, B, I))
    W_xh, W_hh = rng.standard_normal((H, I)), 0.5 * rng.standard_normal((H, H))
    b_h, h0 = rng.standard_normal(H), rng.standard_normal((B, H))
    G = rng.standard_normal((T, B, H))  # loss = sum(G * H)

    def loss(Xv):
        Hs = np.empty((T, B, H))
        k.elman_forward(Xv, W_xh, W_hh, b_h, h0, False, Hs)
        return float(np.sum(G * Hs))

    Hs = np.empty((T, B, H))
    k.elman_forward(X, W_xh, W_hh, b_h, h0, False, Hs)
    dX = np.empty_like(X)
    outs = [np.empty((H, I)), np.empty((H, H)), np.empty(H), np.empty((B, H))]
    k.elman_backward(X, W_xh, W_hh, h0, Hs, G.copy(), False, 0, *outs, dX=dX)
    eps, num = 1e-6, np.empty_like(X)
    for idx in np.ndindex(X.shape):
        Xp, Xm = X.copy(), X.copy()
        Xp[idx] += eps
        Xm[idx] -= eps
        num[idx] = (loss(Xp) - loss(Xm)) / (2 * eps)
    np.testing.assert_allclose(dX, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("truncate", [None, 1, 2, 3])
@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("activation,loss", ACTIVATION_LOSSES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_gradient_matches_finite_differences(nonlinearity, activation, loss, output,
                                             truncate, backend):
    net, X, y = make_problem(1, n=3, T=7, I=2, H=4, O=3, loss=loss, output=output,
                             nonlinearity=nonlinearity, output_activation=activation,
                             backend=backend)
    h0 = 0.5 * np.random.default_rng(5).standard_normal((3, 4))
    value, grads = net.loss_and_grad(X, y, loss=loss, output=output,
                                     truncate=truncate, h0=h0)
    # Truncated BPTT is the gradient of the loss with the state entering each
    # window held fixed at its value under the current parameters.
    states = window_states(net, X, truncate, h0=h0)

    def loss_fn():
        return detached_loss_and_grad(net, X, y, loss=loss, output=output,
                                      truncate=truncate, states=states)[0]

    assert value == pytest.approx(loss_fn(), rel=1e-12)
    expected = numerical_param_grads(net, loss_fn)
    assert set(grads) == set(net.params)
    for name in grads:
        assert grads[name].shape == net.params[name].shape
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-6, atol=1e-8,
                                   err_msg=name)
    # no parameter gets a trivially zero gradient (the check would be vacuous)
    assert all(np.abs(g).max() > 0 for g in grads.values())


@pytest.mark.parametrize("truncate", [None, 2])
def test_gradient_with_respect_to_h0_flows_through_the_first_window(truncate):
    # The gradient reaches h0 through the first window: a loss that depends
    # on h0 must change the parameter gradients when h0 changes.
    net, X, y = make_problem(2, n=2, T=6, I=1, H=3, O=1)
    _, g_zero = net.loss_and_grad(X, y, truncate=truncate)
    _, g_h0 = net.loss_and_grad(X, y, truncate=truncate, h0=np.ones((2, 3)))
    assert not np.allclose(g_zero["W_hh"], g_h0["W_hh"])
