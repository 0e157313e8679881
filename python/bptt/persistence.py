"""Saving and loading fitted estimators without pickle.

``est.save(path)`` writes a NumPy ``.npz`` archive: one array per network
parameter (``param/W_xh``, ...), the class labels of a classifier
(``classes``), and ``meta``, a JSON document holding the format name and
version, the estimator's class and parameters, its fitted attributes, the
network's shape, the declared shape and dtype of every array and a SHA-256
digest over all of it. :func:`load` opens the archive with
``allow_pickle=False`` (so nothing in it can run code), checks the format
marker, the exact set of arrays, their shapes and dtypes and the digest, and
raises ``ValueError`` naming the problem when any of that fails: a file not
written by :meth:`save`, or one edited afterwards, is rejected.
"""

import hashlib
import json
import numbers
import os
import zipfile

import numpy as np

FORMAT = "bptt-estimator"
VERSION = 1

_FITTED_INTS = ("n_features_in_", "n_iter_", "n_outputs_")
_FITTED_FLOAT_LISTS = ("loss_curve_", "validation_scores_")
_FITTED_FLOATS = ("best_loss_", "best_validation_score_")


def _estimator_classes():
    from .estimators import RNNClassifier, RNNRegressor

    return {"RNNRegressor": RNNRegressor, "RNNClassifier": RNNClassifier}


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
    """
    from sklearn.utils.validation import check_is_fitted

    from .estimators import _net_spec

    classes = _estimator_classes()
    name = type(estimator).__name__
    if classes.get(name) is not type(estimator):
        raise TypeError(f"save supports RNNRegressor and RNNClassifier; got {name}.")
    check_is_fitted(estimator)
    params = estimator.get_params(deep=False)
    if not (params["random_state"] is None or isinstance(params["random_state"], numbers.Integral)):
        params["random_state"] = None  # a RandomState instance is not data
    elif params["random_state"] is not None:
        params["random_state"] = int(params["random_state"])

    arrays = {f"param/{k}": np.array(v) for k, v in estimator.net_.params.items()}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "estimator": name,
        "params": params,
        "net": _net_spec(estimator.net_),
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
    if not path.endswith(".npz"):
        path += ".npz"
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def _reject(path, why):
    return ValueError(f"{path!s} is not a valid bptt model file: {why}")


def load(path):
    """Load an estimator written by ``RNNRegressor.save`` / ``RNNClassifier.save``.

    Never unpickles: the file is read with ``allow_pickle=False`` and every
    part of it is checked against what :meth:`save` writes.

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
        version, or was modified after it was saved.

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
    from .estimators import _build_net

    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _reject(path, f"it cannot be read as a NumPy .npz archive ({exc}).") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _reject(path, "it is a single array, not a .npz archive.")
    with archive:
        try:
            names = set(archive.files)
            if "meta" not in names:
                raise _reject(path, "it has no 'meta' entry (not written by bptt).")
            meta_arr = archive["meta"]
            if (not isinstance(meta_arr, np.ndarray) or meta_arr.dtype.kind != "U"
                    or meta_arr.shape != ()):
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
            if not isinstance(declared, dict) or names != set(declared) | {"meta"}:
                raise _reject(path, f"it holds the entries {sorted(names)}, not those "
                                    f"its metadata declares.")
            arrays = {}
            for key, (shape, dtype) in declared.items():
                arr = archive[key]
                if not isinstance(arr, np.ndarray):
                    raise _reject(path, f"entry {key!r} is not a NumPy array.")
                if list(arr.shape) != list(shape) or arr.dtype.str != dtype:
                    raise _reject(path, f"entry {key!r} has shape {arr.shape} and dtype "
                                        f"{arr.dtype.str}; its metadata says {tuple(shape)} "
                                        f"and {dtype}.")
                arrays[key] = arr
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as exc:
            if isinstance(exc, ValueError) and "bptt model file" in str(exc):
                raise
            raise _reject(path, f"it could not be read ({exc}).") from None
    digest = meta.pop("sha256", None)
    if digest != _digest(meta, arrays):
        raise _reject(path, "its checksum does not match its contents (the file was "
                            "modified after it was saved).")
    return _rebuild(path, meta, arrays, _build_net)


def _rebuild(path, meta, arrays, build_net):
    classes = _estimator_classes()
    cls = classes.get(meta.get("estimator"))
    if cls is None:
        raise _reject(path, f"unknown estimator {meta.get('estimator')!r}.")
    try:
        estimator = cls(**meta["params"])
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
        params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
        estimator.net_ = build_net(meta["net"], params)
        output_size, activation, _ = estimator._output_layer()
        net = estimator.net_
        if (net.input_size != estimator.n_features_in_ or net.output_size != output_size
                or net.output_activation != activation
                or net.hidden_size != estimator.hidden_size):
            raise ValueError("the network does not match the estimator's attributes")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _reject(path, f"its contents are inconsistent ({exc}).") from None
    estimator._no_improvement_count = 0
    return estimator
