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


def check_state(h0, n_samples, hidden_size, dtype, pair=False, runs=1):
    """Validate an initial state, as ``RNN.forward``'s ``h0`` and ``reset``.

    Parameters
    ----------
    h0 : array-like of shape (n_samples, hidden_size), tuple of two, or None
        The state; with ``pair`` (the LSTM) a tuple or list (h0, c0) of
        such arrays. None gives zeros.
    n_samples, hidden_size : int
    dtype : numpy float type
    pair : bool, default=False
    runs : int, default=1
        num_layers * directions: above 1 the state arrays are (runs,
        n_samples, hidden_size) (PyTorch's h_n layout).

    Returns
    -------
    state : ndarray of shape (n_samples, hidden_size), or a tuple of two
        New C-contiguous arrays of ``dtype``, finite after the cast.
    """
    shape = (n_samples, hidden_size) if runs == 1 else (runs, n_samples, hidden_size)
    if h0 is None:
        zeros = np.zeros(shape, dtype)
        return (zeros, zeros.copy()) if pair else zeros
    if not pair:
        return _check_state_array(h0, "h0", shape, dtype)
    if not isinstance(h0, (tuple, list)) or len(h0) != 2:
        raise ValueError(
            f"h0 for a cell with a cell state (lstm) must be a tuple (h0, c0) of "
            f"arrays of shape {shape}; got {type(h0).__name__}"
            f"{f' of length {len(h0)}' if isinstance(h0, (tuple, list)) else ''}."
        )
    return tuple(_check_state_array(s, name, shape, dtype)
                 for s, name in zip(h0, ("h0", "c0")))


def _check_state_array(h, name, shape, dtype):
    h = as_numeric_array(h, name)
    if h.shape != shape:
        what = ("(n_samples, hidden_size)" if len(shape) == 2 else
                "(num_layers * directions, n_samples, hidden_size)")
        raise ValueError(
            f"{name} must have shape {what} = {shape}; got shape {h.shape}."
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


def rows_by_group(src, out, groups, T, reverse=False, add=False, n_threads=1):
    """Copy (or add) the rows of groups of sequences of T timesteps each,
    packed time-major within each group.

    Parameters
    ----------
    src, out : ndarray of shape (rows, F)
        Rows of F contiguous elements (either may be a column block of a
        wider array); they must not overlap.
    groups : int64 ndarray of shape (groups, >= 2)
        Each group's first row r0 and its number of sequences n: rows
        r0 .. r0 + T*n - 1 hold their timesteps one after another (further
        columns are not read).
    T : int
    reverse : bool
        ``out[r0 + t*n + b] = src[r0 + (T-1-t)*n + b]`` (a bidirectional
        layer's other direction) instead of ``src[r0 + t*n + b]``.
    add : bool
        Add into out instead of writing it.
    n_threads : int
        Threads of bptt's pool, one group each (compiled only: the thread
        that ran a group in the kernels has its rows in cache).

    Returns
    -------
    out : ndarray of shape (rows, F)
        Copied by bptt._inputs (when built) for the compiled dtypes, else
        by NumPy, one strided copy of each group's reversed timestep blocks.
    """
    if (src.dtype == out.dtype and src.dtype in COMPILED_DTYPES
            and (src.shape[1] <= 1 or (src.strides[1] == src.itemsize
                                       and out.strides[1] == out.itemsize))):
        inputs = _compiled_inputs()
        if inputs is not None:
            inputs.rows_by_group(src, out, groups, T, reverse, add, n_threads)
            return out
    for r0, n, *_ in groups.tolist():
        blocks = []
        for a in (src, out):
            view = a[r0:r0 + T * n].view()
            view.shape = (T, n, a.shape[1])  # raises rather than copy
            blocks.append(view)
        source = blocks[0][::-1] if reverse else blocks[0]
        if add:
            np.add(blocks[1], source, out=blocks[1])
        else:
            np.copyto(blocks[1], source)
    return out


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


def validate_target(y, loss, output, n_samples, n_timesteps, output_size, dtype):
    """Check the target of loss_and_grad, keeping it batch-first.

    Parameters
    ----------
    y : array-like
        The targets: for ``output="sequence"`` of shape (n_samples,
        n_timesteps, output_size), for ``"last"`` and ``"mean"`` (n_samples,
        output_size); the last axis may be left out when output_size == 1;
        class labels of shape (n_samples, n_timesteps) or (n_samples,) for
        cross_entropy.
    loss : {"mse", "cross_entropy", "binary_cross_entropy"}
    output : {"sequence", "last", "mean"}
    n_samples, n_timesteps : int
        The shape of the validated X.
    output_size : int
        O, the network's number of outputs.
    dtype : numpy float type
        The network's dtype.

    Returns
    -------
    ndarray
        float targets of ``dtype``: (n, T, O) (sequence) or (n, O) (last);
        cross-entropy labels: int64 (n, T) or (n,). A slice of its first
        axis (a minibatch) goes to :func:`target_rows` as it is.
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
        return np.asarray(y, dtype=np.int64)
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
    return y


def target_rows(y, output):
    """The rows of a target from :func:`validate_target` (or a slice of it)
    in the order of the flattened time-major outputs: float (N, O), labels
    int64 (N,), N = T * n (sequence) or n (last); only read by the driver."""
    if y.dtype == np.int64:  # cross-entropy labels
        labels = y.T if output == "sequence" else y
        return np.ascontiguousarray(labels).reshape(-1)
    if output != "sequence":
        return np.array(y, order="C")
    n, T, O = y.shape
    rows = np.empty((T * n, O), dtype=y.dtype)
    time_major(y, 0, T, rows.reshape(T, n, O))
    return rows


# ------------------------------------------------------------ ragged input
def padding_lengths(X):
    """The real timesteps of each sequence of a NaN-padded float array.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_timesteps, n_features)
        Padded with NaN: the padding is whole trailing timesteps that are
        all NaN, and every sequence keeps at least one real timestep.

    Returns
    -------
    lengths : ndarray of int of shape (n_samples,)

    Raises ValueError for infinity, for NaN anywhere but whole trailing
    timesteps, and for a sequence with no real timestep.
    """
    if np.isinf(X).any():
        raise ValueError("Input X contains infinity or a value too large for "
                         f"{X.dtype!r}.")
    nan = np.isnan(X)
    padded = nan.all(axis=2)  # (n, T): timesteps that are all NaN
    partial = nan.any(axis=2) & ~padded
    if partial.any():
        i, t = np.argwhere(partial)[0]
        raise ValueError(
            f"Input X contains NaN in some but not all features of timestep "
            f"{t} of sequence {i}: NaN is only accepted as padding, whole "
            f"trailing timesteps that are all NaN."
        )
    gap = padded[:, :-1] & ~padded[:, 1:]  # a NaN timestep before a real one
    if gap.any():
        i, t = np.argwhere(gap)[0]
        raise ValueError(
            f"Input X contains NaN at timestep {t} of sequence {i}, followed by "
            f"real timesteps: NaN is only accepted as padding, whole trailing "
            f"timesteps that are all NaN."
        )
    lengths = (~padded).sum(axis=1)
    if (lengths == 0).any():
        i = int(np.argmin(lengths))
        raise ValueError(
            f"Input X contains NaN in every timestep of sequence {i}: each "
            f"sequence needs at least 1 real timestep."
        )
    return lengths


def _is_ragged_list(X):
    """A list (or tuple) of sequences rather than a nested array-like: its
    elements are arrays, or their lengths differ."""
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    if any(isinstance(x, np.ndarray) for x in X):
        return True
    try:
        return len({len(x) for x in X}) > 1
    except TypeError:
        return False


def check_ragged(X, input_size, dtype, name="X", owner="RNN"):
    """Validate sequences in any of the forms of DESIGN.md's ragged input.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_timesteps, n_features), a NaN-padded
        such array, or a list of arrays (T_i, n_features) (or (T_i,) when
        n_features is 1)
    input_size : int or None
        The features expected; None takes them from X.
    dtype : numpy float type

    Returns
    -------
    X : ndarray of shape (n_samples, n_timesteps, input_size)
        Of ``dtype``, batch-first, the padding (if any) zero.
    lengths : ndarray of int of shape (n_samples,), or None
        Each sequence's real timesteps; None for a plain array (all real).
    form : {"array", "padded", "list"}
        How the input came, so that outputs can go back in the same form.
    """
    if (type(X) is np.ndarray and X.dtype == dtype and X.ndim == 3 and X.shape[0]
            and X.shape[1] and X.shape[2] == input_size and all_finite(X)):
        # the every-call case (a training loop's batch): checked in one pass
        return X, None, "array"
    if _is_ragged_list(X):
        if input_size is not None and all(
                type(a) is np.ndarray and a.dtype == dtype and a.ndim == 2
                and a.shape[0] and a.shape[1] == input_size for a in X):
            # the every-call case (a training loop's ragged batch): copied,
            # then checked in one compiled pass over the padded array
            lengths = np.array([a.shape[0] for a in X])
            out = np.zeros((len(X), int(lengths.max()), input_size), dtype=dtype)
            for i, a in enumerate(X):
                out[i, :len(a)] = a
            if all_finite(out):
                return out, lengths, "list"
        seqs = []
        for i, seq in enumerate(X):
            arr = as_numeric_array(seq, f"{name}[{i}]")
            if input_size is None:
                input_size = 1 if arr.ndim == 1 else (arr.shape[-1] if arr.ndim else 0)
            if arr.ndim == 1 and input_size == 1:
                arr = arr[:, None]
            if arr.ndim != 2 or arr.shape[1] != input_size:
                raise ValueError(
                    f"Each sequence of a list must have shape (n_timesteps, "
                    f"{input_size}){' or (n_timesteps,)' if input_size == 1 else ''}; "
                    f"got {name}[{i}] of shape {arr.shape} ({owner} is expecting "
                    f"{input_size} features as input)."
                )
            if arr.shape[0] == 0:
                raise ValueError(f"{name}[{i}] has 0 timesteps while a minimum of 1 is "
                                 f"required by {owner}.")
            seqs.append(cast_finite(arr, dtype, f"{name}[{i}]"))
        lengths = np.array([len(a) for a in seqs])
        out = np.zeros((len(seqs), int(lengths.max()), input_size), dtype=dtype)
        for i, a in enumerate(seqs):
            out[i, :len(a)] = a
        return out, lengths, "list"
    arr = as_numeric_array(X, name)
    # all_finite first: one compiled pass, no (n, T, F) bool array, when X
    # holds no NaN
    if (arr.ndim == 3 and arr.dtype.kind == "f" and arr.size and not all_finite(arr)
            and np.isnan(arr).any()):
        lengths = padding_lengths(arr)
        filled = np.where(np.isnan(arr), 0, arr)
        return (check_sequences(filled, input_size or arr.shape[2], dtype, name, owner),
                lengths, "padded")
    if input_size is None and arr.ndim == 3:
        input_size = arr.shape[2]
    return check_sequences(arr, input_size, dtype, name, owner), None, "array"


def is_ragged(X):
    """Whether X is ragged input: a list of sequences of their own lengths,
    or a float array holding NaN (which must then be trailing padding)."""
    if _is_ragged_list(X):
        return True
    return (isinstance(X, np.ndarray) and X.dtype.kind == "f" and X.ndim in (2, 3)
            and X.size > 0 and not all_finite(X) and bool(np.isnan(X).any()))


def target_sequences(y, lengths, convert=None):
    """A list target of ``output="sequence"`` for ragged X, checked against
    X's ``lengths``: one array per sequence, (T_i, ...), all of the same
    shape after the first axis. ``convert`` turns each item into an array
    (default: a numeric array; the classifier passes np.asarray for labels).
    """
    n = len(lengths)
    if len(y) != n:
        raise ValueError(f"Found input variables with inconsistent numbers of "
                         f"samples: [{n}, {len(y)}] (X and y).")
    arrays = [as_numeric_array(t, f"y[{i}]") if convert is None else convert(t)
              for i, t in enumerate(y)]
    for i, t in enumerate(arrays):
        if t.ndim == 0 or t.shape[0] != lengths[i]:
            raise ValueError(
                f"y[{i}] has {t.shape[0] if t.ndim else 0} timesteps but X[{i}] has "
                f"{lengths[i]}: a target of output='sequence' needs one row per "
                f"timestep.")
    if any(t.shape[1:] != arrays[0].shape[1:] for t in arrays):
        raise ValueError("Every target sequence must have the same shape after its "
                         "first axis.")
    return arrays


def check_ragged_target(y, lengths, form, loss, output_size, dtype):
    """Targets of ``output="sequence"`` for ragged X, in its form.

    ``y`` is a list of (T_i, O) (or (T_i,)) arrays, or an array (n, T, O)
    (or (n, T)) NaN-padded like X; T_i must be X's lengths. Returns
    :func:`validate_target`'s batch-first form, the padding zero.
    """
    n, T = len(lengths), int(lengths.max())
    if _is_ragged_list(y) or (form == "list" and isinstance(y, (list, tuple))):
        arrays = target_sequences(y, lengths)
        tail = arrays[0].shape[1:]
        pad = np.zeros((n, T) + tail, dtype=np.result_type(*arrays))
        for i, t in enumerate(arrays):
            pad[i, :len(t)] = t
    else:
        pad = as_numeric_array(y, "y")
        if pad.ndim >= 2 and pad.shape[0] == n and pad.shape[1] >= T:
            pad = pad[:, :T]
            real = np.arange(T)[None, :] < lengths[:, None]
            nan = np.isnan(pad) if pad.dtype.kind == "f" else np.zeros(pad.shape, bool)
            nan_steps = nan.reshape(n, T, -1).any(axis=2)
            if (nan_steps & real).any():
                i, t = np.argwhere(nan_steps & real)[0]
                raise ValueError(
                    f"y contains NaN at timestep {t} of sequence {i}, a real timestep "
                    f"of X (X[{i}] has {lengths[i]}): the targets' padding must match "
                    f"X's.")
            extra = ~nan.reshape(n, T, -1).all(axis=2) & ~real
            if pad.dtype.kind == "f" and extra.any():
                i, t = np.argwhere(extra)[0]
                raise ValueError(
                    f"y has a target at timestep {t} of sequence {i}, where X is "
                    f"padding (X[{i}] has {lengths[i]} timesteps): the targets' "
                    f"padding must match X's (NaN).")
            pad = np.where(nan, 0, pad) if nan.any() else pad
    return validate_target(pad, loss, "sequence", n, T, output_size, dtype)


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
