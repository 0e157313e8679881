"""The estimators learn real tasks (small sizes, a few seconds each).

Each test asserts what is robust about learning, not the last digits of one
run: the SIMD build bptt loads (baseline, avx2, avx512) and the split of a
batch over threads change the summation order, which perturbs training as
another random_state does. So every task below runs to a stable end point
(enough epochs; a last phase at a tenth of the learning rate where the run
is noisy at the full rate; the LSTM trains until it has learned), and its
threshold was set from the spread of the score over random_state 0-9, the
baseline and avx2 builds and 1 and 2 threads, with a wide margin to the
worst run and far from what an untrained model scores (``python
benchmarks/learning_margins.py`` measures both; the figures are in the
comments of TASKS). .ci/run runs this file once under each ``BPTT_SIMD``
value the CPU supports.
"""

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


def _estimator(cls, random_state, untrained, **params):
    """The task's estimator; ``untrained`` makes one epoch of 1e-12 steps,
    which leaves the initial weights (the score a model that does not learn
    gets, checked by test_an_untrained_model_fails_every_threshold)."""
    if untrained:
        params.update(learning_rate=1e-12, max_epochs=1)
    # the thresholds were measured with the defaults before issue 15 (Elman
    # cell, float64, constant rate 0.01, 100 epochs, 10 epochs of patience):
    # the tasks keep them
    for key, value in _MEASURED_WITH.items():
        params.setdefault(key, value)
    return cls(random_state=random_state, **params)


_MEASURED_WITH = dict(cell="rnn", dtype="float64", learning_rate=0.01,
                      learning_rate_schedule="constant", max_epochs=100,
                      n_iter_no_change=10, tol=1e-4)


def _anneal(est, X, y, epochs, untrained):
    """Continue training for ``epochs`` at a tenth of the learning rate, from
    the weights reached (a fresh optimizer): the end point no longer depends
    on where the last noisy full-rate step landed."""
    if not untrained:
        est.set_params(warm_start=True, learning_rate=est.learning_rate / 10,
                       max_epochs=epochs).fit(X, y)
    return est


# ---------------------------------------------------------------- the tasks
# Each returns the test score of one run; the thresholds are in TASKS.

def digits_as_sequences(random_state=0, untrained=False):
    """Each 8x8 image is read row by row: 8 timesteps of 8 pixel values."""
    digits = load_digits()
    X = digits.data.reshape(-1, 8, 8) / 16.0
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, stratify=digits.target, random_state=0)
    clf = _estimator(RNNClassifier, random_state, untrained, hidden_size=32,
                     learning_rate=0.005, max_epochs=25)
    _anneal(clf.fit(X_train, y_train), X_train, y_train, 5, untrained)
    return clf.score(X_test, y_test)  # accuracy


def _noisy_sine_windows(n_points=3000, window=20, noise=0.1, seed=1):
    rng = np.random.default_rng(seed)
    series = np.sin(0.1 * np.arange(n_points)) + noise * rng.standard_normal(n_points)
    X = np.stack([series[i:i + window] for i in range(n_points - window)])
    return X, series[window:]


def sine_forecasting(random_state=0, untrained=False):
    X, y = _noisy_sine_windows()
    X_train, y_train, X_test, y_test = X[:2000], y[:2000], X[2000:], y[2000:]
    reg = _estimator(RNNRegressor, random_state, untrained, hidden_size=16, max_epochs=10)
    _anneal(reg.fit(X_train, y_train), X_train, y_train, 5, untrained)
    return reg.score(X_test, y_test)  # R^2: predicting the mean scores 0


def _adding_problem(n, T, rng):
    """Two marked values among T uniform ones; the target is their sum."""
    values = rng.uniform(0, 1, (n, T))
    marked = np.argsort(rng.random((n, T)), axis=1)[:, :2]
    markers = np.zeros((n, T))
    np.put_along_axis(markers, marked, 1.0, axis=1)
    return np.stack([values, markers], axis=-1), (values * markers).sum(axis=1)


def adding_problem_relu_identity_init(random_state=0, untrained=False):
    """IRNN (ReLU, identity init) on the adding problem at T=50. At the full
    rate the test MSE jumps from epoch to epoch (0.002 to 0.14 late in a run)
    and the jumps land on other epochs in another build: 20 epochs at the
    full rate, then 5 at a tenth of it."""
    rng = np.random.default_rng(0)
    X_train, y_train = _adding_problem(1500, 50, rng)
    X_test, y_test = _adding_problem(500, 50, rng)
    reg = _estimator(RNNRegressor, random_state, untrained, hidden_size=16,
                     nonlinearity="relu", init="identity", learning_rate=0.003,
                     clip_norm=1.0, max_epochs=20)
    _anneal(reg.fit(X_train, y_train), X_train, y_train, 5, untrained)
    return np.mean((reg.predict(X_test) - y_test) ** 2)  # the mean scores 1/6


def truncated_bptt_learns_long_sequences(random_state=0, untrained=False):
    """output="sequence" with truncate: the running sum of the last 3 inputs."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 120, 1))
    c = np.cumsum(X[:, :, 0], axis=1)
    y = c - np.concatenate([np.zeros((200, 3)), c[:, :-3]], axis=1)
    reg = _estimator(RNNRegressor, random_state, untrained, hidden_size=16,
                     output="sequence", truncate=10, max_epochs=15)
    reg.fit(X[:150], y[:150])
    return reg.score(X[150:], y[150:])  # R^2


def lstm_learns_the_adding_problem_at_T100(random_state=0, untrained=False):
    """The memory an Elman network lacks: T=100, the mean scores 1/6.

    The loss stays at the mean's 1/6 until the network finds the marked
    values, then falls within an epoch or two. How long it waits varies from
    run to run, with a long tail, and another summation order moves it: with
    a fixed 10 epochs, random_state 4 and 5 had just left the plateau (test
    MSE 0.040 and 0.060). So the run trains epoch by epoch until its
    training loss is below 0.01 (8 to 12 epochs over random_state 0-9), for
    at most 40.
    """
    rng = np.random.default_rng(0)
    X_train, y_train = _adding_problem(3000, 100, rng)
    X_test, y_test = _adding_problem(300, 100, rng)
    reg = _estimator(RNNRegressor, random_state, untrained, hidden_size=32, cell="lstm",
                     learning_rate=0.01, clip_norm=1.0, batch_size=32)
    for _ in range(1 if untrained else LSTM_MAX_EPOCHS):
        reg.partial_fit(X_train, y_train)  # one epoch
        if reg.loss_curve_[-1] < 0.01:
            break
    return np.mean((reg.predict(X_test) - y_test) ** 2)


LSTM_MAX_EPOCHS = 40


def gated_classifier_on_digits_sequences(cell, random_state=0, untrained=False):
    """Trained on the first 1200 digits, tested on the last 597 (other
    writers: accuracy levels off near 0.93)."""
    digits = load_digits()
    X = digits.images / 16.0
    clf = _estimator(RNNClassifier, random_state, untrained, hidden_size=32, cell=cell,
                     max_epochs=15)
    _anneal(clf.fit(X[:1200], digits.target[:1200]), X[:1200], digits.target[:1200], 5,
            untrained)
    return clf.score(X[1200:], digits.target[1200:])  # accuracy


def lstm_digits(random_state=0, untrained=False):
    return gated_classifier_on_digits_sequences("lstm", random_state, untrained)


def gru_digits(random_state=0, untrained=False):
    return gated_classifier_on_digits_sequences("gru", random_state, untrained)


# name: (task, "min" or "max", threshold). "min": the score must reach the
# threshold (accuracy, R^2); "max": it must stay below it (MSE). The comments
# give the worst and the median score over random_state 0-9 on the baseline
# and avx2 builds with 1 and 2 threads, and an untrained model's score
# (benchmarks/learning_margins.py; 2 threads gave the same scores as 1, bit
# for bit, and so did the two builds for the digits tasks).
TASKS = {
    # worst 0.962, median 0.969; untrained 0.116
    "digits_as_sequences": (digits_as_sequences, "min", 0.9),
    # worst 0.9759, median 0.9773; untrained -1.14
    "sine_forecasting": (sine_forecasting, "min", 0.95),
    # worst 0.0080, median 0.0020; untrained 103 (the mean: 1/6). Before the
    # annealed epochs, test MSE up to 0.14 late in a run (0.103 on avx512)
    "adding_problem_relu_identity_init": (adding_problem_relu_identity_init, "max", 0.05),
    # worst 0.9967, median 0.9983; untrained -0.40
    "truncated_bptt_learns_long_sequences": (truncated_bptt_learns_long_sequences,
                                             "min", 0.9),
    # worst 0.0045, median 0.0030 (2 threads: random_state 0-5); untrained 1.19
    "lstm_learns_the_adding_problem_at_T100": (lstm_learns_the_adding_problem_at_T100,
                                               "max", 0.05),
    # worst 0.896, median 0.921; untrained 0.117
    "lstm_digits": (lstm_digits, "min", 0.8),
    # worst 0.920, median 0.938; untrained 0.102
    "gru_digits": (gru_digits, "min", 0.8),
}


def passes(name, score):
    _, sense, threshold = TASKS[name]
    return score >= threshold if sense == "min" else score < threshold


@pytest.mark.parametrize("name", list(TASKS))
def test_learns(name):
    score = TASKS[name][0]()
    assert passes(name, score), (name, score, TASKS[name][1:])


@pytest.mark.parametrize("name", list(TASKS))
def test_an_untrained_model_fails_every_threshold(name):
    # a threshold an untrained model meets tests nothing
    score = TASKS[name][0](untrained=True)
    assert not passes(name, score), (name, score, TASKS[name][1:])


def test_demo_runs_and_reports(capsys):
    from bptt.__main__ import main

    assert main(["demo", "--epochs", "3", "--verbose", "2"]) == 0
    out = capsys.readouterr().out
    assert "Epoch 3 (3/3)" in out and "validation score = " in out
    assert "test accuracy" in out and "test R^2" in out and "Summary:" in out
