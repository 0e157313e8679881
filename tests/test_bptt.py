"""The BPTT driver's training API (bptt._bptt.TrainingData): a minibatch
of data validated once equals loss_and_grad on the same slice."""

import numpy as np
import pytest

import bptt

from helpers import CELLS, HAS_CELL_STATE


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("output", ["sequence", "last"])
def test_training_data_slices_match_loss_and_grad(cell, output):
    rng = np.random.default_rng(0)
    net = bptt.RNN(3, 5, 2, cell=cell, random_state=0)
    X = rng.standard_normal((7, 9, 3))
    y = rng.standard_normal((7, 9, 2) if output == "sequence" else (7, 2))
    data = net._training_data(X, y, loss="mse", output=output)
    rows = np.array([5, 0, 3])
    loss, grads, state = data.loss_and_grad(rows)
    ref, ref_grads = net.loss_and_grad(X[rows], y[rows], output=output)
    assert loss == pytest.approx(ref, rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-10, atol=1e-12)
    # a window of timesteps from a carried state
    h = data.advance(rows, 0, 4)
    _, h_ref = net.forward(X[rows][:, :4])
    np.testing.assert_allclose(np.asarray(h[0] if HAS_CELL_STATE[cell] else h),
                               np.asarray(h_ref[0] if HAS_CELL_STATE[cell] else h_ref))
    loss, grads, _ = data.loss_and_grad(rows, 4, None, h)
    yw = y[rows][:, 4:] if output == "sequence" else y[rows]
    ref, ref_grads = net.loss_and_grad(X[rows][:, 4:], yw, output=output, h0=h_ref)
    assert loss == pytest.approx(ref, rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-10, atol=1e-12)


def test_training_data_validates_once():
    net = bptt.RNN(2, 3, 1, random_state=0)
    with pytest.raises(ValueError, match="features"):
        net._training_data(np.zeros((4, 5, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="shape"):
        net._training_data(np.zeros((4, 5, 2)), np.zeros((4, 6)))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("ragged", [False, True])
def test_bidirectional_runs_on_two_threads_equal_one_thread(monkeypatch, cell, ragged):
    """With two threads a bidirectional layer's runs go at once, one thread
    each (_threads.run_pair): the arithmetic of one thread running both, but
    for the output layer's row split (rounding only)."""
    from threadpoolctl import threadpool_limits
    from bptt import _threads

    pairs = []
    run_pair = _threads.run_pair
    monkeypatch.setattr(_threads, "run_pair",
                        lambda first, second: pairs.append(1) or run_pair(first, second))
    rng = np.random.default_rng(1)
    net = bptt.RNN(16, 32, 3, cell=cell, num_layers=2, bidirectional=True,
                   random_state=0)
    X = rng.standard_normal((16, 12, 16))
    if ragged:
        X = [x[:L] for x, L in zip(X, rng.integers(1, 13, 16))]
        y = rng.standard_normal((16, 3))
        output = "last"
    else:
        y = rng.standard_normal((16, 12, 3))
        output = "sequence"
    results = {}
    for budget in (1, 2):
        with threadpool_limits(limits=budget, user_api="blas"):
            results[budget] = net.loss_and_grad(X, y, output=output,
                                                return_state_grads=True)
            results[budget] += (net.forward(X),)
        assert len(pairs) == (0 if budget == 1 else 6)  # 2 layers forward x 3 passes
    (loss1, grads1, flow1, (Y1, h1)), (loss2, grads2, flow2, (Y2, h2)) = (
        results[1], results[2])
    assert loss1 == pytest.approx(loss2, rel=1e-13)

    def close(a, b, what):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11, atol=1e-14,
                                   err_msg=what)

    for name in grads1:
        close(grads1[name], grads2[name], name)
    for key in flow1:
        for a, b in zip(flow1[key], flow2[key]):  # lists when ragged
            close(a, b, key)
    for a, b in zip(Y1 if ragged else [Y1], Y2 if ragged else [Y2]):
        close(a, b, "Y")
    for a, b in zip(h1 if HAS_CELL_STATE[cell] else [h1], h2 if HAS_CELL_STATE[cell] else [h2]):
        close(a, b, "state")


def test_run_pair_returns_both_and_waits_for_both():
    import threading
    import time

    from bptt import _threads

    assert _threads.run_pair(lambda: 1, lambda: threading.current_thread().name) == (
        1, "bptt-pair")
    finished = []

    def slow():
        time.sleep(0.05)
        finished.append("second")
        return 2

    def failing():
        raise ValueError("first failed")

    # the first's error is raised only once the second is done
    with pytest.raises(ValueError, match="first failed"):
        _threads.run_pair(failing, slow)
    assert finished == ["second"]

    def second_fails():
        raise KeyError("second failed")

    with pytest.raises(KeyError, match="second failed"):
        _threads.run_pair(lambda: 1, second_fails)


def test_run_pair_works_in_a_forked_child():
    """A forked child inherits the pair worker's object but not its thread:
    it makes its own."""
    import multiprocessing

    from bptt import _threads

    _threads.run_pair(lambda: 0, lambda: 0)  # the parent's worker exists
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_threads.run_pair, (int, float)).get(timeout=60)
    assert got == (0, 0.0)
