"""Plots of training and of the gradient flow through time.

matplotlib is an optional extra (``pip install "bptt[plot]"``): importing
bptt never imports it; these functions import it when they draw and raise
an ImportError that says how to install it when it is missing.

Each function draws on the Axes it is given, or on a new figure's when
``ax`` is None, and returns that Axes:

- :func:`plot_loss_curve`: an estimator's training loss per epoch, and its
  validation loss when it kept one.
- :func:`plot_gradient_history`: an estimator's gradient norm per epoch
  (median and max over the updates, before clipping), ``clip_norm``, the
  fraction of updates clipped and the learning rate when it changed.
- :func:`plot_gradient_flow`: the norm of dL/dh_t against the steps back from
  the last timestep, on a log scale, for one network or several, from what
  ``RNN.loss_and_grad(..., return_state_grads=True)`` returns.
"""

from collections.abc import Mapping

import numpy as np

_INSTALL = 'pip install "bptt[plot]"  (or: pip install matplotlib)'


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(f"bptt.plot needs matplotlib, an optional dependency of bptt: "
                          f"{_INSTALL}") from exc
    return plt


def _axes(ax):
    """``ax``, or the Axes of a new figure."""
    if ax is None:
        _, ax = _pyplot().subplots()
    return ax


def _fitted_curve(estimator, name):
    """A fitted estimator's per-epoch attribute as a float array; a clear
    error when the estimator has none (not fitted, or not an estimator of
    bptt's)."""
    curve = getattr(estimator, name, None)
    if curve is None:
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(
            f"{type(estimator).__name__} has no {name}: fit it first (bptt.plot reads "
            f"the fitted attributes of bptt's estimators)."
        )
    return np.asarray(curve, dtype=np.float64)


def plot_loss_curve(estimator, ax=None):
    """Training (and validation) loss per epoch of a fitted estimator.

    Parameters
    ----------
    estimator : RNNRegressor or RNNClassifier
        Fitted; its ``loss_curve_`` is drawn, and its
        ``validation_loss_curve_`` when it has one (early stopping keeps a
        validation set) that is not None.
    ax : matplotlib Axes, optional
        Where to draw; a new figure's Axes when None.

    Returns
    -------
    ax : matplotlib Axes
        Lines labelled "training loss" and "validation loss", epochs 1, 2,
        ... on x.
    """
    train = _fitted_curve(estimator, "loss_curve_")
    ax = _axes(ax)
    epochs = np.arange(1, len(train) + 1)
    ax.plot(epochs, train, label="training loss")
    validation = getattr(estimator, "validation_loss_curve_", None)
    if validation is not None and len(validation):
        validation = np.asarray(validation, dtype=np.float64)
        ax.plot(np.arange(1, len(validation) + 1), validation, label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    return ax


def plot_gradient_history(estimator, ax=None):
    """Gradient norms, clipping and learning rate per epoch of a fitted estimator.

    On ``ax`` (log scale): the global gradient norm before clipping, median
    and max over each epoch's updates (``grad_norm_curve_`` and
    ``grad_norm_max_curve_``, one value per epoch each; an epoch without
    updates, NaN, is a gap), and ``clip_norm`` as a dashed line when it is set. On a
    second y axis on the right (``ax.right_ax``, 0 to 1): the fraction of
    each epoch's updates that were clipped (``clipped_fraction_curve_``),
    and, when it changed during training, the learning rate relative to its
    first epoch (``learning_rate_curve_``).

    Parameters
    ----------
    estimator : RNNRegressor or RNNClassifier
        Fitted.
    ax : matplotlib Axes, optional
        Where to draw; a new figure's Axes when None.

    Returns
    -------
    ax : matplotlib Axes
        The left axes; ``ax.right_ax`` is its twin on the right.
    """
    medians = _fitted_curve(estimator, "grad_norm_curve_")
    maxima = _fitted_curve(estimator, "grad_norm_max_curve_")
    if medians.ndim != 1 or maxima.shape != medians.shape:
        raise ValueError(
            f"grad_norm_curve_ and grad_norm_max_curve_ must be one value per epoch "
            f"each, of the same length (n_epochs,); got shapes {medians.shape} and "
            f"{maxima.shape}.")
    clipped = _fitted_curve(estimator, "clipped_fraction_curve_")
    ax = _axes(ax)
    epochs = np.arange(1, len(medians) + 1)
    ax.plot(epochs, medians, label="gradient norm, median")
    ax.plot(epochs, maxima, label="gradient norm, max")
    clip_norm = getattr(estimator, "clip_norm", None)
    if clip_norm is not None:
        ax.axhline(clip_norm, color="0.4", linestyle="--", label="clip_norm")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("global gradient norm (before clipping)")
    right = ax.twinx()
    right.plot(epochs[:len(clipped)], clipped, color="C3", linestyle=":",
               label="fraction clipped")
    rates = getattr(estimator, "learning_rate_curve_", None)
    if rates is not None and len(rates) and np.ptp(np.asarray(rates, dtype=float)) > 0:
        rates = np.asarray(rates, dtype=np.float64)
        right.plot(epochs[:len(rates)], rates / rates[0], color="C4", linestyle="-.",
                   label=f"learning rate / {rates[0]:.3g}")
    right.set_ylim(0, 1.05)
    right.set_ylabel("fraction clipped, relative learning rate")
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [line.get_label() for line in lines])
    ax.right_ax = right
    return ax


def _flow_norms(flow, state):
    """Per-timestep norms (runs, T) of one flow: a state-gradients dict, an
    array of dL/dh (n, T, H) or (runs, n, T, H), or an array of norms (T,)
    or (runs, T); and whether it holds runs (layers and directions, index
    l·D + d) rather than one."""
    key = "d" + state
    if isinstance(flow, Mapping):
        if key + "_norm" not in flow:
            raise ValueError(
                f"a flow dict must have {key + '_norm'!r} (what loss_and_grad(..., "
                f"return_state_grads=True) returns"
                f"{', for an LSTM' if state == 'c' else ''}); got keys {sorted(flow)}."
            )
        arr = np.asarray(flow[key + "_norm"], dtype=np.float64)
        if arr.ndim not in (1, 2):
            raise ValueError(f"a flow dict's {key + '_norm'!r} must have shape (T,) or "
                             f"(num_layers*D, T); got shape {arr.shape}.")
    else:
        arr = np.asarray(flow, dtype=np.float64)
        if arr.ndim in (3, 4):
            # the L2 norm of every row, averaged over the sequences that
            # reach each timestep (NaN-padded arrays: the real ones only)
            rows = np.linalg.norm(arr, axis=-1)
            real = ~np.isnan(rows)
            counts = real.sum(axis=-2)
            sums = np.where(real, rows, 0.0).sum(axis=-2)
            arr = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        elif arr.ndim not in (1, 2):
            raise ValueError(
                f"a flow must be loss_and_grad's state-gradients dict, an array of "
                f"gradients (n, T, H) or (num_layers*D, n, T, H), or of norms (T,) or "
                f"(num_layers*D, T); got an array of shape {arr.shape}."
            )
    return (arr, True) if arr.ndim == 2 else (arr[None], False)


def _run_labels(runs, bidirectional):
    """The labels of a layered flow's runs (index l·D + d, as h0): "layer l"
    and "layer l reverse", l from 0 as in the parameter names (W_hh_l1_reverse
    is "layer 1 reverse")."""
    if not bidirectional:
        return [f"layer {r}" for r in range(runs)]
    return [f"layer {r // 2}" + (" reverse" if r % 2 else "") for r in range(runs)]


def plot_gradient_flow(flows, ax=None, *, state="h", relative=False,
                       bidirectional=False):
    """How the gradient reaches back in time: mean ||dL/dh_t|| against steps back.

    x is the number of steps back from the last timestep (0 is h_T, T - 1
    is h_1), y the norm of dL/dh_t averaged over the batch, on a log scale:
    a straight falling line is a gradient vanishing exponentially with the
    distance, a rising one an exploding gradient. A stacked or bidirectional
    network's flow gives one line per layer and direction; a reverse
    direction reads the sequence from its end, so its steps back count from
    the first timestep (0 is its state after reading x_1, its last).

    Parameters
    ----------
    flows : dict, array, or a mapping or list of them
        One network's flow: the third item of ``RNN.loss_and_grad(...,
        return_state_grads=True)`` (a dict with ``"dh_norm"``, (T,) or
        (num_layers*D, T)), an array of dL/dh, (n, T, H) or (num_layers*D,
        n, T, H) (NaN padding is left out of the mean), or an array of
        per-timestep norms, (T,) or (num_layers*D, T). Several networks: a
        mapping {label: flow} (labels in the legend) or a list of flows
        ("0", "1", ...).
    ax : matplotlib Axes, optional
        Where to draw; a new figure's Axes when None.
    state : {"h", "c"}, default="h"
        "c": the LSTM's cell-state gradients dL/dc_t (``"dc_norm"``).
    relative : bool, default=False
        Divide each curve by its value at the last step (of its direction),
        so curves of different scales start at 1.
    bidirectional : bool, default=False
        Whether the layered flows' rows are layers and directions (row
        l·2 + d, d = 1 the reverse direction, as ``h0``) rather than layers
        (row l): what the network was built with. Every layered flow is
        drawn one line per row, labelled "layer l" and, with
        ``bidirectional=True``, "layer l reverse" (l from 0, as in the
        parameter names: ``W_hh_l1_reverse`` is "layer 1 reverse"), after
        the network's label when there are several. To draw one row alone,
        pass ``flow["dh_norm"][r]``.

    Returns
    -------
    ax : matplotlib Axes
        One line per network (per layer and direction), labelled, log-scaled y.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> X, y = np.random.default_rng(0).normal(size=(8, 60, 1)), np.zeros(8)
    >>> flows = {cell: bptt.RNN(1, 16, 1, cell=cell, random_state=0).loss_and_grad(
    ...     X, y, output="last", return_state_grads=True)[2] for cell in ("rnn", "lstm")}
    >>> ax = bptt.plot.plot_gradient_flow(flows, relative=True)  # doctest: +SKIP
    >>> deep = bptt.RNN(1, 16, 1, num_layers=2, bidirectional=True, random_state=0)
    >>> flow = deep.loss_and_grad(X, y, output="last", return_state_grads=True)[2]
    >>> flow["dh_norm"].shape  # (num_layers * 2, T)
    (4, 60)
    >>> ax = bptt.plot.plot_gradient_flow(flow, bidirectional=True)  # doctest: +SKIP
    """
    if state not in ("h", "c"):
        raise ValueError(f"state must be 'h' or 'c'; got {state!r}.")
    if not isinstance(relative, (bool, np.bool_)):
        raise TypeError(f"relative must be True or False; got {relative!r}.")
    if not isinstance(bidirectional, (bool, np.bool_)):
        raise TypeError(f"bidirectional must be True or False; got {bidirectional!r}.")
    if isinstance(flows, Mapping) and not any(k in flows for k in ("dh", "dh_norm")):
        items = [(str(label), flow) for label, flow in flows.items()]
    elif isinstance(flows, (list, tuple)):
        items = [(str(i), flow) for i, flow in enumerate(flows)]
    else:
        items = [(None, flows)]
    if not items:
        raise ValueError("flows is empty: nothing to plot.")
    curves = []
    for label, flow in items:
        norms, layered = _flow_norms(flow, state)
        if not layered:
            if bidirectional:
                raise ValueError(
                    f"bidirectional=True needs a bidirectional network's flow, norms "
                    f"(num_layers*2, T); {label or 'the flow'} is one run's, of shape "
                    f"{norms.shape[1:]}.")
            curves.append((label, norms[0], False))
            continue
        if bidirectional and len(norms) % 2:
            raise ValueError(
                f"bidirectional=True needs (num_layers*2, T) norms, an even number of "
                f"rows; {label or 'the flow'} has {len(norms)}.")
        for run, (name, row) in enumerate(zip(_run_labels(len(norms), bidirectional),
                                              norms)):
            reverse = bidirectional and run % 2 == 1
            curves.append((name if label is None else f"{label}, {name}", row, reverse))
    lines = []
    for label, norms, reverse in curves:
        # back[k] is the norm k steps before the run's last one
        back = norms if reverse else norms[::-1]
        if relative:
            if not back[0] > 0:
                raise ValueError(f"relative=True needs a non-zero gradient at the last "
                                 f"timestep; {label or 'the flow'} has {back[0]}.")
            back = back / back[0]
        lines.append((label, back))
    ax = _axes(ax)
    for label, back in lines:
        ax.plot(np.arange(len(back)), back, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("steps back from the last timestep")
    what = "dL/dc_t" if state == "c" else "dL/dh_t"
    ax.set_ylabel(f"mean ||{what}||" + (" / value at the last step" if relative else ""))
    if any(label is not None for label, _ in lines):
        ax.legend()
    return ax
