"""bptt.gradcheck: passes on the real gradients of every cell, loss, output
and truncation, fails (naming the parameter) on a wrong one, refuses what it
cannot check, and never changes the caller's network."""

import copy
import importlib

import numpy as np
import pytest

import bptt
from helpers import (ACTIVATION_LOSSES, CELLS, central_difference, detached_loss, make_problem,
                     make_state)

gradcheck_module = importlib.import_module("bptt.gradcheck")


def _problem(cell, activation="identity", loss="mse", output="sequence", seed=1, **kw):
    return make_problem(seed, n=2, T=5, I=2, H=3, O=3, loss=loss, output=output, cell=cell,
                        output_activation=activation, **kw)


# ---------------------------------------------------------------- passes
@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("activation,loss", ACTIVATION_LOSSES)
@pytest.mark.parametrize("cell", CELLS)
def test_passes_on_the_real_gradients(cell, activation, loss, output, truncate):
    net, X, y = _problem(cell, activation, loss, output)
    report = bptt.gradcheck(net, X, y, loss=loss, output=output, truncate=truncate,
                            n_checks=6, random_state=0)
    assert report.passed and bool(report) and report.failed == []
    assert list(report.params) == list(net.params)
    for name, check in report.params.items():
        assert check.passed and check.worst_error <= 1e-5
        # the check is not vacuous: some checked entry has a real gradient
        assert np.abs(check.numeric).max() > 1e-6, name
        assert len(check.indices) == min(6, net.params[name].size)


@pytest.mark.parametrize("cell", CELLS)
def test_with_h0_relu_and_the_numpy_backend(cell):
    net, X, y = _problem(cell, nonlinearity="relu", init="identity", backend="numpy")
    h0 = make_state(np.random.default_rng(3), cell, 2, 3)
    for truncate in (None, 2):
        assert bptt.gradcheck(net, X, y, h0=h0, truncate=truncate, n_checks=5,
                              random_state=0)


@pytest.mark.parametrize("truncate", [None, 1, 3])
def test_numeric_values_are_the_independent_finite_differences(truncate):
    # The report's numeric column equals central differences of the tests' own
    # loss (helpers.detached_loss holds each window's entering state fixed).
    net, X, y = _problem("lstm")
    h0 = make_state(np.random.default_rng(4), "lstm", 2, 3)
    report = bptt.gradcheck(net, X, y, truncate=truncate, h0=h0, n_checks=4,
                            random_state=1)
    reference = copy.deepcopy(net)
    f = detached_loss(reference, X, y, "mse", "sequence", truncate=truncate, h0=h0)
    for name, check in report.params.items():
        param = reference.params[name]
        for idx, numeric in zip(check.indices, check.numeric):
            assert numeric == pytest.approx(central_difference(f, param, idx, 1e-6),
                                            rel=1e-6, abs=1e-9)
        _, grads = net.loss_and_grad(X, y, truncate=truncate, h0=h0)
        np.testing.assert_array_equal(check.analytic, [grads[name][i] for i in check.indices])


# ---------------------------------------------------------------- fails
def _patched(monkeypatch, change):
    """Make RNN.loss_and_grad return gradients altered by change(grads, kwargs)."""
    real = bptt.RNN.loss_and_grad

    def wrong(self, X, y, **kwargs):
        value, grads = real(self, X, y, **kwargs)
        change(grads, kwargs)
        return value, grads

    monkeypatch.setattr(bptt.RNN, "loss_and_grad", wrong)


@pytest.mark.parametrize("name", ["W_hh", "b_hn", "W_oh"])
def test_fails_and_names_the_parameter_with_a_wrong_entry(monkeypatch, name):
    net, X, y = _problem("gru")
    idx = (1,) if name == "b_hn" else (1, 2)

    def one_entry_off(grads, kwargs):
        grads[name][idx] += 1e-4  # 10x the tolerance even for a gradient of 1

    _patched(monkeypatch, one_entry_off)
    report = bptt.gradcheck(net, X, y, n_checks=1000, random_state=0)
    assert not report.passed and not bool(report)
    assert report.failed == [name]
    bad = report[name]
    assert not bad.passed and bad.worst_index == idx
    a, n = bad.worst_analytic, bad.worst_numeric
    assert a - n == pytest.approx(1e-4, rel=1e-4)
    # relative error, its denominator floored at atol / rtol = 1e-3
    assert bad.worst_error == pytest.approx(1e-4 / max(abs(a), abs(n), 1e-3), rel=1e-4)
    assert bad.worst_error > 1e-5
    assert "FAIL" in repr(report) and f"FAILED ({name})" in repr(report)


def test_fails_when_the_gradient_ignores_the_truncation(monkeypatch):
    # Full BPTT gradients offered as truncated ones: the recurrent weights fail
    # (their gradient crosses window boundaries), the output layer does not.
    net, X, y = _problem("rnn")
    real = bptt.RNN.loss_and_grad

    def untruncated(self, X, y, **kwargs):
        return real(self, X, y, **{**kwargs, "truncate": None})

    monkeypatch.setattr(bptt.RNN, "loss_and_grad", untruncated)
    report = bptt.gradcheck(net, X, y, truncate=2, n_checks=1000, random_state=0)
    assert {"W_hh", "W_xh", "b_h"} <= set(report.failed)
    assert report["W_oh"].passed and report["b_o"].passed


def test_atol_floor_lets_tiny_gradients_pass_and_rtol_decides_the_rest(monkeypatch):
    net, X, y = _problem("rnn")

    def off_by(grads, kwargs):
        grads["b_o"] += 1e-9  # absolute error 1e-9 on every entry

    _patched(monkeypatch, off_by)
    assert bptt.gradcheck(net, X, y, random_state=0).params["b_o"].passed  # atol 1e-8
    strict = bptt.gradcheck(net, X, y, atol=1e-12, rtol=1e-10, random_state=0)
    assert "b_o" in strict.failed


# ---------------------------------------------------------------- report
def test_repr_is_a_table_with_every_parameter():
    net, X, y = _problem("lstm")
    report = bptt.gradcheck(net, X, y, n_checks=3, random_state=0)
    text = repr(report)
    assert text.startswith("gradcheck passed")
    assert "rtol=1e-05" in text and "atol=1e-08" in text and "eps=1e-06" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("parameter"))
    rows = lines[header + 1:]
    assert [row.split()[0] for row in rows] == list(net.params)
    assert all(row.endswith("ok") for row in rows)
    assert f"3/{net.params['W_hh'].size}" in text
    assert "W_hh" in repr(report["W_hh"]) and "passed" in repr(report["W_hh"])
    assert len(report) == len(net.params) and list(report) == list(net.params)


def test_every_entry_of_a_small_parameter_and_determinism():
    net, X, y = _problem("rnn")
    a = bptt.gradcheck(net, X, y, n_checks=4, random_state=7)
    b = bptt.gradcheck(net, X, y, n_checks=4, random_state=7)
    c = bptt.gradcheck(net, X, y, n_checks=4, random_state=8)
    assert a["b_h"].indices == [(0,), (1,), (2,)]  # 3 entries <= n_checks: all
    assert len(a["W_hh"].indices) == 4 and len(set(a["W_hh"].indices)) == 4
    for name in net.params:
        assert a[name].indices == b[name].indices
        np.testing.assert_array_equal(a[name].numeric, b[name].numeric)
    assert any(a[name].indices != c[name].indices for name in net.params)
    # a Generator works too, and is advanced
    gen = np.random.default_rng(0)
    first = bptt.gradcheck(net, X, y, n_checks=2, random_state=gen)["W_xh"].indices
    second = bptt.gradcheck(net, X, y, n_checks=2, random_state=gen)["W_xh"].indices
    assert first != second or len(first) == net.params["W_xh"].size


def test_the_callers_network_is_unchanged():
    net, X, y = _problem("lstm")
    net.loss_and_grad(X, y)  # the network holds buffers from a call
    arrays = dict(net.params)
    values = {k: v.copy() for k, v in arrays.items()}
    keys = set(vars(net))
    bptt.gradcheck(net, X, y, truncate=2, n_checks=50, random_state=0)
    assert set(vars(net)) == keys
    for name, value in net.params.items():
        assert value is arrays[name]  # not replaced
        np.testing.assert_array_equal(value, values[name])  # not modified


# ---------------------------------------------------------------- refuses
def test_float32_network_gets_a_clear_error_with_a_working_twin():
    net, X, y = _problem("gru")
    net32 = bptt.RNN(2, 3, 3, cell="gru", dtype="float32", random_state=0)
    with pytest.raises(ValueError, match="gradcheck needs a float64 network; this one "
                                         "is float32") as info:
        bptt.gradcheck(net32, X, y)
    message = str(info.value)
    assert "meaningless" in message and "twin.params = net.params" in message
    build = next(line.strip() for line in message.splitlines() if "twin = " in line)
    scope = {"bptt": bptt, "net": net32}
    exec(build + "\ntwin.params = net.params", scope)  # the message's recipe runs
    twin = scope["twin"]
    assert twin.dtype is np.float64 and bptt.gradcheck(twin, X, y, n_checks=2)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"n_checks": 0}, ValueError, "n_checks must be an integer >= 1"),
    ({"n_checks": 2.5}, TypeError, "n_checks must be an integer"),
    ({"eps": 0.0}, ValueError, r"eps must be in \[1e-10, 0.01\].*rounding"),
    ({"eps": 1e-12}, ValueError, r"eps must be in \[1e-10, 0.01\]"),
    ({"eps": 0.1}, ValueError, r"eps must be in .*truncation error"),
    ({"eps": float("nan")}, ValueError, "eps must be in"),
    ({"eps": "1e-6"}, TypeError, "eps must be a real number"),
    ({"rtol": 0}, ValueError, "rtol must be a finite number > 0"),
    ({"atol": -1e-8}, ValueError, "atol must be a finite number > 0"),
    ({"random_state": "seed"}, TypeError, "random_state must be"),
    ({"loss": "hinge"}, ValueError, "loss must be one of"),
    ({"truncate": 0}, ValueError, "truncate must be an integer >= 1"),
])
def test_bad_arguments(kwargs, error, match):
    net, X, y = _problem("rnn")
    with pytest.raises(error, match=match):
        bptt.gradcheck(net, X, y, **kwargs)


def test_bad_network_and_data():
    net, X, y = _problem("rnn")
    with pytest.raises(TypeError, match="needs a network with params and loss_and_grad"):
        bptt.gradcheck(object(), X, y)
    est = bptt.RNNRegressor()
    est.net_ = net
    with pytest.raises(TypeError, match=r"pass est\.net_"):
        bptt.gradcheck(est, X, y)
    with pytest.raises(ValueError, match="X has 3 features"):  # the network's own check
        bptt.gradcheck(net, np.zeros((2, 5, 3)), y)
    with pytest.raises(ValueError, match="expects y of shape"):
        bptt.gradcheck(net, X, y[:, :, :2])


def test_too_slow_is_refused_before_the_finite_differences(monkeypatch):
    net, X, y = _problem("rnn")
    calls = []
    real = bptt.RNN.loss_and_grad
    monkeypatch.setattr(bptt.RNN, "loss_and_grad",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    monkeypatch.setattr(gradcheck_module, "MAX_WORK", 1e5)
    with pytest.raises(ValueError, match=r"floating-point operations.*fewer sequences"):
        bptt.gradcheck(net, X, y)
    assert len(calls) == 1  # only the analytic gradient was computed
    # the real limit: a big network on long sequences
    monkeypatch.undo()
    big = bptt.RNN(8, 512, 1, random_state=0)
    with pytest.raises(ValueError, match="beyond the limit"):
        bptt.gradcheck(big, np.zeros((4, 300, 8)), np.zeros((4, 300)), n_checks=50)


# ------------------------------------- layers, directions, ragged, dropout
LENGTHS = [6, 3, 6, 1]


def _layered(cell, layers, bidirectional, output, loss="mse", dropout=0.0, seed=0,
             activation=None):
    activation = activation or {"mse": "identity", "cross_entropy": "softmax",
                                "binary_cross_entropy": "sigmoid"}[loss]
    rng = np.random.default_rng(seed)
    net = bptt.RNN(2, 3, 2, cell=cell, num_layers=layers, bidirectional=bidirectional,
                   dropout=dropout, output_activation=activation, dtype="float64",
                   random_state=seed)
    Xs = [rng.standard_normal((L, 2)) for L in LENGTHS]
    if output == "sequence":
        y = ([rng.integers(0, 2, L) for L in LENGTHS] if loss == "cross_entropy" else
             [rng.random((L, 2)) for L in LENGTHS])
    else:
        y = (rng.integers(0, 2, len(LENGTHS)) if loss == "cross_entropy" else
             rng.random((len(LENGTHS), 2)))
    return net, Xs, y


@pytest.mark.parametrize("output,loss,truncate", [
    ("sequence", "mse", None), ("sequence", "mse", 2), ("last", "cross_entropy", 1),
    ("mean", "binary_cross_entropy", 4)])
@pytest.mark.parametrize("layers,bidirectional", [(1, True), (2, False), (2, True)])
@pytest.mark.parametrize("cell", CELLS)
def test_passes_on_ragged_stacked_bidirectional_truncated(cell, layers, bidirectional,
                                                          output, loss, truncate):
    net, Xs, y = _layered(cell, layers, bidirectional, output, loss)
    report = bptt.gradcheck(net, Xs, y, loss=loss, output=output, truncate=truncate,
                            n_checks=6, random_state=0)
    assert report.passed, repr(report)
    assert set(report.params) == set(net.params)


@pytest.mark.parametrize("truncate", [None, 2])
def test_passes_on_padded_input_with_h0_and_mse_on_sigmoid(truncate):
    net, Xs, y = _layered("lstm", 2, True, "sequence", activation="sigmoid")
    width = 8
    Xp = np.full((len(Xs), width, 2), np.nan)
    yp = np.full((len(Xs), width, 2), np.nan)
    for i, (x, t) in enumerate(zip(Xs, y)):
        Xp[i, :len(x)], yp[i, :len(t)] = x, t
    rng = np.random.default_rng(3)
    h0 = tuple(rng.normal(0, 0.5, (4, len(Xs), 3)) for _ in range(2))  # (L*D, n, H)
    report = bptt.gradcheck(net, Xp, yp, truncate=truncate, h0=h0, n_checks=6,
                            random_state=0)
    assert report.passed, repr(report)


@pytest.mark.parametrize("truncate", [None, 2])
def test_passes_with_dropout_on_the_masks_drawn(truncate):
    net, Xs, y = _layered("gru", 3, True, "sequence", dropout=0.5)
    report = bptt.gradcheck(net, Xs, y, truncate=truncate, n_checks=6, random_state=0)
    assert report.passed, repr(report)


def test_fails_when_a_ragged_bidirectional_gradient_ignores_the_truncation(monkeypatch):
    net, Xs, y = _layered("lstm", 2, True, "mean")
    real = bptt.RNN.loss_and_grad

    def untruncated(self, X, y, **kwargs):
        return real(self, X, y, **{**kwargs, "truncate": None})

    monkeypatch.setattr(bptt.RNN, "loss_and_grad", untruncated)
    report = bptt.gradcheck(net, Xs, y, output="mean", truncate=2, n_checks=1000,
                            random_state=0)
    assert {"W_hh", "W_hh_reverse", "W_hh_l1", "W_hh_l1_reverse"} <= set(report.failed)
    assert report["b_o"].passed


@pytest.mark.parametrize("truncate", [None, 2])
def test_fails_on_one_wrong_entry_of_a_reversed_deep_parameter(monkeypatch, truncate):
    net, Xs, y = _layered("rnn", 2, True, "sequence")

    def one_entry_off(grads, kwargs):
        grads["W_xh_l1_reverse"][1, 4] += 1e-4

    _patched(monkeypatch, one_entry_off)
    report = bptt.gradcheck(net, Xs, y, truncate=truncate, n_checks=1000, random_state=0)
    assert report.failed == ["W_xh_l1_reverse"]
    assert report["W_xh_l1_reverse"].worst_index == (1, 4)


def test_public_names_and_docstring_example():
    import doctest

    assert {"gradcheck", "GradcheckReport"} <= set(bptt.__all__)
    result = doctest.testmod(gradcheck_module)
    assert result.attempted > 0 and result.failed == 0
