"""The kernels' batch split over threads gives the serial results."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import bptt
from bptt import _threads
from bptt import _bptt
from helpers import make_problem


def _assert_close(a, b, tol):
    """Arrays, or tuples of arrays (the LSTM's state (h, c)), match."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=tol, atol=tol)
    else:
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("n", [2, 3, 7, 16])
@pytest.mark.parametrize("truncate", [None, 3])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_threaded_kernels_match_serial(monkeypatch, cell, n, truncate, dtype, tol):
    net, X, y = make_problem(0, n=n, T=9, I=3, H=5, O=2, cell=cell)
    net32 = bptt.RNN(3, 5, 2, cell=cell, dtype=dtype, random_state=0)
    net32.params = net.params
    serial = net32.loss_and_grad(X, y, truncate=truncate)
    Y_serial, h_serial = net32.forward(X)
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
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    p = {"X": rng.standard_normal((T, B, I)),
         "W_xh": rng.standard_normal((G * H, I)),
         "W_hh": 0.5 * rng.standard_normal((G * H, H)),
         "b_h": rng.standard_normal(G * H), "b_hn": rng.standard_normal(H),
         "h0": rng.standard_normal((B, H)), "c0": rng.standard_normal((B, H)),
         "dH": rng.standard_normal((T, B, H)), "dc": rng.standard_normal((B, H))}
    return p


def _run_kernels(cell, p, threads, truncate, accumulate, slabs=1, backend="cython",
                 slab_steps=0):
    """Forward and backward through one cell's kernels; every output.

    With slab_steps, the cache arrays hold that many timesteps per slab
    (NaN outside the chunk) and the kernels get them from the last chunk's
    first timestep on, as training passes its later chunks."""
    from bptt.rnn import load_kernels
    k = load_kernels(backend, {"rnn": "elman"}.get(cell, cell))
    X, W_xh, W_hh, b_h, h0 = p["X"], p["W_xh"], p["W_hh"], p["b_h"], p["h0"]
    T, B, _ = X.shape
    n_hidden = W_hh.shape[1]
    dt = X.dtype
    dH = p["dH"].copy()
    dX = np.empty_like(X)
    # accumulate adds into these: start them non-zero
    grads = [np.full_like(W_xh, 0.5), np.full_like(W_hh, 0.5), np.full_like(b_h, 0.5)]
    dh0 = np.empty_like(h0)
    cached = slabs * slab_steps if slab_steps else T
    start = slab_steps - T // slabs if slab_steps else 0

    def cache(width):
        return np.full((cached, B, width), np.nan, dt)

    if cell == "rnn":
        Hs = cache(n_hidden)
        k.elman_forward(X, W_xh, W_hh, b_h, h0, False, Hs[start:], threads, slabs, slab_steps)
        fwd = [Hs.copy()]
        k.elman_backward(X, W_xh, W_hh, h0, Hs[start:], dH, False, truncate, *grads, dh0,
                         accumulate, dX, threads, slabs, slab_steps)
        return fwd + grads + [dh0, dX]
    if cell == "lstm":
        c0 = p["c0"]
        G, C, Hs = cache(4 * n_hidden), cache(n_hidden), cache(n_hidden)
        k.lstm_forward(X, W_xh, W_hh, b_h, h0, c0, G[start:], C[start:], Hs[start:],
                       threads, slabs, slab_steps)
        fwd = [G.copy(), C.copy(), Hs.copy()]
        dc0 = p["dc"].copy()
        k.lstm_backward(X, W_xh, W_hh, h0, c0, G[start:], C[start:], Hs[start:], dH,
                        truncate, *grads, dh0, dc0, accumulate, dX, threads, slabs,
                        slab_steps)
        return fwd + grads + [dh0, dc0, dX, G]
    G, HN, Hs = cache(3 * n_hidden), cache(n_hidden), cache(n_hidden)
    Gh = np.empty((h0.shape[0], 3 * n_hidden), dt)
    k.gru_forward(X, W_xh, W_hh, b_h, p["b_hn"], h0, G[start:], HN[start:], Hs[start:], Gh,
                  threads, slabs, slab_steps)
    fwd = [G.copy(), HN.copy(), Hs.copy()]
    db_hn = np.full_like(p["b_hn"], 0.5)
    k.gru_backward(X, W_xh, W_hh, h0, G[start:], HN[start:], Hs[start:], dH, truncate,
                   *grads, db_hn, dh0, accumulate, dX, threads, slabs, slab_steps)
    return fwd + grads + [db_hn, dh0, dX, G, HN]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("truncate", [0, 2])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-13), (np.float32, 1e-5)])
def test_kernel_outputs_with_threads(cell, truncate, accumulate, dtype, tol):
    """dX, dh0 (and dc0), the weight gradients, accumulate and truncation:
    every output of the threaded kernels is the serial one, also with more
    threads than sequences or than timesteps (the weight gradients split
    the timesteps)."""
    p = {k: v.astype(dtype) for k, v in _kernel_problem(cell, T=6, B=5, I=3, H=4).items()}
    serial = _run_kernels(cell, p, 1, truncate, accumulate)
    assert all(a.dtype == dtype for a in serial)
    for threads in (2, 3, 7, 16):
        for a, b in zip(serial, _run_kernels(cell, p, threads, truncate, accumulate)):
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol / 10)


def _slab_problem(cell, slabs, T, B, dtype):
    """_kernel_problem laid out in ``slabs`` slabs of B sequences: the (T, ...)
    arrays (slabs*T, B, ...), the states (slabs*B, H)."""
    p = _kernel_problem(cell, T=slabs * T, B=B, I=3, H=4, seed=slabs)
    rng = np.random.default_rng(slabs + 10)
    for name in ("h0", "c0", "dc"):
        p[name] = rng.standard_normal((slabs * B, 4))
    return {k: v.astype(dtype) for k, v in p.items()}


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("slabs", [2, 3])
@pytest.mark.parametrize("truncate", [0, 2])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("slab_steps", [0, 5, 8])
def test_slab_kernels_match_reference(cell, slabs, truncate, accumulate, dtype, tol,
                                      slab_steps):
    """Every output of the compiled kernels in a slab layout (one part per
    slab) equals the NumPy reference's, on one thread and on more; also
    with cache arrays of more timesteps per slab than the chunk, which
    stays untouched outside the chunk."""
    p = _slab_problem(cell, slabs, T=5, B=3, dtype=dtype)
    expected = _run_kernels(cell, p, 1, truncate, accumulate, slabs, backend="numpy",
                            slab_steps=slab_steps)
    if slab_steps > 5:
        # per slab: 3 untouched timesteps, then the chunk's 5
        H = expected[{"rnn": 0, "lstm": 2, "gru": 2}[cell]]
        by_slab = H.reshape(slabs, slab_steps, *H.shape[1:])
        assert np.isnan(by_slab[:, :3]).all() and not np.isnan(by_slab[:, 3:]).any()
    for threads in (1, 2, slabs + 1):
        got = _run_kernels(cell, p, threads, truncate, accumulate, slabs,
                           slab_steps=slab_steps)
        for a, b in zip(expected, got):
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("truncate", [0, 2])
def test_reference_slabs_are_independent_sequences(cell, truncate):
    """The slab layout means what it says: the reference on slabs equals
    each slab run on its own, the weight gradients summed over the slabs."""
    p = _slab_problem(cell, 2, T=5, B=3, dtype=np.float64)
    whole = _run_kernels(cell, p, 1, truncate, False, 2, backend="numpy")
    halves = []
    for k in range(2):
        q = dict(p)
        for name in ("X", "dH"):
            q[name] = p[name][5 * k:5 * (k + 1)]
        for name in ("h0", "c0", "dc"):
            q[name] = p[name][3 * k:3 * (k + 1)]
        halves.append(_run_kernels(cell, q, 1, truncate, False))
    n_fwd = {"rnn": 1, "lstm": 3, "gru": 3}[cell]
    n_grads = 4 if cell == "gru" else 3
    for i, (a, b, c) in enumerate(zip(whole, *halves)):
        if n_fwd <= i < n_fwd + n_grads:
            # the weight gradients (not accumulated: written afresh)
            np.testing.assert_allclose(a, b + c, rtol=1e-12, atol=1e-12)
        else:
            # per-step and per-sequence outputs: slab after slab
            np.testing.assert_allclose(a, np.concatenate([b, c]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_slabs_that_do_not_split_are_refused(backend):
    from bptt.rnn import load_kernels
    k = load_kernels(backend, "elman")
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


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("loss,output", [("mse", "sequence"), ("mse", "last"),
                                         ("cross_entropy", "sequence"),
                                         ("cross_entropy", "last"),
                                         ("binary_cross_entropy", "sequence")])
@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("chunk_rows", [None, 6, 12])
def test_slab_training_step_matches_serial(monkeypatch, cell, loss, output, truncate,
                                           chunk_rows):
    """loss_and_grad on 2 threads, which lays the batch out in one slab per
    thread, gives the serial loss, gradients and final state for every loss
    and output, in one chunk of timesteps or in several."""
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
    serial = net._loss_grad_state(X, y, **args)
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
        np.testing.assert_allclose(grads[name], serial[1][name], rtol=1e-11, atol=1e-12)
    _assert_close(state, serial[2], 1e-12)


@pytest.mark.parametrize("loss,activation", [(0, 0), (0, 1), (0, 2), (1, 2), (2, 1)])
@pytest.mark.parametrize("N", [1, 3, 50])
@pytest.mark.parametrize("accumulate", [False, True])
def test_output_layer_with_threads_matches_reference(loss, activation, N, accumulate):
    """The compiled output layer (forward, loss, backward in row parts) equals
    the NumPy reference for every loss and activation, on 1 to 4 threads,
    with fewer rows than threads too."""
    from bptt.rnn import load_kernels
    rng = np.random.default_rng(N)
    H, O = 5, 3
    Hs = rng.standard_normal((N, H))
    W_oh, b_o = rng.standard_normal((O, H)), rng.standard_normal(O)
    if loss == 1:  # cross-entropy: integer labels
        target = rng.integers(0, O, N).astype(np.int64)
    else:
        target = rng.uniform(0, 1, (N, O))
    denominator = 7.0 * N

    def run(backend, threads):
        kernels = load_kernels(backend, "output")
        Z, Y, dZ = (np.empty((N, O)) for _ in range(3))
        dW_oh, db_o = np.full((O, H), 0.5), np.full(O, 0.5)
        dHs = np.empty((N, H))
        value = kernels.output_layer(Hs, W_oh, b_o, activation, loss, target, denominator,
                                     Z, Y, dZ, dW_oh, db_o, dHs, accumulate, threads)
        return value, Z, Y, dZ, dW_oh, db_o, dHs

    expected = run("numpy", 1)
    for threads in (1, 2, 3, 4):
        got = run("cython", threads)
        assert got[0] == pytest.approx(expected[0], rel=1e-12)
        for a, b in zip(got[1:], expected[1:]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


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


@pytest.mark.parametrize("loss,activation", [(0, 0), (1, 2), (2, 1)])
@pytest.mark.parametrize("threads", [1, 2])
def test_output_layer_part_stride(loss, activation, threads):
    """part_stride: part p reads its rows of Hs and the target from row
    p * part_stride (a chunk of every slab of a longer cache) and writes its
    outputs contiguously; compiled and NumPy agree with the layer run on the
    gathered rows."""
    from bptt.rnn import load_kernels
    rng = np.random.default_rng(5)
    parts, rows, stride, H, O = 2, 6, 10, 5, 3
    Hs = rng.standard_normal((parts * stride, H))
    W_oh, b_o = rng.standard_normal((O, H)), rng.standard_normal(O)
    if loss == 1:
        target = rng.integers(0, O, parts * stride).astype(np.int64)
    else:
        target = rng.uniform(0, 1, (parts * stride, O))
    picked = np.concatenate([np.arange(k * stride + 2, k * stride + 2 + rows)
                             for k in range(parts)])

    def run(backend, Hs, target, **kw):
        kernels = load_kernels(backend, "output")
        N = parts * rows
        Z, Y, dZ = (np.empty((N, O)) for _ in range(3))
        dW_oh, db_o, dHs = np.empty((O, H)), np.empty(O), np.empty((N, H))
        value = kernels.output_layer(Hs, W_oh, b_o, activation, loss, target, 40.0, Z, Y,
                                     dZ, dW_oh, db_o, dHs, False, threads, **kw)
        return [value, Z, Y, dZ, dW_oh, db_o, dHs]

    expected = run("numpy", Hs[picked], target[picked])
    for backend in ("cython", "numpy"):
        got = run(backend, Hs[2:], target[2:], parts=parts, part_stride=stride)
        for a, b in zip(expected, got):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
        with pytest.raises(ValueError, match="part_stride=10 needs parts >= 1 dividing"):
            run(backend, Hs[12:], target[12:], parts=parts, part_stride=stride)
