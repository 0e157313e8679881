"""loss_and_grad reuses its buffers between calls: invisibly."""

import pickle
import threading

import numpy as np
import pytest

import bptt
from bptt import _bptt
from helpers import CELLS


@pytest.mark.parametrize("cell", CELLS)
def test_results_do_not_alias_the_reused_buffers(cell):
    net = bptt.RNN(3, 6, 2, cell=cell, random_state=0)
    rng = np.random.default_rng(0)
    X1, X2 = rng.standard_normal((2, 4, 9, 3))
    y1, y2 = rng.standard_normal((2, 4, 9, 2))
    loss1, grads1 = net.loss_and_grad(X1, y1)
    kept = {name: g.copy() for name, g in grads1.items()}
    assert net._workspace  # small enough to keep
    net.loss_and_grad(X2, y2)  # same shapes: runs in the kept buffers
    for name in grads1:
        np.testing.assert_array_equal(grads1[name], kept[name])
    loss1_again, grads1_again = net.loss_and_grad(X1, y1)
    assert loss1_again == loss1
    for name in grads1:
        np.testing.assert_array_equal(grads1_again[name], kept[name])
    # a new shape, output mode or truncation gets buffers of its own
    for kwargs in ({"output": "last"}, {"truncate": 2}):
        target = y1[:, -1] if kwargs.get("output") == "last" else y1
        expected = bptt.RNN(3, 6, 2, cell=cell, random_state=0).loss_and_grad(X1, target,
                                                                              **kwargs)
        got = net.loss_and_grad(X1, target, **kwargs)
        assert got[0] == pytest.approx(expected[0], rel=1e-14)
    assert "_workspace" not in pickle.loads(pickle.dumps(net)).__dict__


def test_large_buffers_are_not_kept(monkeypatch):
    monkeypatch.setattr(_bptt, "KEEP_WORKSPACE_BYTES", 1000)
    net = bptt.RNN(3, 6, 2, random_state=0)
    net.loss_and_grad(np.ones((4, 9, 3)), np.ones((4, 9, 2)))
    assert not net.__dict__.get("_workspace")


def test_concurrent_calls_on_one_network():
    net = bptt.RNN(3, 16, 2, cell="gru", random_state=0)
    rng = np.random.default_rng(1)
    problems = [(rng.standard_normal((8, 40, 3)), rng.standard_normal((8, 40, 2)))
                for _ in range(4)]
    expected = [net.loss_and_grad(X, y) for X, y in problems]
    results = [None] * len(problems)

    def work(i):
        for _ in range(20):
            results[i] = net.loss_and_grad(*problems[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(problems))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (loss, grads), (want_loss, want) in zip(results, expected):
        assert loss == want_loss
        for name in grads:
            np.testing.assert_array_equal(grads[name], want[name])


def test_release_buffers_and_fit_releases_them():
    net = bptt.RNN(3, 6, 2, random_state=0)
    X, y = np.ones((4, 9, 3)), np.ones((4, 9, 2))
    loss, _ = net.loss_and_grad(X, y)
    assert net._workspace
    net.release_buffers()
    assert "_workspace" not in net.__dict__
    assert net.loss_and_grad(X, y)[0] == loss
    net.release_buffers()
    net.release_buffers()  # twice is fine

    est = bptt.RNNRegressor(hidden_size=4, max_epochs=2, random_state=0)
    with pytest.warns(Warning):  # ConvergenceWarning after 2 epochs
        est.fit(np.ones((8, 5, 2)), np.ones(8))
    assert "_workspace" not in est.net_.__dict__
    est.partial_fit(np.ones((8, 5, 2)), np.ones(8))
    assert est.net_._workspace  # kept for the next partial_fit
