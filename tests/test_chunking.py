"""loss_and_grad runs BPTT in chunks of timesteps: the chunking is invisible."""

import numpy as np
import pytest

from bptt import _bptt, _cells
from helpers import ACTIVATION_LOSSES, CELLS, make_problem


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("truncate", [None, 1, 3, 5])
@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("activation,loss", ACTIVATION_LOSSES)
@pytest.mark.parametrize("cell", CELLS)
def test_chunked_bptt_equals_one_chunk(monkeypatch, cell, activation, loss, output,
                                       truncate, backend):
    net, X, y = make_problem(9, n=3, T=23, I=2, H=4, O=3, loss=loss, output=output,
                             output_activation=activation, backend=backend, cell=cell)
    rng = np.random.default_rng(1)
    spec = _cells.CELLS[cell]
    h0 = spec.state_of([rng.standard_normal((3, 4)) for _ in spec.state])
    expected_loss, expected = net.loss_and_grad(X, y, loss=loss, output=output,
                                                truncate=truncate, h0=h0)
    assert _bptt.chunk_steps(net, 23, 3, truncate) == 23  # one chunk by default here
    monkeypatch.setattr(_bptt, "TRAIN_ONE_CHUNK_BYTES", 0)
    for rows in (1, 4, 10):
        monkeypatch.setattr(_bptt, "TRAIN_CHUNK_ROWS", rows)
        steps = _bptt.chunk_steps(net, 23, 3, truncate)
        assert steps < 23
        if truncate:  # chunks start on window starts
            assert steps % truncate == 0, (steps, truncate)
        value, grads = net.loss_and_grad(X, y, loss=loss, output=output,
                                         truncate=truncate, h0=h0)
        assert value == pytest.approx(expected_loss, rel=1e-12)
        for name in grads:
            np.testing.assert_allclose(grads[name], expected[name], rtol=1e-10,
                                       atol=1e-13, err_msg=f"{name} rows={rows}")


@pytest.mark.parametrize("cell,cached_per_unit", [("rnn", 1), ("lstm", 6), ("gru", 5)])
@pytest.mark.parametrize("threads", [1, 2])
def test_training_memory_is_the_cache_plus_chunks(cell, cached_per_unit, threads):
    """Peak memory of a training step stays near the arrays BPTT keeps:
    hidden states, plus gate activations (4H) and cell states for an LSTM,
    gates (3H) and W_hn h + b_hn for a GRU; on 2 threads too, in the slab
    layout."""
    import tracemalloc
    from threadpoolctl import threadpool_limits
    import bptt
    n, T, I, H, O = 64, 200, 64, 256, 16
    net = bptt.RNN(I, H, O, cell=cell, dtype="float32", random_state=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, T, I)).astype(np.float32)
    y = rng.standard_normal((n, T, O)).astype(np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        assert _bptt.plan_threads(net, threads, n) == threads
        net.loss_and_grad(X, y)
        tracemalloc.start()
        net.loss_and_grad(X, y)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    kept = T * n * H * 4 * cached_per_unit
    assert peak < 1.3 * kept, peak / kept
