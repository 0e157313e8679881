"""The public contract of bptt.RNN: shapes, state, inits, input handling."""

import numpy as np
import pytest

import bptt
from bptt import _bptt, rnn as rnn_module
from helpers import CELLS


def test_version_and_exports():
    assert isinstance(bptt.__version__, str) and bptt.__version__.count(".") >= 2
    assert bptt.RNN is rnn_module.RNN


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shapes_and_dtypes(backend, dtype):
    net = bptt.RNN(3, 5, 2, dtype=dtype, backend=backend, random_state=0)
    assert {k: v.shape for k, v in net.params.items()} == {
        "W_xh": (5, 3), "W_hh": (5, 5), "b_h": (5,), "W_oh": (2, 5), "b_o": (2,)}
    assert all(v.dtype == np.dtype(dtype) for v in net.params.values())
    X = np.random.default_rng(0).standard_normal((4, 7, 3))
    Y, h = net.forward(X)
    assert Y.shape == (4, 7, 2) and h.shape == (4, 5)
    assert Y.dtype == np.dtype(dtype) and Y.flags.c_contiguous
    loss, grads = net.loss_and_grad(X, np.zeros((4, 7, 2)))
    assert isinstance(loss, float)
    assert {k: v.shape for k, v in grads.items()} == {k: v.shape for k, v in net.params.items()}


def test_forward_state_continues_a_sequence():
    net = bptt.RNN(2, 6, 3, random_state=1)
    X = np.random.default_rng(1).standard_normal((3, 20, 2))
    Y, h = net.forward(X)
    Y1, h1 = net.forward(X[:, :8])
    Y2, h2 = net.forward(X[:, 8:], h0=h1)
    np.testing.assert_allclose(np.concatenate([Y1, Y2], axis=1), Y, rtol=1e-13)
    np.testing.assert_allclose(h2, h, rtol=1e-13)
    assert np.allclose(Y[:, -1], Y2[:, -1])


def test_forward_matches_the_training_path_and_chunking(monkeypatch):
    net = bptt.RNN(2, 4, 1, output_activation="sigmoid", random_state=2)
    X = np.random.default_rng(2).standard_normal((3, 50, 2))
    Y, h = net.forward(X)
    # loss_and_grad's outputs: mse against zero targets is mean(Y**2)
    loss, _ = net.loss_and_grad(X, np.zeros((3, 50)))
    assert loss == pytest.approx(np.mean(Y ** 2), rel=1e-12)
    # forward runs long sequences in chunks of timesteps; chunk size must not matter
    monkeypatch.setattr(_bptt, "FORWARD_CHUNK_ELEMENTS", 7)
    Y_chunked, h_chunked = net.forward(X)
    np.testing.assert_allclose(Y_chunked, Y, rtol=1e-13)
    np.testing.assert_allclose(h_chunked, h, rtol=1e-13)


def test_forward_memory_does_not_grow_with_T():
    import tracemalloc
    net = bptt.RNN(1, 64, 1, random_state=0)

    def extra_peak(T):
        X = np.zeros((2, T, 1))
        tracemalloc.start()
        net.forward(X)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # what forward must allocate anyway: its time-major input copy and Y
        return peak - 2 * X.nbytes - 2 * 2 * T * 8

    short, long = extra_peak(2000), extra_peak(40000)
    hidden_cache = 2 * 40000 * 64 * 8  # what a per-step cache would take
    assert long < 1.5 * short + 2**16
    assert long < hidden_cache / 4


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_random_state_reproducible(backend):
    a = bptt.RNN(3, 5, 2, random_state=42, backend=backend)
    b = bptt.RNN(3, 5, 2, random_state=42, backend=backend)
    c = bptt.RNN(3, 5, 2, random_state=43, backend=backend)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["W_hh"], c.params["W_hh"])
    # a Generator and a RandomState work too
    bptt.RNN(3, 5, 2, random_state=np.random.default_rng(0))
    bptt.RNN(3, 5, 2, random_state=np.random.RandomState(0))


def test_init_schemes():
    H = 8
    W = bptt.RNN(2, H, 1, init="orthogonal", random_state=0).params["W_hh"]
    np.testing.assert_allclose(W @ W.T, np.eye(H), atol=1e-12)
    W = bptt.RNN(2, H, 1, init="identity").params["W_hh"]
    np.testing.assert_array_equal(W, np.eye(H))
    W = bptt.RNN(2, H, 1, init="uniform", random_state=0).params["W_hh"]
    assert np.abs(W).max() <= 1 / np.sqrt(H) and np.abs(W).max() > 0.5 / np.sqrt(H)
    W = bptt.RNN(2, H, 1, init="xavier", random_state=0).params["W_hh"]
    assert np.abs(W).max() <= np.sqrt(6 / (2 * H))
    assert np.linalg.matrix_rank(W) == H
    p = bptt.RNN(2, H, 1, random_state=0).params
    assert not p["b_h"].any() and not p["b_o"].any()


def test_inputs_of_every_layout_work_and_are_not_modified():
    net = bptt.RNN(3, 4, 2, random_state=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 6, 3))
    y = rng.standard_normal((5, 6, 2))
    expected_Y, _ = net.forward(X)
    expected_loss, expected_grads = net.loss_and_grad(X, y)

    readonly = X.copy()
    readonly.flags.writeable = False
    y_ro = y.copy()
    y_ro.flags.writeable = False
    fortran = np.asfortranarray(X)
    strided = np.repeat(X, 2, axis=1)[:, ::2]
    variants = [readonly, fortran, strided, X.tolist()]
    for variant in variants:
        before = np.array(variant, copy=True)
        Y, _ = net.forward(variant)
        loss, grads = net.loss_and_grad(variant, y_ro)
        np.testing.assert_allclose(Y, expected_Y, rtol=1e-12)
        assert loss == pytest.approx(expected_loss, rel=1e-12)
        np.testing.assert_array_equal(np.asarray(variant), before)
    h0 = np.ones((5, 4))
    h0_copy = h0.copy()
    net.forward(X, h0=h0)
    np.testing.assert_array_equal(h0, h0_copy)


def test_integer_and_bool_input_is_cast():
    net = bptt.RNN(2, 3, 1, random_state=0)
    Xi = np.arange(24).reshape(3, 4, 2) % 3
    Y_int, _ = net.forward(Xi)
    Y_float, _ = net.forward(Xi.astype(float))
    np.testing.assert_array_equal(Y_int, Y_float)
    net.forward(Xi.astype(bool))
    loss, _ = net.loss_and_grad(Xi, np.ones((3, 4), dtype=int))
    assert np.isfinite(loss)


def test_float32_network_casts_float64_input():
    net = bptt.RNN(2, 3, 1, dtype="float32", random_state=0)
    Y, h = net.forward(np.ones((2, 3, 2)))
    assert Y.dtype == np.float32 and h.dtype == np.float32


def test_params_can_be_replaced_and_are_copied():
    net = bptt.RNN(2, 3, 1, random_state=0)
    W = np.eye(3)
    net.params["W_hh"] = W
    W[0, 0] = 5.0  # the caller's array is not aliased
    assert net.params["W_hh"][0, 0] == 1.0
    other = bptt.RNN(2, 3, 1, random_state=1)
    net.params = other.params
    for k in net.params:
        np.testing.assert_array_equal(net.params[k], other.params[k])
    # a float32 network stores float32 copies of float64 arrays
    net32 = bptt.RNN(2, 3, 1, dtype="float32")
    net32.params["W_hh"] = np.eye(3)
    assert net32.params["W_hh"].dtype == np.float32


def test_pickle_round_trip():
    import pickle
    net = bptt.RNN(2, 3, 2, output_activation="softmax", random_state=0)
    clone = pickle.loads(pickle.dumps(net))
    X = np.random.default_rng(0).standard_normal((2, 4, 2))
    np.testing.assert_array_equal(clone.forward(X)[0], net.forward(X)[0])
    with pytest.raises(ValueError):
        clone.params["W_hh"] = np.zeros((2, 2))


def test_softmax_and_sigmoid_outputs_are_probabilities():
    X = np.random.default_rng(0).standard_normal((3, 5, 2)) * 10
    Y, _ = bptt.RNN(2, 4, 3, output_activation="softmax", random_state=0).forward(X)
    np.testing.assert_allclose(Y.sum(axis=2), 1.0, rtol=1e-12)
    Y, _ = bptt.RNN(2, 4, 3, output_activation="sigmoid", random_state=0).forward(X)
    assert ((Y > 0) & (Y < 1)).all()


def test_cross_entropy_is_pytorch_mean_reduction():
    net = bptt.RNN(2, 4, 3, output_activation="softmax", random_state=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 5, 2))
    labels = rng.integers(0, 3, size=(3, 5))
    Y, _ = net.forward(X)
    expected = -np.mean(np.log(np.take_along_axis(Y, labels[..., None], axis=2)))
    loss, _ = net.loss_and_grad(X, labels, loss="cross_entropy")
    assert loss == pytest.approx(expected, rel=1e-12)
    # labels given as integral floats are accepted
    loss_f, _ = net.loss_and_grad(X, labels.astype(float), loss="cross_entropy")
    assert loss_f == loss
    # at the last step only
    loss_last, _ = net.loss_and_grad(X, labels[:, -1], loss="cross_entropy", output="last")
    expected_last = -np.mean(np.log(Y[np.arange(3), -1, labels[:, -1]]))
    assert loss_last == pytest.approx(expected_last, rel=1e-12)


def test_binary_cross_entropy_and_mse_reductions():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 5, 2))
    net = bptt.RNN(2, 4, 2, output_activation="sigmoid", random_state=0)
    Y, _ = net.forward(X)
    t = rng.random((3, 5, 2))
    bce = -np.mean(t * np.log(Y) + (1 - t) * np.log(1 - Y))
    assert net.loss_and_grad(X, t, loss="binary_cross_entropy")[0] == pytest.approx(bce, rel=1e-10)
    assert net.loss_and_grad(X, t)[0] == pytest.approx(np.mean((Y - t) ** 2), rel=1e-12)
    t_last = rng.random((3, 2))
    assert net.loss_and_grad(X, t_last, output="last")[0] == pytest.approx(
        np.mean((Y[:, -1] - t_last) ** 2), rel=1e-12)


def test_extreme_logits_give_finite_losses():
    # stable log-sum-exp / softplus: logits of +-800 give exact, finite losses
    X = np.full((2, 3, 1), 50.0)
    cases = [("softmax", "cross_entropy", np.zeros((2, 3), int), [[-400.0, -400.0], [400.0, 400.0]], 1600.0),
             ("sigmoid", "binary_cross_entropy", np.zeros((2, 3)), [[400.0, 400.0]], 800.0)]
    for act, loss, y, W_oh, expected in cases:
        for backend in ("cython", "numpy"):
            net = bptt.RNN(1, 2, len(W_oh), output_activation=act, backend=backend)
            net.params["W_xh"] = np.ones((2, 1))
            net.params["W_hh"] = np.zeros((2, 2))
            net.params["W_oh"] = W_oh  # h = tanh(50) = 1, so z = +-800
            value, grads = net.loss_and_grad(X, y, loss=loss)
            assert value == pytest.approx(expected, rel=1e-12)
            assert all(np.isfinite(g).all() for g in grads.values())


def test_repr_names_the_options():
    r = repr(bptt.RNN(2, 3, 1, nonlinearity="relu", dtype="float32"))
    assert "relu" in r and "float32" in r and "cython" in r


@pytest.mark.parametrize("cell", CELLS)
def test_training_step_reports_the_final_state_of_forward(cell, monkeypatch):
    # the estimators carry this state into the next truncation window
    net = bptt.RNN(2, 4, 1, cell=cell, random_state=0)
    X = np.random.default_rng(0).standard_normal((3, 12, 2))
    _, expected = net.forward(X)
    monkeypatch.setattr(_bptt, "TRAIN_CHUNK_ROWS", 6)  # several chunks
    monkeypatch.setattr(_bptt, "TRAIN_ONE_CHUNK_BYTES", 0)
    assert _bptt.chunk_steps(net, 12, 3, None) < 12
    value, grads, state = net._loss_grad_state(X, np.zeros((3, 12)), "mse", "sequence",
                                               None, None)
    as_list = (lambda s: list(s) if isinstance(s, tuple) else [s])
    for got, want in zip(as_list(state), as_list(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13)
    assert (value, set(grads)) == (net.loss_and_grad(X, np.zeros((3, 12)))[0], set(net.params))


# --- configuration (issue 13): RNN describes itself; persistence and the
# estimators build networks from that description
@pytest.mark.parametrize("cell", CELLS)
def test_config_round_trip(cell):
    import json

    net = bptt.RNN(3, 4, 2, cell=cell, nonlinearity="relu", output_activation="sigmoid",
                   init="xavier", dtype="float32", backend="numpy", random_state=0)
    config = net.get_config()
    assert json.loads(json.dumps(config)) == config
    assert config == {"input_size": 3, "hidden_size": 4, "output_size": 2, "cell": cell,
                      "nonlinearity": "relu", "output_activation": "sigmoid",
                      "init": "xavier", "dtype": "float32", "backend": "numpy",
                      "num_layers": 1, "bidirectional": False, "dropout": 0.0}
    again = bptt.RNN.from_config(config, params=net.params)
    assert repr(again) == repr(net) and again.get_config() == config
    for name, value in net.params.items():
        assert np.array_equal(again.params[name], value)
        assert again.params[name] is not value
    fresh = bptt.RNN.from_config(config, random_state=0)
    assert all(np.array_equal(fresh.params[k], v) for k, v in net.params.items())


def test_from_config_rejects_bad_configs():
    config = bptt.RNN(3, 4, 2, random_state=0).get_config()
    with pytest.raises(TypeError, match=r"unknown keys \['random_state'\]"):
        bptt.RNN.from_config({**config, "random_state": 1})
    with pytest.raises(TypeError, match="config must be a mapping"):
        bptt.RNN.from_config(3)
    with pytest.raises(ValueError, match="cell must be one of"):
        bptt.RNN.from_config({**config, "cell": "peephole"})
    with pytest.raises(ValueError, match="W_hh"):
        bptt.RNN.from_config(config, params={**bptt.RNN(3, 4, 2).params,
                                             "W_hh": np.zeros((5, 5))})
