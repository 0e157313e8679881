"""The kernels' batch split over threads gives the serial results."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import bptt
from bptt import _threads
from bptt import _bptt
from helpers import CELLS, GATES, cell_kernels, make_problem, twin


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


def _kernel_problem(cell, T, B, I, H, seed=0):
    """Random inputs, parameters, states and dL/dH for one cell's kernels."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    p = {"X": rng.standard_normal((T, B, I)),
         "W_xh": rng.standard_normal((G * H, I)),
         "W_hh": 0.5 * rng.standard_normal((G * H, H)),
         "b_h": rng.standard_normal(G * H), "b_hn": rng.standard_normal(H),
         "h0": rng.standard_normal((B, H)), "c0": rng.standard_normal((B, H)),
         "dH": rng.standard_normal((T, B, H)), "dc": rng.standard_normal((B, H))}
    return p


# what each kernel output is, for laying the reference's out as the slabs'
CACHE = ("H", "G", "C", "HN", "dG", "dHN")   # (steps, B, .) in the cache arrays
WEIGHT_GRADS = ("dW_xh", "dW_hh", "db_h", "db_hn")


def _run_kernels(cell, p, truncate, accumulate, layout=None):
    """Forward and backward through one cell's kernels; every output by name.

    ``layout`` None runs the plain NumPy reference; else it is the compiled
    kernels' (n_threads, slabs, slab_steps). With slab_steps, the cache
    arrays hold that many timesteps per slab (NaN outside the chunk) and the
    kernels get them from the last chunk's first timestep on, as training
    passes its later chunks."""
    k = cell_kernels("numpy" if layout is None else "cython", cell)
    layout = layout or ()
    slabs, slab_steps = (layout[1:] if layout else (1, 0))
    X, W_xh, W_hh, b_h, h0 = p["X"], p["W_xh"], p["W_hh"], p["b_h"], p["h0"]
    T, B, _ = X.shape
    n_hidden = W_hh.shape[1]
    dt = X.dtype
    dH = p["dH"].copy()
    out = {"dX": np.empty_like(X), "dh0": np.empty_like(h0),
           # accumulate adds into these: start them non-zero
           "dW_xh": np.full_like(W_xh, 0.5), "dW_hh": np.full_like(W_hh, 0.5),
           "db_h": np.full_like(b_h, 0.5)}
    grads = [out["dW_xh"], out["dW_hh"], out["db_h"]]
    cached = slabs * slab_steps if slab_steps else T
    start = slab_steps - T // slabs if slab_steps else 0

    def cache(width):
        return np.full((cached, B, width), np.nan, dt)

    if cell == "rnn":
        Hs = cache(n_hidden)
        k.elman_forward(X, W_xh, W_hh, b_h, h0, False, Hs[start:], *layout)
        out["H"] = Hs.copy()
        k.elman_backward(X, W_xh, W_hh, h0, Hs[start:], dH, False, truncate, *grads,
                         out["dh0"], accumulate, out["dX"], *layout)
        return out
    if cell == "lstm":
        c0 = p["c0"]
        G, C, Hs = cache(4 * n_hidden), cache(n_hidden), cache(n_hidden)
        k.lstm_forward(X, W_xh, W_hh, b_h, h0, c0, G[start:], C[start:], Hs[start:],
                       *layout)
        out.update(G=G.copy(), C=C.copy(), H=Hs.copy(), dc0=p["dc"].copy())
        k.lstm_backward(X, W_xh, W_hh, h0, c0, G[start:], C[start:], Hs[start:], dH,
                        truncate, *grads, out["dh0"], out["dc0"], accumulate, out["dX"],
                        *layout)
        out["dG"] = G
        return out
    G, HN, Hs = cache(3 * n_hidden), cache(n_hidden), cache(n_hidden)
    Gh = np.empty((h0.shape[0], 3 * n_hidden), dt)
    k.gru_forward(X, W_xh, W_hh, b_h, p["b_hn"], h0, G[start:], HN[start:], Hs[start:], Gh,
                  *layout)
    out.update(G=G.copy(), HN=HN.copy(), H=Hs.copy(), db_hn=np.full_like(p["b_hn"], 0.5))
    k.gru_backward(X, W_xh, W_hh, h0, G[start:], HN[start:], Hs[start:], dH, truncate,
                   *grads, out["db_hn"], out["dh0"], accumulate, out["dX"], *layout)
    out.update(dG=G, dHN=HN)
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
        for name in ("h0", "c0", "dc"):
            q[name] = p[name][k * B:(k + 1) * B]
        runs.append(_run_kernels(cell, q, truncate, accumulate))
    stride = slab_steps or T
    expected = {}
    for name, first in runs[0].items():
        if name in WEIGHT_GRADS:
            # each run started from the same 0.5 when accumulating
            expected[name] = sum(run[name] for run in runs) - (slabs - 1) * 0.5 * accumulate
        elif name in CACHE:
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
        _assert_outputs_close(got, expected, rtol=tol, atol=tol / 10)


def _slab_problem(cell, slabs, T, B, dtype):
    """_kernel_problem laid out in ``slabs`` slabs of B sequences: the (T, ...)
    arrays (slabs*T, B, ...), the states (slabs*B, H)."""
    p = _kernel_problem(cell, T=slabs * T, B=B, I=3, H=4, seed=slabs)
    rng = np.random.default_rng(slabs + 10)
    for name in ("h0", "c0", "dc"):
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
    h0 = rng.standard_normal((n, 5))
    h0 = (h0, rng.standard_normal((n, 5))) if cell == "lstm" else h0
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
