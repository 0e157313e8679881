"""The kernels' batch split over threads gives the serial results."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import bptt
from bptt import _threads
from bptt import _bptt
from bptt import _cells
from helpers import CELLS, make_problem, twin


def _assert_close(a, b, tol):
    """Arrays, or tuples of arrays (the LSTM's state (h, c)), match."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=tol, atol=tol)
    else:
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("n", [2, 3, 7, 16])
@pytest.mark.parametrize("truncate", [None, 3])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_threaded_kernels_match_serial(monkeypatch, cell, n, truncate, dtype, tol):
    """The compiled path on 2 to 4 threads gives the NumPy reference's
    result (of the same dtype)."""
    net, X, y = make_problem(0, n=n, T=9, I=3, H=5, O=2, cell=cell)
    net32 = bptt.RNN(3, 5, 2, cell=cell, dtype=dtype, random_state=0)
    net32.params = net.params
    ref = twin(net32, "numpy")
    serial = ref.loss_and_grad(X, y, truncate=truncate)
    Y_serial, h_serial = ref.forward(X)
    monkeypatch.setattr(_threads, "MIN_WORK_PER_THREAD", 1)
    for threads in (2, 3, 4):
        with threadpool_limits(limits=threads, user_api="blas"):
            assert _bptt.holds_blas(net32, n, X.shape[1])
            assert _bptt.plan_threads(net32, threads, n) == min(threads, n)
            value, grads = net32.loss_and_grad(X, y, truncate=truncate)
            Y, h = net32.forward(X)
        assert value == pytest.approx(serial[0], rel=tol)
        for name in grads:
            np.testing.assert_allclose(grads[name], serial[1][name], rtol=tol, atol=tol)
        np.testing.assert_allclose(Y, Y_serial, rtol=tol, atol=tol)
        _assert_close(h, h_serial, tol)


def _state_names(cell):
    """The per-sequence arrays of a cell's kernel problem: its state0 (h0,
    and c0) and the dL/dstate flowing in after the last timestep (dh, dc)."""
    state = _cells.CELLS[cell].state
    return [s + "0" for s in state] + ["d" + s for s in state]


def _kernel_problem(cell, T, B, I, H, seed=0):
    """Random inputs, parameters (the cell's extra ones too), states,
    dL/dH and dL/dstate after the last timestep for one cell's kernels."""
    rng = np.random.default_rng(seed)
    spec = _cells.CELLS[cell]
    shapes = spec.param_shapes(I, H, 1)
    p = {"X": rng.standard_normal((T, B, I)), "dH": rng.standard_normal((T, B, H))}
    for name in spec.param_names[:-len(_cells.OUTPUT_PARAMS)]:
        p[name] = rng.standard_normal(shapes[name])
    p["W_hh"] *= 0.5
    for name in _state_names(cell):
        p[name] = rng.standard_normal((B, H))
    return p


def _is_cache(name):
    """Whether a _run_kernels output is a cache array, (steps, B, .)."""
    return name == "H" or name.startswith(("cache", "work"))


def _run_kernels(cell, p, truncate, accumulate, layout=None):
    """Forward and backward through one cell's kernels, called by its binding
    in the registry as the driver calls them; every output by name: the
    cache after forward (cache<k>, H) and after backward (work<k>, which
    backward consumes as workspace), the gradients d<param>, the state
    gradients d<state>0 and dX.

    ``layout`` None runs the plain NumPy reference; else it is the compiled
    kernels' (n_threads, slabs, slab_steps). With slab_steps, the cache
    arrays hold that many timesteps per slab (NaN outside the chunk) and the
    kernels get them from the last chunk's first timestep on, as training
    passes its later chunks."""
    spec = _cells.CELLS[cell]
    cell_obj = spec.bind("numpy" if layout is None else "cython", "tanh")
    n_threads, slabs, slab_steps = layout or (1, 1, 0)
    X = p["X"]
    T, B, _ = X.shape
    params = {name: p[name] for name in spec.param_names if name in p}
    state0 = spec.state_of([p[s + "0"] for s in spec.state])
    dstate_next = spec.state_of([p["d" + s] for s in spec.state])
    cached = slabs * slab_steps if slab_steps else T
    start = slab_steps - T // slabs if slab_steps else 0
    cache = tuple(np.full_like(a, np.nan)
                  for a in cell_obj.allocate(cached, B, p["W_hh"].shape[1], X.dtype))
    cell_obj.forward(X, params, state0, tuple(a[start:] for a in cache), n_threads, slabs,
                     slab_steps)
    out = {f"cache{k}": a.copy() for k, a in enumerate(cache)}
    out["H"] = cell_obj.hidden(cache).copy()
    # accumulate adds into these: start them non-zero
    grads = {name: np.full_like(value, 0.5) for name, value in params.items()}
    dX = np.empty_like(X)
    dstate0 = cell_obj.backward(X, params, state0, tuple(a[start:] for a in cache),
                                p["dH"].copy(), dstate_next, truncate, grads, accumulate,
                                n_threads, dX, slabs, slab_steps)
    out.update({f"work{k}": a for k, a in enumerate(cache)})
    out.update({"d" + name: g for name, g in grads.items()})
    out.update({"d" + s + "0": a for s, a in zip(spec.state, spec.state_arrays(dstate0))})
    out["dX"] = dX
    return out


def _reference_in_slabs(cell, p, truncate, accumulate, slabs=1, slab_steps=0):
    """What the compiled kernels must give in a slab layout, from the plain
    reference: each slab is sequences of their own (its timesteps, its state
    rows), the weight gradients add up over the slabs, and the cache arrays
    hold each slab's chunk at the end of its slab_steps timesteps."""
    T, B = p["X"].shape[0] // slabs, p["X"].shape[1]
    runs = []
    for k in range(slabs):
        q = dict(p)
        for name in ("X", "dH"):
            q[name] = p[name][k * T:(k + 1) * T]
        for name in _state_names(cell):
            q[name] = p[name][k * B:(k + 1) * B]
        runs.append(_run_kernels(cell, q, truncate, accumulate))
    stride = slab_steps or T
    expected = {}
    for name, first in runs[0].items():
        if name[1:] in _cells.CELLS[cell].param_names:
            # each run started from the same 0.5 when accumulating
            expected[name] = sum(run[name] for run in runs) - (slabs - 1) * 0.5 * accumulate
        elif _is_cache(name):
            laid_out = np.full((slabs * stride, *first.shape[1:]), np.nan, first.dtype)
            for k, run in enumerate(runs):
                laid_out[(k + 1) * stride - T:(k + 1) * stride] = run[name]
            expected[name] = laid_out
        else:
            # per-step (dX) and per-sequence (dh0, dc0) outputs: slab after slab
            expected[name] = np.concatenate([run[name] for run in runs])
    return expected


def _assert_outputs_close(got, expected, rtol, atol):
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=rtol, atol=atol,
                                   err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("truncate", [0, 2])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_kernel_outputs_with_threads(cell, truncate, accumulate, dtype, tol):
    """dX, dh0 (and dc0), the weight gradients, accumulate and truncation:
    every output of the compiled kernels on one thread and on more is the
    plain reference's, also with more threads than sequences or than
    timesteps (the weight gradients split the timesteps)."""
    p = {k: v.astype(dtype) for k, v in _kernel_problem(cell, T=6, B=5, I=3, H=4).items()}
    expected = _run_kernels(cell, p, truncate, accumulate)
    assert all(a.dtype == dtype for a in expected.values())
    for threads in (1, 2, 3, 7, 16):
        got = _run_kernels(cell, p, truncate, accumulate, (threads, 1, 0))
        # atol as the slab test: dW_hh sums products of about 1 with cancellation
        _assert_outputs_close(got, expected, rtol=tol, atol=tol)


def _slab_problem(cell, slabs, T, B, dtype):
    """_kernel_problem laid out in ``slabs`` slabs of B sequences: the (T, ...)
    arrays (slabs*T, B, ...), the states (slabs*B, H)."""
    p = _kernel_problem(cell, T=slabs * T, B=B, I=3, H=4, seed=slabs)
    rng = np.random.default_rng(slabs + 10)
    for name in _state_names(cell):
        p[name] = rng.standard_normal((slabs * B, 4))
    return {k: v.astype(dtype) for k, v in p.items()}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("slabs", [2, 3])
@pytest.mark.parametrize("truncate", [0, 2])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("slab_steps", [0, 5, 8])
def test_slab_kernels_match_reference(cell, slabs, truncate, accumulate, dtype, tol,
                                      slab_steps):
    """Every output of the compiled kernels in a slab layout (one part per
    slab) is the plain reference's run on each slab's sequences, on one
    thread and on more; also with cache arrays of more timesteps per slab
    than the chunk, which stay untouched outside the chunk."""
    p = _slab_problem(cell, slabs, T=5, B=3, dtype=dtype)
    expected = _reference_in_slabs(cell, p, truncate, accumulate, slabs, slab_steps)
    for threads in (1, 2, slabs + 1):
        got = _run_kernels(cell, p, truncate, accumulate, (threads, slabs, slab_steps))
        if slab_steps > 5:
            # per slab: 3 untouched timesteps, then the chunk's 5
            by_slab = got["H"].reshape(slabs, slab_steps, *got["H"].shape[1:])
            assert np.isnan(by_slab[:, :3]).all() and not np.isnan(by_slab[:, 3:]).any()
        _assert_outputs_close(got, expected, rtol=tol, atol=tol)


def test_slabs_that_do_not_split_are_refused():
    from bptt.rnn import load_kernels
    k = load_kernels("cython", "elman")
    X, h0 = np.zeros((5, 3, 2)), np.zeros((6, 4))
    Hs = np.empty((5, 3, 4))
    with pytest.raises(ValueError, match="slabs=2 needs X of shape"):
        k.elman_forward(X, np.zeros((4, 2)), np.zeros((4, 4)), np.zeros(4), h0, False,
                        Hs, 1, 2)
    with pytest.raises(ValueError, match="slabs=3 needs X of shape"):
        k.elman_forward(np.zeros((6, 3, 2)), np.zeros((4, 2)), np.zeros((4, 4)),
                        np.zeros(4), h0, False, np.empty((6, 3, 4)), 1, 3)
    X2, h02 = np.zeros((6, 3, 2)), np.zeros((6, 4))
    with pytest.raises(ValueError, match="slab_steps=2 needs slab_steps >= T=3"):
        k.elman_forward(X2, np.zeros((4, 2)), np.zeros((4, 4)), np.zeros(4), h02, False,
                        np.empty((6, 3, 4)), 1, 2, 2)
    with pytest.raises(ValueError, match="cache arrays of at least 8 timesteps"):
        k.elman_forward(X2, np.zeros((4, 2)), np.zeros((4, 4)), np.zeros(4), h02, False,
                        np.empty((7, 3, 4)), 1, 2, 5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss,output", [("mse", "sequence"), ("mse", "last"),
                                         ("cross_entropy", "sequence"),
                                         ("cross_entropy", "last"),
                                         ("binary_cross_entropy", "sequence")])
@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("chunk_rows", [None, 6, 12])
def test_slab_training_step_matches_serial(monkeypatch, cell, loss, output, truncate,
                                           chunk_rows):
    """loss_and_grad on 2 threads, which lays the batch out in one slab per
    thread, gives the NumPy reference's loss, gradients and final state for
    every loss and output, in one chunk of timesteps or in several."""
    activation = {"mse": "identity", "cross_entropy": "softmax",
                  "binary_cross_entropy": "sigmoid"}[loss]
    net = bptt.RNN(3, 5, 4, cell=cell, output_activation=activation, dtype="float64",
                   random_state=1)
    rng = np.random.default_rng(2)
    n, T = 6, 7
    X = rng.standard_normal((n, T, 3))
    shape = (n, T) if output == "sequence" else (n,)
    if loss == "cross_entropy":
        y = rng.integers(0, 4, shape)
    else:
        y = rng.uniform(0, 1, shape + (4,))
    spec = _cells.CELLS[cell]
    h0 = spec.state_of([rng.standard_normal((n, 5)) for _ in spec.state])
    args = dict(loss=loss, output=output, truncate=truncate, h0=h0)
    serial = twin(net, "numpy")._loss_grad_state(X, y, **args)
    if chunk_rows:
        monkeypatch.setattr(_bptt, "TRAIN_ONE_CHUNK_BYTES", 0)
        monkeypatch.setattr(_bptt, "TRAIN_CHUNK_ROWS", chunk_rows)
        assert _bptt.chunk_steps(net, T, n, truncate) < T
    monkeypatch.setattr(_threads, "MIN_WORK_PER_THREAD", 1)
    with threadpool_limits(limits=2, user_api="blas"):
        assert _bptt.plan_threads(net, 2, n) == 2
        value, grads, state = net._loss_grad_state(X, y, **args)
    assert any(key[4] == 2 for key in net._workspace)  # the slab layout ran
    assert value == pytest.approx(serial[0], rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], serial[1][name], rtol=1e-10, atol=1e-12)
    _assert_close(state, serial[2], 1e-12)


def test_blas_threads_are_restored_and_respected():
    from threadpoolctl import threadpool_info
    if _threads._get_blas_threads is None:
        pytest.skip("no controllable BLAS")
    with threadpool_limits(limits=2, user_api="blas"):
        before = _threads._get_blas_threads()
        with _threads.serial_blas() as budget:
            assert budget == before
            assert _threads._get_blas_threads() == 1
            with _threads.serial_blas() as inner:  # nested: same budget
                assert inner == before
            assert _threads._get_blas_threads() == 1
        assert _threads._get_blas_threads() == before
    with threadpool_limits(limits=1, user_api="blas"):
        with _threads.serial_blas() as budget:
            assert budget == 1
    assert threadpool_info()  # threadpoolctl still sees the libraries


def test_plan_threads():
    assert _threads.plan_threads(1, 100, 10**9) == 1
    assert _threads.plan_threads(4, 1, 10**9) == 1
    assert _threads.plan_threads(2, 64, 10**9) == 2
    assert _threads.plan_threads(2, 64, 10) == 1  # too little work to split
