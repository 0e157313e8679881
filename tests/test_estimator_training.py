"""Training options of the estimators (issue 15) and their training
diagnostics (issue 17): sample and class weights (down to the output
layer's row weights), the L2 penalty ``alpha``, learning-rate schedules,
multilabel classification, ``validation_loss_curve_`` and the per-epoch
gradient-norm, clipping and learning-rate curves."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.class_weight import compute_sample_weight

import bptt
from bptt import RNN, RNNClassifier, RNNRegressor
from bptt import _bptt
from bptt import _threads
from bptt.rnn import load_kernels
from helpers import make_target

# The Elman cell in float64 (exact comparisons), not the defaults (GRU, float32)
F64 = dict(cell="rnn", dtype="float64")
ACTIVATION_LOSSES = [("identity", "mse"), ("sigmoid", "mse"), ("softmax", "mse"),
                     ("sigmoid", "binary_cross_entropy"), ("softmax", "cross_entropy")]


def _quiet_fit(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, **kw)


def _problem(seed, cell, activation, loss, output, n=5, T=4, I=3, H=4, O=3):
    rng = np.random.default_rng(seed)
    net = RNN(I, H, O, cell=cell, output_activation=activation, dtype="float64",
              random_state=seed)
    for name, value in net.params.items():
        net.params[name] = rng.normal(0, 0.5, value.shape)
    X = rng.standard_normal((n, T, I))
    return net, X, make_target(rng, loss, output, n, T, O), rng


# ---------------------------------------------------------------- output layer
@pytest.mark.parametrize("activation,loss", [(0, 0), (1, 0), (2, 0), (2, 1), (1, 2)])
@pytest.mark.parametrize("threads", [1, 3])
def test_output_layer_row_weights_match_reference(activation, loss, threads):
    """The compiled output layer's row weights (zero weights included) equal
    the NumPy twin's, loss and every gradient, on one thread and in parts."""
    rng = np.random.default_rng(loss * 3 + activation)
    N, H, O = 11, 5, 3
    Hs = rng.standard_normal((N, H))
    W_oh, b_o = rng.standard_normal((O, H)), rng.standard_normal(O)
    target = (rng.integers(0, O, N).astype(np.int64) if loss == 1
              else rng.uniform(0, 1, (N, O)))
    w = rng.uniform(0, 3, N)
    w[2] = 0.0
    denominator = float(w.sum()) * (1 if loss == 1 else O)

    def run(backend):
        kernels = load_kernels(backend, "output")
        Z, Y, dZ = (np.empty((N, O)) for _ in range(3))
        dW_oh, db_o, dHs = np.empty((O, H)), np.empty(O), np.empty((N, H))
        layout = () if backend == "numpy" else (threads, 0, 0)  # the reference has none
        value = kernels.output_layer(Hs, W_oh, b_o, activation, loss, target,
                                     denominator, Z, Y, dZ, dW_oh, db_o, dHs, False,
                                     *layout, row_weights=w)
        return value, dZ, dW_oh, db_o, dHs

    expected, got = run("numpy"), run("cython")
    assert got[0] == pytest.approx(expected[0], rel=1e-12)
    for a, b in zip(got[1:], expected[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # a zero weight: that row contributes nothing
    np.testing.assert_array_equal(got[1][2], 0.0)


def test_output_layer_row_weights_shape_is_checked():
    kernels = load_kernels("cython", "output")
    N, H, O = 4, 3, 2
    args = [np.zeros((N, H)), np.zeros((O, H)), np.zeros(O), 0, 0, np.zeros((N, O)),
            float(N * O), *(np.empty((N, O)) for _ in range(3)), np.empty((O, H)),
            np.empty(O), np.empty((N, H)), False, 1, 0, 0]
    with pytest.raises(ValueError, match="row_weights must have shape"):
        kernels.output_layer(*args, np.ones(N - 1))


# ---------------------------------------------------------------- loss_and_grad
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("output", ["last", "sequence"])
@pytest.mark.parametrize("activation,loss", ACTIVATION_LOSSES)
def test_integer_sample_weights_equal_repeated_sequences(cell, output, activation, loss):
    """loss_and_grad with integer weights is the loss and gradient of the
    batch with each sequence repeated that many times (weight 0: left out)."""
    net, X, y, rng = _problem(7, cell, activation, loss, output)
    w = np.array([2, 0, 1, 3, 1])
    value, grads = net.loss_and_grad(X, y, loss=loss, output=output, sample_weight=w)
    rep = np.repeat(np.arange(len(w)), w)
    v_rep, g_rep = net.loss_and_grad(X[rep], y[rep], loss=loss, output=output)
    assert value == pytest.approx(v_rep, rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], g_rep[name], rtol=1e-10, atol=1e-13,
                                   err_msg=name)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("output,truncate", [("last", None), ("sequence", None),
                                             ("sequence", 2)])
@pytest.mark.parametrize("activation,loss", [("identity", "mse"),
                                             ("sigmoid", "binary_cross_entropy"),
                                             ("softmax", "cross_entropy")])
def test_weighted_gradient_matches_finite_differences(cell, output, truncate,
                                                      activation, loss):
    """The gradient of the weighted mean loss (real-valued weights) agrees
    with central differences of the weighted loss in float64, and the NumPy
    backend gives the same loss and gradient."""
    net, X, y, rng = _problem(3, cell, activation, loss, output)
    w = rng.uniform(0.1, 2.0, X.shape[0])
    kw = dict(loss=loss, output=output, sample_weight=w)
    value, grads = net.loss_and_grad(X, y, truncate=truncate, **kw)
    twin = RNN.from_config({**net.get_config(), "backend": "numpy"}, params=net.params,
                           random_state=0)
    v_np, g_np = twin.loss_and_grad(X, y, truncate=truncate, **kw)
    assert value == pytest.approx(v_np, rel=1e-10)
    for name in grads:
        np.testing.assert_allclose(grads[name], g_np[name], rtol=1e-9, atol=1e-12)
    if truncate is None:
        def f():
            return net.loss_and_grad(X, y, **kw)[0]
        for name, param in net.params.items():
            numeric = np.zeros(param.shape)
            for idx in np.ndindex(param.shape):
                old = param[idx]
                param[idx] = old + 1e-6
                up = f()
                param[idx] = old - 1e-6
                down = f()
                param[idx] = old
                numeric[idx] = (up - down) / 2e-6
            np.testing.assert_allclose(grads[name], numeric, rtol=1e-5,
                                       atol=1e-7 * max(1.0, np.abs(numeric).max()),
                                       err_msg=name)


def test_weighted_loss_value_is_the_weighted_mean():
    net, X, y, rng = _problem(5, "gru", "identity", "mse", "last")
    w = rng.uniform(0.5, 2.0, X.shape[0])
    value, _ = net.loss_and_grad(X, y, loss="mse", output="last", sample_weight=w)
    per = [net.loss_and_grad(X[i:i + 1], y[i:i + 1], loss="mse", output="last")[0]
           for i in range(X.shape[0])]
    assert value == pytest.approx(np.average(per, weights=w), rel=1e-12)


def test_sample_weights_with_threads_in_slabs(monkeypatch):
    """The row weights follow the target into the threads' slab layout."""
    from threadpoolctl import threadpool_limits
    net, X, y, rng = _problem(4, "lstm", "softmax", "cross_entropy", "sequence",
                              n=6, T=5)
    w = rng.uniform(0, 2, 6)
    serial = net.loss_and_grad(X, y, loss="cross_entropy", output="sequence",
                               sample_weight=w)
    monkeypatch.setattr(_threads, "MIN_WORK_PER_THREAD", 1)
    with threadpool_limits(limits=2, user_api="blas"):
        assert _bptt.plan_threads(net, 2, 6) == 2
        value, grads = net.loss_and_grad(X, y, loss="cross_entropy", output="sequence",
                                         sample_weight=w)
    assert any(key[4] == 2 for key in net._workspace)  # the slab layout ran
    assert value == pytest.approx(serial[0], rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], serial[1][name], rtol=1e-11, atol=1e-13)


def test_sample_weights_in_chunks(monkeypatch):
    """Several chunks of timesteps read their own rows of the weights."""
    net, X, y, rng = _problem(6, "rnn", "identity", "mse", "sequence", n=4, T=9)
    w = rng.uniform(0, 2, 4)
    whole = net.loss_and_grad(X, y, loss="mse", output="sequence", sample_weight=w)
    monkeypatch.setattr(_bptt, "TRAIN_ONE_CHUNK_BYTES", 0)
    monkeypatch.setattr(_bptt, "TRAIN_CHUNK_ROWS", 8)
    assert _bptt.chunk_steps(net, 9, 4, None) < 9
    value, grads = net.loss_and_grad(X, y, loss="mse", output="sequence", sample_weight=w)
    assert value == pytest.approx(whole[0], rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], whole[1][name], rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("w,match", [
    (np.ones(4), r"shape \(5,\)"),
    (np.ones((5, 1)), r"shape \(5,\)"),
    ([1, 1, -1, 1, 1], "non-negative"),
    ([1, 1, np.nan, 1, 1], "NaN"),
    (np.zeros(5), "sums to zero"),
    (["a"] * 5, "numbers"),
])
def test_bad_sample_weight(w, match):
    net, X, y, _ = _problem(1, "rnn", "identity", "mse", "last")
    with pytest.raises(ValueError, match=match):
        net.loss_and_grad(X, y, loss="mse", output="last", sample_weight=w)


# ---------------------------------------------------------------- estimators: weights
def _seq_data(seed=0, n=24, T=6):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, 2))
    y_reg = X[:, :, 0].mean(axis=1) + 0.5 * X[:, -1, 1]
    y_clf = np.where(X[:, :, 0].sum(axis=1) > 0, "pos", "neg")
    y_clf[:5] = "mid"
    return X, y_reg, y_clf


@pytest.mark.parametrize("Est", [RNNRegressor, RNNClassifier])
def test_fit_sample_weight_equals_repeating_rows(Est):
    """Full-batch training on weights 0-3 gives the model of training on the
    rows repeated that often: the weighted loss is exact, not sampled."""
    X, y_reg, y_clf = _seq_data()
    y = y_reg if Est is RNNRegressor else y_clf
    w = np.tile([0, 1, 2, 3], len(y) // 4)
    rep = np.repeat(np.arange(len(y)), w)
    kw = dict(hidden_size=5, max_epochs=4, batch_size=200, shuffle=False, random_state=0)
    a = _quiet_fit(Est(**F64, **kw), X, y, sample_weight=w)
    b = _quiet_fit(Est(**F64, **kw), X[rep], y[rep])
    for name in a.net_.params:
        np.testing.assert_allclose(a.net_.params[name], b.net_.params[name],
                                   rtol=1e-9, atol=1e-11, err_msg=name)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    # partial_fit takes them too
    c = Est(**F64, **kw)
    extra = {"classes": np.unique(y)} if Est is RNNClassifier else {}
    c.partial_fit(X, y, sample_weight=w, **extra)
    d = Est(**F64, **kw)
    d.partial_fit(X[rep], y[rep], **extra)
    for name in c.net_.params:
        np.testing.assert_allclose(c.net_.params[name], d.net_.params[name],
                                   rtol=1e-9, atol=1e-11)
    # and score: the weighted mean of the per-sample scores
    assert a.score(X, y, sample_weight=w) == pytest.approx(a.score(X[rep], y[rep]))


def test_sample_weight_ones_is_none_bit_for_bit():
    X, _, y = _seq_data()
    kw = dict(hidden_size=5, max_epochs=3, batch_size=8, random_state=0)
    a = _quiet_fit(RNNClassifier(**F64, **kw), X, y)
    b = _quiet_fit(RNNClassifier(**F64, **kw), X, y, sample_weight=np.ones(len(y)))
    for name in a.net_.params:
        np.testing.assert_array_equal(a.net_.params[name], b.net_.params[name])


def test_class_weight_balanced_equals_its_sample_weights():
    X, _, y = _seq_data()
    kw = dict(hidden_size=5, max_epochs=3, batch_size=8, random_state=0)
    a = _quiet_fit(RNNClassifier(**F64, class_weight="balanced", **kw), X, y)
    b = _quiet_fit(RNNClassifier(**F64, **kw), X, y,
                   sample_weight=compute_sample_weight("balanced", y))
    for name in a.net_.params:
        np.testing.assert_allclose(a.net_.params[name], b.net_.params[name],
                                   rtol=1e-12, atol=1e-14)
    # a dict, times the sample weights
    sw = np.linspace(0.5, 1.5, len(y))
    c = _quiet_fit(RNNClassifier(**F64, class_weight={"mid": 3.0, "pos": 0.5}, **kw), X, y,
                   sample_weight=sw)
    d = _quiet_fit(RNNClassifier(**F64, **kw), X, y,
                   sample_weight=sw * np.select([y == "mid", y == "pos"], [3.0, 0.5], 1.0))
    for name in c.net_.params:
        np.testing.assert_allclose(c.net_.params[name], d.net_.params[name],
                                   rtol=1e-12, atol=1e-14)


def test_class_weight_errors():
    X, _, y = _seq_data()
    with pytest.raises(ValueError, match="not in classes_"):
        _quiet_fit(RNNClassifier(**F64, class_weight={"cow": 2.0}, max_epochs=1), X, y)
    with pytest.raises(ValueError, match="not supported for partial_fit"):
        RNNClassifier(**F64, class_weight="balanced").partial_fit(X, y, classes=np.unique(y))
    with pytest.raises(ValueError, match="output='last'"):
        _quiet_fit(RNNClassifier(**F64, class_weight="balanced", output="sequence",
                                 max_epochs=1), X, np.repeat(y[:, None], 6, axis=1))
    with pytest.raises(ValueError, match="class_weight"):
        _quiet_fit(RNNClassifier(**F64, class_weight="heavy", max_epochs=1), X, y)
    with pytest.raises(ValueError, match="sums to zero"):
        _quiet_fit(RNNClassifier(**F64, max_epochs=1), X, y, sample_weight=np.zeros(len(y)))


def test_zero_weight_batches_are_skipped():
    """A minibatch whose weights are all 0 makes no update (and no NaN)."""
    X, y, _ = _seq_data(n=16)
    w = np.r_[np.zeros(8), np.ones(8)]
    est = _quiet_fit(RNNRegressor(**F64, hidden_size=4, max_epochs=2, batch_size=8,
                                  shuffle=False, random_state=0), X, y, sample_weight=w)
    assert len(est.grad_norm_curve_) == 2 and np.isfinite(est.loss_curve_).all()
    ref = _quiet_fit(RNNRegressor(**F64, hidden_size=4, max_epochs=2, batch_size=8,
                                  shuffle=False, random_state=0), X[8:], y[8:])
    for name in est.net_.params:
        np.testing.assert_allclose(est.net_.params[name], ref.net_.params[name],
                                   rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- alpha
def _initial_net(est, X, y):
    """The network a first fit of ``est`` starts from (its seed builds it)."""
    est._validate_X(X, reset=True)
    est._validate_targets(y, X, reset=True)
    est._initialize(X)
    return est.net_


def test_alpha_adds_the_l2_gradient_on_weights_not_biases():
    """One SGD step with alpha: W -= lr (dL/dW + alpha W / n); biases get no
    decay; the reported loss carries alpha/2 ||W||^2 / n."""
    X, y, _ = _seq_data(n=12)
    alpha, lr = 0.7, 0.05
    kw = dict(hidden_size=4, optimizer="sgd", learning_rate=lr, batch_size=200,
              clip_norm=None, shuffle=False, random_state=0)
    net0 = _initial_net(RNNRegressor(**F64, **kw), X, y)
    W0 = {k: v.copy() for k, v in net0.params.items()}
    value, grads = net0.loss_and_grad(X, y[:, None], loss="mse", output="last")
    est = RNNRegressor(**F64, alpha=alpha, **kw).partial_fit(X, y)
    n = X.shape[0]
    for name, W in W0.items():
        decay = alpha * W / n if name.startswith("W_") else 0.0
        np.testing.assert_allclose(est.net_.params[name], W - lr * (grads[name] + decay),
                                   rtol=1e-10, atol=1e-12, err_msg=name)
    penalty = 0.5 * alpha * sum(float(np.vdot(W, W)) for k, W in W0.items()
                                if k.startswith("W_")) / n
    assert est.loss_curve_[0] == pytest.approx(value + penalty, rel=1e-10)


def test_alpha_shrinks_the_weights():
    X, y, _ = _seq_data(n=32)
    kw = dict(hidden_size=8, max_epochs=30, learning_rate=0.01, random_state=0,
              clip_norm=None)
    norms = []
    for alpha in (0.0, 10.0):
        est = _quiet_fit(RNNRegressor(**F64, alpha=alpha, **kw), X, y)
        norms.append(sum(float(np.vdot(v, v)) for k, v in est.net_.params.items()
                         if k.startswith("W_")))
    assert norms[1] < 0.7 * norms[0]  # measured 0.36-0.50 over seeds 0-2


# ---------------------------------------------------------------- schedules
def test_plateau_schedule_divides_the_rate_when_the_loss_stalls():
    """tol larger than any improvement: every epoch but the first (which
    improves on no loss at all) stalls, so the rate is divided by 5 after
    each n_iter_no_change + 1 stalled epochs, three times, and the fourth
    stall stops the fit."""
    X, y, _ = _seq_data()
    est = RNNRegressor(**F64, hidden_size=4, learning_rate=0.01, learning_rate_schedule="plateau",
                       tol=1e9, n_iter_no_change=2, max_epochs=50, random_state=0)
    est.fit(X, y)
    rates = est.learning_rate_curve_
    assert len(rates) == est.n_iter_ == 13
    np.testing.assert_allclose(rates, np.repeat([0.01, 0.002, 0.0004, 0.00008], [4, 3, 3, 3]))


def test_plateau_schedule_keeps_the_rate_while_the_loss_improves():
    X, y, _ = _seq_data()
    est = _quiet_fit(RNNRegressor(**F64, hidden_size=4, learning_rate_schedule="plateau",
                                  tol=0.0, n_iter_no_change=50, max_epochs=5,
                                  random_state=0), X, y)
    assert est.learning_rate_curve_ == [est.learning_rate] * 5


def test_cosine_and_constant_schedules():
    X, y, _ = _seq_data()
    est = _quiet_fit(RNNRegressor(**F64, hidden_size=4, learning_rate=0.02,
                                  learning_rate_schedule="cosine", max_epochs=6,
                                  n_iter_no_change=100, random_state=0), X, y)
    e = np.arange(6)
    np.testing.assert_allclose(est.learning_rate_curve_,
                               0.02 * 0.5 * (1 + np.cos(np.pi * e / 6)))
    est = _quiet_fit(RNNRegressor(**F64, hidden_size=4, learning_rate=0.02, max_epochs=3,
                                  random_state=0), X, y)
    assert est.learning_rate_curve_ == [0.02] * 3


def test_schedule_changes_the_step_the_optimizer_takes():
    """The scheduled rate is the one the update uses: SGD under cosine equals
    SGD whose learning_rate is set to each epoch's value by hand."""
    X, y, _ = _seq_data()
    kw = dict(hidden_size=4, optimizer="sgd", batch_size=200, shuffle=False,
              clip_norm=None, random_state=0)
    a = _quiet_fit(RNNRegressor(**F64, learning_rate=0.1, learning_rate_schedule="cosine",
                                max_epochs=3, n_iter_no_change=100, **kw), X, y)
    b = RNNRegressor(**F64, learning_rate=0.1, **kw)
    for rate in a.learning_rate_curve_:
        b.set_params(learning_rate=rate)
        b.partial_fit(X, y)
    for name in a.net_.params:
        np.testing.assert_allclose(a.net_.params[name], b.net_.params[name],
                                   rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- multilabel
def _multilabel_data(seed=0, n=160, T=8):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, 2))
    Y = np.stack([X[:, :, 0].mean(axis=1) > 0, X[:, -1, 1] > 0,
                  X[:, :, 1].mean(axis=1) > 0.2], axis=1).astype(int)
    return X, Y


def test_multilabel_learns_a_small_task():
    X, Y = _multilabel_data()
    clf = _quiet_fit(RNNClassifier(**F64, hidden_size=12, max_epochs=40, learning_rate=0.01,
                                   random_state=0),
                     X[:120], Y[:120])
    assert clf.net_.output_size == 3 and clf.net_.output_activation == "sigmoid"
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    P = clf.predict_proba(X[120:])
    assert P.shape == (40, 3) and ((P >= 0) & (P <= 1)).all()
    pred = clf.predict(X[120:])
    assert pred.shape == (40, 3) and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (P > 0.5).astype(int))
    # per-label accuracy well above chance (0.5-0.7 for these labels)
    assert (pred == Y[120:]).mean() > 0.8
    assert 0 <= clf.score(X[120:], Y[120:]) <= 1


def test_multilabel_loss_is_binary_cross_entropy_of_every_label():
    X, Y = _multilabel_data(n=20)
    clf = RNNClassifier(**F64, hidden_size=4, batch_size=200, random_state=0)
    clf.partial_fit(X, Y, classes=np.arange(3))
    net0 = _initial_net(RNNClassifier(**F64, hidden_size=4, batch_size=200, random_state=0), X, Y)
    value, _ = net0.loss_and_grad(X, Y.astype(float), loss="binary_cross_entropy",
                                       output="last")
    assert clf.loss_curve_[0] == pytest.approx(value, rel=1e-12)


def test_multilabel_errors_and_persistence(tmp_path):
    X, Y = _multilabel_data(n=20)
    with pytest.raises(ValueError, match="n_timesteps"):
        RNNClassifier(**F64, output="sequence").fit(X, Y)  # (n, k) is not a label per step
    with pytest.raises(ValueError, match="multilabel"):
        RNNClassifier(**F64, class_weight="balanced", max_epochs=1).fit(X, Y)
    with pytest.raises(ValueError, match="multilabel indicator"):
        RNNClassifier(**F64, max_epochs=1).fit(X, np.full((20, 3), 2.5))
    clf = _quiet_fit(RNNClassifier(**F64, hidden_size=4, max_epochs=2, random_state=0), X, Y)
    with pytest.raises(ValueError, match="multilabel"):
        clf.partial_fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="3 labels"):
        clf.partial_fit(X, Y[:, :2])
    loaded = bptt.load(clf.save(tmp_path / "ml.npz"))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X))


# ---------------------------------------------------------------- diagnostics
def test_validation_loss_curve():
    X, _, y = _seq_data(n=40)
    clf = _quiet_fit(RNNClassifier(**F64, hidden_size=5, max_epochs=4, early_stopping=True,
                                   validation_fraction=0.25, n_iter_no_change=100,
                                   random_state=0), X, y)
    assert len(clf.validation_loss_curve_) == len(clf.validation_scores_) == clf.n_iter_
    assert np.isfinite(clf.validation_loss_curve_).all()
    plain = _quiet_fit(RNNClassifier(**F64, hidden_size=5, max_epochs=2, random_state=0), X, y)
    assert plain.validation_loss_curve_ is None


@pytest.mark.parametrize("Est,output,y_kind", [
    (RNNRegressor, "last", "reg"), (RNNRegressor, "sequence", "reg"),
    (RNNClassifier, "last", "two"), (RNNClassifier, "last", "three"),
    (RNNClassifier, "sequence", "three")])
def test_validation_loss_is_the_training_loss_function(Est, output, y_kind):
    """_validation_loss computes, in NumPy, the loss loss_and_grad trains on
    (weighted likewise)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((9, 5, 2))
    lead = (9, 5) if output == "sequence" else (9,)
    y = {"reg": rng.standard_normal(lead), "two": rng.integers(0, 2, lead),
         "three": rng.integers(0, 3, lead)}[y_kind]
    est = _quiet_fit(Est(**F64, hidden_size=4, output=output, max_epochs=1, random_state=0), X, y)
    Xv = est._validate_X(X, reset=False)
    _, y_enc = est._validate_targets(y, Xv, reset=False)
    w = rng.uniform(0.2, 2, 9)
    value, _ = est.net_.loss_and_grad(Xv, y_enc, loss=est._output_layer()[2],
                                      output=output, sample_weight=w)
    assert est._validation_loss(Xv, y_enc, w) == pytest.approx(value, rel=1e-9)


def test_gradient_norm_curves_record_every_update():
    """One full-batch update per epoch: grad_norm_curve_ is the norm of
    loss_and_grad's gradients at the weights the epoch started from."""
    X, y, _ = _seq_data(n=12)
    est = RNNRegressor(**F64, hidden_size=4, batch_size=200, random_state=0, clip_norm=None)
    norms = []
    for _ in range(3):
        if hasattr(est, "net_"):
            _, grads = est.net_.loss_and_grad(X, y[:, None], loss="mse", output="last")
            norms.append(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))
        est.partial_fit(X, y)
    np.testing.assert_allclose(est.grad_norm_curve_[1:], norms, rtol=1e-10)
    assert est.grad_norm_curve_ == est.grad_norm_max_curve_  # one update each
    assert est.clipped_fraction_curve_ == [0.0] * 3
    assert est.learning_rate_curve_ == [est.learning_rate] * 3


def test_clipped_fraction_and_norm_statistics():
    X, y, _ = _seq_data(n=40)
    kw = dict(hidden_size=4, batch_size=8, max_epochs=3, random_state=0)
    tight = _quiet_fit(RNNRegressor(**F64, clip_norm=1e-8, **kw), X, y)
    assert tight.clipped_fraction_curve_ == [1.0] * 3
    loose = _quiet_fit(RNNRegressor(**F64, clip_norm=None, **kw), X, y)
    assert loose.clipped_fraction_curve_ == [0.0] * 3
    for est in (tight, loose):
        med, mx = np.array(est.grad_norm_curve_), np.array(est.grad_norm_max_curve_)
        assert len(med) == len(mx) == est.n_iter_ and (med > 0).all() and (mx >= med).all()
    # somewhere in between: the fraction is that of the updates above clip_norm
    mid = np.median(loose.grad_norm_curve_)
    some = _quiet_fit(RNNRegressor(**F64, clip_norm=mid, **kw), X, y)
    assert all(0.0 <= f <= 1.0 for f in some.clipped_fraction_curve_)
    assert 0.0 < np.mean(some.clipped_fraction_curve_) < 1.0


def test_divergence_error_names_the_last_gradient_norms():
    X, y, _ = _seq_data(n=16)
    est = RNNRegressor(**F64, hidden_size=8, optimizer="sgd", learning_rate=1e30, clip_norm=None,
                       nonlinearity="relu", max_epochs=5, random_state=0)
    with pytest.raises(FloatingPointError, match=r"gradient norms \(before clipping\) "
                                                 r"of the last \d update"):
        est.fit(X, 1e3 * y)
    assert all(np.isfinite(v).all() for v in est.net_.params.values())


def test_verbose_prints_the_diagnostics(capsys):
    X, y, _ = _seq_data(n=16)
    _quiet_fit(RNNRegressor(**F64, hidden_size=4, max_epochs=2, verbose=2, random_state=0,
                            learning_rate=0.01, learning_rate_schedule="cosine"), X, y)
    out = capsys.readouterr().out
    assert "grad norm median" in out and "clipped" in out and "lr 0.01," in out
    assert "lr 0.005," in out  # cosine: half way after one of two epochs


def test_curves_survive_save_and_load(tmp_path):
    X, _, y = _seq_data(n=40)
    clf = _quiet_fit(RNNClassifier(**F64, hidden_size=4, max_epochs=3, early_stopping=True,
                                   n_iter_no_change=100, random_state=0), X, y)
    loaded = bptt.load(clf.save(tmp_path / "m.npz"))
    for name in ("loss_curve_", "validation_loss_curve_", "grad_norm_curve_",
                 "grad_norm_max_curve_", "clipped_fraction_curve_",
                 "learning_rate_curve_"):
        assert getattr(loaded, name) == pytest.approx(getattr(clf, name)), name
    loaded.partial_fit(X, y)  # continues, one more entry each
    assert len(loaded.grad_norm_curve_) == 4


def test_regressor_defaults_differ_from_the_classifiers_only_in_max_epochs():
    # The measured defaults (docs/benchmarks.md section 3): 300 epochs
    # overfit the forecasting benchmark, so the regressor trains for 100.
    reg, clf = RNNRegressor().get_params(), RNNClassifier().get_params()
    clf.pop("class_weight")
    assert reg["max_epochs"] == 100 and clf["max_epochs"] == 300
    assert {k for k in reg if reg[k] != clf[k]} == {"max_epochs"}
