"""bptt.SequenceScaler: per-channel statistics over all timesteps, every
input form of the design's ragged input, streaming, and scikit-learn's checks."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import bptt
from bptt import RNNRegressor, SequenceScaler

from helpers import SERIES_TRANSFORMER_EXPECTED_FAILED


@parametrize_with_checks([SequenceScaler()], expected_failed_checks=lambda est:
                         SERIES_TRANSFORMER_EXPECTED_FAILED)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_expected_failures_fail_only_where_the_reason_says():
    # The xfails above hide which assertion fails: pin it, so an earlier
    # assertion of those checks cannot start failing unnoticed.
    from sklearn.utils.estimator_checks import (check_estimators_empty_data_messages,
                                                check_transformer_data_not_an_array,
                                                check_transformer_general)

    with pytest.raises(AssertionError, match="number of features in transform is "
                                             "different from the number of features in fit"):
        check_transformer_general("SequenceScaler", SequenceScaler())
    # the _NotAnArray pass runs first and passes; the list pass gets a list back
    with pytest.raises(AttributeError, match="'list' object has no attribute 'shape'"):
        check_transformer_data_not_an_array("SequenceScaler", SequenceScaler())
    with pytest.raises(AssertionError, match=r"Got Found array with 0 timestep\(s\) "
                                             r"\(shape=\(12, 0\)\)"):
        check_estimators_empty_data_messages("SequenceScaler", SequenceScaler())


# ---------------------------------------------------------------- helpers
def _ragged(rng, lengths=(7, 3, 1, 5), F=3, loc=(2.0, -1.0, 40.0), scale=(0.5, 3.0, 2.0)):
    """A list of (T_i, F) series with channel means and scales far from 0 and 1."""
    return [rng.normal(loc, scale, size=(T, F)) for T in lengths]


def _padded(seqs):
    """The list as one NaN-padded (n, max T_i, F) array."""
    T = max(len(s) for s in seqs)
    out = np.full((len(seqs), T, seqs[0].shape[1]), np.nan)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


def _assert_stats(scaler, timesteps, weights=None):
    mean = np.average(timesteps, axis=0, weights=weights)
    var = np.average((timesteps - mean) ** 2, axis=0, weights=weights)
    np.testing.assert_allclose(scaler.mean_, mean, rtol=1e-12)
    np.testing.assert_allclose(scaler.var_, var, rtol=1e-10)
    np.testing.assert_allclose(scaler.scale_, np.sqrt(var), rtol=1e-10)


# ---------------------------------------------------------------- statistics
def test_statistics_are_numpys_over_the_concatenated_timesteps(rng):
    X = rng.normal([1.0, -5.0], [2.0, 0.1], size=(6, 9, 2))
    scaler = SequenceScaler().fit(X)
    _assert_stats(scaler, X.reshape(-1, 2))
    assert scaler.n_features_in_ == 2 and scaler.n_samples_seen_ == 54
    # per channel, not per timestep: one number per channel
    assert scaler.mean_.shape == scaler.scale_.shape == scaler.var_.shape == (2,)
    Z = scaler.transform(X).reshape(-1, 2)
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(0), 1, rtol=1e-12)
    # the same as StandardScaler on the stacked timesteps
    np.testing.assert_allclose(Z, StandardScaler().fit_transform(X.reshape(-1, 2)),
                               rtol=1e-12, atol=1e-12)


def test_list_padded_and_3d_forms_give_the_same_numbers(rng):
    seqs = _ragged(rng)
    stacked = np.concatenate(seqs)
    from_list = SequenceScaler().fit(seqs)
    from_padded = SequenceScaler().fit(_padded(seqs))
    _assert_stats(from_list, stacked)
    for name in ("mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_"):
        np.testing.assert_allclose(getattr(from_padded, name), getattr(from_list, name),
                                   rtol=1e-13, err_msg=name)
    assert from_list.n_samples_seen_ == sum(len(s) for s in seqs) == 16
    # equal lengths: list, 3-D array and (for one channel) the 2-D array agree
    equal = [s[:1] for s in seqs]
    a = SequenceScaler().fit(np.stack(equal))
    b = SequenceScaler().fit(equal)
    np.testing.assert_allclose(a.scale_, b.scale_, rtol=1e-13)
    uni = rng.normal(3.0, 2.0, size=(4, 6))
    c = SequenceScaler().fit(uni)
    d = SequenceScaler().fit(uni[:, :, None])
    e = SequenceScaler().fit(list(uni))
    assert c.n_features_in_ == 1
    for other in (d, e):
        np.testing.assert_allclose(other.mean_, c.mean_, rtol=1e-13)
        np.testing.assert_allclose(other.scale_, c.scale_, rtol=1e-13)


def test_transform_returns_each_form_and_the_same_values(rng):
    seqs = _ragged(rng)
    scaler = SequenceScaler().fit(seqs)
    out_list = scaler.transform(seqs)
    out_padded = scaler.transform(_padded(seqs))
    assert isinstance(out_list, list) and len(out_list) == len(seqs)
    for i, (z, s) in enumerate(zip(out_list, seqs)):
        assert z.shape == s.shape
        np.testing.assert_allclose(z, (s - scaler.mean_) / scaler.scale_, rtol=1e-13)
        np.testing.assert_allclose(out_padded[i, :len(s)], z, rtol=1e-13)
    # univariate list elements (T_i,) come back as (T_i,), a 2-D array as 2-D
    uni = [s[:, 0] for s in seqs]
    scaler1 = SequenceScaler().fit(uni)
    assert [z.shape for z in scaler1.transform(uni)] == [u.shape for u in uni]
    assert scaler1.transform(np.zeros((2, 5))).shape == (2, 5)


def test_nan_padding_passes_through_untouched(rng):
    seqs = _ragged(rng)
    P = _padded(seqs)
    P_before = P.copy()
    scaler = SequenceScaler().fit(P)
    out = scaler.transform(P)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(P))
    np.testing.assert_array_equal(P, P_before)  # the input is not modified
    back = scaler.inverse_transform(out)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(P))
    np.testing.assert_allclose(back, P, rtol=1e-12)  # NaN compare equal here
    # 2-D univariate padding as well
    U = P[:, :, 0]
    out = SequenceScaler().fit_transform(U)
    assert out.shape == U.shape
    np.testing.assert_array_equal(np.isnan(out), np.isnan(U))


def test_inverse_transform_round_trip_in_every_form(rng):
    seqs = _ragged(rng)
    scaler = SequenceScaler().fit(seqs)
    for X in (seqs, _padded(seqs), np.stack([s[:1] for s in seqs]),
              rng.normal(size=(3, 4, 3))):
        back = scaler.inverse_transform(scaler.transform(X))
        if isinstance(X, list):
            for b, x in zip(back, X):
                np.testing.assert_allclose(b, x, rtol=1e-12)
        else:
            np.testing.assert_allclose(back, X, rtol=1e-12)


def test_transform_takes_another_length_but_not_another_channel_count(rng):
    X = rng.normal(size=(5, 8, 2))
    scaler = SequenceScaler().fit(X)
    for T in (1, 3, 20):
        assert scaler.transform(rng.normal(size=(2, T, 2))).shape == (2, T, 2)
    with pytest.raises(ValueError, match="X has 3 features, but SequenceScaler is "
                                         "expecting 2 features"):
        scaler.transform(rng.normal(size=(2, 8, 3)))
    with pytest.raises(ValueError, match="X has 1 features.*2-D X is read as univariate"):
        scaler.transform(rng.normal(size=(2, 8)))
    with pytest.raises(ValueError, match="X has 1 features"):
        scaler.inverse_transform([rng.normal(size=4)])
    with pytest.raises(ValueError, match="expecting 2 features"):
        scaler.partial_fit(rng.normal(size=(2, 8, 3)))


def test_constant_channel_gets_scale_one_as_standard_scaler(rng):
    X = rng.normal(size=(4, 6, 3))
    X[:, :, 1] = 7.3  # constant channel, with a mean that rounds
    scaler = SequenceScaler().fit(X)
    reference = StandardScaler().fit(X.reshape(-1, 3))
    np.testing.assert_allclose(scaler.scale_, reference.scale_, rtol=1e-12)
    assert scaler.scale_[1] == 1.0
    np.testing.assert_allclose(scaler.transform(X)[:, :, 1], 0.0, atol=1e-14)


def test_dtypes_float32_stays_float32_ints_become_float64(rng):
    X = rng.normal(size=(4, 5, 2))
    scaler = SequenceScaler().fit(X)
    out32 = scaler.transform(X.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, scaler.transform(X), rtol=1e-5, atol=1e-6)
    assert scaler.inverse_transform(out32).dtype == np.float32
    list32 = scaler.transform([x.astype(np.float32) for x in X])
    assert all(z.dtype == np.float32 for z in list32)
    # float32 training data: statistics still accumulated in float64
    f32 = SequenceScaler().fit(X.astype(np.float32))
    np.testing.assert_allclose(f32.mean_, X.astype(np.float32).reshape(-1, 2)
                               .astype(np.float64).mean(0), rtol=1e-12)
    assert SequenceScaler().fit_transform(np.arange(12).reshape(2, 3, 2)).dtype == np.float64


def test_copy_false_scales_a_float_array_in_place_and_copy_true_never(rng):
    X = rng.normal(2.0, 3.0, size=(3, 4, 2))
    original = X.copy()
    scaler = SequenceScaler().fit(X)
    out = scaler.transform(X)
    np.testing.assert_array_equal(X, original)
    inplace = SequenceScaler(copy=False).fit(X).transform(X)
    assert np.shares_memory(inplace, X)
    np.testing.assert_allclose(inplace, out, rtol=1e-13)
    # a read-only array is copied rather than written
    ro = original.copy()
    ro.flags.writeable = False
    np.testing.assert_allclose(SequenceScaler(copy=False).fit(ro).transform(ro), out,
                               rtol=1e-13)


def test_with_mean_and_with_std_switches(rng):
    X = rng.normal(5.0, 2.0, size=(4, 6, 2))
    Z = X.reshape(-1, 2)
    no_mean = SequenceScaler(with_mean=False).fit(X)
    np.testing.assert_allclose(no_mean.transform(X), X / Z.std(0), rtol=1e-12)
    no_std = SequenceScaler(with_std=False).fit(X)
    assert no_std.scale_ is None and no_std.var_ is None
    np.testing.assert_allclose(no_std.transform(X), X - Z.mean(0), rtol=1e-12)
    neither = SequenceScaler(with_mean=False, with_std=False).fit(X)
    assert neither.mean_ is None and neither.n_samples_seen_ == 24
    np.testing.assert_array_equal(neither.transform(X), X)
    for scaler in (no_mean, no_std, neither):
        np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(X)), X,
                                   rtol=1e-12)


# ---------------------------------------------------------------- weights, streaming
def test_sample_weight_weights_each_series_like_repeating_it(rng):
    seqs = _ragged(rng)
    w = np.array([2, 0, 1, 3])
    weighted = SequenceScaler().fit(seqs, sample_weight=w)
    repeated = SequenceScaler().fit([s for s, k in zip(seqs, w) for _ in range(k)])
    for name in ("mean_", "var_", "scale_"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(repeated, name),
                                   rtol=1e-12, err_msg=name)
    assert weighted.n_samples_seen_ == repeated.n_samples_seen_ == 2 * 7 + 1 + 3 * 5
    _assert_stats(weighted, np.concatenate(seqs), np.repeat(w, [7, 3, 1, 5]))
    padded = SequenceScaler().fit(_padded(seqs), sample_weight=w)
    np.testing.assert_allclose(padded.scale_, weighted.scale_, rtol=1e-12)
    # fit_transform passes it on (TransformerMixin)
    out = SequenceScaler().fit_transform(seqs, sample_weight=w)
    np.testing.assert_allclose(out[0], weighted.transform(seqs)[0], rtol=1e-13)


def test_bad_sample_weight(rng):
    seqs = _ragged(rng)
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(3,\), expected \(4,\)"):
        SequenceScaler().fit(seqs, sample_weight=[1, 2, 3])
    with pytest.raises(ValueError, match="Negative values in data passed to .sample_weight"):
        SequenceScaler().fit(seqs, sample_weight=[1, -1, 1, 1])
    with pytest.raises(ValueError, match="weight.*zero|zero.*weight"):
        SequenceScaler().fit(seqs, sample_weight=[0, 0, 0, 0])


@pytest.mark.parametrize("weighted", [False, True])
def test_partial_fit_equals_fit(rng, weighted):
    seqs = _ragged(rng, lengths=(7, 3, 1, 5, 9, 2))
    # channel 2 has mean 40: the pairwise update must not lose its variance
    w = rng.uniform(0.5, 2.0, size=6) if weighted else None
    full = SequenceScaler().fit(seqs, sample_weight=w)
    streamed = SequenceScaler()
    # batches in different forms: a list, a padded array, one series
    batches = [(seqs[:2], slice(0, 2)), (_padded(seqs[2:5]), slice(2, 5)),
               ([seqs[5]], slice(5, 6))]
    for X, part in batches:
        streamed.partial_fit(X, sample_weight=None if w is None else w[part])
    for name in ("mean_", "var_", "scale_", "n_samples_seen_"):
        np.testing.assert_allclose(getattr(streamed, name), getattr(full, name),
                                   rtol=1e-12, err_msg=name)
    # fit starts again; partial_fit continues
    again = clone(streamed).fit(seqs[:2])
    np.testing.assert_allclose(again.mean_, np.concatenate(seqs[:2]).mean(0), rtol=1e-12)


def test_partial_fit_stays_accurate_with_a_large_mean(rng):
    # float32 data around 1e4 with unit spread, in 50 batches: the variance
    # must match the float64 two-pass value, not lose digits to the mean
    X = (1e4 + rng.standard_normal((200, 30, 1))).astype(np.float32)
    streamed = SequenceScaler()
    for k in range(0, 200, 4):
        streamed.partial_fit(X[k:k + 4])
    exact = X.astype(np.float64).reshape(-1, 1)
    np.testing.assert_allclose(streamed.var_, exact.var(0), rtol=1e-9)
    np.testing.assert_allclose(streamed.mean_, exact.mean(0), rtol=1e-12)


# ---------------------------------------------------------------- bad input
def _bad_inputs():
    ok = np.zeros((2, 4, 2))
    partial = ok.copy()
    partial[0, 3, 1] = np.nan  # some but not all channels of a timestep
    gap = ok.copy()
    gap[1, 1] = np.nan  # a NaN timestep followed by real ones
    empty_series = ok.copy()
    empty_series[0] = np.nan  # T_i = 0
    inf = ok.copy()
    inf[1, 0, 0] = np.inf
    list_nan = [np.zeros((3, 2)), np.array([[0.0, 1.0], [np.nan, np.nan]])]
    return [
        (partial, ValueError, "some but not all features of timestep 3 of sequence 0"),
        (gap, ValueError, "NaN at timestep 1 of sequence 1, followed by real timesteps"),
        (empty_series, ValueError, "NaN in every timestep of sequence 0"),
        (inf, ValueError, "infinity"),
        (np.zeros(5), ValueError, "got a 1D array of shape.*Reshape your data"),
        (np.zeros((2, 3, 4, 1)), ValueError, "got a 4D array"),
        (np.zeros((0, 3, 2)), ValueError, "0 sample"),
        (np.zeros((2, 0, 2)), ValueError, "0 timestep"),
        (np.zeros((2, 0)), ValueError, "0 timestep"),
        (np.zeros((2, 3, 0)), ValueError, "0 feature"),
        ([], ValueError, "empty list of sequences"),
        ([np.zeros((3, 2)), np.zeros((0, 2))], ValueError, r"X\[1\] has 0 timesteps"),
        ([np.zeros((3, 2)), np.zeros((3, 4))], ValueError,
         r"same number of features: X\[0\] has 2, X\[1\] has 4"),
        ([np.zeros((3, 2, 1))], ValueError, r"X\[0\] of shape \(3, 2, 1\)"),
        (list_nan, ValueError, r"X\[1\] contains NaN.*without padding"),
        ([np.array([1.0, np.inf])], ValueError, r"X\[0\] contains infinity"),
        (np.array([["a", "b"]]), ValueError, "dtype|string|convert"),
        (np.zeros((2, 3), dtype=complex), ValueError, "Complex data not supported"),
    ]


@pytest.mark.parametrize("X,error,match", _bad_inputs())
def test_bad_input_gets_a_clear_error(X, error, match):
    with pytest.raises(error, match=match):
        SequenceScaler().fit(X)
    fitted = SequenceScaler().fit(np.ones((2, 3, 2)))
    if not (isinstance(X, np.ndarray) and X.ndim == 3 and X.shape[2] != 2):
        with pytest.raises(error, match=match):
            fitted.transform(X)


def test_sparse_input_and_unfitted_and_bad_params():
    import scipy.sparse as sp

    with pytest.raises(TypeError, match="sparse"):
        SequenceScaler().fit(sp.csr_matrix(np.ones((3, 4))))
    with pytest.raises(NotFittedError):
        SequenceScaler().transform(np.ones((2, 3)))
    with pytest.raises(NotFittedError):
        SequenceScaler().inverse_transform(np.ones((2, 3)))
    with pytest.raises(ValueError, match="with_mean"):
        SequenceScaler(with_mean="yes").fit(np.ones((2, 3)))


def test_pickle_and_clone_keep_the_statistics(rng):
    X = rng.normal(size=(3, 5, 2))
    scaler = SequenceScaler().fit(X)
    restored = pickle.loads(pickle.dumps(scaler))
    np.testing.assert_array_equal(restored.transform(X), scaler.transform(X))
    assert clone(scaler).get_params() == {"copy": True, "with_mean": True, "with_std": True}


# ---------------------------------------------------------------- in a Pipeline
def test_pipeline_with_rnn_regressor_fits_and_predicts_any_length(rng):
    # channel scales 100 and 0.01: standardised, the network sees unit inputs
    X = rng.standard_normal((60, 10, 2)) * [100.0, 0.01] + [500.0, -3.0]
    y = (X[:, :, 0] - 500.0).mean(1) / 100.0 + (X[:, -1, 1] + 3.0) / 0.01
    pipe = make_pipeline(SequenceScaler(), RNNRegressor(hidden_size=8, max_epochs=30,
                                                        random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X, y)
    scaler, reg = pipe.steps[0][1], pipe.steps[1][1]
    np.testing.assert_allclose(scaler.mean_, X.reshape(-1, 2).mean(0), rtol=1e-12)
    assert reg.n_features_in_ == 2
    assert pipe.score(X, y) > 0.5  # learns from the scaled input
    # the network saw the scaled series
    np.testing.assert_allclose(pipe.predict(X[:5]), reg.predict(scaler.transform(X[:5])))
    # series of another length at predict time
    for T in (3, 25):
        assert pipe.predict(rng.standard_normal((4, T, 2)) * 100.0).shape == (4,)
    # univariate 2-D input through the whole pipeline
    U = rng.standard_normal((30, 12)) * 50.0
    uni = make_pipeline(SequenceScaler(), RNNRegressor(hidden_size=4, max_epochs=2,
                                                       random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        uni.fit(U, U.mean(1))
    assert uni.predict(rng.standard_normal((3, 7))).shape == (3,)


def test_public_name():
    assert bptt.SequenceScaler is SequenceScaler
    assert "SequenceScaler" in bptt.__all__


def test_docstring_examples():
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module("bptt.preprocessing"))
    assert result.attempted > 0 and result.failed == 0
