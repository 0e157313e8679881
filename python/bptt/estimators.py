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
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
)

from . import persistence
from ._cells import CELLS
from ._validation import check_ragged, check_timesteps, is_ragged
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
        cell="rnn",
        nonlinearity="tanh",
        init="orthogonal",
        output="last",
        optimizer="adam",
        learning_rate=0.01,
        batch_size=32,
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
        n_iter_no_change=10,
        tol=1e-4,
        warm_start=False,
        dtype="float64",
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
    def _validation_score(self, X, y_raw):
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
        if self.output == "sequence":
            raise ValueError(
                f"{name} takes ragged X (a list of sequences, or NaN padding) with "
                f"output='last' or 'mean'; per-timestep targets of ragged sequences "
                f"are not supported by the estimators yet (bptt.RNN.loss_and_grad "
                f"takes them).")
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
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
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

    def _fit(self, X, y, incremental=False, classes=None):
        first_call = not hasattr(self, "net_") or not (self.warm_start or incremental)
        X = self._validate_X(X, reset=first_call)
        y_raw, y_enc = self._validate_targets(y, X, reset=first_call, classes=classes)
        if first_call:
            self._initialize(X)
        else:
            self._check_warm_net()
            if not hasattr(self, "_random_state"):  # e.g. after bptt.load
                self._random_state = check_random_state(self.random_state)
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
        X_val = y_val = None
        if early_stopping:
            stratify = y_raw if self._stratify_validation() else None
            X, X_val, y_enc, _, y_raw, y_val = train_test_split(
                X, y_enc, y_raw, random_state=self._random_state,
                test_size=self.validation_fraction, stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
        try:
            self._run_epochs(X, y_enc, X_val, y_val, incremental, early_stopping)
        finally:
            # fit is over: the buffers net_ kept between batches (up to
            # _bptt.KEEP_WORKSPACE_BYTES) are not needed for predicting.
            # partial_fit keeps them for its next call, often one batch.
            if not incremental:
                self.net_.release_buffers()
        return self

    def _run_epochs(self, X, y, X_val, y_val, incremental, early_stopping):
        """The epoch loop, and the weights its end leaves in ``net_``.

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
                                        output=self.output)
        started = time.perf_counter()
        stopped = False
        best = None if incremental else _Best(self.net_.params)
        lowest = [np.inf, 0]
        try:
            for epoch in range(n_epochs):
                tic = time.perf_counter()
                order = rng.permutation(n_samples) if self.shuffle else np.arange(n_samples)
                total = 0.0
                for start in range(0, n_samples, batch_size):
                    idx = order[start:start + batch_size]
                    try:
                        loss = self._train_batch(data, idx)
                    except FloatingPointError as exc:
                        self._diverged(self.n_iter_ + 1, exc, early_stopping)
                    if epoch == 0 and start == 0:
                        lowest[0] = loss
                    total += loss * idx.shape[0]
                self.n_iter_ += 1
                self.loss_curve_.append(total / n_samples)
                if self.loss_curve_[-1] < lowest[0]:
                    lowest = [self.loss_curve_[-1], self.n_iter_]
                    if best is not None and not early_stopping:
                        best.update(self.net_.params, self.n_iter_)
                if early_stopping:
                    self.validation_scores_.append(
                        float(self._validation_score(X_val, y_val)))
                    if self.validation_scores_[-1] > self.best_validation_score_:
                        best.update(self.net_.params, self.n_iter_)
                self._report(lines, bar, epoch, n_epochs, time.perf_counter() - tic)
                if not incremental and self._no_improvement(early_stopping):
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
        )

    def _train_batch(self, data, rows):
        """One batch (samples ``rows`` of the training data): one update,
        or one per window of ``truncate`` steps.

        Returns the batch's mean loss.
        """
        T = data.n_timesteps
        k = self.truncate
        if k is None or k >= T:
            loss, grads, _ = data.loss_and_grad(rows)
            self._step(grads)
            return loss
        starts = range(0, T, k)
        state = None
        if self.output == "last":
            # Only the last window carries a loss: run the others forward to
            # carry the state, window by window (memory O(k)).
            for s in starts[:-1]:
                state = data.advance(rows, s, s + k, state)
            loss, grads, _ = data.loss_and_grad(rows, starts[-1], None, state)
            self._step(grads)
            return loss
        total = 0.0
        for s in starts:
            e = min(T, s + k)
            # the next window starts from the state this window's loss was
            # computed with (the weights before this window's update)
            loss, grads, state = data.loss_and_grad(rows, s, e, state)
            self._step(grads)
            total += loss * (e - s)
        return total / T

    def _step(self, grads):
        """Clip the gradients' global L2 norm and apply one optimizer step.

        Raises FloatingPointError, leaving the weights as they were, when the
        step would make any of them non-finite.
        """
        params = self.net_.params
        arrays = list(params.values())
        grads = [grads[name] for name in params]
        scale = 1.0
        if self.clip_norm is not None:
            norm = np.sqrt(sum(float(np.vdot(g, g)) for g in grads))
            if norm > self.clip_norm:
                scale = self.clip_norm / norm
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
            f"{kept}."
        ) from exc

    def _no_improvement(self, early_stopping):
        """Update the no-improvement count (as MLP does); True means stop."""
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
        return self._no_improvement_count > self.n_iter_no_change

    def _stop_message(self, early_stopping):
        what = "Validation score" if early_stopping else "Training loss"
        return (f"{what} did not improve more than tol={self.tol} for "
                f"{self.n_iter_no_change} consecutive epochs. Stopping.")

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
        if bar is not None:
            postfix = {"loss": f"{loss:.4g}"}
            if val is not None:
                postfix["val"] = f"{val:.4f}"
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
    cell : {{"rnn", "lstm", "gru"}}, default="rnn"
        The recurrent cell (see :class:`bptt.RNN`).
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
    learning_rate : float, default=0.01
        The step size.
    batch_size : int or "auto", default=32
        Sequences per minibatch (capped at n_samples); "auto" is
        ``min(200, n_samples)`` as in MLP{kind}.
    max_epochs : int, default=100
        Maximum passes over the training data (``fit`` only; ``partial_fit``
        makes one pass).
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
    n_iter_no_change : int, default=10
        Epochs without improvement (of the training loss, or of the validation
        score with early stopping) after which training stops.
    tol : float, default=1e-4
        The improvement that counts for ``n_iter_no_change``.
    warm_start : bool, default=False
        When True, ``fit`` continues from the fitted network instead of
        starting a new one.
    dtype : {{"float32", "float64"}}, default="float64"
        Floating type of the weights and of every computation.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the shuffling and the validation split;
        an int gives the same model bit for bit on every fit.
    verbose : int, default=0
        0 is silent. 1 shows per-epoch progress (the loss, the validation
        score when there is one, the time per epoch): a tqdm progress bar when
        tqdm is installed, otherwise one line per epoch; 2 always prints one
        line per epoch.
    num_layers : int, default=1
        Stacked recurrent layers (``bptt.RNN``'s ``num_layers``).
    bidirectional : bool, default=False
        Each layer runs in both directions. Truncated training (``truncate``)
        carries the state forward in time, so it needs one direction.
    dropout : float in [0, 1), default=0.0
        Dropout on the outputs of every layer but the last, while fitting.
"""

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
    return text.replace("SEQUENCES", "X : array-like of shape (n_samples, n_timesteps, n_features)\n"
                        "            Sequences, batch-first; a 2-D X is read as univariate "
                        "series\n            (n_samples, n_timesteps).")


@persistence.register
class RNNRegressor(RegressorMixin, _BaseRNN):
    # The docstring is assembled below from the shared parameter list.

    def _stratify_validation(self):
        return False

    def _output_layer(self):
        return self.n_outputs_, "identity", "mse"

    def _validate_targets(self, y, X, reset, classes=None):
        self._check_y_present(y)
        y = check_array(y, ensure_2d=False, allow_nd=True,
                        dtype=np.dtype(self.dtype).type, input_name="y", estimator=self)
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
    def fit(self, X, y):
        """Train the network on sequences X and targets y.

        Parameters
        ----------
        SEQUENCES
        y : array-like
            ``output="last"``: of shape (n_samples,) or (n_samples, n_outputs).
            ``output="sequence"``: of shape (n_samples, n_timesteps) or
            (n_samples, n_timesteps, n_outputs).

        Returns
        -------
        self : RNNRegressor
            The fitted estimator.

        FIT_OUTCOMES
        """
        return self._fit(X, y, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y):
        """Train for one epoch (one pass over X, y) from the current weights.

        Parameters
        ----------
        SEQUENCES
        y : array-like
            Targets, as in :meth:`fit`.

        Returns
        -------
        self : RNNRegressor
            The updated estimator.
        """
        return self._fit(X, y, incremental=True)

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
            (n_samples, n_timesteps, n_outputs).
        """
        check_is_fitted(self)
        Y = self._forward(self._validate_X(X, reset=False))
        return Y[..., 0] if self.n_outputs_ == 1 else Y

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
        y_pred = self.predict(X)
        y = np.asarray(y)
        return self._r2(y, y_pred, sample_weight)

    def _r2(self, y, y_pred, sample_weight=None):
        if y.shape != y_pred.shape and y.size == y_pred.size:
            y = y.reshape(y_pred.shape)
        if self.output == "sequence" and y.shape == y_pred.shape:
            n, T = y.shape[:2]
            y, y_pred = y.reshape(n * T, -1), y_pred.reshape(n * T, -1)
            if sample_weight is not None:
                sample_weight = np.repeat(np.asarray(sample_weight), T)
        return r2_score(y, y_pred, sample_weight=sample_weight)

    def _validation_score(self, X, y):
        y_pred = self._forward(X)
        return self._r2(y, y_pred[..., 0] if self.n_outputs_ == 1 else y_pred)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.target_tags.multi_output = True
        return tags


@persistence.register
class RNNClassifier(ClassifierMixin, _BaseRNN):
    # The docstring is assembled below from the shared parameter list.

    def _stratify_validation(self):
        return self.output != "sequence"

    def _output_layer(self):
        n_classes = len(self.classes_)
        if n_classes == 2:
            return 1, "sigmoid", "binary_cross_entropy"
        return n_classes, "softmax", "cross_entropy"

    def _validate_targets(self, y, X, reset, classes=None):
        self._check_y_present(y)
        if self.output != "sequence":
            y = column_or_1d(y, warn=True)
            check_consistent_length(X, y)
        else:
            y = np.asarray(y)
            check_consistent_length(X, y)
            self._check_sequence_target_shape(y, X, (2,))
        present = _unique_labels(y, "y")  # before sklearn sorts them
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
            return y, codes.astype(np.dtype(self.dtype).type)
        return y, codes.astype(np.int64)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the network on sequences X and class labels y.

        Parameters
        ----------
        SEQUENCES
        y : array-like
            Class labels (numbers or strings): of shape (n_samples,) with
            ``output="last"``, (n_samples, n_timesteps) with
            ``output="sequence"``.

        Returns
        -------
        self : RNNClassifier
            The fitted estimator.

        FIT_OUTCOMES
        """
        return self._fit(X, y, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """Train for one epoch (one pass over X, y) from the current weights.

        Parameters
        ----------
        SEQUENCES
        y : array-like
            Class labels, as in :meth:`fit`.
        classes : array-like of shape (n_classes,), default=None
            Every class that can appear in y. Required on the first call;
            later calls may omit it (if given, it must not change).

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
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities; does not change the estimator.

        Parameters
        ----------
        SEQUENCES

        Returns
        -------
        proba : ndarray
            Of shape (n_samples, n_classes) with ``output="last"``,
            (n_samples, n_timesteps, n_classes) with ``output="sequence"``;
            the classes are ordered as in ``classes_``.
        """
        check_is_fitted(self)
        return self._proba(self._forward(self._validate_X(X, reset=False)))

    def _proba(self, Y):
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
            ``output="sequence"``.
        """
        proba = self.predict_proba(X)
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
        y_pred = self.predict(X)
        return self._accuracy(np.asarray(y), y_pred, sample_weight)

    def _accuracy(self, y, y_pred, sample_weight=None):
        if self.output == "sequence" and y.shape == y_pred.shape and y.ndim == 2:
            if sample_weight is not None:
                sample_weight = np.repeat(np.asarray(sample_weight), y.shape[1])
            return accuracy_score(y.ravel(), y_pred.ravel(), sample_weight=sample_weight)
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    def _validation_score(self, X, y):
        y_pred = self.classes_[np.argmax(self._proba(self._forward(X)), axis=-1)]
        return self._accuracy(y, y_pred)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


RNNRegressor.__doc__ = """Recurrent network regressor trained by backpropagation through time.

    Fits a :class:`bptt.RNN` (recurrent layer, then a linear output layer)
    to minimise the mean squared error, many-to-one (``output="last"``) or
    many-to-many (``output="sequence"``); y may have several outputs.
""" + _PARAMETERS_DOC.format(kind="Regressor", stratified="", score="R^2") + """
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
                             "with output=\"last\")", score="accuracy") + """
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
    for _name in ("fit", "partial_fit", "predict", "predict_proba", "predict_log_proba",
                  "score"):
        _method = _cls.__dict__.get(_name)
        if _method is not None and _method.__doc__:
            _method.__doc__ = _sequences_doc(_method.__doc__)
del _cls, _name, _method
