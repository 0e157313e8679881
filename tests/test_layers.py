"""Stacked and bidirectional networks (RNN num_layers, bidirectional,
dropout; DESIGN.md "Layers, directions and ragged input") against PyTorch,
finite differences and the other backend."""

import copy
import pickle

import numpy as np
import pytest

import bptt
from bptt import _bptt

from helpers import CELLS, TORCH_CELLS, numerical_gradient
from torch_reference import assert_close, torch_loss_grad


def _problem(net, n, T, output, loss="mse", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, net.input_size))
    O = net.output_size
    if loss == "cross_entropy":
        y = rng.integers(0, O, size=(n, T) if output == "sequence" else (n,))
    else:
        y = rng.standard_normal((n, T, O) if output == "sequence" else (n, O))
    return X, y


@pytest.mark.parametrize("cell", TORCH_CELLS)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, True), (2, False), (2, True),
                                                      (3, True)])
@pytest.mark.parametrize("output", ["sequence", "last", "mean"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_torch(cell, num_layers, bidirectional, output, dtype):
    pytest.importorskip("torch")
    net = bptt.RNN(3, 4, 2, cell=cell, num_layers=num_layers, bidirectional=bidirectional,
                   dtype=dtype, random_state=1)
    for name in net.params:  # nonzero biases everywhere
        if name.startswith("b_"):
            net.params[name] = np.random.default_rng(2).uniform(-.5, .5, net.params[name].shape)
    X, y = _problem(net, 3, 5, output)
    X = X.astype(dtype)
    value, grads, state = net._loss_grad_state(X, y, "mse", output, None, None)
    ref, ref_grads, ref_state = torch_loss_grad(net, list(X), list(y) if output == "sequence"
                                                else y, output=output)
    assert_close(value, ref, dtype)
    assert sorted(grads) == sorted(ref_grads)
    for name in grads:
        assert_close(grads[name], ref_grads[name], dtype, name)
    for a, b in zip(state if cell == "lstm" else (state,),
                    ref_state if cell == "lstm" else (ref_state,)):
        assert_close(a, b, dtype)
    Y, fstate = net.forward(X)
    for a, b in zip(fstate if cell == "lstm" else (fstate,), state if cell == "lstm" else (state,)):
        np.testing.assert_allclose(a, b, rtol=1e-5)


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])
def test_other_losses_match_torch(loss):
    pytest.importorskip("torch")
    act = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}[loss]
    net = bptt.RNN(2, 3, 3, cell="gru", num_layers=2, bidirectional=True,
                   output_activation=act, random_state=0)
    X, y = _problem(net, 4, 6, "sequence", loss)
    if loss == "binary_cross_entropy":
        y = (y > 0).astype(float)
    value, grads = net.loss_and_grad(X, y, loss=loss)
    ref, ref_grads, _ = torch_loss_grad(net, list(X), list(y), loss=loss)
    assert_close(value, ref, "float64")
    for name in grads:
        assert_close(grads[name], ref_grads[name], "float64", name)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("output,truncate", [("sequence", None), ("sequence", 2),
                                             ("last", 3), ("mean", None)])
def test_finite_differences_numpy_backend(cell, output, truncate):
    """Gradients of the reference backend, two layers in both directions,
    with dropout (masks fixed), truncation on the absolute timeline."""
    net = bptt.RNN(2, 3, 2, cell=cell, num_layers=2, bidirectional=True, dropout=0.3,
                   backend="numpy", random_state=0)
    X, y = _problem(net, 2, 5, output)
    lay = _bptt.Layout(np.full(2, 5))
    masks = _bptt.draw_masks(net, lay.rows)
    target = y
    state0 = net._check_state(None, 2)
    Xp = X
    # truncated BPTT is the gradient with the state detached at window
    # boundaries: finite differences of the windows' losses run with the
    # states they received held fixed would need those states; check the
    # full-BPTT gradients here and truncation against torch-free identities
    value, grads, _ = _bptt.layered_loss_grad_state(net, lay, Xp, target, "mse", output,
                                                    0, state0, masks)
    params = {name: np.array(v) for name, v in net.params.items()}

    def f():
        net.params = params
        return _bptt.layered_loss_grad_state(net, lay, Xp, target, "mse", output, 0,
                                             state0, masks)[0]

    for name in params:
        num = numerical_gradient(f, params[name])
        np.testing.assert_allclose(grads[name], num, rtol=1e-5, atol=1e-8, err_msg=name)
    net.params = params  # as they were
    if truncate:
        # a window boundary cuts the gradient in both directions: with
        # truncate >= T nothing is cut, and truncated gradients differ
        full = _bptt.layered_loss_grad_state(net, lay, Xp, target, "mse", output, 99,
                                             state0, masks)[1]
        cut = _bptt.layered_loss_grad_state(net, lay, Xp, target, "mse", output, truncate,
                                            state0, masks)[1]
        for name in grads:
            np.testing.assert_allclose(full[name], grads[name], rtol=1e-12)
        assert any(not np.allclose(cut[name], grads[name]) for name in grads)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("truncate", [None, 2, 3])
@pytest.mark.parametrize("n,T", [(1, 1), (3, 7), (1, 5)])
def test_backends_agree(cell, truncate, n, T):
    kw = dict(cell=cell, num_layers=2, bidirectional=True, random_state=3)
    a = bptt.RNN(2, 3, 2, **kw)
    b = bptt.RNN(2, 3, 2, backend="numpy", **kw)
    X, y = _problem(a, n, T, "sequence")
    va, ga = a.loss_and_grad(X, y, truncate=truncate)
    vb, gb = b.loss_and_grad(X, y, truncate=truncate)
    assert va == pytest.approx(vb, rel=1e-10)
    for name in ga:
        np.testing.assert_allclose(ga[name], gb[name], rtol=1e-9, atol=1e-12)
    Ya, sa = a.forward(X)
    Yb, sb = b.forward(X)
    np.testing.assert_allclose(Ya, Yb, rtol=1e-10, atol=1e-12)


def test_truncation_matches_torch_detached_windows():
    """truncate=k with two directions: no gradient crosses [0, k), [k, 2k),
    ... in either direction; T not a multiple of k."""
    torch = pytest.importorskip("torch")
    net = bptt.RNN(2, 3, 1, cell="lstm", bidirectional=True, random_state=0)
    X, y = _problem(net, 2, 7, "sequence")
    value, grads = net.loss_and_grad(X, y, truncate=3)
    sd = net.to_torch_state_dict()
    p = {k: torch.tensor(v, requires_grad=True) for k, v in sd.items()}
    Xt = torch.tensor(X)

    def cell_step(x, h, c, sfx):
        g = x @ p["weight_ih_l0" + sfx].T + p["bias_ih_l0" + sfx] + h @ p["weight_hh_l0" + sfx].T
        i, f, gg, o = g.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        return torch.sigmoid(o) * torch.tanh(c), c

    outs = {}
    for sfx, steps in (("", range(7)), ("_reverse", range(6, -1, -1))):
        h = c = torch.zeros(2, 3, dtype=torch.float64)
        for t in steps:
            edge = (t + 1) % 3 == 0 if sfx == "" else t % 3 == 0
            h, c = cell_step(Xt[:, t], h, c, sfx)
            outs[sfx, t] = h
            if edge:  # the state leaving a window is detached
                h, c = h.detach(), c.detach()
    top = torch.stack([torch.cat([outs["", t], outs["_reverse", t]], 1) for t in range(7)], 1)
    z = top @ p["weight"].T + p["bias"]
    loss = torch.mean((z - torch.tensor(y)) ** 2)
    loss.backward()
    assert value == pytest.approx(float(loss), rel=1e-10)
    np.testing.assert_allclose(grads["W_hh_reverse"], p["weight_hh_l0_reverse"].grad.numpy(),
                               rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(grads["W_hh"], p["weight_hh_l0"].grad.numpy(), rtol=1e-8,
                               atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_stream_stack_matches_forward(cell, backend):
    net = bptt.RNN(2, 3, 2, cell=cell, num_layers=3, backend=backend, random_state=0)
    X = np.random.default_rng(0).standard_normal((2, 5, 2))
    Y, state = net.forward(X)
    s = net.stream(2)
    steps = np.stack([s.step(X[:, t]).copy() for t in range(5)], axis=1)
    np.testing.assert_allclose(steps, Y, rtol=1e-12, atol=1e-14)
    for a, b in zip(s.state if cell == "lstm" else (s.state,),
                    state if cell == "lstm" else (state,)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    s.reset(state)
    with pytest.raises(ValueError, match="shape"):
        s.reset(tuple(np.zeros((2, 2, 3)) for _ in range(2)) if cell == "lstm"
                else np.zeros((2, 2, 3)))


def test_bidirectional_refuses_to_stream():
    net = bptt.RNN(2, 3, 1, bidirectional=True, random_state=0)
    with pytest.raises(ValueError, match="bidirectional network cannot stream"):
        net.stream()


def test_dropout_reproducible_and_training_only():
    X, y = _problem(bptt.RNN(2, 3, 1), 4, 6, "sequence")
    runs = []
    for _ in range(2):
        net = bptt.RNN(2, 3, 1, cell="gru", num_layers=3, dropout=0.5, random_state=7)
        runs.append([net.loss_and_grad(X, y) for _ in range(2)])
    for (va, ga), (vb, gb) in zip(*runs):
        assert va == vb
        for name in ga:
            np.testing.assert_array_equal(ga[name], gb[name])
    # a new draw each call
    assert runs[0][0][0] != runs[0][1][0]
    # forward (inference) draws nothing and applies no dropout
    net = bptt.RNN(2, 3, 1, cell="gru", num_layers=3, dropout=0.5, random_state=7)
    plain = bptt.RNN(2, 3, 1, cell="gru", num_layers=3, random_state=7)
    np.testing.assert_array_equal(net.forward(X)[0], plain.forward(X)[0])
    rng = copy.deepcopy(net._rng)
    lay = _bptt.Layout(np.full(4, 6))
    masks = _bptt.draw_masks(net, lay.rows, rng)
    value, grads, _ = _bptt.layered_loss_grad_state(
        net, lay, X, y, "mse", "sequence", 0,
        net._check_state(None, 4), masks)
    v2, g2 = net.loss_and_grad(X, y)
    assert value == v2  # the masks drawn are those of the network's random state
    assert {m.min() for m in masks} == {0.0} and {m.max() for m in masks} == {2.0}


@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_torch_state_dict_both_ways(cell):
    net = bptt.RNN(3, 4, 2, cell=cell, num_layers=2, bidirectional=True, random_state=0)
    sd = net.to_torch_state_dict()
    assert "weight_ih_l1_reverse" in sd and sd["weight_ih_l1"].shape[1] == 8
    back = bptt.RNN.from_torch_state_dict(sd)
    assert (back.num_layers, back.bidirectional, back.cell) == (2, True, cell)
    for name in net.params:
        np.testing.assert_array_equal(back.params[name], net.params[name])
    torch = pytest.importorskip("torch")
    kinds = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    module = kinds[cell](3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    linear = torch.nn.Linear(8, 2).double()
    tsd = {f"rnn.{k}": v for k, v in module.state_dict().items()}
    tsd.update({f"fc.{k}": v for k, v in linear.state_dict().items()})
    net = bptt.RNN.from_torch_state_dict(tsd, cell=cell, rnn_prefix="rnn.",
                                         output_prefix="fc.")
    X = np.random.default_rng(0).standard_normal((2, 5, 3))
    out, _ = module(torch.tensor(X))
    np.testing.assert_allclose(net.forward(X)[0], linear(out).detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    bad = dict(sd)
    del bad["weight_hh_l1_reverse"]
    with pytest.raises(ValueError, match=r"missing the keys \['weight_hh_l1_reverse'\]"):
        bptt.RNN.from_torch_state_dict(bad)
    bad = {k: v for k, v in sd.items() if "_l1" not in k or "reverse" in k}
    with pytest.raises(ValueError, match="layers and directions"):
        bptt.RNN.from_torch_state_dict(bad)


def test_config_pickle_and_persistence(tmp_path):
    net = bptt.RNN(2, 3, 1, cell="lstm", num_layers=2, bidirectional=True, dropout=0.25,
                   random_state=0)
    config = net.get_config()
    assert (config["num_layers"], config["bidirectional"], config["dropout"]) == (2, True, 0.25)
    rebuilt = bptt.RNN.from_config(config, params=net.params)
    clone = pickle.loads(pickle.dumps(net))
    X = np.random.default_rng(0).standard_normal((2, 4, 2))
    for other in (rebuilt, clone):
        np.testing.assert_array_equal(other.forward(X)[0], net.forward(X)[0])
    est = bptt.RNNRegressor(hidden_size=3, max_epochs=1, random_state=0)
    est.fit(X, np.zeros(2))
    est.net_ = net
    loaded = bptt.load(est.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.net_.forward(X)[0], net.forward(X)[0])


def test_bad_layer_arguments_and_states():
    with pytest.raises(ValueError, match="dropout"):
        bptt.RNN(2, 3, 1, dropout=1.0)
    with pytest.raises(TypeError, match="num_layers"):
        bptt.RNN(2, 3, 1, num_layers=1.5)
    with pytest.raises(TypeError, match="bidirectional"):
        bptt.RNN(2, 3, 1, bidirectional="yes")
    net = bptt.RNN(2, 3, 1, num_layers=2, bidirectional=True)
    X = np.zeros((5, 4, 2))
    with pytest.raises(ValueError, match=r"\(4, 5, 3\)"):
        net.forward(X, np.zeros((5, 3)))
    Y, state = net.forward(X)
    assert Y.shape == (5, 4, 1) and state.shape == (4, 5, 3)
    net.forward(X, state)


@pytest.mark.parametrize("output", ["last", "mean", "sequence"])
def test_estimators_layers_directions_dropout(output, tmp_path):
    import warnings
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 8, 2))
    y = X[:, :, 0].cumsum(axis=1) if output == "sequence" else X[:, :, 0].mean(axis=1)
    kw = dict(num_layers=2, bidirectional=True, dropout=0.1, output=output, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bptt.RNNRegressor(hidden_size=8, max_epochs=40, random_state=0, **kw).fit(X, y)
        again = bptt.RNNRegressor(hidden_size=8, max_epochs=40, random_state=0, **kw).fit(X, y)
    assert est.net_.num_layers == 2 and est.net_.bidirectional and est.net_.dropout == 0.1
    assert est.score(X, y) > 0.5
    np.testing.assert_array_equal(est.predict(X), again.predict(X))  # bit for bit
    loaded = bptt.load(est.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    # the estimators' prediction is the readout the loss trained
    if output != "sequence":
        lay = _bptt.Layout(np.full(40, 8))
        value = _bptt.layered_loss_grad_state(
            est.net_, lay, X, y[:, None], "mse", output, 0,
            est.net_._check_state(None, 40))[0]
        assert value == pytest.approx(np.mean((est.predict(X) - y) ** 2), rel=1e-10)


def test_estimator_truncate_needs_one_direction():
    X = np.zeros((4, 6, 1))
    with pytest.raises(ValueError, match="needs one direction"):
        bptt.RNNRegressor(bidirectional=True, truncate=2, max_epochs=1).fit(X, np.zeros(4))
    with pytest.raises(ValueError, match="output='mean' reads every timestep"):
        bptt.RNNRegressor(output="mean", truncate=2, max_epochs=1).fit(X, np.zeros(4))


def test_buffers_kept_and_released():
    net = bptt.RNN(2, 3, 1, num_layers=2, bidirectional=True, random_state=0)
    X = np.random.default_rng(0).standard_normal((3, 5, 2))
    first = net.loss_and_grad(X, np.zeros((3, 5)))
    assert net._buffers  # kept for the next call of the same shapes
    again = net.loss_and_grad(X, np.zeros((3, 5)))
    assert first[0] == again[0]
    for name in first[1]:
        np.testing.assert_array_equal(first[1][name], again[1][name])
    assert "_buffers" not in pickle.loads(pickle.dumps(net)).__dict__
    net.release_buffers()
    assert "_buffers" not in net.__dict__
