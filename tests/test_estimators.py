"""API, input checks and training semantics of RNNRegressor / RNNClassifier."""

import copy
import pickle
import threading
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

import bptt
from bptt import RNN, RNNClassifier, RNNRegressor

# ---------------------------------------------------------------- sklearn checks
# A 2-D X is a batch of univariate series (n_samples, n_timesteps): its second
# axis is time, which a sequence model accepts at any length. n_features_in_
# counts features per timestep (1 here), so the checks that treat a change of
# X.shape[1] as a change in the number of features cannot apply.
_VARIABLE_LENGTH = (
    "a 2-D X is (n_samples, n_timesteps) univariate series: series of another "
    "length are valid input, and n_features_in_ counts features per timestep (1)"
)
_COMMON_XFAIL = {
    "check_n_features_in": _VARIABLE_LENGTH,
    "check_n_features_in_after_fitting": _VARIABLE_LENGTH,
    "check_estimators_partial_fit_n_features": _VARIABLE_LENGTH,
    # tests/test_zero_timesteps.py checks that the rest of this check passes
    "check_estimators_empty_data_messages": (
        "a 2-D X is (n_samples, n_timesteps) univariate series: X of shape (12, 0) "
        "is 12 series of 0 timesteps, and the message says so, not '0 feature(s)'"),
}
# check_classifiers_train asserts accuracy > 0.83 (that part passes) and then
# that predict rejects X[:, :-1], a shorter series.
_CLASSIFIER_XFAIL = {"check_classifiers_train": _VARIABLE_LENGTH + " (its accuracy "
                     "assertion passes; it then expects X[:, :-1] to be rejected)"}


def _expected_failed_checks(estimator):
    if isinstance(estimator, RNNClassifier):
        return {**_COMMON_XFAIL, **_CLASSIFIER_XFAIL}
    return dict(_COMMON_XFAIL)


# float64: check_sample_weight_equivalence_on_dense_data compares a weighted
# fit with one on repeated rows to rtol=1e-7, which the float32 default meets
# only to its rounding (~1e-6)
@parametrize_with_checks([RNNRegressor(random_state=0, dtype="float64"),
                          RNNClassifier(random_state=0, dtype="float64")],
                         expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ---------------------------------------------------------------- helpers
def _fast(est_cls, **kw):
    # the Elman cell in float64, the defaults these tests were written for
    # (issue 15 made "gru" and float32 the defaults)
    params = dict(hidden_size=6, max_epochs=5, random_state=0, batch_size=8, cell="rnn",
                  dtype="float64", learning_rate=0.01, learning_rate_schedule="constant")
    params.update(kw)
    return est_cls(**params)


def _fit_quiet(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, **kw)


def _params_equal(a, b):
    return all(np.array_equal(a.net_.params[k], b.net_.params[k]) for k in a.net_.params)


def _class_data(rng, n=48, T=6, F=2, classes=("cat", "dog", "emu")):
    X = rng.standard_normal((n, T, F))
    y = np.array(classes)[np.argmax(X[:, :, 0].sum(1)[:, None] * [1, 0, -1] + [0, 1, 0], 1)]
    return X, y


# ---------------------------------------------------------------- basic API
def test_public_names():
    assert {"RNNRegressor", "RNNClassifier", "load"} <= set(bptt.__all__)
    assert bptt.load is bptt.persistence.load


def test_fit_sets_attributes(seq_data):
    X, y = seq_data
    reg = _fit_quiet(_fast(RNNRegressor), X, y)
    assert isinstance(reg.net_, RNN)
    assert reg.net_.input_size == 3 and reg.net_.hidden_size == 6
    assert reg.n_features_in_ == 3 and reg.n_outputs_ == 1
    assert reg.n_iter_ == len(reg.loss_curve_) <= 5
    assert reg.validation_scores_ is None
    assert reg.predict(X).shape == (40,)


def test_two_d_input_is_univariate_series(rng):
    X = rng.standard_normal((30, 9))
    y = X.sum(1)
    reg = _fit_quiet(_fast(RNNRegressor), X, y)
    assert reg.n_features_in_ == 1 and reg.net_.input_size == 1
    np.testing.assert_array_equal(reg.predict(X), reg.predict(X[:, :, None]))
    # a series of another length is valid input for a sequence model
    assert reg.predict(X[:, :4]).shape == (30,)


def test_multi_output_regression(seq_data):
    X, y = seq_data
    Y = np.column_stack([y, -y, 2 * y])
    reg = _fit_quiet(_fast(RNNRegressor), X, Y)
    assert reg.n_outputs_ == 3 and reg.predict(X).shape == (40, 3)
    assert np.isfinite(reg.score(X, Y))


def test_sequence_output_regression(rng):
    X = rng.standard_normal((20, 8, 2))
    y = np.cumsum(X[:, :, 0], axis=1)
    reg = _fit_quiet(_fast(RNNRegressor, output="sequence"), X, y)
    assert reg.predict(X).shape == (20, 8)
    Y3 = np.stack([y, -y], axis=-1)
    reg3 = _fit_quiet(_fast(RNNRegressor, output="sequence"), X, Y3)
    assert reg3.predict(X).shape == (20, 8, 2)
    with pytest.raises(ValueError, match="n_timesteps=8"):
        _fast(RNNRegressor, output="sequence").fit(X, y[:, :5])


def test_classifier_string_labels_and_proba(rng):
    X, y = _class_data(rng)
    clf = _fit_quiet(_fast(RNNClassifier), X, y)
    np.testing.assert_array_equal(clf.classes_, ["cat", "dog", "emu"])
    proba = clf.predict_proba(X)
    assert proba.shape == (48, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert set(clf.predict(X)) <= {"cat", "dog", "emu"}
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(1)])
    assert clf.net_.output_activation == "softmax" and clf.net_.output_size == 3


def test_binary_classifier_uses_sigmoid(rng):
    X, y = _class_data(rng, classes=("no", "yes", "yes"))
    clf = _fit_quiet(_fast(RNNClassifier), X, y)
    assert clf.net_.output_size == 1 and clf.net_.output_activation == "sigmoid"
    proba = clf.predict_proba(X)
    assert proba.shape == (48, 2)
    np.testing.assert_allclose(proba[:, 1], clf.net_.forward(X)[0][:, -1, 0])


def test_sequence_classifier(rng):
    X = rng.standard_normal((24, 5, 2))
    y = np.where(np.cumsum(X[:, :, 0], axis=1) > 0, "pos", "neg")
    clf = _fit_quiet(_fast(RNNClassifier, output="sequence"), X, y)
    assert clf.predict(X).shape == (24, 5)
    assert clf.predict_proba(X).shape == (24, 5, 2)
    acc = clf.score(X, y)
    assert acc == pytest.approx(np.mean(clf.predict(X) == y))


def test_pipeline_and_cross_validation(seq_data):
    X, y = seq_data
    pipe = make_pipeline(FunctionTransformer(lambda Z: Z * 0.5), _fast(RNNRegressor))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipe, X, y, cv=2)
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_float32(seq_data):
    X, y = seq_data
    reg = _fit_quiet(_fast(RNNRegressor, dtype="float32"), X, y)
    assert all(p.dtype == np.float32 for p in reg.net_.params.values())
    assert reg.predict(X).dtype == np.float32


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("Est", [RNNRegressor, RNNClassifier])
def test_bad_input_messages(Est, rng):
    X = rng.standard_normal((12, 4, 2))
    y = np.arange(12) % 2
    est = _fast(Est)
    with pytest.raises(NotFittedError):
        est.predict(X)
    Xn = X.copy()
    Xn[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.fit(Xn, y)
    Xi = X.copy()
    Xi[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        est.fit(Xi, y)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        est.fit(X[:, 0, 0], y)
    with pytest.raises(ValueError, match="got a 4D array of shape"):
        est.fit(X[..., None], y)
    with pytest.raises(ValueError, match="0 timestep"):
        est.fit(np.empty((12, 0, 2)), y)
    with pytest.raises(ValueError, match="0 sample"):
        est.fit(np.empty((0, 4, 2)), y[:0])
    with pytest.raises(ValueError, match="requires y to be passed"):
        est.fit(X, None)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:5])
    _fit_quiet(est, X, y)
    with pytest.raises(ValueError, match="X has 3 features, but .* is expecting 2 features"):
        est.predict(rng.standard_normal((3, 4, 3)))


@pytest.mark.parametrize("param, value", [
    ("optimizer", "rmsprop"), ("output", "all"), ("cell", "transformer"),
    ("learning_rate", -1.0), ("clip_norm", 0.0), ("truncate", 0),
    ("hidden_size", 0), ("batch_size", "big"), ("dtype", "float16"),
    ("validation_fraction", 1.0),
])
def test_unknown_parameter_values(param, value, seq_data):
    X, y = seq_data
    est = RNNRegressor(**{param: value})
    with pytest.raises(ValueError, match=f"The '{param}' parameter of RNNRegressor"):
        est.fit(X, y)


def test_classifier_target_errors(rng):
    X = rng.standard_normal((10, 3, 1))
    with pytest.raises(ValueError, match="Unknown label type"):
        RNNClassifier().fit(X, rng.standard_normal(10))
    with pytest.raises(ValueError, match="at least 2 classes"):
        RNNClassifier().fit(X, np.ones(10))


# ---------------------------------------------------------------- training semantics
def test_same_seed_same_model_bit_for_bit(seq_data):
    X, y = seq_data
    a = _fit_quiet(_fast(RNNRegressor, random_state=3), X, y)
    b = _fit_quiet(_fast(RNNRegressor, random_state=3), X, y)
    c = _fit_quiet(_fast(RNNRegressor, random_state=4), X, y)
    assert _params_equal(a, b) and a.loss_curve_ == b.loss_curve_
    assert not _params_equal(a, c)
    # refitting the same estimator gives the same model too
    _fit_quiet(a, X, y)
    assert _params_equal(a, b)


def _record_steps(est):
    """Make ``est`` record its weights before and after every optimizer step."""
    steps = []
    step = est._step

    def recording_step(grads, *args):
        before = {k: v.copy() for k, v in est.net_.params.items()}
        penalty = step(grads, *args)
        steps.append((before, {k: v.copy() for k, v in est.net_.params.items()}))
        return penalty

    est._step = recording_step
    return steps


_SGD_ONE_BATCH = dict(optimizer="sgd", learning_rate=0.1, max_epochs=1, shuffle=False,
                      clip_norm=None, random_state=0, cell="rnn", dtype="float64")


def _net_with(params, like):
    net = RNN(like.input_size, like.hidden_size, like.output_size,
              output_activation=like.output_activation)
    net.params = params
    return net


def test_truncated_last_first_update_matches_loss_and_grad(seq_data):
    X, y = seq_data  # T = 7, windows [0,3) [3,6) [6,7): only the last has a loss
    est = RNNRegressor(hidden_size=5, batch_size=40, truncate=3, **_SGD_ONE_BATCH)
    steps = _record_steps(est)
    _fit_quiet(est, X, y)
    assert len(steps) == 1  # output="last": one update per batch
    before, after = steps[0]
    init = _net_with(before, est.net_)
    _, grads = init.loss_and_grad(X, y, loss="mse", output="last", truncate=3)
    for k, g in grads.items():
        np.testing.assert_allclose(after[k], before[k] - 0.1 * g, rtol=1e-10, atol=1e-13)
    # the truncation matters: full BPTT would give another step
    _, full = init.loss_and_grad(X, y, loss="mse", output="last")
    assert not np.allclose(full["W_hh"], grads["W_hh"])


def test_truncated_sequence_updates_after_each_window(rng):
    X = rng.standard_normal((10, 9, 2))
    y = np.cumsum(X[:, :, 0], axis=1)
    k, lr = 4, 0.1
    est = RNNRegressor(hidden_size=4, batch_size=10, truncate=k, output="sequence",
                       **_SGD_ONE_BATCH)
    steps = _record_steps(est)
    _fit_quiet(est, X, y)
    assert len(steps) == 3  # windows [0,4) [4,8) [8,9)
    # the first update is loss_and_grad's with the same truncate on the first window
    net = _net_with(steps[0][0], est.net_)
    _, g = net.loss_and_grad(X[:, :k], y[:, :k], output="sequence", truncate=k)
    for name in g:
        np.testing.assert_allclose(steps[0][1][name], steps[0][0][name] - lr * g[name],
                                   rtol=1e-10, atol=1e-13)
    # every later window starts from the state carried out of the previous one
    state = None
    for i, s in enumerate(range(0, 9, k)):
        net = _net_with(steps[i][0], est.net_)
        _, g = net.loss_and_grad(X[:, s:s + k], y[:, s:s + k], output="sequence", h0=state)
        for name in g:
            np.testing.assert_allclose(steps[i][1][name], steps[i][0][name] - lr * g[name],
                                       rtol=1e-10, atol=1e-13)
        state = net.forward(X[:, s:s + k], h0=state)[1]
    # the reported loss is the mean over all timesteps of the windows' losses
    assert len(est.loss_curve_) == 1 and np.isfinite(est.loss_curve_[0])


def test_clip_norm_bounds_the_update(seq_data):
    X, y = seq_data
    y = 100 * y  # large targets: large gradients
    sizes = {}
    for clip, lr in [(0.5, 0.1), (2.0, 0.01), (None, 0.01)]:
        est = RNNRegressor(hidden_size=5, batch_size=40, **{**_SGD_ONE_BATCH,
                                                            "clip_norm": clip,
                                                            "learning_rate": lr})
        steps = _record_steps(est)
        _fit_quiet(est, X, y)
        before, after = steps[0]
        sizes[clip] = np.sqrt(sum(((after[k] - before[k])**2).sum() for k in before))
        _, grads = _net_with(before, est.net_).loss_and_grad(X, y, output="last")
        gnorm = np.sqrt(sum((g**2).sum() for g in grads.values()))
        assert gnorm > 10
        # the step is lr * min(||g||, clip_norm)
        expected = lr * (gnorm if clip is None else min(gnorm, clip))
        np.testing.assert_allclose(sizes[clip], expected, rtol=1e-9)
    assert sizes[0.5] <= 0.1 * 0.5 * (1 + 1e-9)


def test_early_stopping_restores_best_weights(seq_data):
    X, y = seq_data
    est = RNNRegressor(hidden_size=8, learning_rate=0.05, max_epochs=40, early_stopping=True,
                       validation_fraction=0.25, n_iter_no_change=3, random_state=0)
    _fit_quiet(est, X, y)
    scores = est.validation_scores_
    assert len(scores) == est.n_iter_ == len(est.loss_curve_)
    assert est.best_validation_score_ == max(scores)
    best_epoch = int(np.argmax(scores))
    assert best_epoch < len(scores) - 1  # it ran past the best epoch ...
    # ... and the restored weights are the best epoch's: rerun to that epoch.
    again = RNNRegressor(**{**est.get_params(), "max_epochs": best_epoch + 1,
                            "n_iter_no_change": 1000})
    _fit_quiet(again, X, y)
    assert _params_equal(est, again)


def test_warm_start_continues(seq_data):
    X, y = seq_data
    kw = dict(hidden_size=5, max_epochs=3, shuffle=False, random_state=0, tol=0.0,
              n_iter_no_change=100)
    a = _fit_quiet(RNNRegressor(warm_start=True, **kw), X, y)
    first = {k: v.copy() for k, v in a.net_.params.items()}
    _fit_quiet(a, X, y)
    assert a.n_iter_ == 6 and len(a.loss_curve_) == 6
    assert not all(np.array_equal(first[k], a.net_.params[k]) for k in first)
    cold = _fit_quiet(RNNRegressor(warm_start=False, **kw), X, y)
    _fit_quiet(cold, X, y)
    assert cold.n_iter_ == 3  # without warm_start fit starts over
    # continuing for 3 epochs from the weights of 3 epochs: loss keeps going down
    assert a.loss_curve_[3] < a.loss_curve_[0]
    with pytest.raises(ValueError, match="hidden_size from 5 to 7"):
        a.set_params(hidden_size=7).fit(X, y)


@pytest.mark.parametrize("shuffle", [False, True])
def test_partial_fit_equals_fit_epochs(seq_data, shuffle):
    X, y = seq_data
    kw = dict(hidden_size=5, shuffle=shuffle, random_state=0, batch_size=16)
    fitted = _fit_quiet(RNNRegressor(max_epochs=3, tol=0.0, n_iter_no_change=100, **kw),
                        X, y)
    inc = RNNRegressor(**kw)
    for _ in range(3):
        inc.partial_fit(X, y)
    assert inc.n_iter_ == 3
    assert _params_equal(fitted, inc)
    assert inc.loss_curve_ == fitted.loss_curve_


def test_partial_fit_over_chunks_classifier(rng):
    X, y = _class_data(rng, n=60)
    clf = RNNClassifier(hidden_size=6, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X[:20], y[:20])
    for chunk in range(3):
        sl = slice(20 * chunk, 20 * chunk + 20)
        clf.partial_fit(X[sl], y[sl], classes=["cat", "dog", "emu"] if chunk == 0 else None)
    assert clf.n_iter_ == 3
    np.testing.assert_array_equal(clf.classes_, ["cat", "dog", "emu"])
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        clf.partial_fit(X[:4], np.array(["cat", "dog", "gnu", "emu"]))
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit(X[:4], y[:4], classes=["cat", "dog"])


def test_convergence_warning_and_convergence(seq_data):
    X, y = seq_data
    with pytest.warns(ConvergenceWarning, match="max_epochs=2"):
        _fast(RNNRegressor, max_epochs=2).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = _fast(RNNRegressor, max_epochs=500, tol=1.0, n_iter_no_change=2).fit(X, y)
    # the first epoch sets best_loss_; no later one improves it by tol=1, and
    # training stops once that has happened more than n_iter_no_change times
    assert est.n_iter_ == 4


def test_divergence_raises_and_keeps_finite_weights(seq_data):
    X, y = seq_data
    y = 1e3 * y
    est = RNNRegressor(hidden_size=5, nonlinearity="relu", init="identity", optimizer="sgd",
                       learning_rate=1.0, clip_norm=None, max_epochs=20, random_state=0,
                       cell="rnn", dtype="float64")
    with pytest.raises(FloatingPointError,
                       match=r"diverged in epoch 2 .*clip_norm.*lower learning_rate"):
        est.fit(X, y)
    assert all(np.isfinite(p).all() for p in est.net_.params.values())
    assert est.n_iter_ == 1 and np.isfinite(est.loss_curve_).all()
    # with clipping and a sane step the same data trains
    _fit_quiet(est.set_params(learning_rate=1e-3, clip_norm=1.0, max_epochs=2), X, y)
    assert np.isfinite(est.predict(X)).all()


def test_non_finite_update_is_not_applied(seq_data):
    X, y = seq_data
    est = _fit_quiet(_fast(RNNRegressor, max_epochs=1, clip_norm=None), X, y)
    before = {k: v.copy() for k, v in est.net_.params.items()}
    grads = {k: np.zeros_like(v) for k, v in before.items()}
    grads["W_hh"][0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="non-finite"):
        est._step(grads, 1.0)
    for k in before:
        np.testing.assert_array_equal(est.net_.params[k], before[k])


def test_verbose_prints_epochs(seq_data, capsys):
    X, y = seq_data
    est = RNNRegressor(hidden_size=4, max_epochs=3, early_stopping=True, verbose=2,
                       n_iter_no_change=100, random_state=0)
    _fit_quiet(est, X, y)
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 3
    assert "loss = " in out and "validation score = " in out and "time = " in out


def test_verbose_progress_bar(seq_data, capsys):
    pytest.importorskip("tqdm")
    X, y = seq_data
    _fit_quiet(RNNRegressor(hidden_size=4, max_epochs=3, verbose=1, random_state=0), X, y)
    out = capsys.readouterr()
    assert "3/3" in out.out + out.err and "loss=" in out.out + out.err


def test_predict_does_not_mutate_and_is_thread_safe(rng):
    X, y = _class_data(rng, n=64, T=12)
    clf = _fit_quiet(_fast(RNNClassifier), X, y)
    state = pickle.dumps(clf)
    expected = clf.predict_proba(X)
    results = [None] * 4

    def work(i):
        results[i] = [clf.predict_proba(X) for _ in range(20)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for res in results:
        for r in res:
            np.testing.assert_array_equal(r, expected)
    assert pickle.dumps(clf) == state


def test_input_not_modified(seq_data):
    X, y = seq_data
    X0, y0 = X.copy(), y.copy()
    reg = _fit_quiet(_fast(RNNRegressor), X, y)
    reg.predict(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_pickle_and_deepcopy_round_trip(rng):
    X, y = _class_data(rng)
    clf = _fit_quiet(_fast(RNNClassifier), X, y)
    for other in (pickle.loads(pickle.dumps(clf)), copy.deepcopy(clf)):
        np.testing.assert_array_equal(other.predict_proba(X), clf.predict_proba(X))
        np.testing.assert_array_equal(other.classes_, clf.classes_)
        other.partial_fit(X, y)  # still trainable
    assert clf.net_.params is not other.net_.params


def test_adam_momentum_sgd_all_learn(seq_data):
    X, y = seq_data
    for opt, lr in [("sgd", 0.05), ("momentum", 0.02), ("adam", 0.01)]:
        est = _fit_quiet(RNNRegressor(hidden_size=8, optimizer=opt, learning_rate=lr,
                                      max_epochs=15, random_state=0), X, y)
        assert est.loss_curve_[-1] < 0.7 * est.loss_curve_[0], opt


def test_check_classifiers_train_fails_only_on_shorter_series():
    # The xfail above hides which assertion fails: make sure the accuracy,
    # shape and proba assertions pass and only the variable-length one fails.
    from sklearn.utils.estimator_checks import check_classifiers_train

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.raises(AssertionError,
                           match="number of features in predict is different"):
            check_classifiers_train("RNNClassifier", RNNClassifier(random_state=0))


@pytest.mark.parametrize("module", ["bptt.estimators", "bptt.persistence"])
def test_docstring_examples(module):
    import doctest
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = doctest.testmod(importlib.import_module(module), verbose=False)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- divergence
def _sine_windows():
    series = np.sin(np.arange(400) * 0.2)
    return np.stack([series[i:i + 10] for i in range(380)]), series[10:390]


class _Recorded(RNNRegressor):
    """Records the initial weights and the weights at the end of each epoch;
    with ``scripted`` (a loss per epoch) reports those losses instead of the
    real ones (the updates are real)."""

    scripted = None

    def _train_batch(self, X, y, *args):
        if not hasattr(self, "initial"):
            self.initial = {k: v.copy() for k, v in self.net_.params.items()}
        loss = super()._train_batch(X, y, *args)
        return loss if self.scripted is None else self.scripted[self.n_iter_]

    def _report(self, *args):
        self.epoch_ends = getattr(self, "epoch_ends", []) + [
            {k: v.copy() for k, v in self.net_.params.items()}]
        super()._report(*args)


def test_exploded_fit_warns_and_keeps_the_initial_weights():
    """Issue 16 item 7: SGD with learning_rate=1e6 (clip_norm=5 by default)
    blows the loss up by orders of magnitude from the first step on: fit
    warns, naming the rise, and returns the initial weights, the best it had."""
    X, y = _sine_windows()
    est = _Recorded(hidden_size=16, optimizer="sgd", learning_rate=1e6, max_epochs=15,
                    random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"training diverged: the training loss "
                      r"rose from .* \(the initial weights\) to .*the initial weights "
                      r"are restored.*lower learning_rate"):
        est.fit(X, y)
    assert est.loss_curve_[-1] > 1e6  # what happened stays on record
    for k in est.initial:
        np.testing.assert_array_equal(est.net_.params[k], est.initial[k])
    assert est.score(X, y) > -10  # the untrained net's, not -1e13
    assert not hasattr(est, "_best_params")


@pytest.mark.parametrize("early_stopping", [False, True])
def test_exploded_fit_warns_with_early_stopping_too(early_stopping):
    X, y = _sine_windows()
    est = RNNRegressor(hidden_size=16, optimizer="sgd", learning_rate=1e6, max_epochs=12,
                       early_stopping=early_stopping, random_state=0)
    with pytest.warns(ConvergenceWarning, match="training diverged"):
        est.fit(X, y)
    assert np.isfinite(est.predict(X)).all()


@pytest.mark.parametrize("last,diverged", [(1.5, True), (0.9, False)])
def test_fit_ending_far_above_its_best_epoch(seq_data, last, diverged):
    """A last epoch more than 10 times above the lowest loss restores that
    epoch's weights and warns; below that, the last weights stay."""
    X, y = seq_data
    est = _Recorded(hidden_size=6, max_epochs=5, tol=0.0, n_iter_no_change=100,
                    random_state=0)
    est.scripted = [0.5, 0.2, 0.1, 0.3, last]  # lowest: epoch 3
    if diverged:
        with pytest.warns(ConvergenceWarning, match=r"rose from 0.1 \(epoch 3\) to 1.5 "
                          r"\(epoch 5\).*the weights of epoch 3 are restored"):
            est.fit(X, y)
        kept = est.epoch_ends[2]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ConvergenceWarning, match="max_epochs=5"):
                est.fit(X, y)
        kept = est.epoch_ends[-1]
    assert est.loss_curve_ == est.scripted
    for k in kept:
        np.testing.assert_array_equal(est.net_.params[k], kept[k])
