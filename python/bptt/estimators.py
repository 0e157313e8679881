"""scikit-learn estimators: :class:`RNNRegressor` and :class:`RNNClassifier`.

Both wrap a :class:`bptt.RNN` (``net_``) and train it with minibatch
gradient descent on the gradients of backpropagation through time, in the
manner of scikit-learn's ``MLPRegressor`` / ``MLPClassifier``: ``__init__``
only stores its arguments, ``fit`` and ``partial_fit`` share one
``_fit(..., incremental=...)``, the optimizers are small objects updating the
parameter arrays in place (:mod:`bptt.optimizers`), early stopping keeps and
restores the best weights and running out of epochs warns with
``ConvergenceWarning``. A fit whose loss ends an order of magnitude above
its lowest warns too, and returns the weights of that lowest loss; an
interrupted fit (Ctrl-C) keeps whole updates' weights.

Design: X is validated and converted once per ``fit`` to a batch-first
array of the network's dtype; the epoch loop only slices it. A batch is one
call to ``RNN.loss_and_grad`` and one optimizer step, or, with ``truncate=k``,
one step per window of k timesteps with the hidden state carried from window
to window (``RNN.forward`` of the window gives the state the next window
starts from), so the memory held for the backward pass is O(k).
"""

import sys
import time
import warnings
from collections import deque
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
)

from . import persistence
from ._cells import CELLS, document_cells
from ._validation import (_is_ragged_list, as_numeric_array, check_ragged,
                          check_sample_weight, check_timesteps, is_ragged,
                          target_sequences)
from .optimizers import OPTIMIZERS
from .rnn import RNN

try:  # optional progress bar (extra "progress")
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - depends on the environment
    tqdm = None

__all__ = ["RNNRegressor", "RNNClassifier"]


def _unique_labels(labels, name):
    """np.unique of class labels, with a clear error for labels that do not
    sort together (a mix of strings and numbers: NumPy's "'<' not
    supported between instances of 'int' and 'str'")."""
    labels = np.asarray(labels)
    try:
        return np.unique(labels)
    except TypeError:
        types = sorted({type(v).__name__ for v in labels.ravel()})
        raise TypeError(
            f"{name} mixes class labels of types {types} that cannot be ordered "
            f"together; use labels of one kind (all numbers or all strings)."
        ) from None


# A fit whose last epoch's training loss is more than this many times its
# best (the initial weights' included) has diverged: it returns the best
# weights and warns. An order of magnitude: minibatch noise and a rising
# loss on the way to a better minimum stay well within it.
_DIVERGED_RATIO = 10.0

# learning_rate_schedule="plateau": a stall of n_iter_no_change epochs
# divides the rate by this, at most _PLATEAU_CUTS times; a stall at the
# lowest rate stops the fit.
_PLATEAU_FACTOR = 5.0
_PLATEAU_CUTS = 3

# The fitted per-epoch training diagnostics (lists of float, one per epoch).
_DIAGNOSTIC_CURVES = ("grad_norm_curve_", "grad_norm_max_curve_",
                      "clipped_fraction_curve_", "learning_rate_curve_")
# how many of the last updates' gradient norms a divergence message names
_NORMS_NAMED = 5


class _Best:
    """The weights a fit falls back on: a copy, and the epoch that left
    them (0 for the initial weights)."""

    def __init__(self, params):
        self.update(params, 0)

    def update(self, params, epoch):
        self.params = {k: v.copy() for k, v in params.items()}
        self.epoch = epoch


class _BaseRNN(BaseEstimator, metaclass=ABCMeta):
    """Base class of the estimators; not for direct use.

    Subclasses set ``_estimator_type`` through their mixin and implement the
    target handling: ``_validate_targets``, ``_output_layer``,
    ``_validation_score``.
    """

    _parameter_constraints: dict = {
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        # a live view of the registry: a cell registered later is accepted
        "cell": [StrOptions(CELLS.keys())],
        "nonlinearity": [StrOptions({"tanh", "relu"})],
        "init": [StrOptions({"orthogonal", "xavier", "identity", "uniform"})],
        "output": [StrOptions({"last", "sequence", "mean"})],
        "num_layers": [Interval(Integral, 1, None, closed="left")],
        "bidirectional": ["boolean"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "learning_rate_schedule": [StrOptions({"constant", "plateau", "cosine"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "clip_norm": [Interval(Real, 0, None, closed="neither"), None],
        "truncate": [Interval(Integral, 1, None, closed="left"), None],
        "shuffle": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "dtype": [StrOptions({"float32", "float64"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        hidden_size=32,
        *,
        cell="gru",
        nonlinearity="tanh",
        init="orthogonal",
        output="last",
        optimizer="adam",
        learning_rate=0.003,
        learning_rate_schedule="plateau",
        alpha=0.0,
        batch_size=32,
        max_epochs=300,
        clip_norm=5.0,
        truncate=None,
        shuffle=True,
        momentum=0.9,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=50,
        tol=1e-4,
        warm_start=False,
        dtype="float32",
        random_state=None,
        verbose=0,
        num_layers=1,
        bidirectional=False,
        dropout=0.0,
    ):
        self.hidden_size = hidden_size
        self.cell = cell
        self.nonlinearity = nonlinearity
        self.init = init
        self.output = output
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.alpha = alpha
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.clip_norm = clip_norm
        self.truncate = truncate
        self.shuffle = shuffle
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout

    # ---------------------------------------------------------------- hooks
    @abstractmethod
    def _validate_targets(self, y, X, reset, classes=None):
        """Check y against X; return (y_raw, y_encoded) for loss_and_grad."""

    @abstractmethod
    def _output_layer(self):
        """Return (output_size, output_activation, loss) for the network."""

    @abstractmethod
    def _validation_score(self, X, y_raw, sample_weight=None):
        """Score of validated X against raw targets (for early stopping)."""

    def _stratify_validation(self):
        """Whether the early-stopping split is stratified by y."""
        return False

    # ---------------------------------------------------------------- input
    def _validate_X(self, X, reset):
        """Return X as a batch-first 3-D array of the estimator's dtype.

        A 2-D X is read as univariate series (n_samples, n_timesteps).
        Ragged X (a list of (T_i, F) / (T_i,) arrays, or NaN-padded) comes
        back NaN-padded, the form the network and the training API take.
        """
        name = type(self).__name__
        if is_ragged(X):
            return self._validate_ragged_X(X, reset, name)
        # ensure_min_features=0: a 2-D X's second axis is time, which
        # check_timesteps reports for every ndim with the same message
        X = check_array(X, allow_nd=True, dtype=np.dtype(self.dtype).type,
                        ensure_min_features=0, input_name="X", estimator=self)
        if X.ndim not in (2, 3):
            raise ValueError(
                f"Expected X of shape (n_samples, n_timesteps, n_features), or "
                f"(n_samples, n_timesteps) for univariate series; got a {X.ndim}D "
                f"array of shape {X.shape}."
            )
        check_timesteps(X, name)
        if X.ndim == 2:
            X = X[:, :, np.newaxis]
        if X.shape[2] == 0:
            raise ValueError(
                f"Found array with 0 feature(s) (shape={X.shape}) while a minimum "
                f"of 1 is required by {name}."
            )
        if reset:
            self.n_features_in_ = X.shape[2]
        elif X.shape[2] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[2]} features, but {name} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return X

    def _validate_ragged_X(self, X, reset, name):
        if isinstance(X, np.ndarray) and X.ndim == 2:
            X = X[:, :, np.newaxis]
        X, lengths, _ = check_ragged(X, None if reset else self.n_features_in_,
                                     np.dtype(self.dtype).type, owner=name)
        if reset:
            self.n_features_in_ = X.shape[2]
        if lengths is not None:
            # a new array of check_ragged's (the caller's X is never written)
            X[np.arange(X.shape[1])[None, :] >= lengths[:, None]] = np.nan
        return X

    @staticmethod
    def _real_steps(X):
        """The real timesteps (n, T) of validated X (its padding is NaN), or
        None when every timestep is real."""
        real = ~np.isnan(X[:, :, 0])
        return None if real.all() else real

    def _ragged_sequence_target(self, y, X):
        """Targets of output="sequence" for ragged X, in either of its forms.

        ``y`` is a list of (T_i, ...) arrays, or an array (n, >= T, ...)
        whose padding is NaN where X's is (any value when y cannot hold NaN).
        Returns None when every timestep of validated X is real; else (y,
        real): y (n, T, ...) with the padding set to a real value of y (so
        that it stays a valid label; the caller masks it), real (n, T) bool.
        """
        real = self._real_steps(X)
        if real is None:
            return None
        n, T = real.shape
        lengths = real.sum(axis=1)
        if isinstance(y, (list, tuple)):
            arrays = target_sequences(y, lengths, convert=np.asarray)
            flat = np.concatenate(arrays)
            out = np.empty((n, T) + flat.shape[1:], dtype=flat.dtype)
            out[real] = flat
        else:
            out = np.asarray(y)
            if out.ndim < 2 or out.shape[0] != n or out.shape[1] < T:
                raise ValueError(
                    f"With ragged X and output='sequence', y must be a list of (T_i, ...) "
                    f"arrays or an array (n_samples, >= {T}, ...) padded like X; got y "
                    f"of shape {out.shape}.")
            out = out[:, :T].copy()
            if out.dtype.kind == "f":
                nan = np.isnan(out).reshape(n, T, -1)
                if (nan.any(axis=2) & real).any():
                    i, t = np.argwhere(nan.any(axis=2) & real)[0]
                    raise ValueError(
                        f"y contains NaN at timestep {t} of sequence {i}, a real timestep "
                        f"of X (X[{i}] has {lengths[i]}): the targets' padding must "
                        f"match X's.")
                if (~nan.all(axis=2) & ~real).any():
                    i, t = np.argwhere(~nan.all(axis=2) & ~real)[0]
                    raise ValueError(
                        f"y has a target at timestep {t} of sequence {i}, where X is "
                        f"padding (X[{i}] has {lengths[i]} timesteps): the targets' "
                        f"padding must match X's (NaN).")
        out[~real] = out[real][0]
        return out, real

    def _in_input_form(self, Y, X, real, fill=np.nan):
        """Per-timestep predictions Y (n, T, ...) of ragged X in X's form: a
        list of (T_i, ...) arrays for a list, else ``fill`` in the padding
        (a float array for numbers, an object array otherwise)."""
        if real is None:
            return Y
        if _is_ragged_list(X):
            return [Y[i, :L].copy() for i, L in enumerate(real.sum(axis=1))]
        Y = Y.astype(np.float64 if Y.dtype.kind in "biu" else
                     (Y.dtype if Y.dtype.kind == "f" else object))
        Y[~real] = fill
        return Y

    def _check_y_present(self, y):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y "
                f"is None."
            )

    def _check_sequence_target_shape(self, y, X, allowed_ndim):
        if y.ndim not in allowed_ndim or y.shape[1] != X.shape[1]:
            shapes = " or ".join(
                {2: "(n_samples, n_timesteps)", 3: "(n_samples, n_timesteps, n_outputs)"}[d]
                for d in allowed_ndim)
            raise ValueError(
                f"With output='sequence', y must have shape {shapes} with "
                f"n_timesteps={X.shape[1]} as X; got y of shape {y.shape}."
            )

    # ---------------------------------------------------------------- training
    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        return min(self.batch_size, n_samples)

    def _initialize(self, X):
        """Build a fresh network and the fitted attributes for a first fit."""
        self._random_state = check_random_state(self.random_state)
        output_size, activation, _ = self._output_layer()
        self.net_ = RNN(
            self.n_features_in_, self.hidden_size, output_size,
            cell=self.cell, nonlinearity=self.nonlinearity,
            output_activation=activation, init=self.init, dtype=self.dtype,
            random_state=int(self._random_state.randint(np.iinfo(np.int32).max)),
            num_layers=self.num_layers, bidirectional=self.bidirectional,
            dropout=self.dropout,
        )
        self.n_iter_ = 0
        self.loss_curve_ = []
        for name in _DIAGNOSTIC_CURVES:
            setattr(self, name, [])
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.validation_loss_curve_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.validation_loss_curve_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _check_warm_net(self):
        """Raise when a warm start would reuse a network of another shape."""
        net = self.net_
        output_size, activation, _ = self._output_layer()
        wanted = {"hidden_size": self.hidden_size, "cell": self.cell,
                  "nonlinearity": self.nonlinearity,
                  "dtype": np.dtype(self.dtype).name, "num_layers": self.num_layers,
                  "bidirectional": bool(self.bidirectional)}
        have = {"hidden_size": net.hidden_size, "cell": net.cell,
                "nonlinearity": net.nonlinearity, "dtype": np.dtype(net.dtype).name,
                "num_layers": net.num_layers, "bidirectional": net.bidirectional}
        changed = [f"{k} from {have[k]!r} to {wanted[k]!r}" for k in wanted
                   if wanted[k] != have[k]]
        if changed:
            raise ValueError(
                f"warm_start=True (or partial_fit) continues the fitted network, but "
                f"{', '.join(changed)} changed; fit with warm_start=False to start "
                f"a new one."
            )
        if output_size != net.output_size or activation != net.output_activation:
            raise ValueError(
                f"the targets need {output_size} output(s) with "
                f"{activation!r} activation, but the fitted network has "
                f"{net.output_size} with {net.output_activation!r}; fit with "
                f"warm_start=False to start a new network."
            )

    def _sample_weights(self, sample_weight, y_raw, n_samples, incremental):
        """The weight of each training sequence, or None for equal weights.

        The classifier multiplies in its ``class_weight``.
        """
        return check_sample_weight(sample_weight, n_samples, np.dtype(self.dtype).type)

    def _fit(self, X, y, incremental=False, classes=None, sample_weight=None):
        first_call = not hasattr(self, "net_") or not (self.warm_start or incremental)
        X = self._validate_X(X, reset=first_call)
        y_raw, y_enc = self._validate_targets(y, X, reset=first_call, classes=classes)
        weights = self._sample_weights(sample_weight, y_raw, X.shape[0], incremental)
        if first_call:
            self._initialize(X)
        else:
            self._check_warm_net()
            if not hasattr(self, "_random_state"):  # e.g. after bptt.load
                self._random_state = check_random_state(self.random_state)
            for name in _DIAGNOSTIC_CURVES:  # fitted before these existed
                if getattr(self, name, None) is None:
                    setattr(self, name, [])
            if not hasattr(self, "validation_loss_curve_"):
                self.validation_loss_curve_ = (
                    None if self.validation_scores_ is None else [])
        if not incremental or not hasattr(self, "_optimizer"):
            params = list(self.net_.params.values())
            if self.optimizer == "adam":
                self._optimizer = OPTIMIZERS["adam"](
                    params, self.learning_rate, self.beta_1, self.beta_2, self.epsilon)
            elif self.optimizer == "momentum":
                self._optimizer = OPTIMIZERS["momentum"](
                    params, self.learning_rate, self.momentum)
            else:
                self._optimizer = OPTIMIZERS["sgd"](params, self.learning_rate)

        early_stopping = self.early_stopping and not incremental
        train = (X, y_enc, y_raw, weights)
        val = None
        if early_stopping:
            stratify = y_raw if self._stratify_validation() else None
            arrays = [a for a in train if a is not None]
            split = train_test_split(*arrays, random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
            parts = iter(zip(split[::2], split[1::2]))
            train, val = zip(*[(None, None) if a is None else next(parts) for a in train])
            if val[0].shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
            if train[3] is not None and not train[3].sum() > 0:
                raise ValueError(
                    "The sample weights of the training part of the early-stopping "
                    "split sum to zero; give more sequences a positive weight."
                )
        try:
            self._run_epochs(train[0], train[1], train[3], val, incremental,
                             early_stopping)
        finally:
            # fit is over: the buffers net_ kept between batches (up to
            # _bptt.KEEP_WORKSPACE_BYTES) are not needed for predicting.
            # partial_fit keeps them for its next call, often one batch.
            if not incremental:
                self.net_.release_buffers()
        return self

    def _epoch_learning_rate(self, epoch, n_epochs, incremental):
        """The step size of this epoch of the fit (``partial_fit``: the
        constant ``learning_rate``)."""
        if incremental or self.learning_rate_schedule == "constant":
            return float(self.learning_rate)
        if self.learning_rate_schedule == "cosine":
            # from learning_rate at the first epoch towards 0 after the last
            return float(self.learning_rate * 0.5 * (1 + np.cos(np.pi * epoch / n_epochs)))
        return self._plateau_rate

    def _run_epochs(self, X, y, w, val, incremental, early_stopping):
        """The epoch loop, and the weights its end leaves in ``net_``.

        ``w`` holds the sample weights (None: equal), ``val`` the
        early-stopping split (X, y encoded, y, weights) or None.
        ``best`` holds the weights to fall back on: with early stopping those
        of the best validation score (the initial weights until an epoch is
        scored), otherwise those of the lowest training loss. ``lowest`` is
        the lowest training loss and its epoch, the initial weights (epoch 0)
        counting with the loss of the first batch, which they computed. An
        early-stopping fit restores ``best`` however it ends, an interrupt
        or an error included; any other ``fit`` restores it, and warns, when
        its last loss ends more than _DIVERGED_RATIO times above ``lowest``.
        """
        n_samples = X.shape[0]
        batch_size = self._batch_size(n_samples)
        n_epochs = 1 if incremental else self.max_epochs
        rng = self._random_state
        lines, bar = self._progress(n_epochs, incremental)
        data = self.net_._training_data(X, y, loss=self._output_layer()[2],
                                        output=self.output, sample_weight=w)
        started = time.perf_counter()
        stopped = False
        best = None if incremental else _Best(self.net_.params)
        lowest = [np.inf, 0]
        self._plateau_rate, self._plateau_cuts = float(self.learning_rate), 0
        self._recent_norms = deque(maxlen=_NORMS_NAMED)
        try:
            for epoch in range(n_epochs):
                tic = time.perf_counter()
                self._optimizer.learning_rate = self._epoch_learning_rate(
                    epoch, n_epochs, incremental)
                self._update_norms, self._n_clipped = [], 0
                order = rng.permutation(n_samples) if self.shuffle else np.arange(n_samples)
                total = total_weight = 0.0
                for start in range(0, n_samples, batch_size):
                    idx = order[start:start + batch_size]
                    wb = None if w is None else w[idx]
                    weight = idx.shape[0] if wb is None else float(wb.sum(dtype=np.float64))
                    if weight == 0:
                        continue  # zero weights: nothing to learn from this batch
                    try:
                        loss = self._train_batch(data, idx, weight)
                    except FloatingPointError as exc:
                        self._diverged(self.n_iter_ + 1, exc, early_stopping)
                    if total_weight == 0 and epoch == 0:
                        lowest[0] = loss
                    total += loss * weight
                    total_weight += weight
                self.n_iter_ += 1
                self.loss_curve_.append(total / total_weight)
                self._record_diagnostics()
                if self.loss_curve_[-1] < lowest[0]:
                    lowest = [self.loss_curve_[-1], self.n_iter_]
                    if best is not None and not early_stopping:
                        best.update(self.net_.params, self.n_iter_)
                if early_stopping:
                    self.validation_scores_.append(float(
                        self._validation_score(val[0], val[2]) if val[3] is None
                        else self._validation_score(val[0], val[2], val[3])))
                    if self.validation_scores_[-1] > self.best_validation_score_:
                        best.update(self.net_.params, self.n_iter_)
                    # after the best weights are kept: an interrupt here loses
                    # no scored epoch
                    self.validation_loss_curve_.append(
                        self._validation_loss(val[0], val[1], val[3]))
                self._report(lines, bar, epoch, n_epochs, time.perf_counter() - tic)
                if not incremental and self._no_improvement(early_stopping, bar):
                    if self.verbose:
                        self._print(bar, self._stop_message(early_stopping))
                    stopped = True
                    break
        except BaseException:
            # interrupted (KeyboardInterrupt) or failed: early stopping still
            # leaves the best weights; otherwise net_ keeps the last complete
            # update's weights (_step never leaves part of one)
            if early_stopping:
                self.net_.params = best.params
            raise
        finally:
            if bar is not None:
                bar.close()
        if self.verbose:
            self._print(None, f"{type(self).__name__}: {self.n_iter_} epoch(s), "
                              f"loss {self.loss_curve_[-1]:.6g}, "
                              f"{time.perf_counter() - started:.2f}s")
        diverged = (not incremental
                    and self.loss_curve_[-1] > _DIVERGED_RATIO * lowest[0])
        if early_stopping or diverged:
            self.net_.params = best.params
        if diverged:
            warnings.warn(self._diverged_warning(lowest, best, early_stopping),
                          ConvergenceWarning)
        elif not incremental and not stopped:
            warnings.warn(
                f"{type(self).__name__}: reached max_epochs={self.max_epochs} and the "
                f"optimization hasn't converged yet.",
                ConvergenceWarning,
            )

    def _record_diagnostics(self):
        """Append this epoch's gradient norms, clipping and rate to the curves."""
        norms = np.asarray(self._update_norms, dtype=np.float64)
        if norms.size == 0:  # every batch had zero weight
            self.grad_norm_curve_.append(float("nan"))
            self.grad_norm_max_curve_.append(float("nan"))
            self.clipped_fraction_curve_.append(0.0)
        else:
            self.grad_norm_curve_.append(float(np.median(norms)))
            self.grad_norm_max_curve_.append(float(norms.max()))
            self.clipped_fraction_curve_.append(self._n_clipped / norms.size)
        self.learning_rate_curve_.append(float(self._optimizer.learning_rate))

    def _last_norms_text(self):
        norms = getattr(self, "_recent_norms", ())
        if not norms:
            return ""
        return (f" The global gradient norms (before clipping) of the last "
                f"{len(norms)} update(s) were "
                f"{', '.join(f'{v:.3g}' for v in norms)}.")

    def _diverged_warning(self, lowest, best, early_stopping):
        def when(epoch):
            return "the initial weights" if epoch == 0 else f"epoch {epoch}"
        kept = ("the initial weights" if best.epoch == 0 else
                f"the weights of epoch {best.epoch}")
        if early_stopping and best.epoch > 0:
            kept += " (best validation score)"
        return (
            f"{type(self).__name__}: training diverged: the training loss rose from "
            f"{lowest[0]:.4g} ({when(lowest[1])}) to {self.loss_curve_[-1]:.4g} "
            f"(epoch {self.n_iter_}), more than {_DIVERGED_RATIO:g} times its lowest; "
            f"{kept} are restored. Try a lower learning_rate (now "
            f"{self.learning_rate}) or a smaller clip_norm (now {self.clip_norm})."
            f"{self._last_norms_text()}"
        )

    def _train_batch(self, data, rows, weight=None):
        """One batch (samples ``rows`` of the training data, whose sample
        weights, if any, ``data`` holds): one update, or one per window of
        ``truncate`` steps.

        ``weight`` is the batch's size or its sample weights' sum (None: the
        size); it divides the L2 penalty of ``alpha``. Returns the batch's
        mean loss (the weighted mean, with the penalty).
        """
        T = data.n_timesteps
        k = self.truncate
        weight = len(rows) if weight is None else weight
        if k is None or k >= T:
            loss, grads, _ = data.loss_and_grad(rows)
            return loss + self._step(grads, weight)
        starts = range(0, T, k)
        state = None
        if self.output == "last":
            # Only the last window carries a loss: run the others forward to
            # carry the state, window by window (memory O(k)).
            for s in starts[:-1]:
                state = data.advance(rows, s, s + k, state)
            loss, grads, _ = data.loss_and_grad(rows, starts[-1], None, state)
            return loss + self._step(grads, weight)
        total = 0.0
        for s in starts:
            e = min(T, s + k)
            # the next window starts from the state this window's loss was
            # computed with (the weights before this window's update)
            loss, grads, state = data.loss_and_grad(rows, s, e, state)
            total += (loss + self._step(grads, weight)) * (e - s)
        return total / T

    def _step(self, grads, weight):
        """Add the L2 penalty's gradient, clip the gradients' global L2 norm
        and apply one optimizer step; record the norm (before clipping).

        ``weight`` is the batch's size (or its sample weights' sum): the
        penalty ``alpha / 2 * ||W||^2`` over the weight matrices (not the
        biases) is divided by it, as MLPClassifier does. Returns the
        penalty. Raises FloatingPointError, leaving the weights as they
        were, when the step would make any of them non-finite.
        """
        params = self.net_.params
        names = list(params)
        arrays = [params[name] for name in names]
        grads = [grads[name] for name in names]
        penalty = 0.0
        if self.alpha:
            coef = self.alpha / weight
            for i, name in enumerate(names):
                if name.startswith("W_"):
                    penalty += 0.5 * coef * float(np.vdot(arrays[i], arrays[i]))
                    # d/dW alpha/2 ||W||^2 / weight ; a new array: grads may be
                    # the network's buffers
                    grads[i] = grads[i] + arrays[i].dtype.type(coef) * arrays[i]
        norm = float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads)))
        self._update_norms.append(norm)
        self._recent_norms.append(norm)
        scale = 1.0
        if self.clip_norm is not None and norm > self.clip_norm:
            scale = self.clip_norm / norm
            self._n_clipped += 1
        try:
            taken = self._optimizer.step(arrays, grads, scale)
        except BaseException:
            # interrupted inside the step: the weights are the old or the new
            # ones (the optimizer completes its copy), but its own state may
            # be part-way, so a later partial_fit starts a fresh one
            self.__dict__.pop("_optimizer", None)
            raise
        if not taken:
            raise FloatingPointError("the update made some weights non-finite")
        return penalty

    def _diverged(self, epoch, exc, early_stopping):
        # The optimizer's moments may hold NaN now: a later partial_fit or
        # warm start begins with a fresh one.
        self.__dict__.pop("_optimizer", None)
        kept = ("the weights of its best validation score" if early_stopping else
                "its last finite weights")
        raise FloatingPointError(
            f"{type(self).__name__}: training diverged in epoch {epoch} "
            f"({str(exc).rstrip('.')}). Try "
            f"clip_norm (e.g. clip_norm=1.0; now {self.clip_norm}) or a lower "
            f"learning_rate (now {self.learning_rate}). The estimator keeps "
            f"{kept}.{self._last_norms_text()}"
        ) from exc

    def _no_improvement(self, early_stopping, bar=None):
        """Update the no-improvement count (as MLP does); True means stop.

        With ``learning_rate_schedule="plateau"`` a count past
        ``n_iter_no_change`` first divides the rate by _PLATEAU_FACTOR (up to
        _PLATEAU_CUTS times) and starts counting again; only a plateau at
        the lowest rate stops training.
        """
        if early_stopping:
            score = self.validation_scores_[-1]
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
        else:
            loss = self.loss_curve_[-1]
            if loss > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if loss < self.best_loss_:
                self.best_loss_ = loss
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        if (self.learning_rate_schedule == "plateau"
                and self._plateau_cuts < _PLATEAU_CUTS):
            self._plateau_cuts += 1
            self._plateau_rate /= _PLATEAU_FACTOR
            self._no_improvement_count = 0
            if self.verbose:
                what = "Validation score" if early_stopping else "Training loss"
                self._print(bar, f"{what} did not improve more than tol={self.tol} for "
                                 f"{self.n_iter_no_change} consecutive epochs: "
                                 f"learning rate now {self._plateau_rate:.3g}.")
            return False
        return True

    def _stop_message(self, early_stopping):
        what = "Validation score" if early_stopping else "Training loss"
        return (f"{what} did not improve more than tol={self.tol} for "
                f"{self.n_iter_no_change} consecutive epochs. Stopping.")

    def _validation_loss(self, X, y, w):
        """Mean loss (weighted with w) of the network on validated X against
        encoded targets y, without the L2 penalty."""
        Y = np.asarray(self._forward(X), dtype=np.float64)
        loss = self._output_layer()[2]
        tiny = np.finfo(np.float64).tiny
        if loss == "cross_entropy":
            # -log softmax(z)[label], from the probabilities
            p = np.take_along_axis(Y, np.asarray(y)[..., None], axis=-1)[..., 0]
            per = -np.log(np.maximum(p, tiny))
        else:
            t = np.asarray(y, dtype=np.float64).reshape(Y.shape)
            if loss == "mse":
                per = (Y - t) ** 2
            else:
                per = -(t * np.log(np.maximum(Y, tiny))
                        + (1 - t) * np.log(np.maximum(1 - Y, tiny)))
        per = per.reshape(per.shape[0], -1).mean(axis=1)
        return float(np.average(per, weights=w))

    # ---------------------------------------------------------------- progress
    def _progress(self, n_epochs, incremental):
        """Return (print per-epoch lines?, tqdm bar or None)."""
        if not self.verbose:
            return False, None
        if tqdm is not None and self.verbose == 1 and not incremental:
            bar = tqdm(total=n_epochs, desc=type(self).__name__, unit="epoch",
                       file=sys.stdout, leave=True, dynamic_ncols=True)
            return False, bar
        return True, None

    def _report(self, lines, bar, epoch, n_epochs, seconds):
        if not self.verbose:
            return
        loss = self.loss_curve_[-1]
        val = self.validation_scores_[-1] if self.validation_scores_ else None
        norm, lr = self.grad_norm_curve_[-1], self.learning_rate_curve_[-1]
        if bar is not None:
            postfix = {"loss": f"{loss:.4g}"}
            if val is not None:
                postfix["val"] = f"{val:.4f}"
            postfix["|g|"] = f"{norm:.3g}"
            postfix["lr"] = f"{lr:.3g}"
            postfix["s/epoch"] = f"{seconds:.3f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
        if lines:
            msg = f"Epoch {self.n_iter_}"
            if n_epochs > 1:
                msg += f" ({epoch + 1}/{n_epochs})"
            msg += f": loss = {loss:.6g}"
            if val is not None:
                msg += f", validation score = {val:.4f}"
                msg += f", validation loss = {self.validation_loss_curve_[-1]:.6g}"
            msg += (f", grad norm median {norm:.3g} max "
                    f"{self.grad_norm_max_curve_[-1]:.3g}, clipped "
                    f"{self.clipped_fraction_curve_[-1]:.0%}, lr {lr:.3g}")
            msg += f", time = {seconds:.3f}s"
            self._print(bar, msg)

    @staticmethod
    def _print(bar, msg):
        if bar is not None and tqdm is not None:
            tqdm.write(msg, file=sys.stdout)
        else:
            print(msg, flush=True)

    # ---------------------------------------------------------------- predict
    def _forward(self, X):
        """Network outputs for validated X: (n, O) for "last" and "mean",
        else (n, T, O)."""
        return self.net_._readout(X, self.output)

    # ---------------------------------------------------------------- persistence
    def save(self, path):
        """Save the fitted estimator to ``path`` without pickle.

        The file is a NumPy ``.npz`` archive holding the weights and a JSON
        description (parameters, fitted attributes, class labels); load it
        with :func:`bptt.load`, which never unpickles. The optimizer's state
        is not saved: ``partial_fit`` after loading starts a fresh optimizer.

        Parameters
        ----------
        path : str or path-like
            Where to write; ``.npz`` is appended when missing (as
            :func:`numpy.savez` does).

        Returns
        -------
        path : str
            The path written.
        """
        return persistence.save(self, path)


_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_size : int, default=32
        Hidden units of the recurrent layer.
    cell : {{cells}}, default="gru"
        The recurrent cell (see :class:`bptt.RNN`). The default GRU learns
        the real series of the benchmark (docs/benchmarks.md, section 3),
        where the Elman cell stays near chance on the long ones (GunPoint,
        150 steps: 0.51 against 0.96).
    nonlinearity : {{"tanh", "relu"}}, default="tanh"
        Activation of the Elman ("rnn") cell.
    init : {{"orthogonal", "xavier", "identity", "uniform"}}, default="orthogonal"
        Initialisation of the recurrent weights W_hh. "identity" with
        ``nonlinearity="relu"`` is the IRNN of Le et al. (2015).
    output : {{"last", "sequence", "mean"}}, default="last"
        "last": many-to-one, one prediction per sequence from the last
        timestep (bidirectional: from the final state of each direction).
        "mean": many-to-one from the mean of the top layer's output over
        the sequence's timesteps. "sequence": many-to-many, a prediction at
        every timestep; y then has one target per timestep.
    optimizer : {{"sgd", "momentum", "adam"}}, default="adam"
        "sgd" is plain gradient descent, "momentum" adds heavy-ball momentum,
        "adam" is Kingma and Ba's Adam.
    learning_rate : float, default=0.003
        The step size (the initial one under a schedule). 0.01 made Adam
        oscillate on GunPoint (the training loss rising from 0.27 back to
        0.79), 0.003 converged on every seed of the benchmark.
    learning_rate_schedule : {{"constant", "plateau", "cosine"}}, default="plateau"
        How ``fit`` changes the step size from epoch to epoch
        (``learning_rate_curve_`` records it; ``partial_fit`` keeps
        ``learning_rate``). "constant": never. "plateau" (reduce on
        plateau): when the quantity the stopping rule watches (the training
        loss, or the validation score with ``early_stopping``) has not
        improved by ``tol`` for more than ``n_iter_no_change`` epochs, the
        rate is divided by 5 and the count starts again, up to 3 times
        (``learning_rate / 125``); only a plateau at that rate stops the
        fit. "cosine": ``learning_rate * (1 + cos(pi * e / max_epochs)) / 2``
        in epoch e = 0, 1, ... of the fit.
    alpha : float, default=0.0
        Strength of the L2 penalty (weight decay) as in MLP{kind}: the loss
        of a minibatch gains ``alpha / 2 * ||W||^2`` over every weight matrix
        (not the biases), divided by the minibatch's size (or its sample
        weights' sum).
    batch_size : int or "auto", default=32
        Sequences per minibatch (capped at n_samples); "auto" is
        ``min(200, n_samples)`` as in MLP{kind}.
    max_epochs : int, default={max_epochs}
        Maximum passes over the training data (``fit`` only; ``partial_fit``
        makes one pass).{max_epochs_why}
    clip_norm : float or None, default=5.0
        Clip the global L2 norm of all gradients together to at most this
        value before each step; None turns clipping off.
    truncate : int or None, default=None
        Truncated BPTT: with k, each batch is cut into windows of k timesteps;
        the weights are updated after each window (for ``output="last"`` only
        the last window has a loss, so the earlier ones are only run forward)
        while the hidden state is carried into the next window, so memory
        stays O(k) however long the sequences. None backpropagates through the
        whole sequence.
    shuffle : bool, default=True
        Shuffle the samples before every epoch.
    momentum : float, default=0.9
        Momentum of ``optimizer="momentum"``, in [0, 1).
    beta_1 : float, default=0.9
        Adam's decay rate of the first moment estimates, in [0, 1).
    beta_2 : float, default=0.999
        Adam's decay rate of the second moment estimates, in [0, 1).
    epsilon : float, default=1e-8
        Adam's numerical stability term.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data{stratified} and
        stop when the validation score ({score}) has not improved by at least
        ``tol`` for ``n_iter_no_change`` consecutive epochs; the weights of
        the best epoch are restored. ``fit`` only.
    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping, in (0, 1).
    n_iter_no_change : int, default=50
        Epochs without improvement (of the training loss, or of the validation
        score with early stopping) after which training stops (with
        ``learning_rate_schedule="plateau"``, after which the rate is cut; a
        stall at the lowest rate stops). 10, MLP's value, stopped the
        recurrent networks in their first plateau (GunPoint at the loss of
        chance, ln 2).
    tol : float, default=1e-4
        The improvement that counts for ``n_iter_no_change``.
    warm_start : bool, default=False
        When True, ``fit`` continues from the fitted network instead of
        starting a new one.
    dtype : {{"float32", "float64"}}, default="float32"
        Floating type of the weights and of every computation. float32
        trains about 3 times faster and was as accurate on the benchmark.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the shuffling and the validation split;
        an int gives the same model bit for bit on every fit.
    verbose : int, default=0
        0 is silent. 1 shows per-epoch progress (the loss, the validation
        score when there is one, the median gradient norm, the learning
        rate, the time per epoch): a tqdm progress bar when tqdm is
        installed, otherwise one line per epoch; 2 always prints one line
        per epoch, with the gradient norms (median and max), the fraction
        of updates clipped and the learning rate.
    num_layers : int, default=1
        Stacked recurrent layers (``bptt.RNN``'s ``num_layers``).
    bidirectional : bool, default=False
        Each layer runs in both directions. Truncated training (``truncate``)
        carries the state forward in time, so it needs one direction.
    dropout : float in [0, 1), default=0.0
        Dropout on the outputs of every layer but the last, while fitting.{extra}
"""

_CLASS_WEIGHT_DOC = """
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes ``{class_label: weight}`` (classes left out
        weigh 1); "balanced" is ``n_samples / (n_classes * np.bincount(y))``
        as in scikit-learn. Each sequence's weight is its class's, times its
        ``sample_weight``. Needs ``output="last"`` and class labels (not a
        multilabel y); "balanced" is refused by ``partial_fit``."""

_ATTRIBUTES_DOC = """
    net_ : bptt.RNN
        The trained network.
    n_features_in_ : int
        Features per timestep seen during fit (1 for a 2-D X).
    n_iter_ : int
        Epochs run so far (``partial_fit`` counts one per call).
    loss_curve_ : list of float
        Mean training loss of each epoch.
    best_loss_ : float or None
        Lowest training loss seen; None with early stopping.
    validation_scores_ : list of float or None
        Validation score of each epoch with early stopping, otherwise None.
    validation_loss_curve_ : list of float or None
        Mean loss on the validation split after each epoch with early
        stopping (weighted by the sample weights, without the L2 penalty),
        otherwise None.
    grad_norm_curve_ : list of float
        Per epoch, the median over its updates of the global L2 norm of all
        gradients together (the L2 penalty's included), before clipping.
    grad_norm_max_curve_ : list of float
        Per epoch, the largest of those norms.
    clipped_fraction_curve_ : list of float
        Per epoch, the fraction of its updates whose norm exceeded
        ``clip_norm`` and was clipped (0 without clipping).
    learning_rate_curve_ : list of float
        Per epoch, the step size in use (``learning_rate`` under the
        schedule; Adam's bias correction not included).
    best_validation_score_ : float or None
        Best validation score with early stopping, otherwise None.
"""


# What fit's docstrings say of how training ends, the same for both estimators.
_FIT_OUTCOMES = """Raises
------
FloatingPointError
    When the loss or the weights become non-finite; the message names
    the epoch and the estimator keeps its last finite weights (with
    ``early_stopping``, those of its best validation score).
KeyboardInterrupt
    Passed on (Ctrl-C is honoured between minibatches, and inside
    one between chunks of its timesteps). The estimator keeps the
    weights of its last complete update, never part of one (with
    ``early_stopping``, those of its best validation score), and can
    predict or be fitted again.

Warns
-----
ConvergenceWarning
    When ``max_epochs`` ran out while the loss still improved; or
    when training diverged: the last epoch's mean training loss ended
    more than 10 times above the lowest seen, the initial weights'
    (measured on the first minibatch) included. The estimator then
    keeps the weights of that lowest loss (with ``early_stopping``,
    those of its best validation score), not the diverged ones, and
    the warning says which. ``partial_fit`` does not check this."""


def _sequences_doc(text):
    outcomes = "\n".join(("        " + line).rstrip() for line in _FIT_OUTCOMES.split("\n"))
    text = text.replace("        FIT_OUTCOMES", outcomes)
    text = text.replace("SAMPLE_WEIGHT", "sample_weight : array-like of shape (n_samples,), "
                        "default=None\n            Non-negative weight of each sequence "
                        "(not all zero): the loss is\n            the weighted mean. None "
                        "weighs every sequence alike.")
    return text.replace("SEQUENCES", "X : array-like of shape (n_samples, n_timesteps, n_features)\n"
                        "            Sequences, batch-first; a 2-D X is read as univariate "
                        "series\n            (n_samples, n_timesteps).")


@persistence.register
class RNNRegressor(RegressorMixin, _BaseRNN):
    # The docstring is assembled below from the shared parameter list.

    def __init__(
        self,
        hidden_size=32,
        *,
        cell="gru",
        nonlinearity="tanh",
        init="orthogonal",
        output="last",
        optimizer="adam",
        learning_rate=0.003,
        learning_rate_schedule="plateau",
        alpha=0.0,
        batch_size=32,
        # The classifier's 300 epochs overfit a regression: sunspots' one-step
        # RMSE grows from 18.6 (50 epochs) and 19.6 (100) to 25.1 (300), seeds
        # 0-4 (docs/benchmarks.md section 3, "The regressor's defaults"); 100
        # leaves the plateau schedule (patience 50) room to act.
        max_epochs=100,
        clip_norm=5.0,
        truncate=None,
        shuffle=True,
        momentum=0.9,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=50,
        tol=1e-4,
        warm_start=False,
        dtype="float32",
        random_state=None,
        verbose=0,
        num_layers=1,
        bidirectional=False,
        dropout=0.0,
    ):
        super().__init__(
            hidden_size, cell=cell, nonlinearity=nonlinearity, init=init, output=output,
            optimizer=optimizer, learning_rate=learning_rate,
            learning_rate_schedule=learning_rate_schedule, alpha=alpha,
            batch_size=batch_size, max_epochs=max_epochs, clip_norm=clip_norm,
            truncate=truncate, shuffle=shuffle, momentum=momentum, beta_1=beta_1,
            beta_2=beta_2, epsilon=epsilon, early_stopping=early_stopping,
            validation_fraction=validation_fraction, n_iter_no_change=n_iter_no_change,
            tol=tol, warm_start=warm_start, dtype=dtype, random_state=random_state,
            verbose=verbose, num_layers=num_layers, bidirectional=bidirectional,
            dropout=dropout)

    def _stratify_validation(self):
        return False

    def _output_layer(self):
        return self.n_outputs_, "identity", "mse"

    def _validate_targets(self, y, X, reset, classes=None):
        self._check_y_present(y)
        ragged = (self._ragged_sequence_target(y, X) if self.output == "sequence"
                  else None)
        if ragged is not None:
            # NaN padding, as the network's training API takes it with NaN-padded X
            y = as_numeric_array(ragged[0], "y").astype(np.dtype(self.dtype).type)
            y[~ragged[1]] = np.nan
        else:
            y = check_array(y, ensure_2d=False, allow_nd=True,
                            dtype=np.dtype(self.dtype).type, input_name="y",
                            estimator=self)
        check_consistent_length(X, y)
        if self.output != "sequence":
            if y.ndim not in (1, 2):
                raise ValueError(
                    f"With output={self.output!r}, y must have shape (n_samples,) or "
                    f"(n_samples, n_outputs); got y of shape {y.shape}."
                )
            n_outputs = 1 if y.ndim == 1 else y.shape[1]
        else:
            self._check_sequence_target_shape(y, X, (2, 3))
            n_outputs = 1 if y.ndim == 2 else y.shape[2]
            if n_outputs == 0:
                raise ValueError(f"y has 0 outputs (shape={y.shape}); at least 1 is required.")
        if reset:
            self.n_outputs_ = n_outputs
        elif n_outputs != self.n_outputs_:
            raise ValueError(
                f"y has {n_outputs} output(s), but {type(self).__name__} was fitted "
                f"with {self.n_outputs_}."
            )
        return y, y

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network on sequences X and targets y.

        Parameters
        ----------
        SEQUENCES
        y : array-like
            ``output="last"``: of shape (n_samples,) or (n_samples, n_outputs).
            ``output="sequence"``: of shape (n_samples, n_timesteps) or
            (n_samples, n_timesteps, n_outputs).
        SAMPLE_WEIGHT

        Returns
        -------
        self : RNNRegressor
            The fitted estimator.

        FIT_OUTCOMES
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch (one pass over X, y) from the current weights.

        Parameters
        ----------
        SEQUENCES
        y : array-like
            Targets, as in :meth:`fit`.
        SAMPLE_WEIGHT

        Returns
        -------
        self : RNNRegressor
            The updated estimator.
        """
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X):
        """Predict with the trained network; does not change the estimator.

        Parameters
        ----------
        SEQUENCES

        Returns
        -------
        y : ndarray
            ``output="last"``: of shape (n_samples,) or (n_samples, n_outputs);
            ``output="sequence"``: of shape (n_samples, n_timesteps) or
            (n_samples, n_timesteps, n_outputs); for ragged X in X's form, a
            list of (T_i,) or (T_i, n_outputs) arrays for a list, NaN where
            X is padding for a NaN-padded X.
        """
        check_is_fitted(self)
        Xv = self._validate_X(X, reset=False)
        Y = self._forward(Xv)
        Y = Y[..., 0] if self.n_outputs_ == 1 else Y
        if self.output != "sequence":
            return Y
        return self._in_input_form(Y, X, self._real_steps(Xv))

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R^2 of the predictions.

        With ``output="sequence"`` every timestep counts as one sample.

        Parameters
        ----------
        SEQUENCES
        y : array-like
            True targets, shaped as for :meth:`fit`.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            R^2 (uniform average over outputs).
        """
        Xv = self._validate_X(X, reset=False)
        ragged = (self._ragged_sequence_target(y, Xv) if self.output == "sequence"
                  else None)
        if ragged is not None:
            return self._validation_score(Xv, ragged[0], sample_weight)
        y_pred = self.predict(X)
        y = np.asarray(y)
        return self._r2(y, y_pred, sample_weight)

    def _r2(self, y, y_pred, sample_weight=None, real=None):
        if real is not None:
            # over the real timesteps of ragged sequences only, each a sample
            if sample_weight is not None:
                sample_weight = np.repeat(np.asarray(sample_weight), real.sum(axis=1))
            return r2_score(y[real], y_pred[real], sample_weight=sample_weight)
        if y.shape != y_pred.shape and y.size == y_pred.size:
            y = y.reshape(y_pred.shape)
        if self.output == "sequence" and y.shape == y_pred.shape:
            n, T = y.shape[:2]
            y, y_pred = y.reshape(n * T, -1), y_pred.reshape(n * T, -1)
            if sample_weight is not None:
                sample_weight = np.repeat(np.asarray(sample_weight), T)
        return r2_score(y, y_pred, sample_weight=sample_weight)

    def _validation_score(self, X, y, sample_weight=None):
        y_pred = self._forward(X)
        real = self._real_steps(X) if self.output == "sequence" else None
        return self._r2(y, y_pred[..., 0] if self.n_outputs_ == 1 else y_pred,
                        sample_weight, real)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.target_tags.multi_output = True
        return tags


@persistence.register
class RNNClassifier(ClassifierMixin, _BaseRNN):
    # The docstring is assembled below from the shared parameter list.

    _parameter_constraints: dict = {
        **_BaseRNN._parameter_constraints,
        "class_weight": [StrOptions({"balanced"}), dict, None],
    }

    def __init__(
        self,
        hidden_size=32,
        *,
        cell="gru",
        nonlinearity="tanh",
        init="orthogonal",
        output="last",
        optimizer="adam",
        learning_rate=0.003,
        learning_rate_schedule="plateau",
        alpha=0.0,
        batch_size=32,
        max_epochs=300,
        clip_norm=5.0,
        truncate=None,
        shuffle=True,
        momentum=0.9,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=50,
        tol=1e-4,
        warm_start=False,
        dtype="float32",
        random_state=None,
        verbose=0,
        num_layers=1,
        bidirectional=False,
        dropout=0.0,
        class_weight=None,
    ):
        super().__init__(
            hidden_size, cell=cell, nonlinearity=nonlinearity, init=init, output=output,
            optimizer=optimizer, learning_rate=learning_rate,
            learning_rate_schedule=learning_rate_schedule, alpha=alpha,
            batch_size=batch_size, max_epochs=max_epochs, clip_norm=clip_norm,
            truncate=truncate, shuffle=shuffle, momentum=momentum, beta_1=beta_1,
            beta_2=beta_2, epsilon=epsilon, early_stopping=early_stopping,
            validation_fraction=validation_fraction, n_iter_no_change=n_iter_no_change,
            tol=tol, warm_start=warm_start, dtype=dtype, random_state=random_state,
            verbose=verbose, num_layers=num_layers, bidirectional=bidirectional,
            dropout=dropout)
        self.class_weight = class_weight

    def _stratify_validation(self):
        return self.output != "sequence" and not self._is_multilabel()

    def _is_multilabel(self):
        """Whether the fitted targets are a multilabel indicator matrix."""
        flag = self.__dict__.get("_multilabel")
        if flag is not None:
            return flag
        # after bptt.load: only multilabel has several sigmoid outputs
        net = self.__dict__.get("net_")
        return bool(net is not None and net.output_activation == "sigmoid"
                    and net.output_size > 1)

    def _output_layer(self):
        n_classes = len(self.classes_)
        if self._is_multilabel():
            return n_classes, "sigmoid", "binary_cross_entropy"
        if n_classes == 2:
            return 1, "sigmoid", "binary_cross_entropy"
        return n_classes, "softmax", "cross_entropy"

    def _sample_weights(self, sample_weight, y_raw, n_samples, incremental):
        dtype = np.dtype(self.dtype).type
        weights = check_sample_weight(sample_weight, n_samples, dtype)
        if self.class_weight is None:
            return weights
        if self._is_multilabel() or self.output != "last":
            raise ValueError(
                f"class_weight weighs whole sequences by their class, which needs "
                f"output='last' and one label per sequence; got output={self.output!r}"
                + (" with a multilabel y" if self._is_multilabel() else "")
                + ". Pass sample_weight instead."
            )
        if isinstance(self.class_weight, str) and incremental:
            raise ValueError(
                "class_weight='balanced' is not supported for partial_fit: one call "
                "sees part of the data. Compute the weights from all of y (e.g. "
                "sklearn.utils.class_weight.compute_class_weight) and pass them as "
                "a dict."
            )
        unknown = [k for k in (self.class_weight if isinstance(self.class_weight, dict)
                               else ()) if k not in set(self.classes_.tolist())]
        if unknown:
            raise ValueError(
                f"class_weight names classes that are not in classes_ "
                f"{self.classes_.tolist()}: {unknown}."
            )
        per_class = compute_class_weight(self.class_weight, classes=self.classes_, y=y_raw)
        per_sample = per_class[np.searchsorted(self.classes_, y_raw)]
        if weights is not None:
            per_sample = per_sample * weights
        return check_sample_weight(per_sample, n_samples, dtype)

    def _validate_multilabel(self, y, X, reset, classes):
        """Check a multilabel indicator matrix y (n_samples, n_labels) for
        output="last" (with output="sequence" a 2-D y is a label per step)."""
        check_consistent_length(X, y)
        n_labels = y.shape[1]
        if reset:
            if classes is not None and not np.array_equal(
                    np.asarray(classes), np.arange(n_labels)):
                raise ValueError(
                    f"For a multilabel indicator y, classes must be "
                    f"np.arange({n_labels}); got {classes!r}."
                )
            self.classes_ = np.arange(n_labels)
            self._multilabel = True
        elif not self._is_multilabel() or n_labels != len(self.classes_):
            raise ValueError(
                f"y is a multilabel indicator matrix of {n_labels} labels, but "
                f"{type(self).__name__} was fitted on "
                + (f"{len(self.classes_)} labels." if self._is_multilabel()
                   else "class labels; fit with warm_start=False to start anew.")
            )
        return y, y.astype(np.dtype(self.dtype).type)

    def _validate_targets(self, y, X, reset, classes=None):
        self._check_y_present(y)
        if self.output != "sequence":
            y_arr = np.asarray(y) if not hasattr(y, "toarray") else y.toarray()
            if y_arr.ndim == 2 and y_arr.shape[1] > 1:
                if type_of_target(y_arr) == "multilabel-indicator":
                    return self._validate_multilabel(y_arr, X, reset, classes)
                raise ValueError(
                    f"RNNClassifier takes y of shape (n_samples,) (class labels) or a "
                    f"multilabel indicator matrix (n_samples, n_labels) of 0 and 1; got "
                    f"y of shape {y_arr.shape} that is {type_of_target(y_arr)!r}."
                )
            if not reset and self._is_multilabel():
                raise ValueError(
                    f"{type(self).__name__} was fitted on a multilabel indicator "
                    f"matrix; y must be one of {len(self.classes_)} columns, got shape "
                    f"{y_arr.shape}."
                )
            y = column_or_1d(y, warn=True)
            check_consistent_length(X, y)
        else:
            ragged = self._ragged_sequence_target(y, X)
            y = np.asarray(y) if ragged is None else ragged[0]
            check_consistent_length(X, y)
            self._check_sequence_target_shape(y, X, (2,))
            if ragged is not None and y.dtype.kind == "f":
                # NaN padding made the labels floats: integral ones are ints
                real_y = y[ragged[1]]
                if np.array_equal(real_y, np.round(real_y)):
                    y = y.astype(np.int64)
        if reset:
            self._multilabel = False
        present = _unique_labels(y, "y")  # before sklearn sorts them (the
        # padding holds a real label, so it adds none)
        check_classification_targets(y.ravel())
        if reset:
            labels = present if classes is None else _unique_labels(classes, "classes")
            if labels.shape[0] < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes in "
                    f"the data, but the data contains only one class: {labels[0]!r}."
                )
            self.classes_ = labels
        unseen = np.setdiff1d(present, self.classes_)
        if unseen.size:
            raise ValueError(
                f"`y` has classes not in `self.classes_`. `self.classes_` has "
                f"{self.classes_}. 'y' has {np.unique(y)}."
            )
        codes = np.searchsorted(self.classes_, y)
        if len(self.classes_) == 2:
            codes = codes.astype(np.dtype(self.dtype).type)
            if self.output == "sequence" and self._real_steps(X) is not None:
                # the training API reads NaN as padding of a float target
                codes[~self._real_steps(X)] = np.nan
            return y, codes
        return y, codes.astype(np.int64)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network on sequences X and class labels y.

        Parameters
        ----------
        SEQUENCES
        y : array-like
            Class labels (numbers or strings): of shape (n_samples,) with
            ``output="last"``, (n_samples, n_timesteps) with
            ``output="sequence"``; or, multilabel, an indicator matrix of
            shape (n_samples, n_labels) of 0 and 1 (``output="last"``).
        SAMPLE_WEIGHT

        Returns
        -------
        self : RNNClassifier
            The fitted estimator.

        FIT_OUTCOMES
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch (one pass over X, y) from the current weights.

        Parameters
        ----------
        SEQUENCES
        y : array-like
            Class labels, as in :meth:`fit`.
        classes : array-like of shape (n_classes,), default=None
            Every class that can appear in y. Required on the first call;
            later calls may omit it (if given, it must not change). For a
            multilabel indicator y, ``np.arange(n_labels)``.
        SAMPLE_WEIGHT

        Returns
        -------
        self : RNNClassifier
            The updated estimator.
        """
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif classes is not None and not np.array_equal(self.classes_,
                                                        _unique_labels(classes, "classes")):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on last call to "
                f"partial_fit, was: {self.classes_!r}"
            )
        return self._fit(X, y, incremental=True, classes=classes,
                         sample_weight=sample_weight)

    def predict_proba(self, X):
        """Class probabilities; does not change the estimator.

        Parameters
        ----------
        SEQUENCES

        Returns
        -------
        proba : ndarray
            Of shape (n_samples, n_classes) with ``output="last"``,
            (n_samples, n_timesteps, n_classes) with ``output="sequence"``
            (for ragged X in X's form, as :meth:`predict`);
            the classes are ordered as in ``classes_``. Multilabel: (n_samples,
            n_labels), each label's probability (they need not sum to 1).
        """
        check_is_fitted(self)
        Xv = self._validate_X(X, reset=False)
        proba = self._proba(self._forward(Xv))
        if self.output != "sequence":
            return proba
        return self._in_input_form(proba, X, self._real_steps(Xv))

    def _proba(self, Y):
        if self._is_multilabel():
            return Y
        if len(self.classes_) == 2:
            p = Y[..., 0]
            return np.stack([1.0 - p, p], axis=-1)
        return Y

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        SEQUENCES

        Returns
        -------
        log_proba : ndarray
            Shaped as :meth:`predict_proba`.
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Predict class labels; does not change the estimator.

        Parameters
        ----------
        SEQUENCES

        Returns
        -------
        y : ndarray
            Labels from ``classes_``: of shape (n_samples,) with
            ``output="last"``, (n_samples, n_timesteps) with
            ``output="sequence"`` (for ragged X in X's form: a list of (T_i,)
            arrays, or NaN where a NaN-padded X is padding). Multilabel: the
            indicator matrix (n_samples, n_labels) of int, 1 where a label's
            probability exceeds 0.5.
        """
        check_is_fitted(self)
        Xv = self._validate_X(X, reset=False)
        labels = self._labels(self._proba(self._forward(Xv)))
        if self.output != "sequence":
            return labels
        return self._in_input_form(labels, X, self._real_steps(Xv))

    def _labels(self, proba):
        if self._is_multilabel():
            return (proba > 0.5).astype(int)
        return self.classes_[np.argmax(proba, axis=-1)]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy; with ``output="sequence"`` over every timestep.

        Parameters
        ----------
        SEQUENCES
        y : array-like
            True labels, shaped as for :meth:`fit`.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
        """
        Xv = self._validate_X(X, reset=False)
        ragged = (self._ragged_sequence_target(y, Xv) if self.output == "sequence"
                  else None)
        if ragged is not None:
            return self._validation_score(Xv, ragged[0], sample_weight)
        y_pred = self.predict(X)
        return self._accuracy(np.asarray(y), y_pred, sample_weight)

    def _accuracy(self, y, y_pred, sample_weight=None, real=None):
        if real is not None:
            # over the real timesteps of ragged sequences only, each a sample
            if sample_weight is not None:
                sample_weight = np.repeat(np.asarray(sample_weight), real.sum(axis=1))
            return accuracy_score(y[real], y_pred[real], sample_weight=sample_weight)
        if self.output == "sequence" and y.shape == y_pred.shape and y.ndim == 2:
            if sample_weight is not None:
                sample_weight = np.repeat(np.asarray(sample_weight), y.shape[1])
            return accuracy_score(y.ravel(), y_pred.ravel(), sample_weight=sample_weight)
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    def _validation_score(self, X, y, sample_weight=None):
        real = self._real_steps(X) if self.output == "sequence" else None
        return self._accuracy(y, self._labels(self._proba(self._forward(X))),
                              sample_weight, real)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.classifier_tags.multi_label = True
        return tags


RNNRegressor.__doc__ = """Recurrent network regressor trained by backpropagation through time.

    Fits a :class:`bptt.RNN` (recurrent layer, then a linear output layer)
    to minimise the mean squared error, many-to-one (``output="last"``) or
    many-to-many (``output="sequence"``); y may have several outputs.
""" + _PARAMETERS_DOC.format(
    kind="Regressor", stratified="", score="R^2", extra="", max_epochs=100,
    max_epochs_why=(" The classifier's default is 300: more epochs overfit\n"
                    "        the regression of the benchmark (sunspots, one-step RMSE 19.6\n"
                    "        at 100 epochs, 25.1 at 300; docs/benchmarks.md section 3).")) + """
    Attributes
    ----------""" + _ATTRIBUTES_DOC + """    n_outputs_ : int
        Outputs per prediction.

    See Also
    --------
    RNNClassifier : The classifier.
    bptt.RNN : The network.

    Examples
    --------
    Forecast the next value of a sine wave from the 10 values before it:

    >>> import numpy as np
    >>> from bptt import RNNRegressor
    >>> t = np.arange(400) * 0.2
    >>> series = np.sin(t)
    >>> X = np.stack([series[i:i + 10] for i in range(380)])  # (380, 10)
    >>> y = series[10:390]
    >>> reg = RNNRegressor(hidden_size=16, max_epochs=20, random_state=0)
    >>> reg = reg.fit(X[:300], y[:300])
    >>> reg.predict(X[300:]).shape
    (80,)
    >>> reg.score(X[300:], y[300:]) > 0.9
    True
"""

RNNClassifier.__doc__ = """Recurrent network classifier trained by backpropagation through time.

    Fits a :class:`bptt.RNN` to class labels (numbers or strings): two
    classes use one sigmoid output and binary cross-entropy, more classes a
    softmax output and cross-entropy. ``output="last"`` classifies each
    sequence, ``output="sequence"`` each timestep.
""" + _PARAMETERS_DOC.format(kind="Classifier", stratified=" (stratified by class "
                             "with output=\"last\")", score="accuracy",
                             extra=_CLASS_WEIGHT_DOC, max_epochs=300, max_epochs_why="") + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.""" + _ATTRIBUTES_DOC + """
    See Also
    --------
    RNNRegressor : The regressor.
    bptt.RNN : The network.

    Examples
    --------
    Tell rising from falling sequences:

    >>> import numpy as np
    >>> from bptt import RNNClassifier
    >>> rng = np.random.default_rng(0)
    >>> slope = rng.choice([-1.0, 1.0], size=200)
    >>> X = slope[:, None] * np.linspace(0, 1, 12) + 0.3 * rng.standard_normal((200, 12))
    >>> y = np.where(slope > 0, "up", "down")
    >>> clf = RNNClassifier(hidden_size=8, max_epochs=10, random_state=0).fit(X, y)
    >>> clf.classes_
    array(['down', 'up'], dtype='<U4')
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    >>> clf.score(X, y) > 0.9
    True
"""

for _cls in (RNNRegressor, RNNClassifier):
    # the cell line lists the registry's cells
    _cls.__doc__ = document_cells(_cls.__doc__)
    for _name in ("fit", "partial_fit", "predict", "predict_proba", "predict_log_proba",
                  "score"):
        _method = _cls.__dict__.get(_name)
        if _method is not None and _method.__doc__:
            _method.__doc__ = _sequences_doc(_method.__doc__)
del _cls, _name, _method
