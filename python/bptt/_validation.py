"""Input checks shared by :class:`bptt.RNN` and the estimators.

Every check either returns an array the kernels can take as it is
(C-contiguous, of the network's dtype) or raises a ``ValueError`` /
``TypeError`` that says what was expected and what was given, in
scikit-learn's wording where it has one. Nothing the caller passed is
modified: a conversion always copies when it would otherwise alias.
"""

import numbers

import numpy as np

from ._kernels import compiled_helpers

DTYPES = {"float32": np.float32, "float64": np.float64}


def check_choice(name, value, choices):
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{name} must be one of {sorted(choices)}; got {value!r}."
        )
    return value


def check_positive_int(name, value, allow_none=False):
    """Return ``value`` as int, raising unless it is an integer >= 1."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an integer >= 1{' or None' if allow_none else ''}; "
            f"got {value!r} of type {type(value).__name__}."
        )
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value}.")
    return int(value)


COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_timesteps(X, owner):
    """Raise when the sequences in ``X`` have no timestep.

    One message for every form of X: the second axis is time in a 3-D X
    (n_samples, n_timesteps, n_features) and in a 2-D one, which the
    estimators read as univariate series (n_samples, n_timesteps).
    """
    if X.shape[1] == 0:
        raise ValueError(
            f"Found array with 0 timestep(s) (shape={X.shape}) while a minimum of 1 "
            f"is required by {owner}: every sequence needs a timestep (the second "
            f"axis of X is time)."
        )


_inputs = []  # [bptt._inputs of this CPU's build, or None], once looked up


def _compiled_inputs():
    """bptt._inputs of the build this CPU runs, or None when not built."""
    if not _inputs:  # a list beats compiled_helpers' cache on this hot path
        _inputs.append(compiled_helpers("inputs"))
    return _inputs[0]


def check_dtype(dtype):
    """Map "float32" / "float64" (or the NumPy types) to a NumPy type."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved in (np.dtype(np.float32), np.dtype(np.float64)):
        return resolved.type
    raise ValueError(f"dtype must be one of ['float32', 'float64']; got {dtype!r}.")


def as_numeric_array(x, name):
    """``np.asarray`` that rejects complex, string and object data clearly.

    Numbers only: an array of strings (even numeric ones such as "1.5") is
    refused, not parsed; an object array is converted to float64 when it
    holds numbers only (no str/bytes).
    """
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(
            f"{name} must be a numeric array of consistent shape; could not "
            f"convert it: {exc}"
        ) from None
    if arr.dtype.kind == "c":
        raise ValueError(f"Complex data not supported; {name} has dtype {arr.dtype}.")
    if arr.dtype.kind in "USV" or (
            arr.dtype.kind == "O"
            and any(isinstance(v, (str, bytes)) for v in arr.ravel())):
        what = "of raw bytes" if arr.dtype.kind == "V" else "of strings"
        raise ValueError(
            f"{name} must contain numbers; got an array {what} (dtype {arr.dtype}), "
            f"which is not converted."
        )
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(
                f"{name} must contain numbers; got an array of dtype {arr.dtype} "
                f"that cannot be converted to float."
            ) from None
    elif arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must contain numbers; got dtype {arr.dtype}.")
    return arr


def all_finite(arr):
    """True when the float array ``arr`` holds no NaN and no infinity.

    Contiguous float32/float64 arrays take one compiled pass over their
    exponent bits (bptt._inputs, when built); anything else, and the NumPy
    backend without the compiled modules, one NumPy reduction: NaN and inf
    propagate into the sum, so a finite sum means finite data (an
    overflowing sum falls through to the elementwise test).
    """
    if arr.dtype in COMPILED_DTYPES and arr.flags.c_contiguous:
        checks = _compiled_inputs()
        if checks is not None:
            return checks.all_finite(arr.reshape(-1))
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is handled
        return bool(np.isfinite(arr.sum()) or np.isfinite(arr).all())


def check_finite(arr, name, before=None):
    """Raise scikit-learn's message when ``arr`` holds NaN or infinity.

    ``before``, when given, is the array ``arr`` was cast from: an infinity
    that only the cast made (1e39 into float32) is named as an overflow.
    """
    if arr.dtype.kind == "f" and not all_finite(arr):
        if np.isnan(arr).any():
            raise ValueError(f"Input {name} contains NaN.")
        if (before is not None and before.dtype != arr.dtype
                and (before.dtype.kind != "f" or all_finite(before))):
            big = np.abs(before[np.isinf(arr)]).max()
            raise ValueError(
                f"Input {name} holds a value too large for {arr.dtype.name} "
                f"({big:.4g}; the largest is {np.finfo(arr.dtype).max:.4g}): it "
                f"overflows to infinity in the network's dtype."
            )
        raise ValueError(
            f"Input {name} contains infinity or a value too large for {arr.dtype!r}."
        )


def cast_finite(arr, dtype, name, copy=False):
    """``arr`` cast to ``dtype``, checked for NaN/inf after the cast.

    Checking before the cast would let 1e39 through into a float32 network
    as infinity. The result is C-contiguous when ``copy`` (always a new
    array), else ``arr.astype(dtype, copy=False)`` (``arr`` itself when it
    already has the dtype).
    """
    if arr.dtype == dtype:
        # nothing can overflow; np.errstate alone costs ~10 us, a third of
        # a small training step
        out = np.array(arr, order="C", copy=True) if copy else arr
    else:
        with np.errstate(over="ignore"):  # the overflow is reported below
            if copy:
                out = np.array(arr, dtype=dtype, order="C", copy=True)
            else:
                out = arr.astype(dtype, copy=False)
    check_finite(out, name, before=arr)
    return out


def check_sequences(X, input_size, dtype, name="X", owner="RNN"):
    """Validate batch-first sequences.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_timesteps, n_features)
    input_size : int
        Expected n_features.
    dtype : numpy float type
        dtype of the returned array.

    Returns
    -------
    X : ndarray of shape (n_samples, n_timesteps, n_features)
        ``X`` itself when it already is an ndarray of ``dtype`` (it is only
        read), otherwise a converted copy. The kernels take time-major
        chunks of it (see :func:`time_major`).
    """
    X = as_numeric_array(X, name)
    if X.ndim != 3:
        raise ValueError(
            f"Expected a 3D array {name} of shape (n_samples, n_timesteps, "
            f"n_features); got a {X.ndim}D array of shape {X.shape}."
        )
    n, T, features = X.shape
    if n == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 "
            f"is required."
        )
    check_timesteps(X, owner)
    if features != input_size:
        raise ValueError(
            f"{name} has {features} features, but {owner} is expecting "
            f"{input_size} features as input."
        )
    return cast_finite(X, dtype, name)


def check_state(h0, n_samples, hidden_size, dtype, pair=False):
    """Validate an initial state, as ``RNN.forward``'s ``h0`` and ``reset``.

    Parameters
    ----------
    h0 : array-like of shape (n_samples, hidden_size), tuple of two, or None
        The state; with ``pair`` (the LSTM) a tuple or list (h0, c0) of
        such arrays. None gives zeros.
    n_samples, hidden_size : int
    dtype : numpy float type
    pair : bool, default=False

    Returns
    -------
    state : ndarray of shape (n_samples, hidden_size), or a tuple of two
        New C-contiguous arrays of ``dtype``, finite after the cast.
    """
    if h0 is None:
        zeros = np.zeros((n_samples, hidden_size), dtype)
        return (zeros, zeros.copy()) if pair else zeros
    if not pair:
        return _check_state_array(h0, "h0", n_samples, hidden_size, dtype)
    if not isinstance(h0, (tuple, list)) or len(h0) != 2:
        raise ValueError(
            f"h0 for an lstm must be a tuple (h0, c0) of arrays of shape "
            f"({n_samples}, {hidden_size}); got {type(h0).__name__}"
            f"{f' of length {len(h0)}' if isinstance(h0, (tuple, list)) else ''}."
        )
    return tuple(_check_state_array(s, name, n_samples, hidden_size, dtype)
                 for s, name in zip(h0, ("h0", "c0")))


def _check_state_array(h, name, n_samples, hidden_size, dtype):
    h = as_numeric_array(h, name)
    if h.shape != (n_samples, hidden_size):
        raise ValueError(
            f"{name} must have shape (n_samples, hidden_size) = "
            f"({n_samples}, {hidden_size}); got shape {h.shape}."
        )
    return cast_finite(h, dtype, name, copy=True)


def time_major(X, start, stop, out, slabs=1, n_threads=1):
    """Copy timesteps start..stop-1 of batch-first X into out, time-major.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_timesteps, n_features)
    start, stop : int
    out : C-contiguous ndarray of shape (>= slabs * (stop - start), n_samples / slabs, n_features)
    slabs : int
        Batch slabs (src/_cellparts.pxd): slab k of out, its timesteps one
        after another, holds samples k * n_samples / slabs onwards.
    n_threads : int
        Threads of bptt's pool copying the slabs, one slab each (compiled only).

    Returns
    -------
    chunk : ndarray of shape (slabs * (stop - start), n_samples / slabs, n_features)
        ``out[:slabs * (stop - start)]``, filled. A C-contiguous X of out's
        dtype is copied by bptt._inputs (when built), anything else by NumPy.
    """
    steps = stop - start
    chunk = out[: slabs * steps]
    if X.dtype == out.dtype and X.dtype in COMPILED_DTYPES and X.flags.c_contiguous:
        inputs = _compiled_inputs()
        if inputs is not None:
            inputs.time_major(X, start, stop, chunk, slabs, n_threads)
            return chunk
    n = X.shape[0]
    if slabs < 1 or n % slabs:
        raise ValueError(f"slabs must divide n_samples={n}; got slabs={slabs}.")
    rows = n // slabs
    for k in range(slabs):
        slab = X[k * rows:(k + 1) * rows, start:stop]
        chunk[k * steps:(k + 1) * steps] = slab.transpose(1, 0, 2)
    return chunk


def coerce_step_input(x, n_samples, input_size, dtype):
    """Validate one timestep of inputs for a stream, as a C-contiguous array.

    Returns an array of shape (n_samples, input_size) of ``dtype``, finite
    after the cast; a 1-D x of length input_size is accepted when n_samples
    is 1.
    """
    arr = as_numeric_array(x, "x")
    if arr.ndim == 1 and n_samples == 1:
        arr = arr[None, :]
    if arr.shape != (n_samples, input_size):
        raise ValueError(
            f"x must have shape (n_samples, input_size) = ({n_samples}, "
            f"{input_size}){' or (input_size,)' if n_samples == 1 else ''}; got "
            f"shape {arr.shape}."
        )
    return cast_finite(np.ascontiguousarray(arr), dtype, "x")


def check_target(y, loss, output, n_samples, n_timesteps, output_size, dtype):
    """Return the target as rows matching the flattened time-major outputs.

    Parameters
    ----------
    y : array-like
        The targets: for ``output="sequence"`` of shape (n_samples,
        n_timesteps, output_size), for ``"last"`` (n_samples, output_size);
        the last axis may be left out when output_size == 1; class labels of
        shape (n_samples, n_timesteps) or (n_samples,) for cross_entropy.
    loss : {"mse", "cross_entropy", "binary_cross_entropy"}
    output : {"sequence", "last"}
    n_samples, n_timesteps : int
        The shape of the validated X.
    output_size : int
        O, the network's number of outputs.
    dtype : numpy float type
        The network's dtype.

    Returns
    -------
    ndarray
        float targets: (N, O) of ``dtype``, with N = T * n (sequence, time
        major) or n (last); cross-entropy labels: int64 (N,).
    """
    O = output_size
    if y is None:
        raise ValueError("y must not be None: loss_and_grad needs targets.")
    y = as_numeric_array(y, "y")
    seq = output == "sequence"
    lead = (n_samples, n_timesteps) if seq else (n_samples,)
    if y.ndim >= 1 and y.shape[0] != n_samples:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: "
            f"[{n_samples}, {y.shape[0]}] (X and y)."
        )
    if loss == "cross_entropy":
        if y.shape != lead:
            raise ValueError(
                f"cross_entropy with output={output!r} expects integer class "
                f"labels of shape {lead}; got y of shape {y.shape}."
            )
        check_finite(y, "y")
        if y.dtype.kind == "f":
            if not np.all(y == np.round(y)):
                raise ValueError("cross_entropy labels must be integers; y has "
                                 "non-integer values.")
        elif y.dtype.kind not in "biu":
            raise ValueError(f"cross_entropy labels must be integers; got dtype {y.dtype}.")
        if y.min() < 0 or y.max() >= O:
            raise ValueError(
                f"cross_entropy labels must lie in [0, {O}) (output_size={O}); "
                f"got labels from {y.min()} to {y.max()}."
            )
        labels = y.T if seq else y
        return np.ascontiguousarray(labels, dtype=np.int64).reshape(-1)
    full = lead + (O,)
    if y.shape == full:
        pass
    elif O == 1 and y.shape == lead:
        y = y[..., None]
    else:
        alt = f" or {lead}" if O == 1 else ""
        raise ValueError(
            f"{loss} with output={output!r} expects y of shape {full}{alt}; "
            f"got y of shape {y.shape}."
        )
    y = cast_finite(y, dtype, "y")
    if loss == "binary_cross_entropy" and (y.min() < 0 or y.max() > 1):
        raise ValueError(
            f"binary_cross_entropy targets must lie in [0, 1]; got values "
            f"from {y.min()} to {y.max()}."
        )
    rows = np.empty(((n_timesteps if seq else 1) * n_samples, O), dtype=dtype)
    if seq:
        time_major(y, 0, n_timesteps, rows.reshape(n_timesteps, n_samples, O))
    else:
        rows[...] = y
    return rows


def check_sample_weight(sample_weight, n_samples, dtype):
    """Return sample weights as a C-contiguous (n_samples,) array of ``dtype``,
    or None for None.

    Weights must be finite and non-negative with a positive sum: the loss is
    their weighted mean, sum_i w_i l_i / sum_i w_i, which a zero sum leaves
    undefined.
    """
    if sample_weight is None:
        return None
    w = as_numeric_array(sample_weight, "sample_weight")
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight must have shape ({n_samples},), one weight per "
            f"sequence; got shape {w.shape}."
        )
    w = cast_finite(w, dtype, "sample_weight")
    if (w < 0).any():
        raise ValueError("sample_weight must be non-negative; got a negative weight "
                         f"({float(w.min())}).")
    total = float(w.sum(dtype=np.float64))
    if not total > 0:
        raise ValueError(
            "sample_weight sums to zero: the weighted mean loss is undefined; "
            "give some sequence a positive weight."
        )
    return np.ascontiguousarray(w)
