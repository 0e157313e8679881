"""Ragged input (DESIGN.md "Layers, directions and ragged input"): lists of
(T_i, F) arrays and NaN-padded arrays, against PyTorch's packed sequences,
the other backend, and each sequence run on its own."""

import numpy as np
import pytest

import bptt

from torch_reference import assert_close, torch_loss_grad

CELLS = ["rnn", "lstm", "gru"]


def _ragged(lengths, F, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((L, F)) for L in lengths]


def _padded(seqs, width=None):
    width = width or max(len(s) for s in seqs)
    out = np.full((len(seqs), width) + seqs[0].shape[1:], np.nan)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (1, True), (2, True),
                                                      (3, False)])
@pytest.mark.parametrize("output", ["sequence", "last", "mean"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_torch_packed(cell, num_layers, bidirectional, output, dtype):
    pytest.importorskip("torch")
    net = bptt.RNN(3, 4, 2, cell=cell, num_layers=num_layers, bidirectional=bidirectional,
                   dtype=dtype, random_state=0)
    lengths = [5, 1, 9, 3]
    X = [x.astype(dtype) for x in _ragged(lengths, 3)]
    rng = np.random.default_rng(1)
    y = ([rng.standard_normal((L, 2)) for L in lengths] if output == "sequence"
         else rng.standard_normal((4, 2)))
    ref, ref_grads, ref_state = torch_loss_grad(net, X, y, output=output)
    pad_y = _padded(y, 11) if output == "sequence" else y
    for Xf, yf in ((X, y), (_padded(X, 11), pad_y)):  # a list; NaN-padded
        value, grads, state = net._loss_grad_state(Xf, yf, "mse", output, None, None)
        assert_close(value, ref, dtype)
        for name in grads:
            assert_close(grads[name], ref_grads[name], dtype, name)
        for a, b in zip(state if cell == "lstm" else (state,),
                        ref_state if cell == "lstm" else (ref_state,)):
            assert_close(a, b, dtype)


@pytest.mark.parametrize("cell", CELLS)
def test_forward_form_and_each_sequence_alone(cell):
    net = bptt.RNN(2, 3, 2, cell=cell, num_layers=2, bidirectional=True, random_state=0)
    X = _ragged([4, 1, 6], 2)
    Y, state = net.forward(X)
    assert isinstance(Y, list) and [y.shape for y in Y] == [(4, 2), (1, 2), (6, 2)]
    Yp, state_p = net.forward(_padded(X, 8))
    assert Yp.shape == (3, 8, 2)
    for i, x in enumerate(X):
        alone, s_alone = net.forward(x[None])
        np.testing.assert_allclose(Y[i], alone[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(Yp[i, :len(x)], alone[0], rtol=1e-12, atol=1e-14)
        assert np.isnan(Yp[i, len(x):]).all()
        for a, b in zip(state if cell == "lstm" else (state,),
                        s_alone if cell == "lstm" else (s_alone,)):
            np.testing.assert_allclose(a[:, i], b[:, 0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("truncate", [None, 3])
@pytest.mark.parametrize("lengths", [[1], [1, 1, 1], [2, 40, 3, 1], [7, 5, 6]])
def test_backends_agree(cell, bidirectional, truncate, lengths):
    kw = dict(cell=cell, bidirectional=bidirectional, num_layers=2, random_state=0)
    a, b = bptt.RNN(2, 3, 2, **kw), bptt.RNN(2, 3, 2, backend="numpy", **kw)
    X = _ragged(lengths, 2)
    y = [np.random.default_rng(1).standard_normal((L, 2)) for L in lengths]
    va, ga = a.loss_and_grad(X, y, truncate=truncate)
    vb, gb = b.loss_and_grad(X, y, truncate=truncate)
    assert va == pytest.approx(vb, rel=1e-10)
    for name in ga:
        np.testing.assert_allclose(ga[name], gb[name], rtol=1e-8, atol=1e-12, err_msg=name)


def test_truncation_per_sequence_windows():
    """Ragged, bidirectional, truncated: each sequence's gradient is that of
    the sequence alone (the loss weights aside), on the absolute timeline."""
    net = bptt.RNN(2, 3, 1, cell="gru", bidirectional=True, random_state=0)
    lengths = [7, 5, 4]
    X = _ragged(lengths, 2)
    y = [np.ones(L) for L in lengths]
    total = sum(lengths)
    _, grads = net.loss_and_grad(X, y, truncate=3)
    expected = {name: 0 for name in grads}
    for x, t in zip(X, y):
        _, g = net.loss_and_grad(x[None], t[None], truncate=3)
        for name in g:
            expected[name] = expected[name] + g[name] * len(x) / total
    for name in grads:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-10, atol=1e-13)


def test_bad_ragged_input():
    net = bptt.RNN(2, 3, 1, random_state=0)
    with pytest.raises(ValueError, match="0 timesteps"):
        net.forward([np.zeros((3, 2)), np.zeros((0, 2))])
    with pytest.raises(ValueError, match="followed by real timesteps"):
        X = np.zeros((2, 4, 2))
        X[0, 1] = np.nan
        net.forward(X)
    with pytest.raises(ValueError, match="some but not all features"):
        X = np.zeros((2, 4, 2))
        X[0, 3, 0] = np.nan
        net.forward(X)
    with pytest.raises(ValueError, match="shape"):
        net.forward([np.zeros((3, 2)), np.zeros((2, 3))])
    with pytest.raises(ValueError, match="timesteps but X"):
        net.loss_and_grad([np.zeros((3, 2)), np.zeros((2, 2))], [np.zeros(3), np.zeros(3)])
    padded = np.zeros((2, 3, 2))
    padded[1, 2] = np.nan
    with pytest.raises(ValueError, match="where X is padding"):
        net.loss_and_grad(padded, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="a real timestep of X"):
        net.loss_and_grad(padded, np.full((2, 3), np.nan))
    y = np.zeros((2, 3))
    y[1, 2] = np.nan
    net.loss_and_grad(padded, y)  # matching padding
    with pytest.raises(ValueError, match="every timestep"):
        net.forward(np.full((2, 3, 2), np.nan))
    deep = bptt.RNN(2, 3, 1, num_layers=2)
    with pytest.raises(ValueError, match=r"\(2, 2, 3\)"):
        deep.forward([np.zeros((3, 2)), np.zeros((2, 2))], np.zeros((2, 3)))


def test_univariate_list():
    net = bptt.RNN(1, 3, 1, random_state=0)
    Y, _ = net.forward([np.arange(3.0), np.arange(5.0)])
    assert [y.shape for y in Y] == [(3, 1), (5, 1)]


@pytest.mark.parametrize("output", ["last", "mean"])
@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bidirectional": True}])
def test_estimators_take_ragged_X(output, kw):
    import warnings
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 12, size=60)
    X = [rng.standard_normal((L, 2)) for L in lengths]
    y = np.array([x[:, 0].sum() for x in X])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bptt.RNNRegressor(hidden_size=8, max_epochs=60, random_state=0, output=output,
                                **kw).fit(X, y)
        est.partial_fit(_padded(X, 14), y)
    pred = est.predict(X)
    assert pred.shape == (60,) and est.score(X, y) > 0.5
    np.testing.assert_allclose(est.predict(_padded(X, 13)), pred, rtol=1e-12)
    # alone, a sequence's rows share the kernels' row tiles with no other
    # (packedgemm.h sums a lone row's products in another order): equal to
    # float32's rounding, not bit for bit
    np.testing.assert_allclose(est.predict([X[5]]), pred[5:6], rtol=1e-5)
    labels = (y > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = bptt.RNNClassifier(hidden_size=8, max_epochs=30, random_state=0, output=output,
                                 **kw).fit(X, labels)
    assert clf.predict_proba(X).shape == (60, 2) and clf.score(X, labels) > 0.6


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_ragged_errors():
    X = [np.zeros((3, 1)), np.zeros((5, 1))]
    with pytest.raises(ValueError, match="timesteps"):
        bptt.RNNRegressor(output="sequence").fit(X, [np.zeros(3), np.zeros(4)])
    with pytest.raises(ValueError, match="padding must match"):
        bptt.RNNRegressor(output="sequence").fit(X, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        bptt.RNNRegressor(output="sequence").fit(X, [np.zeros(3)])
    with pytest.raises(ValueError, match="truncate=None for ragged X"):
        bptt.RNNRegressor(truncate=2, max_epochs=1).fit(X, np.zeros(2))
    est = bptt.RNNRegressor(max_epochs=1).fit(X, np.zeros(2))
    with pytest.raises(ValueError, match="features"):
        est.predict([np.zeros((3, 2)), np.zeros((2, 2))])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bidirectional": True}])
def test_estimators_ragged_sequence_output(kw):
    """output='sequence' with ragged X: a prediction per real timestep, in
    the input's form (list in, list out; NaN-padded in, NaN-padded out), the
    score over real timesteps only."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(2, 10, size=50)
    X = [rng.standard_normal((L, 2)) for L in lengths]
    y = [np.cumsum(x[:, 0]) * 0.3 for x in X]  # univariate per-step targets
    est = bptt.RNNRegressor(hidden_size=8, max_epochs=80, random_state=0,
                            output="sequence", dtype="float64", **kw).fit(X, y)
    est.partial_fit(_padded(X, 12), _padded(y, 12))
    pred = est.predict(X)
    assert isinstance(pred, list) and [p.shape for p in pred] == [(L,) for L in lengths]
    padded = est.predict(_padded(X, 12))
    assert padded.shape == (50, 12)
    real = np.arange(12)[None, :] < lengths[:, None]
    assert np.isnan(padded[~real]).all() and np.isfinite(padded[real]).all()
    np.testing.assert_allclose(padded[real], np.concatenate(pred), rtol=1e-12)
    # each sequence alone gives the same predictions
    np.testing.assert_allclose(est.predict([X[3]])[0], pred[3], rtol=1e-10)
    score = est.score(X, y)
    assert score > 0.5
    assert est.score(_padded(X, 12), _padded(y, 12)) == pytest.approx(score, rel=1e-12)
    from sklearn.metrics import r2_score
    assert score == pytest.approx(r2_score(np.concatenate(y), np.concatenate(pred)))
    # multi-output targets (T_i, 2) come back as (T_i, 2)
    y2 = [np.stack([t, -t], axis=1) for t in y]
    est2 = bptt.RNNRegressor(hidden_size=4, max_epochs=2, random_state=0,
                             output="sequence", **kw).fit(X, y2)
    assert [p.shape for p in est2.predict(X)] == [(L, 2) for L in lengths]
    # early stopping scores the held-out sequences over their real timesteps
    es = bptt.RNNRegressor(hidden_size=4, max_epochs=3, random_state=0, output="sequence",
                           early_stopping=True, **kw).fit(X, y)
    assert len(es.validation_scores_) >= 1 and np.isfinite(es.validation_scores_).all()
    # the classifier: labels per timestep, as lists or NaN-padded floats
    labels = [(t > 0).astype(int) for t in y]
    clf = bptt.RNNClassifier(hidden_size=8, max_epochs=40, random_state=0,
                             output="sequence", **kw).fit(X, labels)
    out = clf.predict(X)
    assert [o.shape for o in out] == [(L,) for L in lengths]
    proba = clf.predict_proba(X)
    assert [q.shape for q in proba] == [(L, 2) for L in lengths]
    assert clf.score(X, labels) > 0.6
    flat_pred, flat_true = np.concatenate(out), np.concatenate(labels)
    assert clf.score(X, labels) == pytest.approx(np.mean(flat_pred == flat_true))
    pad_labels = _padded([t.astype(float) for t in labels], 12)
    clf.partial_fit(_padded(X, 12), pad_labels)
    pad_pred = clf.predict(_padded(X, 12))
    assert pad_pred.shape == (50, 12) and np.isnan(pad_pred[~real]).all()
    np.testing.assert_array_equal(pad_pred[real], np.concatenate(clf.predict(X)))
    # string labels per timestep
    names = [np.where(t > 0, "up", "down") for t in labels]
    clf_s = bptt.RNNClassifier(hidden_size=4, max_epochs=2, random_state=0,
                               output="sequence", **kw).fit(X, names)
    assert set(np.concatenate(clf_s.predict(X))) <= {"up", "down"}


def test_kept_layout_follows_the_lengths():
    # the network keeps its last layout (bptt._bptt.layout_of): a call with
    # other lengths of the same count must not reuse it, one with the same
    # lengths does, and NaN or another dtype in a list still gets checked
    rng = np.random.default_rng(3)
    net = bptt.RNN(2, 5, 1, cell="gru", num_layers=2, random_state=0)
    twin = bptt.RNN(2, 5, 1, cell="gru", num_layers=2, random_state=0)
    y = rng.standard_normal((4, 1))
    batches = [[rng.standard_normal((L, 2)) for L in lengths]
               for lengths in ((3, 7, 2, 5), (7, 3, 5, 2), (3, 7, 2, 5))]
    from threadpoolctl import threadpool_limits
    kept = []
    for seqs in batches:
        with threadpool_limits(limits=2, user_api="blas"):
            value, grads = net.loss_and_grad(seqs, y, output="last")
        kept.append(net._layout[1])
        fresh = twin.loss_and_grad(seqs, y, output="last")
        twin.release_buffers()
        assert value == pytest.approx(fresh[0], rel=1e-12)
        for name in grads:
            np.testing.assert_allclose(grads[name], fresh[1][name], rtol=1e-10, atol=1e-14)
    assert kept[1] is not kept[0] and kept[2] is not kept[1]
    net.loss_and_grad(batches[2], y, output="last")
    assert net._layout[1] is kept[2]
    bad = [a.copy() for a in batches[0]]
    bad[1][4, 0] = np.nan
    with pytest.raises(ValueError, match=r"X\[1\]"):
        net.loss_and_grad(bad, y, output="last")
    as32 = [a.astype(np.float32) for a in batches[0]]
    np.testing.assert_allclose(net.loss_and_grad(as32, y, output="last")[0],
                               net.loss_and_grad(batches[0], y, output="last")[0], rtol=1e-6)
