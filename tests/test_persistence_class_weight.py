"""Saving a classifier whose class_weight is a dict with non-string keys.

JSON turns every dict key into a string, so a naive round trip gives the
loaded estimator {"0": ..., "1": ...} and its next fit raises (the keys name
no class). The keys must come back as the labels they were.
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import bptt
from bptt import RNNClassifier


def _data(labels):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 4, 2))
    y = np.asarray(labels)[np.arange(24) % len(labels)]
    return X, y


@pytest.mark.parametrize("class_weight", [
    {0: 1.0, 1: 3.0},
    {np.int64(0): 1.0, np.int64(1): np.float32(3.0)},
    {2: 1.0, 10: 2.0, 0: 0.5},  # sorted as numbers != sorted as strings
    {-1.0: 2.0, 1.0: 1.0},
    {True: 2.0, False: 1.0},
    {"a": 1.0, "b": 2.5},
])
def test_class_weight_dict_keys_survive_save_and_load(tmp_path, class_weight):
    labels = sorted(class_weight)
    X, y = _data(labels)
    clf = RNNClassifier(hidden_size=3, max_epochs=2, class_weight=class_weight,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        loaded = bptt.load(clf.save(tmp_path / "m.npz"))
        assert loaded.class_weight == {k: float(v) for k, v in class_weight.items()}
        assert [type(k) for k in loaded.class_weight] == [
            type(k.item() if isinstance(k, np.generic) else k) for k in class_weight]
        np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
        # a later fit on the loaded estimator weighs the same classes
        refit = loaded.fit(X, y)
        again = RNNClassifier(**clf.get_params()).fit(X, y)
    np.testing.assert_allclose(refit.loss_curve_, again.loss_curve_, rtol=1e-5)


def test_class_weight_dict_with_unsavable_key_is_a_clear_error(tmp_path):
    X, y = _data([(1, 2), (3, 4)])
    clf = RNNClassifier(hidden_size=3, max_epochs=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, np.arange(24) % 2)
    clf.class_weight = {(1, 2): 1.0}
    with pytest.raises(ValueError, match="class_weight"):
        clf.save(tmp_path / "m.npz")
