"""Gradient check: :func:`gradcheck` compares ``loss_and_grad`` with finite
differences, and :class:`GradcheckReport` says where they disagree.

Design: the check is written against the network's public interface
(``params``, ``loss_and_grad``, and for truncation ``forward`` with ``h0`` of
one-layer networks built from its weights), reading only bptt's input
validation and, with dropout, the network's random state from inside, so
every depth, direction and input form is checked without special cases.
It runs on a deep copy of the network, perturbing one parameter entry at a
time through ``params`` (the validated setter), so the caller's network,
its arrays and its buffers are never touched.

Truncated BPTT (``truncate=k``) is not the gradient of the loss but of the
loss with the state entering each window [0, k), [k, 2k), ... held fixed at
its value under the current parameters (the contract: detaching h at every
boundary of the absolute timeline, in both directions). The finite
differences are taken of that function, rebuilt from the public API alone:
every layer and direction runs as a one-layer network of its own
(``forward`` with ``h0``) on each window of every sequence, from the state
entering it recorded once at today's parameters; the output layer and the
loss are the contract's formulas. The rebuilt loss must equal
``loss_and_grad``'s before any difference is taken. With dropout every
evaluation uses the masks the analytic call drew.
"""

import copy
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._validation import check_positive_int

__all__ = ["gradcheck", "GradcheckReport", "ParamCheck"]

# eps outside this range makes the difference quotient meaningless in
# float64: below it the rounding of the loss (~1e-16 |L|) divided by eps
# exceeds 1e-6; above it the central difference's truncation error (eps^2
# times the third derivative) exceeds 1e-4.
EPS_RANGE = (1e-10, 1e-2)
# Refuse checks whose estimated arithmetic exceeds this many floating-point
# operations: at the 1-10 GFLOP/s the small GEMMs of a gradient check reach
# on one core that is a minute or more (each checked entry costs two full
# loss evaluations), and a check on fewer sequences or timesteps tests the
# same code.
MAX_WORK = 3e11


@dataclass(frozen=True, eq=False)
class ParamCheck:
    """The finite-difference check of one parameter.

    Attributes
    ----------
    name : str
        The key in ``net.params``.
    shape : tuple of int
        The parameter's shape.
    indices : list of tuple of int
        The entries checked, in increasing order (every entry when the
        parameter has at most ``n_checks``).
    analytic : ndarray of shape (n_checked,)
        ``loss_and_grad``'s gradient at those entries.
    numeric : ndarray of shape (n_checked,)
        The central finite differences there.
    errors : ndarray of shape (n_checked,)
        Relative errors ``|analytic - numeric| / max(|analytic|, |numeric|,
        atol / rtol)``.
    rtol, atol : float
        The tolerance: an entry passes when its error is at most ``rtol``,
        i.e. ``|analytic - numeric| <= max(rtol * max(|analytic|, |numeric|),
        atol)``.
    """

    name: str
    shape: tuple
    indices: list
    analytic: np.ndarray
    numeric: np.ndarray
    errors: np.ndarray
    rtol: float
    atol: float

    @property
    def worst(self):
        """Position (in ``indices``) of the entry with the largest error."""
        return int(np.argmax(self.errors))

    @property
    def worst_index(self):
        """tuple of int: the index in the parameter of the worst entry."""
        return self.indices[self.worst]

    @property
    def worst_error(self):
        """float: the largest relative error."""
        return float(self.errors[self.worst])

    @property
    def worst_analytic(self):
        """float: the analytic gradient at the worst entry."""
        return float(self.analytic[self.worst])

    @property
    def worst_numeric(self):
        """float: the finite difference at the worst entry."""
        return float(self.numeric[self.worst])

    @property
    def passed(self):
        """bool: every checked entry is within the tolerance."""
        return bool(self.worst_error <= self.rtol)

    def __repr__(self):
        return (f"ParamCheck({self.name!r}, {'passed' if self.passed else 'FAILED'}, "
                f"worst error {self.worst_error:.3g} at {self.worst_index}: analytic "
                f"{self.worst_analytic:.10g}, numeric {self.worst_numeric:.10g})")


class GradcheckReport:
    """What :func:`gradcheck` found: one :class:`ParamCheck` per parameter.

    ``bool(report)`` and ``report.passed`` are True when every checked entry
    of every parameter is within the tolerance; ``report[name]`` is the
    parameter's :class:`ParamCheck`; ``report.failed`` lists the names of
    the parameters that failed. ``repr`` prints a table.

    Attributes
    ----------
    params : dict of str to ParamCheck
        In the order of ``net.params``.
    loss : float
        The loss at the network's parameters.
    network : str
        ``repr`` of the network checked.
    settings : dict
        loss, output, truncate, eps, rtol, atol and n_checks of the check.
    """

    def __init__(self, params, loss, network, settings):
        self.params = params
        self.loss = loss
        self.network = network
        self.settings = settings

    @property
    def passed(self):
        """bool: every parameter passed."""
        return all(check.passed for check in self.params.values())

    @property
    def failed(self):
        """list of str: the parameters with an entry beyond the tolerance."""
        return [name for name, check in self.params.items() if not check.passed]

    def __bool__(self):
        return self.passed

    def __getitem__(self, name):
        return self.params[name]

    def __iter__(self):
        return iter(self.params)

    def __len__(self):
        return len(self.params)

    def __repr__(self):
        s = self.settings
        checked = sum(len(c.indices) for c in self.params.values())
        verdict = "passed" if self.passed else f"FAILED ({', '.join(self.failed)})"
        head = [
            f"gradcheck {verdict}: {checked} entries of {len(self.params)} parameters",
            f"  {self.network}",
            f"  loss={s['loss']!r} ({self.loss:.10g}), output={s['output']!r}, "
            f"truncate={s['truncate']!r}, eps={s['eps']:g}",
            f"  error = |analytic - numeric| / max(|analytic|, |numeric|, atol/rtol); "
            f"pass when error <= rtol={s['rtol']:g} (atol={s['atol']:g})",
        ]
        rows = [("parameter", "shape", "checked", "worst error", "at", "analytic",
                 "numeric", "result")]
        for name, c in self.params.items():
            size = int(np.prod(c.shape, dtype=np.int64))
            rows.append((name, str(c.shape), f"{len(c.indices)}/{size}",
                         f"{c.worst_error:.2e}", str(c.worst_index),
                         f"{c.worst_analytic: .8e}", f"{c.worst_numeric: .8e}",
                         "ok" if c.passed else "FAIL"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                 for row in rows]
        return "\n".join(head + [""] + lines)


def gradcheck(net, X, y, *, loss="mse", output="sequence", truncate=None, h0=None,
              n_checks=20, eps=1e-6, rtol=1e-5, atol=1e-8, random_state=None):
    """Check a network's BPTT gradients against central finite differences.

    For ``n_checks`` randomly chosen entries of every parameter (every entry
    of a smaller parameter), the derivative of the loss is estimated as
    ``(L(p + eps) - L(p - eps)) / (2 eps)`` in float64 and compared with
    ``net.loss_and_grad(X, y, ...)``. Everything runs on a copy of the
    network: ``net`` is not changed.

    Parameters
    ----------
    net : bptt.RNN
        A float64 network (for a fitted estimator, ``est.net_``).
    X : array-like of shape (n_samples, n_timesteps, input_size)
        Inputs, any form ``net.loss_and_grad`` accepts.
    y : array-like
        Targets, as for ``net.loss_and_grad``.
    loss, output, truncate, h0
        As for ``net.loss_and_grad``. With ``truncate=k`` the finite
        differences are those of the loss with the state entering each
        window held fixed, whose gradient truncated BPTT computes.
    n_checks : int, default=20
        Entries checked per parameter.
    eps : float, default=1e-6
        The finite-difference step, in [1e-10, 1e-2].
    rtol : float, default=1e-5
        Largest relative error allowed; see ``atol``.
    atol : float, default=1e-8
        Absolute floor of the comparison, for gradients near zero: an entry
        passes when ``|analytic - numeric| <= max(rtol * max(|analytic|,
        |numeric|), atol)``, i.e. when its relative error ``|analytic -
        numeric| / max(|analytic|, |numeric|, atol / rtol)`` is at most
        ``rtol``.
    random_state : int, numpy Generator, RandomState or None, default=None
        Picks the entries; an int gives the same entries every time.

    Returns
    -------
    report : GradcheckReport
        Per parameter the entries checked, the analytic and numeric values,
        the worst relative error and where, and pass or fail; ``bool(report)``
        is True when every parameter passed. Its ``repr`` is a table.

    Raises
    ------
    ValueError
        For a float32 network (rounding makes finite differences in float32
        meaningless: check a float64 twin with the same weights, as the
        message shows), for n_checks < 1, eps outside [1e-10, 1e-2], rtol
        or atol not positive, and for a check whose estimated cost exceeds
        3e11 floating-point operations (a minute or
        more; use fewer sequences, timesteps or checks; the limit is
        ``MAX_WORK`` of the module ``bptt.gradcheck``). Bad X, y, loss,
        output, truncate or h0 get ``loss_and_grad``'s own errors.
    NotImplementedError
        For ``truncate`` with a network whose truncated loss the window by
        window rebuild does not reproduce (not a ``bptt.RNN`` of the
        contract).

    Notes
    -----
    Each checked entry costs two evaluations of the loss (one
    ``loss_and_grad`` each). Finite differences cannot see through kinks:
    with ``nonlinearity="relu"`` an entry whose perturbation moves a
    pre-activation across zero can fail although the gradient is right
    (rare at random weights; try another ``random_state`` or a smaller
    ``eps``).

    Examples
    --------
    >>> import numpy as np
    >>> import bptt
    >>> net = bptt.RNN(2, 4, 1, cell="gru", random_state=0)
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((3, 5, 2)), rng.standard_normal((3, 5))
    >>> report = bptt.gradcheck(net, X, y, truncate=2, random_state=0)
    >>> bool(report), report.failed
    (True, [])
    >>> report["W_hh"].worst_error < 1e-6
    True
    """
    _check_network(net)
    n_checks = check_positive_int("n_checks", n_checks)
    eps = _check_real("eps", eps, *EPS_RANGE,
                      why="below it float64 rounding of the loss dominates the "
                          "difference quotient, above it the truncation error of "
                          "the central difference does")
    rtol = _check_real("rtol", rtol, 0.0, np.inf, low_open=True)
    atol = _check_real("atol", atol, 0.0, np.inf, low_open=True)
    rng = _rng(random_state)

    twin = copy.deepcopy(net)  # float64 already; the caller's net is never touched
    # with dropout, every evaluation draws the masks the analytic call drew
    masks_rng = (copy.deepcopy(twin._rng)
                 if getattr(twin, "dropout", 0) and hasattr(twin, "_rng") else None)
    value, grads = twin.loss_and_grad(X, y, loss=loss, output=output, truncate=truncate,
                                      h0=h0)
    objective = _objective(twin, X, y, loss, output, truncate, h0, value, masks_rng)

    plan = {}
    for name, param in twin.params.items():
        size = param.size
        flat = np.arange(size) if size <= n_checks else np.sort(
            rng.choice(size, n_checks, replace=False))
        plan[name] = flat
    _check_cost(twin, X, sum(len(flat) for flat in plan.values()))

    checks = {}
    for name, flat in plan.items():
        base = np.array(twin.params[name], dtype=np.float64)
        numeric = np.empty(len(flat))
        for k, i in enumerate(flat):
            x = base.flat[i]
            up, down = x + eps, x - eps
            base.flat[i] = up
            twin.params[name] = base
            f_up = objective()
            base.flat[i] = down
            twin.params[name] = base
            f_down = objective()
            base.flat[i] = x
            # the step actually taken: up - down is 2 eps only up to rounding
            numeric[k] = (f_up - f_down) / (up - down)
        twin.params[name] = base
        analytic = np.asarray(grads[name], dtype=np.float64).reshape(-1)[flat]
        scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), atol / rtol)
        checks[name] = ParamCheck(
            name=name, shape=tuple(base.shape),
            indices=[tuple(int(j) for j in np.unravel_index(i, base.shape)) for i in flat],
            analytic=analytic, numeric=numeric,
            errors=np.abs(analytic - numeric) / scale, rtol=rtol, atol=atol)
    settings = dict(loss=loss, output=output, truncate=truncate, eps=eps, rtol=rtol,
                    atol=atol, n_checks=n_checks)
    return GradcheckReport(checks, float(value), repr(net), settings)


# --------------------------------------------------------------------- checks
def _check_network(net):
    params = getattr(net, "params", None)
    if not isinstance(params, Mapping) or not callable(getattr(net, "loss_and_grad", None)):
        hint = " (for a fitted estimator, pass est.net_)" if hasattr(net, "net_") else ""
        raise TypeError(
            f"gradcheck needs a network with params and loss_and_grad, such as "
            f"bptt.RNN{hint}; got {type(net).__name__}."
        )
    dtypes = {np.asarray(value).dtype for value in params.values()}
    if dtypes != {np.dtype(np.float64)}:
        found = ", ".join(sorted(d.name for d in dtypes))
        text = repr(net)
        if "dtype='float32'" in text:
            build = "twin = bptt." + text.replace("dtype='float32'", "dtype='float64'", 1)
        else:
            build = "twin = <the same network with dtype='float64'>"
        raise ValueError(
            f"gradcheck needs a float64 network; this one is {found}. In float32 "
            f"the rounding of the loss (about 1e-7 of it) divided by eps swamps the "
            f"finite differences, so the check would be meaningless. Check a float64 "
            f"twin with the same weights instead (the float32 kernels are tested "
            f"against the float64 ones by parity):\n    {build}\n"
            f"    twin.params = net.params\n    bptt.gradcheck(twin, X, y, ...)"
        )


def _check_real(name, value, low, high, *, low_open=False, why=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r} of type "
                        f"{type(value).__name__}.")
    value = float(value)
    too_low = value <= low if low_open else value < low
    if not np.isfinite(value) or too_low or value > high:
        if np.isinf(high):
            expected = f"a finite number > {low:g}" if low_open else f">= {low:g}"
        else:
            expected = f"in [{low:g}, {high:g}]"
        reason = f": {why}" if why else ""
        raise ValueError(f"{name} must be {expected}; got {value!r}{reason}.")
    return value


def _rng(random_state):
    if isinstance(random_state, (np.random.Generator, np.random.RandomState)):
        return random_state
    if random_state is None or (isinstance(random_state, numbers.Integral)
                                and not isinstance(random_state, bool)):
        return np.random.default_rng(random_state)
    raise TypeError(f"random_state must be None, an int, a numpy Generator or "
                    f"RandomState; got {random_state!r}.")


def _timesteps(X):
    """Sample-timesteps in X (sum of the lengths for a list of sequences)."""
    if isinstance(X, (list, tuple)):
        return sum(len(x) for x in X)
    shape = np.shape(X)
    return int(np.prod(shape[:2], dtype=np.int64))


def _check_cost(net, X, n_entries):
    """Refuse a check estimated to take a minute or more.

    A loss evaluation uses every weight about once per sample-timestep in
    the forward pass and twice in the backward pass (2 flops each), so it
    costs about 6 x parameters x sample-timesteps operations, whatever the
    depth or direction; each entry takes two.
    """
    n_params = sum(int(np.asarray(p).size) for p in net.params.values())
    steps = _timesteps(X)
    work = 6.0 * n_params * steps * (2 * n_entries + 1)
    if work > MAX_WORK:
        raise ValueError(
            f"gradcheck would take about {work:.2g} floating-point operations "
            f"({n_entries} entries, 2 loss evaluations each, on {n_params:,} "
            f"parameters and {steps:,} sample-timesteps), beyond the limit of "
            f"{MAX_WORK:.2g} (a minute or more): check on fewer sequences or "
            f"timesteps (X[:4, :20] tests the same code), or with fewer n_checks."
        )


# --------------------------------------------------------------------- objective
def _objective(net, X, y, loss, output, truncate, h0, value, masks_rng=None):
    """f() -> the loss at net's current params whose gradient loss_and_grad
    computes (for truncate, with the window states fixed at today's params).
    ``masks_rng``: the network's random state before the analytic call, put
    back before every evaluation so that dropout draws the same masks."""
    if truncate is None:
        def full():
            if masks_rng is not None:
                net._rng = copy.deepcopy(masks_rng)
            return net.loss_and_grad(X, y, loss=loss, output=output, h0=h0)[0]
        return full
    windowed = _Windows(net, X, y, loss, output, truncate, h0, masks_rng)
    # The rebuild must give the loss loss_and_grad gave: if it does not,
    # this network's truncation is not the one rebuilt here.
    rebuilt = windowed()
    if not np.isclose(rebuilt, value, rtol=1e-9, atol=1e-12):
        raise NotImplementedError(
            f"gradcheck could not rebuild the truncated loss of {net!r} window by "
            f"window ({rebuilt!r} against loss_and_grad's {value!r}); check with "
            f"truncate=None."
        )
    return windowed


class _Windows:
    """The truncated loss rebuilt from the public API, window by window.

    Every layer and direction is a one-layer, one-direction ``bptt.RNN``
    of the same cell whose output layer is the identity (W_oh = I, b_o = 0,
    so its outputs are its hidden states), run with ``forward(..., h0=)``
    on each window [m k, (m + 1) k) of the absolute timeline of every
    sequence (the reversed direction on the window's timesteps reversed,
    entering from the window after it). The state entering each window is
    recorded on the first call (today's params) and held fixed after it:
    truncated BPTT's function. Dropout applies the masks the analytic call
    drew (packed rows, as the driver lays them out); the output layer and
    the loss are the contract's formulas in NumPy.
    """

    def __init__(self, net, X, y, loss, output, truncate, h0, masks_rng):
        from . import _bptt
        from ._validation import check_ragged, check_ragged_target, validate_target

        self.net, self.loss, self.output, self.k = net, loss, output, truncate
        Xp, lengths, form = check_ragged(X, net.input_size, np.float64)
        n, T, _ = Xp.shape
        O = net.output_size
        if output == "sequence" and lengths is not None:
            target = check_ragged_target(y, lengths, form, loss, O, np.float64)
        else:
            target = validate_target(y, loss, output, n, T, O, np.float64)
        self.lengths = lengths = (np.full(n, T) if lengths is None
                                  else np.asarray(lengths, dtype=np.intp))
        self.X = [Xp[i, :L] for i, L in enumerate(lengths)]
        self.target = ([target[i, :L] for i, L in enumerate(lengths)]
                       if output == "sequence" else target)
        self.D = 2 if getattr(net, "bidirectional", False) else 1
        self.L = getattr(net, "num_layers", 1)
        state = net._check_state(h0, n)
        parts = state if isinstance(state, tuple) else (state,)
        self.h0 = [a if a.ndim == 3 else a[None] for a in parts]  # (L*D, n, H)
        self.masks, self.rows_of = None, None
        if masks_rng is not None and getattr(net, "dropout", 0) and self.L > 1:
            lay = _bptt.Layout(lengths)
            self.masks = _bptt.draw_masks(net, lay.rows, copy.deepcopy(masks_rng))
            position = np.argsort(lay.order)
            self.rows_of = [lay.offsets[:L] + position[i] for i, L in enumerate(lengths)]
        from .rnn import RNN

        H = net.hidden_size
        self.runs = [[RNN(net.input_size if layer == 0 else self.D * H, H, H,
                          cell=net.cell, nonlinearity=net.nonlinearity, dtype="float64",
                          backend=net.backend, random_state=0)
                      for _ in range(self.D)] for layer in range(self.L)]
        self.frozen = None

    def _set(self, layer, d):
        sub = self.runs[layer][d]
        sfx = ("" if layer == 0 else f"_l{layer}") + ("_reverse" if d else "")
        p = self.net.params
        params = {name: p[name + sfx] for name in sub.params if name + sfx in p}
        params["W_oh"] = np.eye(self.net.hidden_size)
        params["b_o"] = np.zeros(self.net.hidden_size)
        sub.params = params
        return sub

    def __call__(self):
        record = self.frozen is None
        if record:
            self.frozen = {}
        k, lengths, H = self.k, self.lengths, self.net.hidden_size
        starts = range(0, int(lengths.max()), k)
        inp = self.X
        for layer in range(self.L):
            out = [np.empty((L, self.D * H)) for L in lengths]
            for d in range(self.D):
                sub = self._set(layer, d)
                r = layer * self.D + d
                carried = {}  # sequence -> state leaving the last window run
                for m in (starts if d == 0 else reversed(starts)):
                    rows = [i for i, L in enumerate(lengths) if L > m]
                    stops = [min(m + k, lengths[i]) for i in rows]
                    if record:
                        # forward: from h0 at t = 0; reversed: from h0 at
                        # each sequence's last timestep
                        fresh = [(m == 0) if d == 0 else (lengths[i] <= m + k)
                                 for i in rows]
                        entering = tuple(
                            np.stack([h[r, i] if f else carried[i][j]
                                      for i, f in zip(rows, fresh)])
                            for j, h in enumerate(self.h0))
                        self.frozen[(r, m)] = entering
                    entering = self.frozen[(r, m)]
                    pieces = [inp[i][m:e] if d == 0 else inp[i][m:e][::-1]
                              for i, e in zip(rows, stops)]
                    Y, state = sub.forward(pieces, h0=entering if len(entering) == 2
                                           else entering[0])
                    state = state if isinstance(state, tuple) else (state,)
                    for b, (i, e) in enumerate(zip(rows, stops)):
                        carried[i] = tuple(a[b] for a in state)
                        out[i][m:e, d * H:(d + 1) * H] = Y[b] if d == 0 else Y[b][::-1]
            if self.masks is not None and layer < self.L - 1:
                out = [o * self.masks[layer][rows] for o, rows in zip(out, self.rows_of)]
            inp = out
        return self._loss(inp)

    def _loss(self, top):
        net, H, O = self.net, self.net.hidden_size, self.net.output_size
        if self.output == "sequence":
            Hs, target = np.concatenate(top), np.concatenate(self.target)
        elif self.output == "last":
            Hs = np.stack([np.concatenate([t[-1, :H], t[0, H:]]) for t in top])
            target = self.target
        else:
            Hs = np.stack([t.mean(axis=0) for t in top])
            target = self.target
        p = net.params
        Z = Hs @ p["W_oh"].T + p["b_o"]
        if self.loss == "cross_entropy":
            labels = np.asarray(target).reshape(-1).astype(np.intp)
            shifted = Z - Z.max(axis=1, keepdims=True)
            log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            return float(-log_p[np.arange(len(labels)), labels].mean())
        target = np.asarray(target, dtype=np.float64).reshape(Z.shape)
        if self.loss == "binary_cross_entropy":
            return float((np.logaddexp(0.0, Z) - target * Z).mean())
        activation = net.output_activation
        if activation == "sigmoid":
            Y = 1.0 / (1.0 + np.exp(-Z))
        elif activation == "softmax":
            e = np.exp(Z - Z.max(axis=1, keepdims=True))
            Y = e / e.sum(axis=1, keepdims=True)
        else:
            Y = Z
        return float(((Y - target) ** 2).mean())
