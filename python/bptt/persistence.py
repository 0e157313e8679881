"""Saving and loading fitted estimators without pickle.

``est.save(path)`` writes a NumPy ``.npz`` archive: one array per network
parameter (``param/W_xh``, ...), the class labels of a classifier
(``classes``), and ``meta``, a JSON document holding the format name and
version, the estimator's class and parameters, its fitted attributes, the
network's shape, the declared shape and dtype of every array and a SHA-256
digest over all of it. :func:`load` reads the archive's ``.npy`` entries
itself and refuses object arrays (so nothing in it is unpickled and nothing
can run code), checks the format
marker, the exact set of arrays, their shapes and dtypes and the digest, and
raises ``ValueError`` naming the problem when any of that fails: a file not
written by :meth:`save`, or one edited afterwards, is rejected.

:func:`load` reads untrusted bytes, so nothing in the file decides how much
is allocated: only a regular file is opened (a FIFO would block), every zip
entry must be stored uncompressed and fit in the file, every ``.npy``
header must declare exactly the bytes its entry holds, and the stored
arrays' shapes must be those of the declared network before the network is
built. Whatever else goes wrong while reading becomes the ``ValueError``.
"""

import hashlib
import json
import numbers
import os
import stat
import zipfile

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._cells import CELLS
from ._validation import check_choice, check_positive_int
from .rnn import RNN, param_shapes

FORMAT = "bptt-estimator"
VERSION = 1

_FITTED_INTS = ("n_features_in_", "n_iter_", "n_outputs_")
_FITTED_FLOAT_LISTS = ("loss_curve_", "validation_scores_", "validation_loss_curve_",
                       "grad_norm_curve_", "grad_norm_max_curve_",
                       "clipped_fraction_curve_", "learning_rate_curve_")
_FITTED_FLOATS = ("best_loss_", "best_validation_score_")
# save writes meta, classes and the parameters (at most 4 per layer and
# direction for bptt's own cells, plus the output layer's 2); more entries
# than a network of _MAX_RUNS layer-directions holds are not a bptt file,
# whatever they hold (_max_entries raises it for a registered cell with more)
_MAX_RUNS = 256
_MAX_ENTRIES = 2 + 2 + 4 * _MAX_RUNS
_NPY_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}


# The estimator classes save writes and load rebuilds, by name, filled by
# bptt.estimators (which sits above this module and calls it for save).
ESTIMATORS = {}


def register(estimator_type):
    """Class decorator: let :func:`save` and :func:`load` take ``estimator_type``.

    Parameters
    ----------
    estimator_type : type
        An estimator class (``RNNRegressor``, ``RNNClassifier``), stored
        under its name, the name a file records.

    Returns
    -------
    estimator_type : type
        Unchanged.
    """
    ESTIMATORS[estimator_type.__name__] = estimator_type
    return estimator_type


def _float_or_none(x):
    return None if x is None else float(x)


def _jsonable_float(x):
    # JSON has no inf: best_loss_ starts at inf, best_validation_score_ at -inf
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else repr(x)


def _parse_float(x):
    if x is None:
        return None
    if x in ("inf", "-inf"):
        return float(x)
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return float(x)
    raise ValueError(f"expected a number, got {x!r}")


def _digest(meta, arrays):
    h = hashlib.sha256()
    h.update(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(a.dtype.str.encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _classes_array(classes):
    """classes_ as an array that loads without pickle, and its original kind."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "biufU":
        return classes, classes.dtype.str
    if classes.dtype.kind == "O" and all(isinstance(c, str) for c in classes):
        return classes.astype(str), "object-str"
    raise ValueError(
        f"save supports class labels that are numbers or strings; classes_ has "
        f"dtype {classes.dtype}."
    )


def _class_weight_pairs(class_weight):
    """A class_weight dict as a list of [label, weight] pairs for JSON.

    JSON object keys are strings: {0: 1.0} would load as {"0": 1.0}, which
    names no integer class, and mixed-type keys cannot even be sorted for
    the checksum. A list of pairs keeps each label's type (int, float, bool,
    str; NumPy scalars become the Python ones) and the order.
    """
    pairs = []
    for key, weight in class_weight.items():
        label = key.item() if isinstance(key, np.generic) else key
        if not isinstance(label, (str, numbers.Integral, numbers.Real)):
            raise ValueError(
                f"save supports class_weight keys that are numbers or strings; "
                f"got {key!r} of type {type(key).__name__}."
            )
        pairs.append([label, float(weight)])
    return pairs


def _class_weight_dict(pairs):
    """Invert :func:`_class_weight_pairs` (checked: the file is untrusted)."""
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], (str, int, float))
            and isinstance(p[1], (int, float)) and not isinstance(p[1], bool)
            for p in pairs):
        raise ValueError("class_weight must be a list of [label, weight] pairs")
    return {label: float(weight) for label, weight in pairs}


def save(estimator, path):
    """Write a fitted estimator to ``path`` (see the module docstring).

    Parameters
    ----------
    estimator : RNNRegressor or RNNClassifier
        A fitted estimator.
    path : str or path-like
        The file to write; ``.npz`` is appended when missing.

    Returns
    -------
    path : str
        The path written.

    Raises
    ------
    IsADirectoryError
        When ``path`` is a directory (or ends with a path separator).
    """
    name = type(estimator).__name__
    if ESTIMATORS.get(name) is not type(estimator):
        raise TypeError(f"save supports {' and '.join(ESTIMATORS)}; got {name}.")
    check_is_fitted(estimator)
    params = estimator.get_params(deep=False)
    if not (params["random_state"] is None or isinstance(params["random_state"], numbers.Integral)):
        params["random_state"] = None  # a RandomState instance is not data
    elif params["random_state"] is not None:
        params["random_state"] = int(params["random_state"])
    if isinstance(params.get("class_weight"), dict):
        params["class_weight"] = _class_weight_pairs(params["class_weight"])

    arrays = {f"param/{k}": np.array(v) for k, v in estimator.net_.params.items()}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "estimator": name,
        "params": params,
        "net": estimator.net_.get_config(),
        "fitted": {},
    }
    fitted = meta["fitted"]
    for attr in _FITTED_INTS:
        if hasattr(estimator, attr):
            fitted[attr] = int(getattr(estimator, attr))
    for attr in _FITTED_FLOAT_LISTS:
        value = getattr(estimator, attr, None)
        fitted[attr] = None if value is None else [float(v) for v in value]
    for attr in _FITTED_FLOATS:
        fitted[attr] = _jsonable_float(getattr(estimator, attr, None))
    if hasattr(estimator, "classes_"):
        arrays["classes"], meta["classes_kind"] = _classes_array(estimator.classes_)
    meta["arrays"] = {k: [list(v.shape), v.dtype.str] for k, v in arrays.items()}
    meta["sha256"] = _digest(meta, arrays)

    path = os.fspath(path)
    if os.path.isdir(path) or path.endswith(tuple(filter(None, (os.sep, os.altsep)))):
        # appending .npz would silently write <dir>.npz beside the directory
        raise IsADirectoryError(f"save needs a file path; {path!r} is a directory.")
    if not path.endswith(".npz"):
        path += ".npz"
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def _reject(path, why):
    exc = ValueError(f"{path!s} is not a valid bptt model file: {why}")
    exc._bptt_rejected = True  # _guarded passes it on as it is
    return exc


def load(path):
    """Load an estimator written by ``RNNRegressor.save`` / ``RNNClassifier.save``.

    Never unpickles: object arrays are refused, and every part of the file
    is checked against what :meth:`save` writes. Sizes and shapes
    are checked before anything of that size is allocated (see the module
    docstring), so a corrupt or hostile file costs at most its own size.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.

    Returns
    -------
    estimator : RNNRegressor or RNNClassifier
        The fitted estimator, predicting exactly as the one saved did.

    Raises
    ------
    ValueError
        When the file is not a bptt model file, was written by another format
        version, or was modified after it was saved; also when ``path``
        cannot be opened (missing, unreadable) or is not a regular file (a
        directory, a FIFO, a device), the OSError being the cause.

    Examples
    --------
    >>> import numpy as np, tempfile, os, bptt
    >>> X, y = np.random.default_rng(0).random((20, 5, 2)), np.arange(20.0)
    >>> reg = bptt.RNNRegressor(hidden_size=4, max_epochs=2, random_state=0)
    >>> import warnings; warnings.simplefilter("ignore")
    >>> reg = reg.fit(X, y)
    >>> path = reg.save(os.path.join(tempfile.mkdtemp(), "model.npz"))
    >>> again = bptt.load(path)
    >>> np.array_equal(again.predict(X), reg.predict(X))
    True
    """
    with _open_regular(path) as f:
        meta, arrays = _guarded(path, _read_archive, path, f)
    digest = meta.pop("sha256", None)
    if digest != _guarded(path, _digest, meta, arrays):
        raise _reject(path, "its checksum does not match its contents (the file was "
                            "modified after it was saved).")
    return _rebuild(path, meta, arrays)


def _guarded(path, func, *args):
    """func(*args), any failure but MemoryError (a real shortage: every
    size was checked against the file first) as the ValueError of load."""
    try:
        return func(*args)
    except MemoryError:
        raise
    except ValueError as exc:
        if getattr(exc, "_bptt_rejected", False):
            raise
        raise _reject(path, f"it could not be read ({exc}).") from None
    except RecursionError:
        raise _reject(path, "its metadata is nested too deeply.") from None
    except Exception as exc:  # untrusted bytes: zipfile, .npy headers, JSON
        raise _reject(path, f"it could not be read ({type(exc).__name__}: {exc}).") from None


def _open_regular(path):
    """``path`` opened for binary reading; refused unless a regular file.

    os.stat comes first, as opening a FIFO for reading blocks until a
    writer appears; the opened file is checked again (it may have been
    replaced in between), and O_NONBLOCK keeps that open from blocking.
    """
    try:
        kind = os.stat(path).st_mode
        if stat.S_ISREG(kind):
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_BINARY", 0))
            try:
                kind = os.fstat(fd).st_mode
                if stat.S_ISREG(kind):
                    return os.fdopen(fd, "rb")
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
    except OSError as exc:
        raise _reject(path, f"it cannot be opened ({exc}).") from exc
    what = ("a directory" if stat.S_ISDIR(kind) else "a FIFO" if stat.S_ISFIFO(kind)
            else "a socket" if stat.S_ISSOCK(kind) else "a device"
            if stat.S_ISCHR(kind) or stat.S_ISBLK(kind) else "not a regular file")
    raise _reject(path, f"it is {what}, not a regular file.")


def _read_archive(path, f):
    """(meta, arrays) of the open archive f, checked against what save writes."""
    size = os.fstat(f.fileno()).st_size
    if f.read(6) == b"\x93NUMPY":
        raise _reject(path, "it is a single array, not a .npz archive.")
    f.seek(0)
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _reject(path, f"it cannot be read as a NumPy .npz archive ({exc}).") from None
    with archive:
        infos = archive.infolist()
        most = _max_entries()
        if len(infos) > most:
            raise _reject(path, f"it holds {len(infos)} entries; a bptt file holds at "
                                f"most {most}.")
        entries = {}
        for info in infos:
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if name in entries or not info.filename.endswith(".npy"):
                raise _reject(path, f"its entry {info.filename!r} is not one that save "
                                    f"writes.")
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                raise _reject(path, f"its entry {info.filename!r} is compressed or "
                                    f"encrypted; save stores entries as they are.")
            if info.file_size != info.compress_size or info.file_size > size:
                raise _reject(path, f"its entry {info.filename!r} declares {info.file_size} "
                                    f"bytes, more than the file's {size}.")
            entries[name] = info
        if "meta" not in entries:
            raise _reject(path, "it has no 'meta' entry (not written by bptt).")
        meta_arr = _read_npy(path, archive, entries["meta"])
        if meta_arr.dtype.kind != "U" or meta_arr.shape != ():
            raise _reject(path, "its 'meta' entry is not a JSON string.")
        try:
            meta = json.loads(str(meta_arr))
        except json.JSONDecodeError as exc:
            raise _reject(path, f"its metadata is not valid JSON ({exc}).") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise _reject(path, f"its format marker is not {FORMAT!r}.")
        if meta.get("version") != VERSION:
            raise _reject(path, f"format version {meta.get('version')!r} is not "
                                f"supported (this bptt reads version {VERSION}).")
        declared = meta.get("arrays")
        if not isinstance(declared, dict) or set(entries) != set(declared) | {"meta"}:
            raise _reject(path, f"it holds the entries {sorted(entries)}, not those "
                                f"its metadata declares.")
        arrays = {}
        for key, (shape, dtype) in declared.items():
            arr = _read_npy(path, archive, entries[key])
            if list(arr.shape) != list(shape) or arr.dtype.str != dtype:
                raise _reject(path, f"entry {key!r} has shape {arr.shape} and dtype "
                                    f"{arr.dtype.str}; its metadata says {tuple(shape)} "
                                    f"and {dtype}.")
            arrays[key] = arr
    return meta, arrays


def _max_entries():
    """The most entries a file of any registered cell holds (or _MAX_ENTRIES)."""
    return max(_MAX_ENTRIES, 4 + _MAX_RUNS * max(len(spec.param_names) - 2
                                                 for spec in CELLS.values()))


def _read_npy(path, archive, info):
    """The array of one stored .npy entry, its header checked first: it
    must declare exactly the bytes the entry holds, of a plain dtype."""
    with archive.open(info) as fp:
        version = np.lib.format.read_magic(fp)
        if version not in _NPY_READERS:
            raise _reject(path, f"entry {info.filename!r} has .npy format version "
                                f"{version}.")
        shape, fortran, dtype = _NPY_READERS[version](fp)
        if (dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None
                or dtype.kind not in "biufU"):
            raise _reject(path, f"entry {info.filename!r} has dtype {dtype}, which save "
                                f"never writes.")
        nbytes = dtype.itemsize
        for d in shape:
            nbytes *= d
        left = info.file_size - fp.tell()
        if nbytes != left:
            raise _reject(path, f"entry {info.filename!r} declares shape {shape} of "
                                f"{dtype} ({nbytes} bytes) but holds {left} bytes.")
        data = fp.read(nbytes)  # to the entry's end, where zipfile checks the CRC
        if len(data) != nbytes or fp.read(1):
            raise _reject(path, f"entry {info.filename!r} is truncated.")
    return np.frombuffer(data, dtype=dtype).reshape(
        shape, order="F" if fortran else "C").copy()


def _check_net_shapes(spec, params):
    """Raise ValueError unless the stored parameter arrays have the shapes of
    the network ``spec`` declares: checked before that network is built, as
    building it allocates and initialises weights of the declared size (a
    6.7 kB file declaring hidden_size=4000 cost 780 MB and 10 s)."""
    if not isinstance(spec, dict):
        raise ValueError(f"the network description is {type(spec).__name__}, not a mapping")
    expected = param_shapes(
        check_choice("cell", spec.get("cell"), CELLS),
        *(check_positive_int(name, spec.get(name))
          for name in ("input_size", "hidden_size", "output_size")),
        check_positive_int("num_layers", spec.get("num_layers", 1)),
        bool(spec.get("bidirectional", False)))
    stored = {name: tuple(arr.shape) for name, arr in params.items()}
    if stored != expected:
        sizes = ", ".join(f"{name}={spec.get(name)}" for name in
                          ("input_size", "hidden_size", "output_size", "cell"))
        raise ValueError(f"the stored parameters have the shapes {stored}, but the "
                         f"declared network ({sizes}) has {expected}")


def _rebuild(path, meta, arrays):
    cls = ESTIMATORS.get(meta.get("estimator"))
    if cls is None:
        raise _reject(path, f"unknown estimator {meta.get('estimator')!r}.")
    try:
        params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
        _check_net_shapes(meta["net"], params)
        init_params = dict(meta["params"])
        if isinstance(init_params.get("class_weight"), list):
            init_params["class_weight"] = _class_weight_dict(init_params["class_weight"])
        estimator = cls(**init_params)
        estimator._validate_params()
        fitted = meta["fitted"]
        for attr in _FITTED_INTS:
            if attr in fitted:
                if not isinstance(fitted[attr], int) or isinstance(fitted[attr], bool):
                    raise ValueError(f"{attr} must be an int")
                setattr(estimator, attr, fitted[attr])
        for attr in _FITTED_FLOAT_LISTS:
            value = fitted.get(attr)
            setattr(estimator, attr, None if value is None else [_parse_float(v) for v in value])
        for attr in _FITTED_FLOATS:
            setattr(estimator, attr, _parse_float(fitted.get(attr)))
        if "classes" in arrays:
            labels = arrays["classes"]
            if meta.get("classes_kind") == "object-str":
                labels = labels.astype(object)
            estimator.classes_ = labels
        estimator.net_ = RNN.from_config(meta["net"], params=params, random_state=0)
        output_size, activation, _ = estimator._output_layer()
        net = estimator.net_
        if (net.input_size != estimator.n_features_in_ or net.output_size != output_size
                or net.output_activation != activation
                or net.hidden_size != estimator.hidden_size):
            raise ValueError("the network does not match the estimator's attributes")
    except MemoryError:
        raise  # a real shortage: the sizes were checked against the file
    except Exception as exc:  # whatever the (checksummed) metadata says
        raise _reject(path, f"its contents are inconsistent ({exc}).") from None
    estimator._no_improvement_count = 0
    return estimator
