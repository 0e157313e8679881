"""Input checks shared by :class:`bptt.RNN` and the estimators.

Every check either returns an array the kernels can take as it is
(C-contiguous, of the network's dtype) or raises a ``ValueError`` /
``TypeError`` that says what was expected and what was given, in
scikit-learn's wording where it has one. Nothing the caller passed is
modified: a conversion always copies when it would otherwise alias.
"""

import numbers

import numpy as np

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
_inputs = []  # [bptt._inputs of this CPU's build, or None], once looked up


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


def _compiled_inputs():
    """bptt._inputs of the build this CPU runs, or None when not built."""
    if not _inputs:
        from .rnn import compiled_helpers  # rnn imports this module
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
    """``np.asarray`` that rejects complex, string and object data clearly."""
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(
            f"{name} must be a numeric array of consistent shape; could not "
            f"convert it: {exc}"
        ) from None
    if arr.dtype.kind == "c":
        raise ValueError(f"Complex data not supported; {name} has dtype {arr.dtype}.")
    if arr.dtype.kind in "OUSV":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
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


def check_finite(arr, name):
    """Raise scikit-learn's message when ``arr`` holds NaN or infinity."""
    if arr.dtype.kind == "f" and not all_finite(arr):
        if np.isnan(arr).any():
            raise ValueError(f"Input {name} contains NaN.")
        raise ValueError(
            f"Input {name} contains infinity or a value too large for {arr.dtype!r}."
        )


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
    check_finite(X, name)
    return X.astype(dtype, copy=False)


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

    Returns an array of shape (n_samples, input_size) of ``dtype``; a 1-D x
    of length input_size is accepted when n_samples is 1.
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
    return np.ascontiguousarray(arr, dtype=dtype)
