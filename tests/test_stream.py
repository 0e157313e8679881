"""Streaming inference: RNN.stream() one timestep at a time."""

import tracemalloc

import numpy as np
import pytest

import bptt
from helpers import CELL_NONLINEARITIES, CELLS, make_state


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "softmax"])
@pytest.mark.parametrize("cell,nonlinearity", CELL_NONLINEARITIES)
@pytest.mark.parametrize("n", [1, 3])
def test_stepping_equals_forward(n, cell, nonlinearity, activation, dtype, tol, backend):
    net = bptt.RNN(2, 5, 3, cell=cell, nonlinearity=nonlinearity,
                   output_activation=activation, dtype=dtype, backend=backend,
                   random_state=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 30, 2))
    h0 = make_state(rng, cell, n, 5, scale=0.1)
    Y, h = net.forward(X, h0=h0)
    stream = net.stream(n_samples=n, h0=h0)
    outs = []
    for t in range(X.shape[1]):
        y = stream.step(X[:, t])  # float64 input to a float32 stream is converted
        assert y.shape == (n, 3) and y.dtype == np.dtype(dtype)
        outs.append(y.copy())
    np.testing.assert_allclose(np.stack(outs, axis=1), Y, rtol=tol, atol=tol)
    as_list = (lambda s: list(s) if isinstance(s, tuple) else [s])
    for got, want in zip(as_list(stream.state), as_list(h), strict=True):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    stream.reset(h0)
    for got, want in zip(as_list(stream.state), as_list(h0), strict=True):
        np.testing.assert_allclose(got, want.astype(dtype))


def test_one_sample_takes_a_vector_and_state_is_a_copy():
    net = bptt.RNN(3, 4, 1, random_state=0)
    stream = net.stream()
    y1 = stream.step(np.ones(3))
    first = y1.copy()
    state = stream.state
    state[:] = 100.0  # the copy does not feed back into the stream
    y2 = stream.step([1.0, 1.0, 1.0])
    assert y2 is y1  # the same buffer, overwritten
    expected, _ = net.forward(np.ones((1, 2, 3)))
    np.testing.assert_allclose([first[0, 0], y2[0, 0]], expected[0, :, 0], rtol=1e-12)


def test_stream_is_a_snapshot_of_the_parameters():
    net = bptt.RNN(1, 3, 1, random_state=0)
    stream = net.stream()
    y_before = stream.step(np.ones(1)).copy()
    net.params["W_xh"] = np.zeros((3, 1))
    stream.reset(np.zeros((1, 3)))
    np.testing.assert_array_equal(stream.step(np.ones(1)), y_before)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_bad_step_input(backend, cell):
    stream = bptt.RNN(2, 4, 1, cell=cell, backend=backend).stream(n_samples=2)
    with pytest.raises(ValueError, match=r"x must have shape \(n_samples, input_size\) = \(2, 2\); got shape \(2,\)"):
        stream.step(np.ones(2))
    with pytest.raises(ValueError, match=r"got shape \(2, 3\)"):
        stream.step(np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        stream.step(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="NaN or infinity|infinity"):
        stream.step(np.full((2, 2), np.inf))
    with pytest.raises(ValueError, match="must contain numbers"):
        stream.step([["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match=r"h0 must have shape"):
        bptt.RNN(2, 4, 1).stream(n_samples=2, h0=np.zeros((1, 4)))
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        bptt.RNN(2, 4, 1).stream(n_samples=0)


@pytest.mark.parametrize("cell", CELLS)
def test_steps_allocate_nothing(cell):
    net = bptt.RNN(1, 64, 1, cell=cell, dtype="float32", random_state=0)
    stream = net.stream()
    x = np.ones(1, dtype=np.float32)
    for _ in range(10):
        stream.step(x)
    inputs = [x] * 1000  # no loop counter objects while tracing
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for x_t in inputs:
        stream.step(x_t)
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert after - before == 0
    assert peak - before < 512
