"""save / bptt.load: a format that never unpickles, and rejects what it did not write."""

import json
import pickle
import warnings
import zipfile

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import bptt
from bptt import RNNClassifier, RNNRegressor


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


@pytest.fixture
def clf_and_data(rng):
    X = rng.standard_normal((30, 5, 2))
    y = np.array(["low", "mid", "high"])[np.digitize(X[:, :, 0].sum(1), [-1, 1])]
    clf = _fit(RNNClassifier(hidden_size=5, max_epochs=3, random_state=0), X, y)
    return clf, X, y


@pytest.mark.parametrize("labels", [
    np.array(["low", "mid", "high"]),
    np.array(["low", "mid", "high"], dtype=object),
    np.array([3, 7, 11]),
    np.array([1.0, 2.0, 4.0]),
    np.array([True, False, True]),
])
def test_classifier_round_trip(tmp_path, rng, labels):
    X = rng.standard_normal((30, 5, 2))
    y = labels[np.arange(30) % 3]
    clf = _fit(RNNClassifier(hidden_size=5, max_epochs=3, random_state=0), X, y)
    path = clf.save(tmp_path / "clf.npz")
    loaded = bptt.load(path)
    assert type(loaded) is RNNClassifier
    assert loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    assert loaded.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    assert loaded.loss_curve_ == clf.loss_curve_ and loaded.n_iter_ == clf.n_iter_
    assert loaded.n_features_in_ == 2


def test_regressor_round_trip_with_early_stopping(tmp_path, rng):
    X = rng.standard_normal((40, 6, 3))
    Y = np.stack([X[:, :, 0].sum(1), X[:, -1, 2]], axis=1)
    reg = _fit(RNNRegressor(hidden_size=4, max_epochs=4, early_stopping=True,
                            dtype="float32", random_state=1), X, Y)
    path = reg.save(str(tmp_path / "reg"))  # .npz appended
    assert path.endswith("reg.npz")
    loaded = bptt.load(path)
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    assert loaded.predict(X).dtype == np.float32
    assert loaded.validation_scores_ == reg.validation_scores_
    assert loaded.best_validation_score_ == reg.best_validation_score_
    assert loaded.n_outputs_ == 2
    # a loaded model keeps training
    loaded.partial_fit(X, Y)
    assert loaded.n_iter_ == reg.n_iter_ + 1


def test_pickle_round_trip(clf_and_data):
    clf, X, _ = clf_and_data
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_unfitted_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        RNNRegressor().save(tmp_path / "x.npz")


def test_file_holds_no_pickled_data(tmp_path, clf_and_data):
    clf, _, _ = clf_and_data
    path = clf.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as f:
        for name in f.files:
            assert f[name].dtype.kind != "O"
        meta = json.loads(str(f["meta"]))
    assert meta["format"] == "bptt-estimator" and meta["estimator"] == "RNNClassifier"


def _rewrite(src, dst, change):
    """Copy the archive src to dst, passing its arrays through change(dict)."""
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    np.savez(dst, **arrays)
    return dst


def _edit_meta(edit):
    def change(arrays):
        meta = json.loads(str(arrays["meta"]))
        edit(meta)
        arrays["meta"] = np.array(json.dumps(meta))
    return change


@pytest.mark.parametrize("change, message", [
    (lambda a: a.__setitem__("param/W_hh", a["param/W_hh"] + 1e-3), "checksum"),
    (lambda a: a.__setitem__("param/W_hh", a["param/W_hh"][:, :2]), "shape"),
    (lambda a: a.__setitem__("extra", np.zeros(3)), "entries"),
    (lambda a: a.pop("param/b_o"), "entries"),
    (lambda a: a.pop("meta"), "no 'meta' entry"),
    (lambda a: a.__setitem__("meta", np.array("{not json")), "not valid JSON"),
    (lambda a: a.__setitem__("meta", np.zeros(2)), "not a JSON string"),
    (_edit_meta(lambda m: m.__setitem__("format", "other")), "format marker"),
    (_edit_meta(lambda m: m.__setitem__("version", 99)), "version 99"),
    (_edit_meta(lambda m: m["fitted"].__setitem__("n_iter_", 1000)), "checksum"),
    (_edit_meta(lambda m: m["params"].__setitem__("hidden_size", 6)), "checksum"),
])
def test_tampered_file_is_rejected(tmp_path, clf_and_data, change, message):
    clf, _, _ = clf_and_data
    good = clf.save(tmp_path / "good.npz")
    bad = _rewrite(good, tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=f"not a valid bptt model file.*{message}"):
        bptt.load(bad)


def test_foreign_files_are_rejected(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a valid bptt model file"):
        bptt.load(text)
    npy = tmp_path / "a.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ValueError, match="single array"):
        bptt.load(npy)
    pickled = tmp_path / "p.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a valid bptt model file"):
        bptt.load(pickled)
    zipped = tmp_path / "z.npz"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("meta.npy", b"garbage")
    with pytest.raises(ValueError, match="not a valid bptt model file"):
        bptt.load(zipped)
    with pytest.raises(ValueError, match="not a valid bptt model file"):
        bptt.load(tmp_path / "missing.npz")
