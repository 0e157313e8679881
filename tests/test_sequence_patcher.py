"""bptt.SequencePatcher: consecutive timesteps concatenated into one, every
input form of the design's ragged input, and scikit-learn's checks."""

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from bptt import RNNClassifier, SequencePatcher, SequenceScaler

from helpers import SERIES_TRANSFORMER_EXPECTED_FAILED


@parametrize_with_checks([SequencePatcher(max_steps=2)], expected_failed_checks=lambda est:
                         SERIES_TRANSFORMER_EXPECTED_FAILED)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_expected_failures_fail_only_where_the_reason_says():
    from sklearn.utils.estimator_checks import (check_estimators_empty_data_messages,
                                                check_transformer_general)

    with pytest.raises(AssertionError, match="number of features in transform is "
                                             "different from the number of features in fit"):
        check_transformer_general("SequencePatcher", SequencePatcher(max_steps=2))
    with pytest.raises(AssertionError, match=r"Got Found array with 0 timestep\(s\) "
                                             r"\(shape=\(12, 0\)\)"):
        check_estimators_empty_data_messages("SequencePatcher", SequencePatcher(max_steps=2))


def _by_loop(x, p):
    """The textbook definition: step j holds timesteps j*p .. j*p+p-1 side by
    side, the last real timestep repeated to fill the last patch."""
    T, F = x.shape
    steps = -(-T // p)
    out = np.empty((steps, p * F))
    for j in range(steps):
        for k in range(p):
            out[j, k * F:(k + 1) * F] = x[min(j * p + k, T - 1)]
    return out


@pytest.mark.parametrize("T,max_steps,p", [(12, 4, 3), (13, 4, 4), (5, 2, 3), (7, 7, 1),
                                           (7, 100, 1), (9, 1, 9)])
def test_patch_length_and_values_match_the_definition(T, max_steps, p):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, T, 2))
    patcher = SequencePatcher(max_steps=max_steps).fit(X)
    assert patcher.patch_length_ == p
    assert patcher.n_features_in_ == 2
    Z = patcher.transform(X)
    assert Z.shape == (3, -(-T // p), 2 * p)
    assert Z.shape[1] <= max_steps
    for i in range(3):
        np.testing.assert_array_equal(Z[i], _by_loop(X[i], p))


def test_ragged_list_and_nan_padding_agree():
    rng = np.random.default_rng(1)
    lengths = (10, 3, 1, 7)
    seqs = [rng.normal(size=(T, 3)) for T in lengths]
    padded = np.full((4, 10, 3), np.nan)
    for i, s in enumerate(seqs):
        padded[i, :len(s)] = s
    patcher = SequencePatcher(max_steps=4).fit(seqs)
    assert patcher.patch_length_ == 3  # ceil(10 / 4), from the longest series
    assert SequencePatcher(max_steps=4).fit(padded).patch_length_ == 3
    out_list = patcher.transform(seqs)
    out_padded = patcher.transform(padded)
    assert out_padded.shape == (4, 4, 9)
    for i, (s, z) in enumerate(zip(seqs, out_list)):
        steps = -(-len(s) // 3)
        assert z.shape == (steps, 9)
        np.testing.assert_array_equal(z, _by_loop(s, 3))
        np.testing.assert_array_equal(out_padded[i, :steps], z)
        assert np.isnan(out_padded[i, steps:]).all()  # padding stays whole steps of NaN


def test_univariate_forms_and_longer_series_at_transform():
    X = np.arange(12.0).reshape(2, 6)  # two univariate series of 6 steps
    patcher = SequencePatcher(max_steps=3).fit(X)
    np.testing.assert_array_equal(patcher.transform(X),
                                  [[[0, 1], [2, 3], [4, 5]], [[6, 7], [8, 9], [10, 11]]])
    # a list of 1-D series; a test series longer than any in training gets more steps
    out = patcher.transform([np.arange(9.0), np.array([5.0])])
    np.testing.assert_array_equal(out[0], [[0, 1], [2, 3], [4, 5], [6, 7], [8, 8]])
    np.testing.assert_array_equal(out[1], [[5, 5]])
    # patch length 1: the input passes through in its own form
    same = SequencePatcher(max_steps=6).fit(X)
    np.testing.assert_array_equal(same.transform(X), X)
    assert [a.shape for a in same.transform([np.ones(4), np.ones(2)])] == [(4,), (2,)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    X = np.ones((2, 5, 3), dtype=dtype)
    patcher = SequencePatcher(max_steps=2).fit(X)
    assert patcher.transform(X).dtype == dtype
    assert patcher.transform(list(X))[0].dtype == dtype


def test_bad_input_is_rejected_clearly():
    patcher = SequencePatcher(max_steps=2).fit(np.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="X has 2 features, but SequencePatcher is "
                                         "expecting 3"):
        patcher.transform(np.ones((2, 5, 2)))
    with pytest.raises(ValueError, match="max_steps"):
        SequencePatcher(max_steps=0).fit(np.ones((2, 5, 3)))
    X = np.ones((2, 5, 3))
    X[0, 1] = np.nan  # a NaN timestep followed by real ones: not padding
    with pytest.raises(ValueError):
        patcher.transform(X)
    with pytest.raises(ValueError, match="NaN"):
        patcher.transform([np.ones((4, 3)), np.full((2, 3), np.nan)])


def test_pipeline_trains_on_ragged_series_and_predicts_other_lengths():
    # class = whether the series rises or falls: visible in any patch
    rng = np.random.default_rng(2)

    def series(n, lo, hi):
        X, y = [], []
        for _ in range(n):
            T = int(rng.integers(lo, hi))
            label = int(rng.integers(2))
            slope = 1.0 if label else -1.0
            X.append((slope * np.linspace(0, 1, T) + 0.2 * rng.normal(size=T))[:, None])
            y.append(label)
        return X, np.array(y)

    X, y = series(60, 20, 41)
    X_test, y_test = series(40, 10, 61)  # shorter and longer than in training
    pipe = make_pipeline(SequenceScaler(), SequencePatcher(max_steps=8),
                         RNNClassifier(hidden_size=8, max_epochs=60, random_state=0))
    pipe.fit(X, y)
    assert pipe[1].patch_length_ == 5  # ceil(40 / 8)
    assert pipe.predict(X_test).shape == (40,)
    assert pipe.score(X_test, y_test) > 0.75  # chance is 0.5


# ---------------------------------------------------------------- length_quantile
@parametrize_with_checks([SequencePatcher(max_steps=2, length_quantile=0.5)],
                         expected_failed_checks=lambda est: SERIES_TRANSFORMER_EXPECTED_FAILED)
def test_sklearn_compatible_with_a_length_quantile(estimator, check):
    check(estimator)


def _reference_by_loop(lengths, q):
    """The smallest training length with at least a fraction q of the
    lengths at or below it: the q-quantile, taken as one of the lengths
    (NumPy's "higher" method: index ceil(q * (n - 1)) of the sorted lengths)."""
    ordered = sorted(lengths)
    n = len(ordered)
    k = 0
    while k < q * (n - 1) - 1e-12:
        k += 1
    return ordered[k]


@pytest.mark.parametrize("q", [1.0, 0.9, 0.75, 0.5, 0.3, 0.01])
@pytest.mark.parametrize("lengths", [(10, 3, 1, 7), (100, 200, 300, 434, 1344), (5,),
                                     (8, 8, 8), (2, 50, 3, 4, 6, 60, 7)])
def test_length_quantile_matches_a_loop(lengths, q):
    rng = np.random.default_rng(3)
    seqs = [rng.normal(size=(T, 2)) for T in lengths]
    padded = np.full((len(seqs), max(lengths), 2), np.nan)
    for i, s in enumerate(seqs):
        padded[i, :len(s)] = s
    max_steps = 4
    ref = _reference_by_loop(lengths, q)
    p = -(-ref // max_steps)
    for X in (seqs, padded):
        patcher = SequencePatcher(max_steps=max_steps, length_quantile=q).fit(X)
        assert patcher.reference_length_ == ref
        assert patcher.patch_length_ == p
    out = patcher.transform(seqs)
    for s, z in zip(seqs, out):
        np.testing.assert_array_equal(z, _by_loop(s, p))  # one patch length for all
        if len(s) <= ref:
            assert z.shape[0] <= max_steps


def test_length_quantile_keeps_short_series_and_changes_nothing_for_equal_lengths():
    # PLAID-like lengths: from the longest (1344), a 100-step series keeps
    # 3 steps of 32; from the median (300) it keeps 10
    lengths = [100, 200, 200, 300, 300, 434, 500, 1344, 250]
    seqs = [np.zeros(T) for T in lengths]
    longest = SequencePatcher(max_steps=32).fit(seqs)
    median = SequencePatcher(max_steps=32, length_quantile=0.5).fit(seqs)
    assert (longest.reference_length_, longest.patch_length_) == (1344, 42)
    assert (median.reference_length_, median.patch_length_) == (300, 10)
    assert longest.transform([np.zeros(100)])[0].shape == (3, 42)
    assert median.transform([np.zeros(100)])[0].shape == (10, 10)
    assert median.transform([np.zeros(1344)])[0].shape == (135, 10)  # more steps
    # series of one length: every quantile is that length
    X = np.zeros((5, 150, 1))
    for q in (1.0, 0.5, 0.01):
        patcher = SequencePatcher(max_steps=32, length_quantile=q).fit(X)
        assert (patcher.reference_length_, patcher.patch_length_) == (150, 5)


@pytest.mark.parametrize("q", [0, -0.5, 1.5, np.nan, "median", None])
def test_bad_length_quantile_is_rejected(q):
    with pytest.raises((ValueError, TypeError), match="length_quantile"):
        SequencePatcher(max_steps=4, length_quantile=q).fit(np.ones((2, 5, 1)))
