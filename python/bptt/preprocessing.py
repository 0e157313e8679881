"""Preprocessing for sequences: :class:`SequenceScaler`, :class:`SequencePatcher`.

Design: every input form (a 3-D array, a 2-D array of univariate series, a
list of series, a NaN-padded array) is read once into a :class:`_Sequences`
view: the float arrays to scale, the form to give back, and the real
timesteps as one (n_real_timesteps, n_channels) matrix for the statistics.
The statistics are per channel over every real timestep of every series
(never per timestep), so a fitted scaler transforms series of any length,
and streaming updates combine batches with Chan et al.'s pairwise formula.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import FLOAT_DTYPES, _check_sample_weight, check_array, check_is_fitted

from ._validation import all_finite, padding_lengths

__all__ = ["SequenceScaler", "SequencePatcher"]


class _Sequences:
    """Validated sequences in one of the accepted forms.

    Attributes
    ----------
    arrays : list of ndarray of shape (T_i, F), or one ndarray of shape (n, T, F)
        Float views or copies to scale in place (a 2-D input is viewed as
        (n, T, 1), a 1-D list element as (T_i, 1)).
    form : {"array", "list"}
    shapes : the original shape of the array, or of each list element
    lengths : ndarray of int of shape (n,)
        Real timesteps of each series.
    n_channels : int
    """

    def __init__(self, X, *, copy, owner, writeable=True):
        self.owner = owner
        # transform scales in place: a read-only array (a memmap) is copied
        self._ensure = _writeable if writeable else (lambda arr: arr)
        if hasattr(X, "toarray") or hasattr(X, "tocsr"):  # scipy.sparse
            raise TypeError(
                f"{owner} does not accept sparse input: sequences are dense; "
                f"convert with X.toarray() (got {type(X).__name__})."
            )
        if isinstance(X, (list, tuple)):
            self._read_list(X, copy)
        else:
            self._read_array(X, copy)

    # ------------------------------------------------------------- readers
    def _read_list(self, X, copy):
        self.form = "list"
        if len(X) == 0:
            raise ValueError(
                f"Found an empty list of sequences while a minimum of 1 is "
                f"required by {self.owner}."
            )
        arrays, shapes, channels = [], [], None
        for i, seq in enumerate(X):
            name = f"X[{i}]"
            arr = check_array(seq, ensure_2d=False, allow_nd=True, dtype=FLOAT_DTYPES,
                              ensure_all_finite=False, ensure_min_samples=0,
                              ensure_min_features=0, copy=copy, input_name=name)
            if arr.ndim not in (1, 2):
                raise ValueError(
                    f"Each sequence of a list must have shape (n_timesteps, "
                    f"n_features) or (n_timesteps,); got {name} of shape "
                    f"{arr.shape}."
                )
            if arr.shape[0] == 0:
                raise ValueError(
                    f"{name} has 0 timesteps while a minimum of 1 is required by "
                    f"{self.owner}."
                )
            view = arr.reshape(arr.shape[0], -1)
            if view.shape[1] == 0:
                raise ValueError(
                    f"{name} has 0 features (shape={arr.shape}) while a minimum of "
                    f"1 is required by {self.owner}."
                )
            if channels is None:
                channels = view.shape[1]
            elif view.shape[1] != channels:
                raise ValueError(
                    f"Every sequence must have the same number of features: X[0] "
                    f"has {channels}, {name} has {view.shape[1]}."
                )
            if not all_finite(arr):
                what = "NaN" if np.isnan(arr).any() else "infinity"
                raise ValueError(
                    f"Input {name} contains {what}. A list of sequences holds "
                    f"each series at its own length, without padding: NaN is "
                    f"only accepted as trailing padding of an array (n_samples, "
                    f"n_timesteps, n_features)."
                )
            arrays.append(self._ensure(view))
            shapes.append(arr.shape)
        self.arrays, self.shapes, self.n_channels = arrays, shapes, channels
        self.lengths = np.array([a.shape[0] for a in arrays])
        self.real = None

    def _read_array(self, X, copy):
        self.form = "array"
        X = check_array(X, ensure_2d=False, allow_nd=True, dtype=FLOAT_DTYPES,
                        ensure_all_finite=False, ensure_min_samples=1,
                        ensure_min_features=0, copy=copy, input_name="X")
        if X.ndim == 1:
            raise ValueError(
                f"Expected X of shape (n_samples, n_timesteps, n_features), or "
                f"(n_samples, n_timesteps) for univariate series; got a 1D array of "
                f"shape {X.shape}. Reshape your data: X.reshape(1, -1) if it is one "
                f"univariate series, or pass a list of series."
            )
        if X.ndim not in (2, 3):
            raise ValueError(
                f"Expected X of shape (n_samples, n_timesteps, n_features), or "
                f"(n_samples, n_timesteps) for univariate series, or a list of "
                f"sequences; got a {X.ndim}D array of shape {X.shape}."
            )
        n, T = X.shape[:2]
        if T == 0:
            raise ValueError(
                f"Found array with 0 timestep(s) (shape={X.shape}) while a minimum "
                f"of 1 is required by {self.owner}."
            )
        view = X.reshape(n, T, -1)
        if view.shape[2] == 0:
            raise ValueError(
                f"Found array with 0 feature(s) (shape={X.shape}) while a minimum "
                f"of 1 is required by {self.owner}."
            )
        self.shapes = X.shape
        self.arrays = self._ensure(view)
        self.n_channels = view.shape[2]
        self.real = None  # no padding: every timestep is real
        self.lengths = np.full(n, T)
        if not all_finite(view):
            self._read_padding(view)

    def _read_padding(self, X):
        """Check that NaN only pads whole trailing timesteps; find the lengths."""
        self.lengths = padding_lengths(X)
        self.real = np.arange(X.shape[1])[None, :] < self.lengths[:, None]

    # ------------------------------------------------------------- access
    def timesteps(self):
        """The real timesteps of every series, (sum of T_i, F); a view when
        the input is an unpadded array."""
        if self.form == "list":
            return np.concatenate(self.arrays, axis=0)
        if self.real is None:
            return self.arrays.reshape(-1, self.n_channels)
        return self.arrays[self.real]

    def timestep_weights(self, sample_weight):
        """Each real timestep's weight: its series' weight, in timesteps() order."""
        return np.repeat(sample_weight, self.lengths)

    def apply(self, func):
        """func(array) in place on every array; the result in the input's form."""
        if self.form == "list":
            out = []
            for arr, shape in zip(self.arrays, self.shapes):
                func(arr)
                out.append(arr.reshape(shape))
            return out
        func(self.arrays)  # NaN padding stays NaN
        return self.arrays.reshape(self.shapes)


def _writeable(arr):
    """arr, or a copy of it when it cannot be scaled in place (read-only)."""
    return arr if arr.flags.writeable else arr.copy()


def _batch_statistics(Z, weights, with_var):
    """Count, mean and sum of squared deviations of the rows of Z, in float64.

    Two passes (the mean, then the deviations from it), as StandardScaler's
    accumulators: a one-pass sum of squares loses the variance of channels
    whose mean is large.
    """
    if weights is None:
        count = Z.shape[0]
        mean = Z.sum(axis=0, dtype=np.float64) / count
    else:
        count = float(weights.sum())
        mean = (weights @ Z.astype(np.float64, copy=False)) / count
    if not with_var:
        return count, mean, None
    dev = Z.astype(np.float64) - mean  # one float64 copy
    dev *= dev
    m2 = dev.sum(axis=0) if weights is None else weights @ dev
    return count, mean, m2


class _SeriesTransformer(TransformerMixin, BaseEstimator):
    """What the series transformers share: scikit-learn's tags for input in
    the forms of the design's ragged input, returned in its own dtype."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        # NaN is accepted only as trailing padding, not as missing values
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class SequenceScaler(_SeriesTransformer):
    """Standardise each channel of sequences over all their timesteps.

    ``z = (x - mean_) / scale_``, where ``mean_`` and ``scale_`` are the mean
    and the standard deviation of each channel (feature) over every timestep
    of every training series: one statistic per channel, not per timestep,
    so the fitted scaler transforms series of any length, and a ``Pipeline``
    of it and an :class:`~bptt.RNNRegressor` or :class:`~bptt.RNNClassifier`
    accepts series of another length at predict time. This is scikit-learn's
    ``StandardScaler`` applied to the timesteps of all series stacked
    together (tslearn's ``TimeSeriesScalerMeanVariance`` scales each series
    by its own statistics instead).

    Accepted forms of X (those of :class:`~bptt.RNN`'s ragged input); the
    output has the form and dtype of the input:

    - an array of shape (n_samples, n_timesteps, n_features);
    - an array of shape (n_samples, n_timesteps): univariate series;
    - a list of arrays of shape (T_i, n_features) or (T_i,), one per series,
      each T_i >= 1; returned as a list of arrays of the same shapes;
    - an array padded with NaN, where the padding is whole trailing
      timesteps that are all NaN: the padding is skipped by the statistics
      and passes through ``transform`` unchanged. NaN anywhere else (a
      timestep with some but not all features NaN, a NaN timestep followed
      by a real one, a series without a real timestep) and infinity raise
      ``ValueError``.

    float32 and float64 inputs keep their dtype (the statistics are computed
    in float64); other numeric input is converted to float64.

    Parameters
    ----------
    with_mean : bool, default=True
        Subtract the mean of each channel.
    with_std : bool, default=True
        Divide by the standard deviation of each channel. A constant channel
        (zero variance, up to rounding) gets ``scale_`` 1, as in
        ``StandardScaler``.
    copy : bool, default=True
        False scales a float array input (or each float array of a list) in
        place when it can (``StandardScaler``'s ``copy``); the result must be
        used either way, as conversions still copy.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,) or None
        Mean of each channel over every timestep seen; None when neither
        ``with_mean`` nor ``with_std``.
    var_ : ndarray of shape (n_features,) or None
        Variance (ddof=0) of each channel; None when ``with_std=False``.
    scale_ : ndarray of shape (n_features,) or None
        ``sqrt(var_)``, 1 for constant channels; None when ``with_std=False``.
    n_features_in_ : int
        Features (channels) per timestep; 1 for a 2-D X.
    n_samples_seen_ : int or float
        Timesteps the statistics are over (the padding is not counted): the
        sum of the series' lengths, weighted by ``sample_weight`` when one
        was given (then a float). ``partial_fit`` adds to it.

    See Also
    --------
    sklearn.preprocessing.StandardScaler : the same for one vector per sample.

    Notes
    -----
    The scaler has no ``get_feature_names_out``: scikit-learn's feature
    names and its pandas output (``set_output``) describe the second axis
    of a 2-D table, which for sequences is time, and a 3-D output has no
    DataFrame form.

    Examples
    --------
    >>> import numpy as np
    >>> from bptt import SequenceScaler
    >>> X = np.array([[[1.0, 10.0], [3.0, 10.0]],
    ...               [[5.0, 10.0], [7.0, 10.0]]])      # (2, 2, 2)
    >>> scaler = SequenceScaler().fit(X)
    >>> scaler.mean_, scaler.scale_                     # channel 1 is constant
    (array([ 4., 10.]), array([2.23606798, 1.        ]))
    >>> scaler.transform(X[:, :1])                     # any length
    array([[[-1.34164079,  0.        ]],
    <BLANKLINE>
           [[ 0.4472136 ,  0.        ]]])
    >>> ragged = [np.array([1.0, 3.0, 5.0]), np.array([7.0])]  # univariate, T_i = 3, 1
    >>> [z.round(3) for z in SequenceScaler().fit_transform(ragged)]
    [array([-1.342, -0.447,  0.447]), array([1.342])]
    >>> padded = np.array([[1.0, 3.0, 5.0], [7.0, np.nan, np.nan]])  # the same, NaN-padded
    >>> SequenceScaler().fit_transform(padded).round(3)
    array([[-1.342, -0.447,  0.447],
           [ 1.342,    nan,    nan]])
    """

    _parameter_constraints = {
        "with_mean": ["boolean"],
        "with_std": ["boolean"],
        "copy": ["boolean"],
    }

    def __init__(self, *, with_mean=True, with_std=True, copy=True):
        self.with_mean = with_mean
        self.with_std = with_std
        self.copy = copy

    def _reset(self):
        for name in ("mean_", "var_", "scale_", "n_features_in_", "n_samples_seen_"):
            self.__dict__.pop(name, None)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Compute each channel's mean and standard deviation over all timesteps.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features) or (n_samples, n_timesteps), or list of array-like of shape (T_i, n_features) or (T_i,)
            Training series; NaN-padded arrays are accepted (see the class
            docstring).
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            A weight per series, given to each of its timesteps: weight 2
            is the same as passing the series twice.

        Returns
        -------
        self : SequenceScaler
            The fitted scaler.
        """
        self._reset()
        return self._partial_fit(X, sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the statistics with more series (streaming, as StandardScaler's).

        The result equals one :meth:`fit` on all the series passed so far
        (up to rounding): batches are combined with the pairwise update of
        Chan, Golub and LeVeque, which stays accurate for large means.

        Parameters
        ----------
        X : array-like or list of array-like
            Series, in any form :meth:`fit` accepts.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            A weight per series.

        Returns
        -------
        self : SequenceScaler
            The updated scaler.
        """
        return self._partial_fit(X, sample_weight)

    def _partial_fit(self, X, sample_weight):
        first = not hasattr(self, "n_samples_seen_")
        seqs = _Sequences(X, copy=False, owner=type(self).__name__, writeable=False)
        if not first:
            self._check_channels(seqs)
        weights = None
        if sample_weight is not None:
            # every series has a timestep: a non-zero weight gives a positive total
            sample_weight = _check_sample_weight(
                sample_weight, seqs.lengths, dtype=np.float64, ensure_non_negative=True)
            weights = seqs.timestep_weights(sample_weight)
        need_mean = self.with_mean or self.with_std
        Z = seqs.timesteps()
        if need_mean:
            count, mean, m2 = _batch_statistics(Z, weights, self.with_std)
        else:
            count, mean, m2 = (Z.shape[0] if weights is None else float(weights.sum()),
                               None, None)
        if first:
            self.n_features_in_ = seqs.n_channels
        else:  # combine with the statistics so far (Chan et al.)
            seen = self.n_samples_seen_
            total = seen + count
            if need_mean:
                delta = mean - self.mean_
                mean = self.mean_ + delta * (count / total)
                if self.with_std:
                    m2 = self.var_ * seen + m2 + delta**2 * (seen * count / total)
            count = total
        self.n_samples_seen_ = count
        self.mean_ = mean
        if self.with_std:
            self.var_ = m2 / count
            scale = np.sqrt(self.var_)
            scale[_constant(self.var_, self.mean_, count)] = 1.0
            self.scale_ = scale
        else:
            self.var_ = self.scale_ = None
        return self

    def _check_channels(self, seqs):
        if seqs.n_channels != self.n_features_in_:
            hint = (" (a 2-D X is read as univariate series (n_samples, n_timesteps))"
                    if seqs.form == "array" and len(seqs.shapes) == 2 else "")
            raise ValueError(
                f"X has {seqs.n_channels} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input{hint}."
            )

    def transform(self, X, copy=None):
        """Standardise each channel: ``(X - mean_) / scale_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features) or (n_samples, n_timesteps), or list of array-like of shape (T_i, n_features) or (T_i,)
            Series of any length with the fitted number of features; NaN
            padding passes through.
        copy : bool, default=None
            Overrides ``self.copy`` when given.

        Returns
        -------
        X_scaled : ndarray of the shape of X, or list of ndarray of shapes (T_i, n_features) or (T_i,)
            In the form and float dtype of the input.
        """
        return self._apply(X, copy, inverse=False)

    def inverse_transform(self, X, copy=None):
        """Undo :meth:`transform`: ``X * scale_ + mean_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features) or (n_samples, n_timesteps), or list of array-like of shape (T_i, n_features) or (T_i,)
            Scaled series.
        copy : bool, default=None
            Overrides ``self.copy`` when given.

        Returns
        -------
        X_original : ndarray of the shape of X, or list of ndarray
            In the form and float dtype of the input.
        """
        return self._apply(X, copy, inverse=True)

    def _apply(self, X, copy, inverse):
        check_is_fitted(self)
        copy = self.copy if copy is None else copy
        seqs = _Sequences(X, copy=copy, owner=type(self).__name__)
        self._check_channels(seqs)
        mean = self.mean_ if self.with_mean else None
        scale = self.scale_ if self.with_std else None

        def scale_in_place(arr):
            # in the array's own dtype: float32 stays float32
            if inverse:
                if scale is not None:
                    arr *= scale.astype(arr.dtype)
                if mean is not None:
                    arr += mean.astype(arr.dtype)
            else:
                if mean is not None:
                    arr -= mean.astype(arr.dtype)
                if scale is not None:
                    arr /= scale.astype(arr.dtype)

        return seqs.apply(scale_in_place)


def _constant(var, mean, n_samples):
    """Channels whose variance is zero up to the rounding of its computation
    (scikit-learn's bound for the two-pass algorithm, Chan et al.)."""
    eps = np.finfo(np.float64).eps
    return var <= n_samples * eps * var + (n_samples * mean * eps) ** 2


class SequencePatcher(_SeriesTransformer):
    """Cap the recurrent steps: concatenate consecutive timesteps into one.

    Non-overlapping patches of ``patch_length_`` consecutive timesteps become
    one timestep whose features are theirs side by side, so a series of
    ``T`` steps and ``F`` features becomes ``ceil(T / patch_length_)`` steps
    of ``patch_length_ * F`` features. ``fit`` sets ``patch_length_ =
    ceil(T_ref / max_steps)``, where ``T_ref`` (``reference_length_``) is
    by default the longest training series, so no training series is
    longer than ``max_steps`` steps afterwards; series no longer than
    ``max_steps`` pass through unchanged (patch length 1). With series of
    very different lengths, ``length_quantile`` takes ``T_ref`` from a
    quantile of the lengths instead (0.5: the median series gets
    ``max_steps`` steps, the longer ones more), so the short series are not
    reduced to a few steps. Every series gets the same patch length, so a
    step means the same span of time in every series.
    An RNN then runs ``patch_length_`` times fewer steps: backpropagation
    through time carries gradients over fewer products of Jacobians, and
    each step costs less than ``patch_length_`` steps of the original.

    The features of output step ``j`` are input timesteps ``j*p, ...,
    j*p + p - 1`` (``p = patch_length_``) in time order, each with its
    ``F`` features: output feature ``k*F + f`` is feature ``f`` of
    timestep ``j*p + k``. When ``T_i`` is not a multiple of ``p``, the last
    patch is completed by repeating the series' last real timestep (a
    value of the series' own scale; NaN would be a missing value inside a
    real timestep, which the estimators reject).

    Accepted forms of X, those of :class:`SequenceScaler` (the design's
    ragged input); the output has the form and dtype of the input:

    - an array of shape (n_samples, n_timesteps, n_features), or
      (n_samples, n_timesteps) for univariate series: returned as an array
      of shape (n_samples, ceil(n_timesteps / p), p * n_features) (3-D
      also for a 2-D input unless ``p == 1``, when it is returned as given);
    - a list of arrays of shape (T_i, n_features) or (T_i,): returned as a
      list of arrays of shape (ceil(T_i / p), p * n_features) (a 1-D
      element comes back 1-D when ``p == 1``);
    - an array padded with trailing all-NaN timesteps: each series is
      patched over its real timesteps and the output is NaN-padded after
      its ``ceil(T_i / p)`` real steps.

    Parameters
    ----------
    max_steps : int, default=64
        The most timesteps a training series of length ``T_ref`` keeps
        (every training series, with the default ``length_quantile``).
        Longer series, of test data or above the quantile, get
        proportionally more steps (the patch length is fixed by ``fit``).
    length_quantile : float in (0, 1], default=1.0
        Which training length ``T_ref`` gets ``max_steps`` steps: the
        ``length_quantile`` quantile of the real lengths of the training
        series, taken as one of those lengths (NumPy's ``method="higher"``).
        1.0 is the longest series; 0.5 the median one, for ragged data
        whose short series would otherwise keep a few steps (a series of
        100 steps among series of up to 1344 keeps 3 steps of 32 at 1.0).
        Training then runs up to ``T_max / T_ref`` times more steps on the
        longest series. Equal-length series give the same patch length
        for every value.

    Attributes
    ----------
    patch_length_ : int
        Timesteps per patch, ``ceil(reference_length_ / max_steps)``; 1
        when ``reference_length_`` is no longer than ``max_steps``.
    reference_length_ : int
        ``T_ref``: the ``length_quantile`` quantile of the real lengths of
        the training series (the longest one at 1.0).
    n_features_in_ : int
        Features (channels) per input timestep; 1 for a 2-D X.

    See Also
    --------
    SequenceScaler : standardise each channel first (the usual Pipeline is
        scaler, patcher, estimator).

    Notes
    -----
    The patches of PatchTST (Nie et al. 2023, "A time series is worth 64
    words") serve a Transformer; here they shorten the recurrence. The
    patcher has no ``inverse_transform`` (the padding of the last patch is
    not recorded) and no ``get_feature_names_out`` (see SequenceScaler).

    Examples
    --------
    >>> import numpy as np
    >>> from bptt import SequencePatcher
    >>> X = np.arange(10.0).reshape(1, 5, 2)             # 1 series, 5 steps, 2 features
    >>> patcher = SequencePatcher(max_steps=3).fit(X)
    >>> patcher.patch_length_
    2
    >>> patcher.transform(X)                              # (1, 3, 4): the last step repeated
    array([[[0., 1., 2., 3.],
            [4., 5., 6., 7.],
            [8., 9., 8., 9.]]])
    >>> [z.shape for z in patcher.transform([np.ones((4, 2)), np.ones((1, 2))])]
    [(2, 4), (1, 4)]

    Ragged series of lengths 10, 12 and 40 with ``max_steps=4``: from the
    longest, a patch of 10 steps leaves the short series one or two steps;
    from the median (12), a patch of 3 gives them four or five, and the
    longest 14:

    >>> ragged = [np.ones(10), np.ones(12), np.ones(40)]
    >>> SequencePatcher(max_steps=4).fit(ragged).patch_length_
    10
    >>> median = SequencePatcher(max_steps=4, length_quantile=0.5).fit(ragged)
    >>> median.reference_length_, median.patch_length_
    (12, 3)
    >>> [z.shape[0] for z in median.transform(ragged)]
    [4, 4, 14]
    """

    _parameter_constraints = {
        "max_steps": [Interval(Integral, 1, None, closed="left")],
        "length_quantile": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(self, max_steps=64, *, length_quantile=1.0):
        self.max_steps = max_steps
        self.length_quantile = length_quantile

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Set the patch length from a quantile of the training lengths
        (the longest series by default).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features) or (n_samples, n_timesteps), or list of array-like of shape (T_i, n_features) or (T_i,)
            Training series; NaN-padded arrays are accepted (the padding
            does not count towards the length).
        y : None
            Ignored.

        Returns
        -------
        self : SequencePatcher
            The fitted patcher.
        """
        seqs = _Sequences(X, copy=False, owner=type(self).__name__, writeable=False)
        self.n_features_in_ = seqs.n_channels
        # "higher": a training series' own length, the longest one at 1.0
        self.reference_length_ = int(np.quantile(seqs.lengths, self.length_quantile,
                                                 method="higher"))
        self.patch_length_ = -(-self.reference_length_ // self.max_steps)
        return self

    def transform(self, X):
        """Concatenate each ``patch_length_`` consecutive timesteps into one.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features) or (n_samples, n_timesteps), or list of array-like of shape (T_i, n_features) or (T_i,)
            Series of any length with the fitted number of features; NaN
            padding is accepted.

        Returns
        -------
        X_patched : ndarray of shape (n_samples, ceil(n_timesteps / p), p * n_features), or list of ndarray of shape (ceil(T_i / p), p * n_features)
            In the form and float dtype of the input (NaN-padded after each
            series' real steps); X unchanged in shape when ``p == 1``.
        """
        check_is_fitted(self)
        seqs = _Sequences(X, copy=False, owner=type(self).__name__, writeable=False)
        if seqs.n_channels != self.n_features_in_:
            raise ValueError(
                f"X has {seqs.n_channels} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
            )
        p = self.patch_length_
        if p == 1:  # nothing to concatenate: the validated input as it came
            if seqs.form == "list":
                return [a.reshape(s) for a, s in zip(seqs.arrays, seqs.shapes)]
            return seqs.arrays.reshape(seqs.shapes)
        if seqs.form == "list":
            return [_patch(a, p) for a in seqs.arrays]
        A, lengths = seqs.arrays, seqs.lengths
        n, T, F = A.shape
        steps = -(-lengths // p)
        if seqs.real is None:  # every series of length T
            return _patch_array(A, p)
        out = np.full((n, -(-T // p), p * F), np.nan, dtype=A.dtype)
        for length in np.unique(lengths):  # series of one length at a time
            rows = lengths == length
            out[rows, :steps[rows][0]] = _patch_array(A[rows, :length], p)
        return out


def _patch_array(A, p):
    """(n, T, F) -> (n, ceil(T / p), p * F), the last timestep repeated to
    fill the last patch."""
    n, T, F = A.shape
    fill = -T % p
    if fill:
        A = np.concatenate([A, np.repeat(A[:, -1:], fill, axis=1)], axis=1)
    return A.reshape(n, (T + fill) // p, p * F)


def _patch(a, p):
    """One series (T, F) -> (ceil(T / p), p * F)."""
    return _patch_array(a[None], p)[0]
