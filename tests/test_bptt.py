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
@pytest.mark.parametrize("case", ["bidirectional", "ragged-last", "ragged-mean-dropout",
                                  "stacked-weighted", "stacked-truncated",
                                  "ragged-sequence-bidirectional-truncated"])
def test_groups_on_two_threads_equal_one_thread(monkeypatch, cell, case):
    """With two threads the general driver splits the batch into two groups
    of sequences, which every kernel call runs each whole on its own thread
    (a segments table of two groups, src/_cellparts.pxd): the loss, every
    gradient, the final state and the state gradients are those of one
    thread, up to the order of the groups' sums."""
    from threadpoolctl import threadpool_limits
    from bptt import _cells

    calls = set()
    run_forward = _cells.CellBinding.run_forward

    def counting(self, X, p, state0, cache, segments, *args, **kw):
        calls.add(int((segments[:, 0] == 0).sum()))  # groups: rows with t0 = 0
        return run_forward(self, X, p, state0, cache, segments, *args, **kw)
    monkeypatch.setattr(_cells.CellBinding, "run_forward", counting)
    rng = np.random.default_rng(1)
    n, T = 16, 12
    kw = dict(num_layers=2, bidirectional="stacked" not in case,
              dropout=0.3 if "dropout" in case else 0.0)
    X = rng.standard_normal((n, T, 16))
    output, weights = "sequence", None
    truncate = 4 if "truncated" in case else None
    if case == "ragged-sequence-bidirectional-truncated":
        X = [x[:L] for x, L in zip(X, rng.integers(1, T + 1, n))]
        y = [rng.standard_normal((len(x), 3)) for x in X]
    elif case.startswith("ragged"):
        X = [x[:L] for x, L in zip(X, rng.integers(1, T + 1, n))]
        output = "mean" if "mean" in case else "last"
        y = rng.standard_normal((n, 3))
    else:
        y = rng.standard_normal((n, T, 3))
    if case == "stacked-weighted":
        weights = rng.random(n)
    results = {}
    for budget in (1, 2):
        net = bptt.RNN(16, 32, 3, cell=cell, random_state=0, **kw)
        with threadpool_limits(limits=budget, user_api="blas"):
            results[budget] = net.loss_and_grad(X, y, output=output, sample_weight=weights,
                                                truncate=truncate, return_state_grads=True)
            results[budget] += (net.forward(X)[1],)
            results[budget] += (net.forward(X)[0],)
        # loss_and_grad, forward and the second forward: groups per call
        assert calls == {budget}
        calls.clear()
    (loss1, grads1, flow1, h1, Y1), (loss2, grads2, flow2, h2, Y2) = results[1], results[2]
    assert loss1 == pytest.approx(loss2, rel=1e-13)

    def close(a, b, what):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11, atol=1e-14,
                                   err_msg=what)

    for name in grads1:
        close(grads1[name], grads2[name], name)
    for key in flow1:
        for a, b in zip(flow1[key], flow2[key]):  # lists when ragged
            close(a, b, key)
    for a, b in zip(h1 if HAS_CELL_STATE[cell] else [h1], h2 if HAS_CELL_STATE[cell] else [h2]):
        close(a, b, "state")
    for a, b in zip(Y1 if isinstance(Y1, list) else [Y1], Y2 if isinstance(Y2, list) else [Y2]):
        close(a, b, "Y")
    if output != "sequence":  # the pooled readout the estimators predict with
        with threadpool_limits(limits=2, user_api="blas"):
            pooled2 = net._readout(X, output)
        with threadpool_limits(limits=1, user_api="blas"):
            close(net._readout(X, output), pooled2, "readout")


@pytest.mark.parametrize("n, k", [(1, 2), (2, 2), (5, 2), (64, 2), (7, 3), (9, 4)])
@pytest.mark.parametrize("uniform", [False, True])
def test_grouped_layout_covers_the_batch_and_balances_the_work(n, k, uniform):
    rng = np.random.default_rng(n)
    lengths = np.full(n, 37) if uniform else rng.integers(1, 200, n)
    plain = bptt._bptt.Layout(lengths)
    lay = plain.grouped(k)
    if n == 1:
        assert lay is plain
        return
    assert len(lay.parts) == min(n, k)
    # every sequence at one position, every packed row exactly once
    np.testing.assert_array_equal(np.sort(lay.order), np.arange(n))
    np.testing.assert_array_equal(np.sort(lay.plain_rows), np.arange(plain.rows))
    np.testing.assert_array_equal(lay.plain_rows[lay.rows_of_plain], np.arange(plain.rows))
    # a row holds the same sequence's timestep as the plain row it maps to
    np.testing.assert_array_equal(plain.t_of_row[lay.plain_rows], lay.t_of_row)
    np.testing.assert_array_equal(plain.order[plain.j_of_row[lay.plain_rows]],
                                  lay.order[lay.j_of_row])
    np.testing.assert_array_equal(lay.sorted_lengths, lengths[lay.order])
    for part, r0, p0 in lay.parts:  # each group sorted, its rows in one block
        assert (np.diff(lay.sorted_lengths[p0:p0 + part.n]) <= 0).all()
        np.testing.assert_array_equal(lay.j_of_row[r0:r0 + part.rows] - p0, part.j_of_row)
    # rev, last and first rows, pack: as the plain layout's, through the map
    np.testing.assert_array_equal(lay.plain_rows[lay.rev], plain.rev[lay.plain_rows])
    np.testing.assert_array_equal(lay.plain_rows[lay.last_row],
                                  plain.last_row[np.argsort(plain.order)[lay.order]])
    np.testing.assert_array_equal(lay.t_of_row[lay.first_row], 0)
    np.testing.assert_array_equal(lay.j_of_row[lay.first_row], np.arange(n))
    X = rng.standard_normal((n, int(lengths.max()) + 2, 3))
    np.testing.assert_array_equal(lay.pack(X), plain.pack(X)[lay.plain_rows])
    if n >= 4 * k:
        work = [part.rows for part, _, _ in lay.parts]
        assert max(work) <= 1.25 * plain.rows / len(lay.parts)


