"""The kernels' batch split over threads gives the serial results."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import bptt
from bptt import _threads
from helpers import make_problem


@pytest.mark.parametrize("n", [2, 3, 7, 16])
@pytest.mark.parametrize("truncate", [None, 3])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_threaded_kernels_match_serial(monkeypatch, n, truncate, dtype, tol):
    net, X, y = make_problem(0, n=n, T=9, I=3, H=5, O=2)
    net32 = bptt.RNN(3, 5, 2, dtype=dtype, random_state=0)
    net32.params = net.params
    serial = net32.loss_and_grad(X, y, truncate=truncate)
    Y_serial, h_serial = net32.forward(X)
    monkeypatch.setattr(_threads, "MIN_WORK_PER_THREAD", 1)
    for threads in (2, 3, 4):
        with threadpool_limits(limits=threads, user_api="blas"):
            assert net32._worth_threading(n)
            assert net32._plan_threads(threads, n) == min(threads, n)
            value, grads = net32.loss_and_grad(X, y, truncate=truncate)
            Y, h = net32.forward(X)
        assert value == pytest.approx(serial[0], rel=tol)
        for name in grads:
            np.testing.assert_allclose(grads[name], serial[1][name], rtol=tol, atol=tol)
        np.testing.assert_allclose(Y, Y_serial, rtol=tol, atol=tol)
        np.testing.assert_allclose(h, h_serial, rtol=tol, atol=tol)


def test_input_gradient_with_threads():
    from bptt.rnn import load_kernels
    k = load_kernels("cython", "elman")
    rng = np.random.default_rng(0)
    T, B, I, H = 6, 5, 3, 4
    X = rng.standard_normal((T, B, I))
    W_xh, W_hh = rng.standard_normal((H, I)), 0.5 * rng.standard_normal((H, H))
    b_h, h0 = rng.standard_normal(H), rng.standard_normal((B, H))
    G = rng.standard_normal((T, B, H))
    results = []
    for threads in (1, 2, 3):
        Hs = np.empty((T, B, H))
        k.elman_forward(X, W_xh, W_hh, b_h, h0, False, Hs, threads)
        outs = [np.empty((H, I)), np.empty((H, H)), np.empty(H), np.empty((B, H)),
                False, np.empty_like(X)]
        k.elman_backward(X, W_xh, W_hh, h0, Hs, G.copy(), False, 2, *outs, threads)
        results.append([Hs] + [o for o in outs if isinstance(o, np.ndarray)])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


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
