"""The estimators learn real tasks (small sizes, a few seconds each)."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from bptt import RNNClassifier, RNNRegressor


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def test_digits_as_sequences():
    # each 8x8 image is read row by row: 8 timesteps of 8 pixel values
    digits = load_digits()
    X = digits.data.reshape(-1, 8, 8) / 16.0
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, stratify=digits.target, random_state=0)
    clf = RNNClassifier(hidden_size=32, learning_rate=0.005, max_epochs=30, random_state=0)
    clf.fit(X_train, y_train)
    accuracy = clf.score(X_test, y_test)
    assert accuracy >= 0.95, accuracy


def _noisy_sine_windows(n_points=3000, window=20, noise=0.1, seed=1):
    rng = np.random.default_rng(seed)
    series = np.sin(0.1 * np.arange(n_points)) + noise * rng.standard_normal(n_points)
    X = np.stack([series[i:i + window] for i in range(n_points - window)])
    return X, series[window:]


def test_sine_forecasting():
    X, y = _noisy_sine_windows()
    X_train, y_train, X_test, y_test = X[:2000], y[:2000], X[2000:], y[2000:]
    reg = RNNRegressor(hidden_size=16, max_epochs=10, random_state=0).fit(X_train, y_train)
    r2 = reg.score(X_test, y_test)
    assert r2 >= 0.95, r2  # predicting the mean scores R^2 = 0


def _adding_problem(n, T, rng):
    """Two marked values among T uniform ones; the target is their sum."""
    values = rng.uniform(0, 1, (n, T))
    marked = np.argsort(rng.random((n, T)), axis=1)[:, :2]
    markers = np.zeros((n, T))
    np.put_along_axis(markers, marked, 1.0, axis=1)
    return np.stack([values, markers], axis=-1), (values * markers).sum(axis=1)


def test_adding_problem_relu_identity_init():
    rng = np.random.default_rng(0)
    X_train, y_train = _adding_problem(1500, 50, rng)
    X_test, y_test = _adding_problem(500, 50, rng)
    baseline = np.mean((y_test - y_train.mean()) ** 2)
    assert baseline == pytest.approx(1 / 6, abs=0.02)  # the mean scores 1/6
    reg = RNNRegressor(hidden_size=16, nonlinearity="relu", init="identity",
                       learning_rate=0.003, clip_norm=1.0, max_epochs=20, random_state=0)
    reg.fit(X_train, y_train)
    mse = np.mean((reg.predict(X_test) - y_test) ** 2)
    assert mse < 0.05, mse


def test_truncated_bptt_learns_long_sequences():
    # output="sequence" with truncate: the running sum of the last 3 inputs
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 120, 1))
    c = np.cumsum(X[:, :, 0], axis=1)
    y = c - np.concatenate([np.zeros((200, 3)), c[:, :-3]], axis=1)
    reg = RNNRegressor(hidden_size=16, output="sequence", truncate=10, max_epochs=15,
                       random_state=0).fit(X[:150], y[:150])
    assert reg.score(X[150:], y[150:]) >= 0.9


def test_demo_runs_and_reports(capsys):
    from bptt.__main__ import main

    assert main(["demo", "--epochs", "3", "--verbose", "2"]) == 0
    out = capsys.readouterr().out
    assert "Epoch 3 (3/3)" in out and "validation score = " in out
    assert "test accuracy" in out and "test R^2" in out and "Summary:" in out


def test_lstm_learns_the_adding_problem_at_T100():
    # the memory an Elman network lacks: T=100, the mean scores 1/6
    rng = np.random.default_rng(0)
    X_train, y_train = _adding_problem(3000, 100, rng)
    X_test, y_test = _adding_problem(300, 100, rng)
    reg = RNNRegressor(hidden_size=32, cell="lstm", learning_rate=0.01, clip_norm=1.0,
                       batch_size=32, max_epochs=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X_train, y_train)
    mse = np.mean((reg.predict(X_test) - y_test) ** 2)
    assert mse < 0.05, mse


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_classifier_on_digits_sequences(cell):
    from sklearn.datasets import load_digits
    digits = load_digits()
    X = digits.images / 16.0
    clf = RNNClassifier(hidden_size=32, cell=cell, max_epochs=15, random_state=0)
    clf.fit(X[:1200], digits.target[:1200])
    assert clf.score(X[1200:], digits.target[1200:]) >= 0.9
