"""LSTM and GRU cells: parity of the compiled kernels with the NumPy
reference, gradients against finite differences, state handling,
initialisation and the PyTorch state-dict exchange (without PyTorch)."""

import numpy as np
import pytest

import bptt
from bptt import _bptt
from helpers import (
    LOSS_ACTIVATIONS,
    assert_grads_close,
    detached_loss,
    make_data,
    make_state,
    numerical_gradient,
    numerical_param_grads,
    randomize_params,
)

GATED = ["lstm", "gru"]
GATES = {"lstm": 4, "gru": 3}


def make_net(cell, I, H, O, *, backend="cython", dtype="float64", act="identity",
             seed=0):
    net = bptt.RNN(I, H, O, cell=cell, output_activation=act, backend=backend,
                   dtype=dtype, random_state=seed)
    randomize_params(net, np.random.default_rng(seed + 100))
    return net


def twin(net, backend, dtype=None):
    """A network of another backend / dtype with the same parameters."""
    other = bptt.RNN(net.input_size, net.hidden_size, net.output_size, cell=net.cell,
                     output_activation=net.output_activation, backend=backend,
                     dtype=dtype or np.dtype(net.dtype).name)
    other.params = {k: v for k, v in net.params.items()}
    return other


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("h0", [False, True], ids=["h0=None", "h0"])
@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("loss,act", LOSS_ACTIVATIONS)
@pytest.mark.parametrize("cell", GATED)
def test_gradient_matches_finite_differences(cell, loss, act, output, truncate, h0):
    rng = np.random.default_rng(1)
    n, T, I, H, O = 2, 5, 2, 3, 3
    net = make_net(cell, I, H, O, act=act)
    X, y = make_data(rng, n, T, I, O, loss, output)
    state = make_state(rng, cell, n, H) if h0 else None
    value, grads = net.loss_and_grad(X, y, loss=loss, output=output,
                                     truncate=truncate, h0=state)
    f = detached_loss(net, X, y, loss, output, truncate, state)
    assert value == pytest.approx(f(), rel=1e-12)
    assert_grads_close(grads, numerical_param_grads(net, f), rtol=1e-6, atol=1e-8,
                       scale_atol=False)


@pytest.mark.parametrize("truncate", [None, 2, 3])
@pytest.mark.parametrize("cell", GATED)
def test_reference_gradient_matches_finite_differences(cell, truncate):
    rng = np.random.default_rng(2)
    n, T, I, H, O = 3, 7, 2, 2, 1
    net = make_net(cell, I, H, O, backend="numpy")
    X, y = make_data(rng, n, T, I, O, "mse", "sequence")
    state = make_state(rng, cell, n, H)
    _, grads = net.loss_and_grad(X, y, truncate=truncate, h0=state)
    f = detached_loss(net, X, y, "mse", "sequence", truncate, state)
    assert_grads_close(grads, numerical_param_grads(net, f), rtol=1e-6, atol=1e-8,
                       scale_atol=False)


def test_truncated_gradient_differs_from_full_gradient():
    # guards the truncation tests against a no-op truncate
    rng = np.random.default_rng(3)
    net = make_net("lstm", 2, 3, 1)
    X, y = make_data(rng, 2, 6, 2, 1, "mse", "sequence")
    _, full = net.loss_and_grad(X, y)
    _, cut = net.loss_and_grad(X, y, truncate=2)
    assert not np.allclose(full["W_hh"], cut["W_hh"])


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("cell", GATED)
def test_kernel_state_and_input_gradients(cell, backend):
    """dL/dstate0 (dh0, dc0) and the optional dX against finite differences,
    with L = sum(R * H) for a fixed random R."""
    rng = np.random.default_rng(4)
    T, B, I, H = 4, 2, 3, 3
    net = make_net(cell, I, H, 1, backend=backend)
    cell_obj, p = net._cell, net.params
    X = rng.normal(size=(T, B, I))
    state0 = make_state(rng, cell, B, H)
    R = rng.normal(size=(T, B, H))

    def loss():
        Hs, _ = cell_forward(cell_obj, X, p, state0)
        return float(np.sum(R * Hs))

    Hs, cache = cell_forward(cell_obj, X, p, state0)
    grads = {k: np.empty_like(v) for k, v in p.items()}
    dX = np.empty_like(X)
    dstate0 = cell_obj.backward(X, p, state0, cache, R.copy(), None, 0, grads, dX=dX)
    np.testing.assert_allclose(dX, numerical_gradient(loss, X), rtol=1e-6, atol=1e-8)
    if cell == "lstm":
        for d, s in zip(dstate0, state0):
            np.testing.assert_allclose(d, numerical_gradient(loss, s), rtol=1e-6, atol=1e-8)
    else:
        np.testing.assert_allclose(dstate0, numerical_gradient(loss, state0),
                                   rtol=1e-6, atol=1e-8)


def cell_forward(cell_obj, X, p, state0):
    """Allocate a cell's cache and run its forward kernel: (H, cache)."""
    T, B, _ = X.shape
    cache = cell_obj.allocate(T, B, p["W_hh"].shape[1], X.dtype)
    cell_obj.forward(X, p, state0, cache)
    return cell_obj.hidden(cache), cache


def kernel_backward(cell, kernels, X, p, state0, cache, dH, truncate, grads,
                    accumulate, dc_in=None):
    """Call a cell's backward kernel directly; returns dstate0."""
    if cell == "lstm":
        (h0, c0), (G, C, H) = state0, cache
        dh0 = np.empty_like(h0)
        dc0 = np.zeros_like(c0) if dc_in is None else dc_in.copy()
        kernels.lstm_backward(X, p["W_xh"], p["W_hh"], h0, c0, G, C, H, dH, truncate,
                              grads["W_xh"], grads["W_hh"], grads["b_h"], dh0, dc0,
                              accumulate)
        return dh0, dc0
    G, HN, H = cache
    dh0 = np.empty_like(state0)
    kernels.gru_backward(X, p["W_xh"], p["W_hh"], state0, G, HN, H, dH, truncate,
                         grads["W_xh"], grads["W_hh"], grads["b_h"], grads["b_hn"], dh0,
                         accumulate)
    return dh0


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("truncate", [0, 2])
@pytest.mark.parametrize("cell", GATED)
def test_backward_in_chunks_equals_one_pass(cell, truncate, backend):
    """The kernels' accumulate flag and state-gradient carry (dc0 in, for the
    LSTM) let BPTT run chunk by chunk from the end of the sequence."""
    rng = np.random.default_rng(13)
    T, B, I, H, s = 8, 2, 3, 3, 4
    net = make_net(cell, I, H, 1, backend=backend)
    c, K, p = net._cell, net._cell.kernels, net.params
    X = rng.normal(size=(T, B, I))
    state0 = make_state(rng, cell, B, H)
    R = rng.normal(size=(T, B, H))
    zeros = {k: np.full_like(v, np.nan) for k, v in p.items()}

    _, cache = cell_forward(c, X, p, state0)
    whole = {k: v.copy() for k, v in zeros.items()}
    dstate_whole = kernel_backward(cell, K, X, p, state0, cache, R.copy(), truncate, whole,
                                   False)

    _, cache1 = cell_forward(c, X[:s], p, state0)
    state_s = tuple(a.copy() for a in as_list(c.state_after(cache1, s - 1)))
    state_s = state_s if cell == "lstm" else state_s[0]
    _, cache2 = cell_forward(c, X[s:], p, state_s)
    chunks = {k: v.copy() for k, v in zeros.items()}
    carry = kernel_backward(cell, K, X[s:], p, state_s, cache2, R[s:].copy(), truncate,
                            chunks, False)
    if truncate and s % truncate == 0:
        carry = tuple(np.zeros_like(a) for a in as_list(carry))
    carry = as_list(carry)
    dH1 = R[:s].copy()
    dH1[-1] += carry[0]
    dstate_chunks = kernel_backward(cell, K, X[:s], p, state0, cache1, dH1, truncate, chunks,
                                    True, carry[1] if cell == "lstm" else None)
    assert_grads_close(chunks, whole, rtol=1e-12, atol=1e-14)
    for u, v in zip(as_list(dstate_chunks), as_list(dstate_whole), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ parity
SHAPES = [  # n, T, I, H, O
    (1, 1, 1, 1, 1),
    (1, 6, 2, 1, 2),
    (3, 1, 2, 4, 3),
    (4, 9, 3, 5, 2),
]


def as_list(state):
    """[h] or [h, c]."""
    return list(state) if isinstance(state, tuple) else [state]


def check_parity(net_a, net_b, X, y, loss, output, truncate, h0, rtol, atol):
    Ya, sa = net_a.forward(X, h0=h0)
    Yb, sb = net_b.forward(X, h0=h0)
    np.testing.assert_allclose(Ya, Yb, rtol=rtol, atol=atol)
    for u, v in zip(as_list(sa), as_list(sb), strict=True):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)
    la, ga = net_a.loss_and_grad(X, y, loss=loss, output=output, truncate=truncate, h0=h0)
    lb, gb = net_b.loss_and_grad(X, y, loss=loss, output=output, truncate=truncate, h0=h0)
    assert la == pytest.approx(lb, rel=rtol, abs=atol)
    assert_grads_close(ga, gb, rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n{}T{}I{}H{}O{}".format(*s))
@pytest.mark.parametrize("h0", [False, True], ids=["h0=None", "h0"])
@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("loss,act", LOSS_ACTIVATIONS)
@pytest.mark.parametrize("cell", GATED)
def test_cython_matches_numpy_float64(cell, loss, act, output, truncate, h0, shape):
    n, T, I, H, O = shape
    rng = np.random.default_rng(5)
    net = make_net(cell, I, H, O, act=act)
    X, y = make_data(rng, n, T, I, O, loss, output)
    state = make_state(rng, cell, n, H) if h0 else None
    check_parity(net, twin(net, "numpy"), X, y, loss, output, truncate, state,
                 rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("truncate", [None, 3])
@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("loss,act", LOSS_ACTIVATIONS)
@pytest.mark.parametrize("cell", GATED)
def test_float32_matches_float64_reference(cell, loss, act, output, truncate):
    rng = np.random.default_rng(6)
    n, T, I, H, O = 4, 12, 3, 6, 3
    net = make_net(cell, I, H, O, act=act)
    X, y = make_data(rng, n, T, I, O, loss, output)
    state = make_state(rng, cell, n, H)
    net32 = twin(net, "cython", "float32")
    ref = twin(net, "numpy")
    # tolerances relative to each gradient's largest entry
    check_parity(net32, ref, X, y, loss, output, truncate, state, rtol=1e-4, atol=1e-4)
    assert net32.loss_and_grad(X, y, loss=loss, output=output)[1]["W_hh"].dtype == np.float32


@pytest.mark.parametrize("truncate", [None, 50])
@pytest.mark.parametrize("cell", GATED)
def test_long_sequence_parity(cell, truncate):
    rng = np.random.default_rng(7)
    n, T, I, H, O = 2, 1000, 2, 3, 1
    net = make_net(cell, I, H, O)
    X, y = make_data(rng, n, T, I, O, "mse", "sequence")
    check_parity(net, twin(net, "numpy"), X, y, "mse", "sequence", truncate, None,
                 rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ state
@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("cell", GATED)
def test_forward_state_continues_the_sequence(cell, backend):
    rng = np.random.default_rng(8)
    net = make_net(cell, 2, 4, 2, backend=backend)
    X = rng.normal(size=(3, 10, 2))
    Y, state = net.forward(X)
    Y1, s1 = net.forward(X[:, :4])
    Y2, s2 = net.forward(X[:, 4:], h0=s1)
    np.testing.assert_allclose(np.concatenate([Y1, Y2], axis=1), Y, rtol=1e-12, atol=1e-14)
    if cell == "lstm":
        assert isinstance(state, tuple) and len(state) == 2
        for u, v in zip(s2, state):
            assert u.shape == (3, 4)
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)
    else:
        assert state.shape == (3, 4)
        np.testing.assert_allclose(s2, state, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", GATED)
def test_forward_in_chunks_equals_one_pass(cell, monkeypatch):
    rng = np.random.default_rng(9)
    net = make_net(cell, 2, 3, 2)
    X = rng.normal(size=(2, 23, 2))
    h0 = make_state(rng, cell, 2, 3)
    Y, state = net.forward(X, h0=h0)
    monkeypatch.setattr(_bptt, "FORWARD_CHUNK_ELEMENTS", 2 * 3 * GATES[cell] * 5)
    Yc, state_c = net.forward(X, h0=h0)
    np.testing.assert_allclose(Yc, Y, rtol=1e-12, atol=1e-14)
    for u, v in zip(as_list(state_c), as_list(state), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", GATED)
def test_forward_keeps_inputs_unchanged(cell):
    rng = np.random.default_rng(10)
    net = make_net(cell, 2, 3, 1)
    X = rng.normal(size=(2, 5, 2))
    h0 = make_state(rng, cell, 2, 3)
    X_copy = X.copy()
    h0_copy = [s.copy() for s in as_list(h0)]
    params = {k: v.copy() for k, v in net.params.items()}
    net.loss_and_grad(X, np.zeros((2, 5)), h0=h0, truncate=2)
    net.forward(X, h0=h0)
    np.testing.assert_array_equal(X, X_copy)
    for u, v in zip(as_list(h0), h0_copy, strict=True):
        np.testing.assert_array_equal(u, v)
    for k in params:
        np.testing.assert_array_equal(net.params[k], params[k])


def test_lstm_state_must_be_a_pair():
    net = bptt.RNN(2, 3, 1, cell="lstm")
    X = np.zeros((2, 4, 2))
    with pytest.raises(ValueError, match=r"tuple \(h0, c0\)"):
        net.forward(X, h0=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="c0 must have shape"):
        net.forward(X, h0=(np.zeros((2, 3)), np.zeros((2, 4))))


# ------------------------------------------------------------------ init
@pytest.mark.parametrize("init", ["orthogonal", "xavier", "identity", "uniform"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", GATED)
def test_initialisation(cell, dtype, init):
    I, H, O = 3, 5, 2
    G = GATES[cell]
    net = bptt.RNN(I, H, O, cell=cell, init=init, dtype=dtype, random_state=0)
    p = net.params
    shapes = {"W_xh": (G * H, I), "W_hh": (G * H, H), "b_h": (G * H,),
              "W_oh": (O, H), "b_o": (O,)}
    if cell == "gru":
        shapes["b_hn"] = (H,)
    assert {k: v.shape for k, v in p.items()} == shapes
    assert all(v.dtype == np.dtype(dtype) for v in p.values())
    expected_bias = np.zeros(G * H)
    if cell == "lstm":
        expected_bias[H:2 * H] = 1.0  # forget gate
    np.testing.assert_array_equal(p["b_h"], expected_bias)
    if cell == "gru":
        np.testing.assert_array_equal(p["b_hn"], 0)
    blocks = p["W_hh"].astype(np.float64).reshape(G, H, H)
    if init == "orthogonal":
        for block in blocks:
            np.testing.assert_allclose(block @ block.T, np.eye(H), atol=1e-5)
        assert not np.allclose(blocks[0], blocks[1])
    elif init == "identity":
        for block in blocks:
            np.testing.assert_array_equal(block, np.eye(H))
    elif init == "uniform":
        assert np.abs(blocks).max() <= 1 / np.sqrt(H)
    # the same seed gives the same network
    again = bptt.RNN(I, H, O, cell=cell, init=init, dtype=dtype, random_state=0)
    for k in p:
        np.testing.assert_array_equal(p[k], again.params[k])
    Y, _ = net.forward(np.ones((2, 4, I)))
    assert np.isfinite(Y).all()


# ------------------------------------------------------------------ state dicts
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_state_dict_round_trip_is_exact(cell, dtype):
    net = make_net(cell, 3, 4, 2, dtype=dtype, act="sigmoid")
    sd = net.to_torch_state_dict()
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    assert {k: v.shape for k, v in sd.items()} == {
        "weight_ih_l0": (G * 4, 3), "weight_hh_l0": (G * 4, 4),
        "bias_ih_l0": (G * 4,), "bias_hh_l0": (G * 4,), "weight": (2, 4), "bias": (2,)}
    assert all(v.dtype == np.dtype(dtype) for v in sd.values())
    back = bptt.RNN.from_torch_state_dict(sd, output_activation="sigmoid")
    assert back.cell == cell and np.dtype(back.dtype) == np.dtype(dtype)
    assert sorted(back.params) == sorted(net.params)
    for k in net.params:
        np.testing.assert_array_equal(back.params[k], net.params[k])
    # the returned arrays are copies
    sd["weight_hh_l0"][...] = 0
    assert np.any(net.params["W_hh"] != 0)


def test_state_dict_folds_biases():
    rng = np.random.default_rng(11)
    H = 3
    for cell, G in (("lstm", 4), ("gru", 3), ("rnn", 1)):
        sd = {"weight_ih_l0": rng.normal(size=(G * H, 2)),
              "weight_hh_l0": rng.normal(size=(G * H, H)),
              "bias_ih_l0": rng.normal(size=G * H), "bias_hh_l0": rng.normal(size=G * H),
              "weight": rng.normal(size=(1, H)), "bias": rng.normal(size=1)}
        net = bptt.RNN.from_torch_state_dict(sd, backend="numpy")
        assert net.cell == cell
        if cell == "gru":
            np.testing.assert_array_equal(
                net.params["b_h"][:2 * H], sd["bias_ih_l0"][:2 * H] + sd["bias_hh_l0"][:2 * H])
            np.testing.assert_array_equal(net.params["b_h"][2 * H:], sd["bias_ih_l0"][2 * H:])
            np.testing.assert_array_equal(net.params["b_hn"], sd["bias_hh_l0"][2 * H:])
            out = net.to_torch_state_dict()
            np.testing.assert_array_equal(out["bias_hh_l0"][:2 * H], 0)
            np.testing.assert_array_equal(out["bias_hh_l0"][2 * H:], sd["bias_hh_l0"][2 * H:])
        else:
            np.testing.assert_array_equal(net.params["b_h"], sd["bias_ih_l0"] + sd["bias_hh_l0"])
            np.testing.assert_array_equal(net.to_torch_state_dict()["bias_hh_l0"], 0)


def test_state_dict_prefixes_and_missing_biases():
    rng = np.random.default_rng(12)
    sd = {"rnn.weight_ih_l0": rng.normal(size=(12, 2)),
          "rnn.weight_hh_l0": rng.normal(size=(12, 3)),
          "fc.weight": rng.normal(size=(2, 3))}
    net = bptt.RNN.from_torch_state_dict(sd, rnn_prefix="rnn.", output_prefix="fc.",
                                         dtype="float32")
    assert net.cell == "lstm" and net.dtype == np.float32
    np.testing.assert_array_equal(net.params["b_h"], 0)
    np.testing.assert_array_equal(net.params["b_o"], 0)
    out = net.to_torch_state_dict(rnn_prefix="rnn.", output_prefix="fc.")
    assert sorted(out) == sorted(list(sd) + ["rnn.bias_ih_l0", "rnn.bias_hh_l0", "fc.bias"])


@pytest.mark.parametrize("change,message", [
    (lambda sd: sd.pop("weight_hh_l0"), "missing the keys"),
    (lambda sd: sd.update(weight_ih_l1=sd["weight_ih_l0"]), r"missing the keys \['weight_hh_l1'\]"),
    (lambda sd: sd.update(weight_ih=sd["weight_ih_l0"]), "unexpected keys"),
    (lambda sd: sd.update(weight_hh_l0=np.zeros((10, 3))), "weight_hh_l0"),
    (lambda sd: sd.update(weight_hh_l0=np.zeros((6, 3))), "G = 1"),
    (lambda sd: sd.update(weight_ih_l0=np.zeros((9, 2))), "weight_ih_l0"),
    (lambda sd: sd.update(bias_hh_l0=np.zeros(11)), "bias_hh_l0"),
    (lambda sd: sd.update(weight=np.zeros((1, 4))), "'weight'"),
    (lambda sd: sd.update(bias=np.zeros(2)), "'bias'"),
    (lambda sd: sd.update(bias=np.array([np.nan])), "NaN"),
])
def test_state_dict_errors(change, message):
    sd = bptt.RNN(2, 3, 1, cell="lstm").to_torch_state_dict()
    change(sd)
    with pytest.raises(ValueError, match=message):
        bptt.RNN.from_torch_state_dict(sd)


def test_state_dict_cell_must_match_shapes():
    sd = bptt.RNN(2, 3, 1, cell="gru").to_torch_state_dict()
    with pytest.raises(ValueError, match="cell='lstm'"):
        bptt.RNN.from_torch_state_dict(sd, cell="lstm")
    with pytest.raises(TypeError, match="mapping"):
        bptt.RNN.from_torch_state_dict([1, 2])


def test_library_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys, numpy as np, bptt\n"
            "net = bptt.RNN(2, 3, 1, cell='gru')\n"
            "bptt.RNN.from_torch_state_dict(net.to_torch_state_dict())\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
