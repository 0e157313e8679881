"""Every kind of bad input gets a ValueError/TypeError saying what is wrong."""

import numpy as np
import pytest

import bptt
from helpers import CELLS, HAS_CELL_STATE


@pytest.fixture
def net():
    return bptt.RNN(3, 4, 2, random_state=0)


@pytest.fixture
def X():
    return np.random.default_rng(0).standard_normal((5, 6, 3))


@pytest.mark.parametrize("kwargs,match", [
    (dict(cell="elman"), r"cell must be one of .*got 'elman'"),
    (dict(nonlinearity="sigmoid"), r"nonlinearity must be one of .*got 'sigmoid'"),
    (dict(output_activation="tanh"), r"output_activation must be one of"),
    (dict(init="zeros"), r"init must be one of"),
    (dict(dtype="float16"), r"dtype must be one of \['float32', 'float64'\]; got 'float16'"),
    (dict(backend="torch"), r"backend must be one of"),
    (dict(random_state="seed"), r"random_state must be"),
])
def test_unknown_options(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bptt.RNN(3, 4, 2, **kwargs)


@pytest.mark.parametrize("sizes,exc,match", [
    ((0, 4, 2), ValueError, r"input_size must be an integer >= 1; got 0"),
    ((3, -1, 2), ValueError, r"hidden_size must be an integer >= 1; got -1"),
    ((3, 4, 0), ValueError, r"output_size must be an integer >= 1; got 0"),
    ((3, 4.5, 2), TypeError, r"hidden_size must be an integer"),
    ((True, 4, 2), TypeError, r"input_size must be an integer"),
])
def test_bad_sizes(sizes, exc, match):
    with pytest.raises(exc, match=match):
        bptt.RNN(*sizes)


@pytest.mark.parametrize("method", ["forward", "loss_and_grad"])
@pytest.mark.parametrize("bad,exc,match", [
    (np.zeros((5, 6)), ValueError, r"Expected a 3D array X .*got a 2D array of shape \(5, 6\)"),
    (np.zeros((5, 6, 3, 1)), ValueError, r"got a 4D array"),
    (np.zeros((5, 6, 2)), ValueError, r"X has 2 features, but RNN is expecting 3 features"),
    (np.zeros((0, 6, 3)), ValueError, r"Found array with 0 sample\(s\)"),
    (np.zeros((5, 0, 3)), ValueError, r"Found array with 0 timestep\(s\)"),
    (np.full((5, 6, 3), np.nan), ValueError, r"Input X contains NaN"),
    (np.full((5, 6, 3), np.inf), ValueError, r"Input X contains infinity"),
    (np.zeros((5, 6, 3), dtype=complex), ValueError, r"Complex data not supported"),
    (np.full((5, 6, 3), "a"), ValueError, r"X must contain numbers"),
    ([[[1, 2, 3]], [[1, 2]]], ValueError, r"numeric array of consistent shape"),
    (np.zeros((5, 6, 3), dtype="datetime64[s]"), TypeError, r"X must contain numbers"),
])
def test_bad_X(net, method, bad, exc, match):
    with pytest.raises(exc, match=match):
        if method == "forward":
            net.forward(bad)
        else:
            net.loss_and_grad(bad, np.zeros((5, 6, 2)))


@pytest.mark.parametrize("y,kwargs,match", [
    (np.zeros((5, 6)), {}, r"mse with output='sequence' expects y of shape \(5, 6, 2\); got y of shape \(5, 6\)"),
    (np.zeros((5, 2)), {}, r"expects y of shape \(5, 6, 2\)"),
    (np.zeros((5, 6, 2)), dict(output="last"), r"expects y of shape \(5, 2\); got y of shape \(5, 6, 2\)"),
    (np.zeros((4, 6, 2)), {}, r"inconsistent numbers of samples: \[5, 4\]"),
    (np.full((5, 6, 2), np.nan), {}, r"Input y contains NaN"),
    (np.full((5, 6, 2), -np.inf), {}, r"Input y contains infinity"),
    (None, {}, r"y must not be None"),
    (np.full((5, 6, 2), "x"), {}, r"y must contain numbers"),
    (np.zeros((5, 6, 2)), dict(loss="hinge"), r"loss must be one of"),
    (np.zeros((5, 6, 2)), dict(output="first"), r"output must be one of"),
    (np.zeros((5, 6, 2)), dict(truncate=0), r"truncate must be an integer >= 1; got 0"),
    (np.zeros((5, 6, 2)), dict(truncate=-2), r"truncate must be an integer >= 1"),
    (np.zeros((5, 6, 2)), dict(truncate=1.5), r"truncate must be an integer"),
    (np.zeros((5, 6, 2)), dict(loss="cross_entropy"), r"needs output_activation='softmax'"),
    (np.zeros((5, 6, 2)), dict(loss="binary_cross_entropy"), r"needs output_activation='sigmoid'"),
])
def test_bad_targets_and_options(net, X, y, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        net.loss_and_grad(X, y, **kwargs)


@pytest.mark.parametrize("y,kwargs,match", [
    (np.full((5, 6), 2), {}, r"labels must lie in \[0, 2\) \(output_size=2\); got labels from 2 to 2"),
    (np.full((5, 6), -1), {}, r"labels must lie in \[0, 2\)"),
    (np.full((5, 6), 0.5), {}, r"labels must be integers"),
    (np.zeros((5, 6, 2)), {}, r"expects integer class labels of shape \(5, 6\); got y of shape \(5, 6, 2\)"),
    (np.zeros((5, 6)), dict(output="last"), r"expects integer class labels of shape \(5,\)"),
    (np.full((5, 6), np.nan), {}, r"Input y contains NaN"),
])
def test_bad_labels(X, y, kwargs, match):
    net = bptt.RNN(3, 4, 2, output_activation="softmax")
    with pytest.raises(ValueError, match=match):
        net.loss_and_grad(X, y, loss="cross_entropy", **kwargs)


def test_bad_binary_targets(X):
    net = bptt.RNN(3, 4, 2, output_activation="sigmoid")
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]; got values from 0.0 to 2.0"):
        net.loss_and_grad(X, np.linspace(0, 2, 60).reshape(5, 6, 2),
                          loss="binary_cross_entropy")


@pytest.mark.parametrize("h0,match", [
    (np.zeros((4, 4)), r"h0 must have shape \(n_samples, hidden_size\) = \(5, 4\); got shape \(4, 4\)"),
    (np.zeros(4), r"h0 must have shape .* got shape \(4,\)"),
    (np.full((5, 4), np.nan), r"Input h0 contains NaN"),
    (np.full((5, 4), np.inf), r"Input h0 contains infinity"),
])
@pytest.mark.parametrize("method", ["forward", "loss_and_grad"])
def test_bad_h0(net, X, h0, match, method):
    with pytest.raises(ValueError, match=match):
        if method == "forward":
            net.forward(X, h0=h0)
        else:
            net.loss_and_grad(X, np.zeros((5, 6, 2)), h0=h0)


@pytest.mark.parametrize("name,value,exc,match", [
    ("W_hh", np.zeros((3, 3)), ValueError, r"params\['W_hh'\] must have shape \(4, 4\); got an array of shape \(3, 3\)"),
    ("b_o", np.zeros((2, 1)), ValueError, r"params\['b_o'\] must have shape \(2,\)"),
    ("W_xh", np.full((4, 3), np.nan), ValueError, r"Input params\['W_xh'\] contains NaN"),
    ("W_hy", np.zeros((2, 4)), KeyError, r"unknown parameter 'W_hy'"),
    ("W_oh", np.full((2, 4), "w"), ValueError, r"must contain numbers"),
])
def test_bad_params(net, name, value, exc, match):
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(exc, match=match):
        net.params[name] = value
    # nothing was replaced
    for k in before:
        np.testing.assert_array_equal(net.params[k], before[k])


def test_params_setter_validates_everything_before_replacing(net):
    before = {k: v.copy() for k, v in net.params.items()}
    bad = dict(before, W_hh=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="W_hh"):
        net.params = bad
    with pytest.raises(KeyError, match=r"missing \['b_o'\]"):
        net.params = {k: v for k, v in before.items() if k != "b_o"}
    for k in before:
        np.testing.assert_array_equal(net.params[k], before[k])
    with pytest.raises(TypeError):
        del net.params["W_hh"]


def test_nan_written_into_params_in_place_is_reported_not_returned(net, X):
    net.params["W_hh"][0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="loss is not finite"):
        net.loss_and_grad(X, np.zeros((5, 6, 2)))
    with pytest.raises(FloatingPointError, match="non-finite outputs"):
        net.forward(X)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_nan_propagates_through_the_compiled_activations(nonlinearity, X):
    # NaN must not be clamped into a finite value by tanh or relu
    net = bptt.RNN(3, 4, 2, nonlinearity=nonlinearity, random_state=0)
    net.params["b_h"][:] = np.nan
    with pytest.raises(FloatingPointError):
        net.forward(X)


# --- finiteness is checked after the cast to the network's dtype (issue 16, item 4)
OVERFLOW = r"holds a value too large for float32 \(1e\+39; the largest is 3\.403e\+38\): it overflows"


@pytest.fixture(params=["cython", "numpy"])
def net32(request):
    return bptt.RNN(3, 4, 2, dtype="float32", backend=request.param, random_state=0)


@pytest.fixture(params=["cython", "numpy"])
def lstm32(request):
    return bptt.RNN(3, 4, 2, cell="lstm", dtype="float32", backend=request.param,
                    random_state=0)


def _big(shape):
    a = np.zeros(shape)
    a.flat[-1] = 1e39
    return a


@pytest.mark.parametrize("method", ["forward", "loss_and_grad"])
def test_float32_network_refuses_X_that_overflows(net32, X, method):
    with pytest.raises(ValueError, match=r"Input X " + OVERFLOW):
        if method == "forward":
            net32.forward(X + _big(X.shape))
        else:
            net32.loss_and_grad(X + _big(X.shape), np.zeros((5, 6, 2)))
    # a value that fits float32 is fine, and float64 networks take 1e39
    net32.forward(X + 1e38)
    bptt.RNN(3, 4, 2, random_state=0).forward(X + _big(X.shape))


@pytest.mark.parametrize("output", ["sequence", "last"])
def test_float32_network_refuses_targets_that_overflow(net32, X, output):
    y = _big((5, 2) if output == "last" else (5, 6, 2))
    with pytest.raises(ValueError, match=r"Input y " + OVERFLOW):
        net32.loss_and_grad(X, y, output=output)


def test_float32_network_refuses_params_that_overflow(net32):
    with pytest.raises(ValueError, match=r"Input params\['W_hh'\] " + OVERFLOW):
        net32.params["W_hh"] = _big((4, 4))
    with pytest.raises(ValueError, match=r"params\['b_h'\] .*overflows"):
        net32.params |= {"b_h": _big(4)}
    with pytest.raises(ValueError, match=r"params\['b_o'\] .*overflows"):
        net32.params = dict(net32.params, b_o=_big(2))
    assert all(np.isfinite(v).all() for v in net32.params.values())


def test_float32_network_refuses_states_that_overflow(net32, lstm32, X):
    with pytest.raises(ValueError, match=r"Input h0 " + OVERFLOW):
        net32.forward(X, h0=_big((5, 4)))
    with pytest.raises(ValueError, match=r"Input h0 " + OVERFLOW):
        net32.stream(5, h0=_big((5, 4)))
    with pytest.raises(ValueError, match=r"Input c0 " + OVERFLOW):
        lstm32.forward(X, h0=(np.zeros((5, 4)), _big((5, 4))))
    with pytest.raises(ValueError, match=r"Input c0 " + OVERFLOW):
        lstm32.loss_and_grad(X, np.zeros((5, 6, 2)), h0=(np.zeros((5, 4)), _big((5, 4))))


def test_float32_stream_refuses_inputs_that_overflow(net32):
    s = net32.stream(2)
    with pytest.raises(ValueError, match=r"Input x " + OVERFLOW):
        s.step(_big((2, 3)))
    s1 = net32.stream(1)
    with pytest.raises(ValueError, match=r"Input x " + OVERFLOW):
        s1.step([0.0, 0.0, 1e39])
    assert np.isfinite(s.step(np.zeros((2, 3)))).all()


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # sklearn's
def test_float32_estimator_refuses_X_that_overflows():
    X = np.zeros((6, 4, 1))
    X[0, 0, 0] = 1e39
    reg = bptt.RNNRegressor(hidden_size=3, max_epochs=1, dtype="float32")
    with pytest.raises(ValueError, match="infinity or a value too large"):
        reg.fit(X, np.zeros(6))


# --- Stepper.reset validates like forward's h0 (issue 16, item 5)
def _error(call):
    try:
        call()
    except (ValueError, TypeError) as exc:
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_stream_reset_validates_like_forward_h0(backend, cell, dtype):
    net = bptt.RNN(3, 5, 2, cell=cell, dtype=dtype, backend=backend, random_state=0)
    X = np.ones((2, 1, 3))
    stream = net.stream(2)
    good = np.full((2, 5), 0.1)
    bad_arrays = [np.full((2, 5), np.nan), np.full((2, 5), np.inf), np.zeros((1, 5)),
                  np.zeros(5), np.full((2, 5), "a")]
    if dtype == "float32":
        bad_arrays.append(_big((2, 5)))
    if HAS_CELL_STATE[cell]:
        bads = [good, (good,), (good, good, good), "h"]
        bads += [(a, good) for a in bad_arrays] + [(good, a) for a in bad_arrays]
    else:
        bads = [(good, good), "h"] + bad_arrays
    before = stream.state
    for bad in bads:
        expected = _error(lambda: net.forward(X, h0=bad))
        assert expected is not None, bad
        assert _error(lambda: stream.reset(bad)) == expected, bad
        after = stream.state
        for a, b in zip(*(s if isinstance(s, tuple) else (s,) for s in (before, after))):
            np.testing.assert_array_equal(a, b)  # a refused reset changes nothing
        assert np.isfinite(stream.step(np.ones((2, 3)))).all()
        before = stream.state
    # a valid state (a list for the lstm, too) is taken, as forward takes it
    h0 = [good, 2 * good] if HAS_CELL_STATE[cell] else good
    stream.reset(h0)
    want, _ = net.forward(X, h0=h0)
    np.testing.assert_allclose(stream.step(np.ones((2, 3))), want[:, 0],
                               rtol=1e-5, atol=1e-6)


# --- sizes, labels and strings (issue 16, item 7)
def test_network_too_large_for_memory_fails_before_allocating():
    # in a child under a 2 GB address-space cap: without the check NumPy
    # fills 7 GB first (here: a MemoryError without the size after the cap)
    code = (
        "import resource, bptt\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "try:\n"
        "    bptt.RNN(3, 3 * 10**8, 2)\n"
        "except MemoryError as exc:\n"
        "    print(exc)\n"
    )
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "has 90,000,001,800,000,002 parameters: 720 PB of float64" in out.stdout
    assert "physical memory" in out.stdout


def test_network_size_is_checked_against_physical_memory(monkeypatch):
    from bptt import rnn
    monkeypatch.setattr(rnn, "physical_memory", lambda: 10**6)
    # 4 * 300 * (3 + 300 + 1) + 2 * 301 parameters, in float64 and float32 at once
    with pytest.raises(MemoryError, match=r"has 365,402 parameters: 1.46 MB of float32, "
                       r"and initialising them needs at least 4.38 MB, more than this "
                       r"machine's 1 MB of physical memory"):
        bptt.RNN(3, 300, 2, cell="lstm", dtype="float32")
    bptt.RNN(3, 30, 2, cell="lstm", dtype="float32")  # 45 kB fits
    monkeypatch.setattr(rnn, "physical_memory", lambda: None)  # unknown: no check
    bptt.RNN(3, 300, 2, cell="lstm", dtype="float32")


@pytest.mark.parametrize("output", ["last", "sequence"])
def test_classifier_refuses_mixed_label_types(X, output):
    y = np.array(["a", 1, "b", 2, "a"], dtype=object)
    if output == "sequence":
        y = np.repeat(y[:, None], 6, axis=1)
    clf = bptt.RNNClassifier(hidden_size=3, max_epochs=1, output=output)
    with pytest.raises(TypeError, match=r"y mixes class labels of types \['int', 'str'\]"):
        clf.fit(X, y)
    with pytest.raises(TypeError, match=r"classes mixes class labels"):
        clf.partial_fit(X, np.ones_like(y, dtype=int),
                        classes=np.array(["a", 1], dtype=object))


@pytest.mark.parametrize("bad", [
    np.full((5, 6, 3), "1.5"),
    np.full((5, 6, 3), b"1.5"),
    np.full((5, 6, 3), "1.5", dtype=object),
])
def test_numeric_strings_are_not_parsed(net, X, bad):
    with pytest.raises(ValueError, match=r"X must contain numbers; got an array of strings"):
        net.forward(bad)
    with pytest.raises(ValueError, match=r"y must contain numbers; got an array of strings"):
        net.loss_and_grad(X, bad[..., :2])
    with pytest.raises(ValueError, match=r"h0 must contain numbers"):
        net.forward(X, h0=np.full((5, 4), "0"))
    with pytest.raises(ValueError, match=r"params\['b_o'\] must contain numbers"):
        net.params["b_o"] = ["1", "2"]
    with pytest.raises(ValueError, match=r"x must contain numbers"):
        net.stream(1).step(["1", "2", "3"])
    # numbers in an object array are still numbers
    net.forward(X.astype(object))
