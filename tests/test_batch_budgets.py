"""Every batch size against every thread budget gives the reference's result.

Training splits a batch into one slab of sequences per thread when the
threads divide it (src/_cellparts.pxd, "slabs"); a slab of one sample once
handed the output layer a strided view of the last hidden state (issue 16,
item 1). The hidden sizes here are the smallest at which the default
thresholds (bptt._threads.plan_threads) give a batch of n as many threads
as min(budget, n), so every slab layout 1..8 is met without patching them.
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import bptt
from bptt import _threads
from bptt import _bptt
from helpers import GATES, make_problem

I, O, T = 2, 2, 5
BATCHES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 17]
BUDGETS = range(1, 9)


def _hidden_size(cell):
    """The smallest H at which one sample's step is a thread's minimum work."""
    H = 1
    while GATES[cell] * H * (H + I) < _threads.MIN_WORK_PER_THREAD:
        H += 1
    return H


def _states_close(a, b, tol):
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


_reference = {}


def _problem(cell, output, n, chunked, monkeypatch):
    """(compiled net, X, y, the NumPy reference's loss, grads, Y, state)."""
    H = _hidden_size(cell)
    net, X, y = make_problem(n, n=n, T=T, I=I, H=H, O=O, output=output, cell=cell)
    ref = bptt.RNN(I, H, O, cell=cell, backend="numpy")
    ref.params = net.params
    if chunked:
        # chunks of one or two timesteps (rnn.py, _chunk_steps)
        monkeypatch.setattr(_bptt, "TRAIN_ONE_CHUNK_BYTES", 0)
        monkeypatch.setattr(_bptt, "TRAIN_CHUNK_ROWS", 2)
        assert _bptt.chunk_steps(net, T, n, None) < T
    else:
        monkeypatch.setattr(_bptt, "TRAIN_ONE_CHUNK_BYTES", 1 << 22)
        assert _bptt.chunk_steps(net, T, n, None) == T
    key = (cell, output, n, chunked)
    if key not in _reference:
        _reference[key] = (*ref.loss_and_grad(X, y, output=output), *ref.forward(X))
    return (net, X, y, *_reference[key])


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("budget", BUDGETS)
def test_every_batch_size_on_every_thread_budget(monkeypatch, n, budget):
    for cell in GATES:
        H = _hidden_size(cell)
        step_work = n * GATES[cell] * H * (H + I)
        # the slab layouts this test is for: as many threads as samples allow
        assert _threads.plan_threads(budget, n, step_work) == min(budget, n)
        for output in ("sequence", "last"):
            for chunked in (False, True):
                net, X, y, value, grads, Y, state = _problem(cell, output, n, chunked,
                                                             monkeypatch)
                with threadpool_limits(limits=budget, user_api="blas"):
                    got_value, got_grads = net.loss_and_grad(X, y, output=output)
                    got_Y, got_state = net.forward(X)
                where = f"{cell} output={output} chunked={chunked}"
                assert got_value == pytest.approx(value, rel=1e-10), where
                for name in grads:
                    np.testing.assert_allclose(got_grads[name], grads[name], rtol=1e-9,
                                               atol=1e-12, err_msg=f"{name}, {where}")
                np.testing.assert_allclose(got_Y, Y, rtol=1e-10, atol=1e-12, err_msg=where)
                _states_close(got_state, state, 1e-10)
