"""The network: :class:`RNN`, stacked recurrent layers (one or two
directions) plus an output layer.

What each cell is comes from its entry in ``bptt._cells.CELLS``; words
(timestep, chunk, window, slab, part) are used as docs/glossary.md defines
them.
"""

import numbers
import os

import numpy as np

from ._cells import CELLS, OUTPUT_PARAMS, CellStepper, document_cells, output_kernels
# re-exported: the variant and loader have been importable from here
from ._kernels import SIMD_VARIANTS, compiled_helpers, compiled_variant, load_kernels  # noqa: F401
from . import _bptt, interop
from ._bptt import LOSSES, OUTPUT_ACTIVATIONS
from ._validation import (
    as_numeric_array,
    cast_finite,
    check_choice,
    check_dtype,
    check_positive_int,
    check_ragged,
    check_ragged_target,
    check_sample_weight,
    check_sequences,
    check_state,
    validate_target,
)

NONLINEARITIES = ("tanh", "relu")
INITS = ("orthogonal", "xavier", "identity", "uniform")
BACKENDS = ("cython", "numpy")
OUTPUTS = ("sequence", "last", "mean")
# Each loss that is computed from the logits needs its matching output.
LOSS_ACTIVATION = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}
# what RNN.get_config describes: the constructor's arguments but the seed
_CONFIG_KEYS = ("input_size", "hidden_size", "output_size", "cell", "nonlinearity",
                "output_activation", "init", "dtype", "backend", "num_layers",
                "bidirectional", "dropout")

def _rng(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if random_state is None or (
        isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
    ):
        return np.random.default_rng(random_state)
    raise TypeError(
        f"random_state must be None, an int, a numpy Generator or RandomState; "
        f"got {random_state!r}."
    )


def param_shapes(cell, input_size, hidden_size, output_size, num_layers=1,
                 bidirectional=False):
    """The parameters' shapes, ``{name: shape}``, of a network of this
    configuration (see :class:`RNN`); bptt.load checks stored arrays
    against them before building the network. Layer 0's forward direction
    comes first, then the output layer, then the other layers and
    directions (the order of the initial draws)."""
    D, H = (2 if bidirectional else 1), hidden_size
    one_run = CELLS[cell].param_shapes(input_size, hidden_size, output_size)
    shapes = {}
    for layer in range(num_layers):
        for d in range(D):
            sfx = _bptt.suffix(layer, d)
            for name, shape in one_run.items():
                if name not in OUTPUT_PARAMS:
                    shapes[name + sfx] = (shape[0], D * H) if (
                        name == "W_xh" and layer > 0) else shape
            if (layer, d) == (0, 0):
                shapes["W_oh"] = (output_size, D * H)
                shapes["b_o"] = (output_size,)
    return shapes


def physical_memory():
    """Bytes of physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # e.g. Windows
        return None


def _bytes(n):
    """n bytes for a message: 7.2 GB."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "bytes" else f"{n} bytes"
        n /= 1000


class Params(dict):
    """The network's parameters: a dict that keeps its arrays usable.

    The compiled kernels trust the parameter shapes, so every write checks
    them: ``params[name] = array``, ``update`` and ``|=`` check the name and
    shape, reject NaN/inf (after the cast to the network's dtype) and store a
    C-contiguous copy of the network's dtype (the caller's array is never
    aliased or modified). A bulk write checks every value before storing
    any. The keys are fixed: ``pop``, ``popitem``, ``clear``, ``del`` and
    ``setdefault`` of a new key raise TypeError. It stays a ``dict`` (the
    design's ``dict[str, ndarray]``): ``dict(params)``, ``params | other``
    and ``{**params}`` give plain dicts, ``copy`` and pickling give Params.
    """

    def __init__(self, shapes, dtype, values):
        if hasattr(self, "_shapes"):  # __init__ again would change the shapes
            raise TypeError("Params cannot be re-initialised; assign net.params instead.")
        super().__init__()
        self._shapes = dict(shapes)
        self._dtype = dtype
        dict.update(self, self._checked({name: values[name] for name in shapes}))

    def _checked(self, values):
        """``values`` (a dict of name to array-like) checked and converted,
        as a new dict; raises before anything is stored."""
        checked = {}
        for name, value in values.items():
            if name not in self._shapes:
                raise KeyError(
                    f"unknown parameter {name!r}; this network has {list(self._shapes)}."
                )
            arr = as_numeric_array(value, f"params[{name!r}]")
            if arr.shape != self._shapes[name]:
                raise ValueError(
                    f"params[{name!r}] must have shape {self._shapes[name]}; got an "
                    f"array of shape {arr.shape}."
                )
            checked[name] = cast_finite(arr, self._dtype, f"params[{name!r}]", copy=True)
        return checked

    def __setitem__(self, name, value):
        dict.update(self, self._checked({name: value}))

    def update(self, *args, **kwargs):
        dict.update(self, self._checked(dict(*args, **kwargs)))

    def __ior__(self, other):
        self.update(other)
        return self

    def setdefault(self, name, default=None):
        if name in self:  # a read: dict.setdefault writes only a missing key
            return self[name]
        raise TypeError("parameters cannot be added to a network")

    def __delitem__(self, name):
        raise TypeError("parameters cannot be removed from a network")

    def pop(self, *args):
        raise TypeError("parameters cannot be removed from a network")

    def popitem(self):
        raise TypeError("parameters cannot be removed from a network")

    def clear(self):
        raise TypeError("parameters cannot be removed from a network")

    def __reduce__(self):
        return (Params, (self._shapes, self._dtype, dict(self)))

    def copy(self):
        return Params(self._shapes, self._dtype, self)


class RNN:
    """A recurrent network trained by backpropagation through time.

    A recurrent layer (Elman, LSTM or GRU) followed by a dense output layer
    applied at every timestep::

        rnn:  h_t = f(W_xh x_t + W_hh h_{t-1} + b_h),  f = tanh or relu
        lstm: [i, f, g, o] = W_xh x_t + W_hh h_{t-1} + b_h    (4H rows, in this order)
              i, f, o = sigmoid(.), g = tanh(.)
              c_t = f * c_{t-1} + i * g ;  h_t = o * tanh(c_t)
        gru:  [r, z, n] blocks of W_xh, W_hh, b_h              (3H rows, in this order)
              r = sigmoid(W_xr x_t + W_hr h_{t-1} + b_r), z likewise
              n = tanh(W_xn x_t + b_n + r * (W_hn h_{t-1} + b_hn))
              h_t = (1 - z) * n + z * h_{t-1}
        y_t = phi(W_oh h_t + b_o),  phi = identity, sigmoid or softmax

    The gate order and formulas are PyTorch's (``torch.nn.LSTM``,
    ``torch.nn.GRU``), with PyTorch's two bias vectors folded into ``b_h``
    except GRU's ``b_hn``, which the reset gate multiplies; see
    :meth:`to_torch_state_dict` and :meth:`from_torch_state_dict`.

    Parameters
    ----------
    input_size : int
        Features per timestep, I.
    hidden_size : int
        Hidden units, H.
    output_size : int
        Outputs per timestep, O.
    cell : {cells}, default="rnn"
        The recurrent cell (the registry ``bptt._cells.CELLS`` fills in
        the choices).
    nonlinearity : {"tanh", "relu"}, default="tanh"
        f of the Elman cell; the gated cells ignore it.
    output_activation : {"identity", "sigmoid", "softmax"}, default="identity"
        phi of the output layer.
    init : {"orthogonal", "xavier", "identity", "uniform"}, default="orthogonal"
        Scheme for W_hh (per gate block for gated cells): a random orthogonal
        matrix; Glorot uniform; the identity (for ReLU networks, Le et al.
        2015); or U(-1/sqrt(H), 1/sqrt(H)) as PyTorch does. W_xh and W_oh are
        always Glorot uniform, biases zero, except the LSTM's forget-gate
        bias b_h[H:2H], which starts at 1 so that the cell initially keeps
        its state (Gers et al. 2000; Jozefowicz et al. 2015).
    dtype : {"float32", "float64"}, default="float64"
        Floating type of the parameters and of every computation.
    backend : {"cython", "numpy"}, default="cython"
        The compiled kernels, or the NumPy reference they are tested against.
    random_state : int, numpy Generator or None, default=None
        Seeds the initial weights and then the dropout masks; the same seed
        gives the same network and the same training.
    num_layers : int, default=1
        Stacked recurrent layers; layer l > 0 reads layer l-1's output.
    bidirectional : bool, default=False
        Each layer runs forward and backward in time (each sequence reversed
        within its own length) and outputs [h_fwd(t), h_bwd(t)] (2H wide).
    dropout : float in [0, 1), default=0.0
        Dropout on the outputs of every layer but the last, while training
        only (:meth:`loss_and_grad`, the estimators' fit), as PyTorch's
        ``dropout``: each element is zeroed with this probability and the
        rest scaled by 1 / (1 - dropout).

    Attributes
    ----------
    params : dict of str to ndarray
        ``W_xh`` (G*H, I), ``W_hh`` (G*H, H), ``b_h`` (G*H,), ``W_oh`` (O, H),
        ``b_o`` (O,), where G is 1 for rnn, 4 for lstm (gate blocks i, f, g,
        o), 3 for gru (gate blocks r, z, n; plus ``b_hn`` (H,)). Arrays can
        be replaced by arrays of the same shape. Layer l >= 1 adds the
        suffix ``_l{l}`` (its ``W_xh`` is (G*H, D*H)), the backward direction
        ``_reverse`` after it; ``W_oh`` is (O, D*H), D = 2 when
        bidirectional (docs/layers.md).

    Examples
    --------
    >>> import numpy as np
    >>> import bptt
    >>> net = bptt.RNN(2, 8, 1, random_state=0)
    >>> X = np.zeros((4, 10, 2))
    >>> Y, h = net.forward(X)
    >>> Y.shape, h.shape
    ((4, 10, 1), (4, 8))
    >>> loss, grads = net.loss_and_grad(X, np.ones((4, 10)))
    >>> sorted(grads) == sorted(net.params)
    True
    >>> lstm = bptt.RNN(2, 8, 1, cell="lstm", random_state=0)
    >>> Y, (h, c) = lstm.forward(X)
    >>> lstm.params["W_hh"].shape, c.shape
    ((32, 8), (4, 8))
    """

    def __init__(self, input_size, hidden_size, output_size, *, cell="rnn",
                 nonlinearity="tanh", output_activation="identity",
                 init="orthogonal", dtype="float64", backend="cython",
                 random_state=None, num_layers=1, bidirectional=False, dropout=0.0):
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.output_size = check_positive_int("output_size", output_size)
        self.cell = check_choice("cell", cell, CELLS)
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        self.output_activation = check_choice(
            "output_activation", output_activation, OUTPUT_ACTIVATIONS)
        self.init = check_choice("init", init, INITS)
        self.dtype = check_dtype(dtype)
        self.backend = check_choice("backend", backend, BACKENDS)
        self.num_layers = check_positive_int("num_layers", num_layers)
        if not isinstance(bidirectional, (bool, np.bool_)):
            raise TypeError(f"bidirectional must be True or False; got {bidirectional!r}.")
        self.bidirectional = bool(bidirectional)
        if (isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, numbers.Real)
                or not 0 <= dropout < 1):
            raise ValueError(f"dropout must be a number in [0, 1); got {dropout!r}.")
        self.dropout = float(dropout)
        self._bind_kernels()
        self._check_size()
        # the initial weights, then the dropout masks, from one stream
        self._rng = _rng(random_state)
        self._params = Params(self._param_shapes(), self.dtype,
                              self._initial_params(self._rng))

    @property
    def _directions(self):
        return 2 if self.bidirectional else 1

    @property
    def _layered(self):
        """Whether the network needs the general driver (layers x directions)."""
        return self.num_layers > 1 or self.bidirectional

    def get_config(self):
        """The constructor arguments that rebuild this network, weights aside.

        Returns
        -------
        config : dict
            ``input_size``, ``hidden_size``, ``output_size``, ``cell``,
            ``nonlinearity``, ``output_activation``, ``init``, ``dtype`` (its
            name, "float32" or "float64"), ``backend``, ``num_layers``,
            ``bidirectional`` and ``dropout``: plain Python
            values (JSON-serialisable). ``RNN.from_config(config)`` builds a
            network of the same shapes and settings; ``random_state`` is not
            part of it (the weights are in :attr:`params`).
        """
        config = {name: getattr(self, name) for name in _CONFIG_KEYS}
        config["dtype"] = np.dtype(self.dtype).name
        return config

    @classmethod
    def from_config(cls, config, *, params=None, random_state=None):
        """Build a network from :meth:`get_config`'s description.

        Parameters
        ----------
        config : mapping of str to object
            Constructor arguments, as :meth:`get_config` returns them (every
            key but ``input_size``, ``hidden_size``, ``output_size`` may be
            left out for its default).
        params : mapping of str to array-like, optional
            Weights to replace the initial ones (see :attr:`params`; same
            keys and shapes, validated as an assignment to it is).
        random_state : int, numpy Generator or None, default=None
            Seeds the initial weights.

        Returns
        -------
        net : RNN
        """
        try:
            keys = set(config)
        except TypeError:
            raise TypeError(f"config must be a mapping of str to values; got "
                            f"{type(config).__name__}.") from None
        unknown = keys - set(_CONFIG_KEYS)
        if unknown:
            raise TypeError(f"config has the unknown keys {sorted(unknown)}; expected "
                            f"some of {list(_CONFIG_KEYS)}.")
        net = cls(**config, random_state=random_state)
        if params is not None:
            net.params = params
        return net

    def _check_size(self):
        """Raise MemoryError, before allocating, for a network whose
        initialisation cannot fit in this machine's physical memory.

        The initial weights are drawn in float64 and then copied into
        ``dtype``, so at least that much is held at once; left to NumPy,
        RNN(3, 3 * 10**8, 2) filled 7 GB for 15 s before failing.
        """
        n_params = sum(int(np.prod(shape, dtype=object))
                       for shape in self._param_shapes().values())
        needed = n_params * (8 + np.dtype(self.dtype).itemsize)
        available = physical_memory()
        if available is not None and needed > available:
            raise MemoryError(
                f"{self!r} has {n_params:,} parameters: {_bytes(n_params * np.dtype(self.dtype).itemsize)} "
                f"of {np.dtype(self.dtype).name}, and initialising them needs at least "
                f"{_bytes(needed)}, more than this machine's {_bytes(available)} of "
                f"physical memory."
            )

    def _bind_kernels(self):
        self._cell = CELLS[self.cell].bind(self.backend, self.nonlinearity)
        self._out = output_kernels(load_kernels(self.backend, "output"))

    # ------------------------------------------------------------------ params
    def _param_shapes(self):
        return param_shapes(self.cell, self.input_size, self.hidden_size, self.output_size,
                            self.num_layers, self.bidirectional)

    def _initial_params(self, rng):
        spec = CELLS[self.cell]
        G, H, I, O = spec.n_gates, self.hidden_size, self.input_size, self.output_size

        def glorot(rows, cols):
            bound = np.sqrt(6.0 / (rows + cols))
            return rng.uniform(-bound, bound, size=(rows, cols))

        def recurrent_block():
            if self.init == "orthogonal":
                q, r = np.linalg.qr(rng.standard_normal((H, H)))
                return q * np.where(np.diag(r) < 0, -1.0, 1.0)
            if self.init == "identity":
                return np.eye(H)
            if self.init == "xavier":
                return glorot(H, H)
            bound = 1.0 / np.sqrt(H)
            return rng.uniform(-bound, bound, size=(H, H))

        D = self._directions
        extra = spec.initial_extra(H)
        values = {}
        # layer 0 forward, the output layer, then the others: a one-layer
        # network draws what it always drew
        for name, shape in self._param_shapes().items():
            base = name.split("_l")[0].removesuffix("_reverse")
            if base == "W_xh":
                values[name] = glorot(*shape)
            elif base == "W_hh":
                values[name] = np.vstack([recurrent_block() for _ in range(G)])
            elif base == "b_h":
                values[name] = spec.initial_b_h(H)
            elif base == "W_oh":
                values[name] = glorot(O, D * H)
            elif base in extra:
                values[name] = extra[base].copy()
            else:  # b_o
                values[name] = np.zeros(shape)
        return values

    @property
    def params(self):
        """dict of str to ndarray: the parameters (see the class docstring)."""
        return self._params

    @params.setter
    def params(self, values):
        if values is self._params:  # net.params |= {...}: validated in place
            return
        missing = set(self._params) - set(values)
        extra = set(values) - set(self._params)
        if missing or extra:
            raise KeyError(
                f"params must have exactly the keys {sorted(self._params)}; "
                f"missing {sorted(missing)}, unexpected {sorted(extra)}."
            )
        # Validate everything before replacing anything.
        self._params = Params(self._param_shapes(), self.dtype, values)

    # ------------------------------------------------------------------ checks
    def _check_state(self, h0, n_samples):
        """h0 of forward, loss_and_grad and stream (see check_state)."""
        return check_state(h0, n_samples, self.hidden_size, self.dtype,
                           pair=CELLS[self.cell].has_cell_state,
                           runs=self.num_layers * self._directions)

    # ------------------------------------------------------------------ maths
    def forward(self, X, h0=None):
        """Run the network over sequences, keeping no per-step cache.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, input_size)
            Or ragged: a list of (T_i, input_size) arrays ((T_i,) when
            input_size is 1), or an array padded with NaN in whole trailing
            timesteps (docs/layers.md).
        h0 : ndarray of shape (n_samples, hidden_size), optional
            Initial hidden state (zeros when None); for "lstm" a tuple
            (h0, c0) of such arrays. With several layers or two directions
            (num_layers * D, n_samples, hidden_size), PyTorch's layout.

        Returns
        -------
        Y : ndarray of shape (n_samples, n_timesteps, output_size)
            Outputs after ``output_activation`` at every timestep; for ragged
            X in X's form (a list of (T_i, output_size), or NaN-padded).
        state : ndarray of shape (n_samples, hidden_size)
            The hidden state after the last step (each sequence's own last
            step); for "lstm" a tuple (h_T, c_T); (num_layers * D,
            n_samples, hidden_size) as h0. Pass it back as ``h0`` to
            continue the sequences.
        """
        X, lengths, form = check_ragged(X, self.input_size, self.dtype)
        state0 = self._check_state(h0, X.shape[0])
        return _bptt.outputs(self, X, state0, lengths, form)

    def stream(self, n_samples=1, h0=None):
        """Prepare step-by-step inference for live data (one timestep per call).

        The returned object holds a snapshot of the parameters and every
        buffer, so each step allocates nothing: its ``step(x)`` takes x of
        shape (n_samples, input_size) (or (input_size,) for one sample) and
        returns y of shape (n_samples, output_size) in a buffer that the next
        step overwrites. ``state`` gives a copy of the current state (h, or
        (h, c) for "lstm") and ``reset(h0)`` sets it, checking h0 as this
        method does. Feeding the timesteps of
        X one by one gives the same outputs as :meth:`forward` on X.

        Parameters
        ----------
        n_samples : int, default=1
            Sequences advanced together.
        h0 : ndarray of shape (n_samples, hidden_size), optional
            Initial state (zeros when None); for "lstm" a tuple (h0, c0).

        Returns
        -------
        stream : Stepper
            Has ``step(x) -> y``, ``state`` and ``reset(h0)``.

        Examples
        --------
        >>> import numpy as np, bptt
        >>> net = bptt.RNN(1, 8, 1, random_state=0)
        >>> s = net.stream()
        >>> for x_t in np.sin(np.linspace(0, 3, 5)):
        ...     y_t = s.step(np.array([x_t]))
        >>> y_t.shape
        (1, 1)
        """
        n_samples = check_positive_int("n_samples", n_samples)
        if self.bidirectional:
            raise ValueError(
                "a bidirectional network cannot stream: its backward direction "
                "needs each sequence's last timestep before its first output. "
                "Run forward on whole sequences instead.")
        state = self._check_state(h0, n_samples)
        if self.num_layers > 1:
            return _bptt.LayeredStepper(self, state)
        activation = OUTPUT_ACTIVATIONS[self.output_activation]
        stepper = self._cell.stepper(self._params, state, activation)
        if stepper is None:  # the NumPy backend steps through its forward
            stepper = CellStepper(self._cell, self._out, self._params, state, activation)
        return stepper

    def loss_and_grad(self, X, y, *, loss="mse", output="sequence", truncate=None,
                      h0=None, return_state_grads=False, sample_weight=None):
        """Loss and its gradient with respect to every parameter (BPTT).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, input_size)
            Or ragged, as for :meth:`forward`.
        y : array-like
            ``output="sequence"``: (n_samples, n_timesteps, output_size), or
            (n_samples, n_timesteps) when output_size is 1 or for
            cross-entropy labels (for ragged X in X's form: a list of
            (T_i, ...) arrays, or NaN-padded like X). ``output="last"`` and
            ``"mean"``: (n_samples, output_size), or (n_samples,).
        loss : {"mse", "cross_entropy", "binary_cross_entropy"}, default="mse"
            Mean squared error over every element; cross-entropy of the softmax
            output against integer labels, averaged over samples (and
            timesteps); binary cross-entropy of the sigmoid output, averaged
            over every element.
        output : {"sequence", "last", "mean"}, default="sequence"
            Loss at every timestep (many-to-many), at the last (many-to-one;
            bidirectional: the output layer on [h_fwd at each sequence's
            last timestep, h_bwd at t = 0]), or on the mean of the top
            layer's output over each sequence's timesteps (many-to-one).
            The loss averages over real elements only.
        truncate : int or None, default=None
            Truncated BPTT: the sequence is cut into windows [0, k), [k, 2k),
            ...; the state flows forward across window boundaries but no
            gradient flows back across them (in both directions, on the
            absolute timeline). None is full BPTT.
        h0 : ndarray of shape (n_samples, hidden_size), optional
            Initial state, as in :meth:`forward`.
        return_state_grads : bool, default=False
            Also return the gradient flow through time: dL/dh_t at every
            timestep (and dL/dc_t for the LSTM), which the kernels record
            during the backward pass they run anyway (docs/diagnostics.md).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each sequence, not all zero: the loss is
            the weighted mean, sum_i w_i l_i / sum_i w_i, where l_i is
            sequence i's mean loss (over its timesteps and outputs, as
            above), and the gradient is that of the weighted mean. None
            weighs every sequence alike.

        Returns
        -------
        loss : float
        grads : dict of str to ndarray
            dloss/dparam, same keys and shapes as :attr:`params`; with
            dropout, exact for the masks drawn in this call.
        state_grads : dict of str to ndarray
            Only with ``return_state_grads=True``:

            - ``"dh"``, ndarray of shape (n_samples, n_timesteps, hidden_size):
              ``dh[i, t]`` is dL/dh_t of sequence i, h_t being the hidden
              state after step t (0-based, as the outputs are indexed): the
              total gradient that reaches h_t, from the loss at t and through
              every later step, and with ``truncate`` only from later steps
              of its own window (the gradient of the loss with the state
              detached at every window start, as PyTorch's ``retain_grad``
              on h_t gives it). Zero at steps no loss reaches.
            - ``"dc"``, same shape, LSTM only: dL/dc_t of the cell states.
            - ``"dh_norm"`` (and ``"dc_norm"``), ndarray of shape
              (n_timesteps,), float64: the L2 norm over the hidden units,
              averaged over the samples, ``norm(dh, axis=2).mean(axis=0)``.

            With ``num_layers > 1`` or ``bidirectional``, (num_layers*D,
            n_samples, n_timesteps, hidden_size) arrays (index l*D + d, as
            ``h0``; time on the absolute timeline for both directions) and
            (num_layers*D, n_timesteps) norms. Ragged input gets them in
            its form: NaN-padded arrays, or a list of (T_i, hidden_size)
            (or (num_layers*D, T_i, hidden_size)) arrays; the norms average
            over the sequences that reach each timestep.

            Arrays of the network's dtype (the norms float64), the
            caller's: no later call changes them while the caller refers
            to them. Once it has dropped them, the next call may write its
            own into their memory (fresh memory costs a page fault per page
            on first touch; :meth:`release_buffers` frees it).

        Examples
        --------
        >>> import numpy as np
        >>> import bptt
        >>> net = bptt.RNN(1, 8, 1, random_state=0)
        >>> X, y = np.ones((4, 50, 1)), np.ones(4)
        >>> loss, grads, flow = net.loss_and_grad(X, y, output="last",
        ...                                       return_state_grads=True)
        >>> flow["dh"].shape, flow["dh_norm"].shape
        ((4, 50, 8), (50,))
        >>> bool(flow["dh_norm"][0] < flow["dh_norm"][-1])  # vanishing backwards
        True
        """
        if not isinstance(return_state_grads, (bool, np.bool_)):
            raise TypeError(f"return_state_grads must be True or False; got "
                            f"{return_state_grads!r}.")
        state_grads = {} if return_state_grads else None
        value, grads, _ = self._loss_grad_state(X, y, loss, output, truncate, h0,
                                                state_grads, sample_weight)
        if return_state_grads:
            return value, grads, state_grads
        return value, grads

    def _loss_grad_state(self, X, y, loss, output, truncate, h0, state_grads=None,
                         sample_weight=None):
        """loss_and_grad, plus the state after the last step (for the
        estimators' truncated training, which carries it into the next window).
        A dict ``state_grads`` receives loss_and_grad's state gradients."""
        self._check_loss_output(loss, output)
        truncate = check_positive_int("truncate", truncate, allow_none=True)
        X, lengths, form = check_ragged(X, self.input_size, self.dtype)
        n, T, _ = X.shape
        state0 = self._check_state(h0, n)
        weights = check_sample_weight(sample_weight, n, self.dtype)
        if lengths is not None and output == "sequence":
            target = check_ragged_target(y, lengths, form, loss, self.output_size,
                                         self.dtype)
        else:
            target = validate_target(y, loss, output, n, T, self.output_size, self.dtype)
        return _bptt.loss_grad(self, X, target, loss, output, truncate or 0, state0,
                               lengths, state_grads, weights, form, T)

    def _readout(self, X, output="sequence", h0=None):
        """What the output layer gives for the loss of ``output``: forward's
        Y for "sequence" (in X's form); (n_samples, output_size) for "last"
        (the output layer on each sequence's final state of each direction,
        [h_fwd at its last timestep, h_bwd at t = 0]) and "mean" (on the mean
        of the top layer's output over each sequence's timesteps). The
        estimators predict with it."""
        check_choice("output", output, OUTPUTS)
        X, lengths, form = check_ragged(X, self.input_size, self.dtype)
        state0 = self._check_state(h0, X.shape[0])
        if output == "sequence":
            return _bptt.outputs(self, X, state0, lengths, form)[0]
        if _bptt.one_layer(self, lengths, output):
            return _bptt.forward(self, X, state0)[0][:, -1]
        lay = _bptt.layout_of(self, X, lengths)
        return _bptt.layered_readout(self, lay, X, state0, output)

    def _check_loss_output(self, loss, output):
        check_choice("loss", loss, LOSSES)
        check_choice("output", output, OUTPUTS)
        needed = LOSS_ACTIVATION.get(loss)
        if needed is not None and self.output_activation != needed:
            raise ValueError(
                f"loss={loss!r} needs output_activation={needed!r}; this network "
                f"has output_activation={self.output_activation!r}."
            )

    def _training_data(self, X, y, *, loss="mse", output="sequence", sample_weight=None):
        """Training data for minibatch training, validated once (the
        estimators' training API).

        Parameters
        ----------
        X, y, loss, output, sample_weight
            As for :meth:`loss_and_grad` (ragged X included: a minibatch then
            runs at its own sequences' lengths; its loss is the weighted mean
            over its own sequences).

        Returns
        -------
        data : bptt._bptt.TrainingData
            ``data.loss_and_grad(rows, start, stop, h0)`` gives the loss,
            gradients and final state of the minibatch ``rows`` (an index
            array) over timesteps start..stop-1, as :meth:`loss_and_grad` on
            ``X[rows][:, start:stop]`` would, without checking them again;
            ``data.advance(rows, start, stop, h0)`` the state after them.
        """
        self._check_loss_output(loss, output)
        X, lengths, form = check_ragged(X, self.input_size, self.dtype)
        n, T, _ = X.shape
        if lengths is not None and output == "sequence":
            target = check_ragged_target(y, lengths, form, loss, self.output_size,
                                         self.dtype)
        else:
            target = validate_target(y, loss, output, n, T, self.output_size, self.dtype)
        weights = check_sample_weight(sample_weight, n, self.dtype)
        return _bptt.TrainingData(self, X, target, loss, output, lengths, weights)

    def release_buffers(self):
        """Free the buffers :meth:`loss_and_grad` keeps for its next call.

        A training loop's calls with the same shapes reuse them (up to
        ``bptt._bptt.KEEP_WORKSPACE_BYTES``, 512 MB); this frees them when
        training is over. The estimators call it at the end of ``fit`` (not
        of ``partial_fit``, whose next call often is one more batch). It
        also frees the state-gradient arrays the last call with
        ``return_state_grads=True`` returned, which the network keeps to
        write the next call's into once the caller has dropped them. Nothing
        else changes: the next call allocates anew.
        """
        self.__dict__.pop("_workspace", None)
        self.__dict__.pop("_buffers", None)  # the layered driver's (_bptt.Buffers)
        self.__dict__.pop("_layout", None)  # and its last layout
        self.__dict__.pop("_returned", None)  # state gradients (_bptt.returned_array)

    def __getstate__(self):
        # kernel modules do not pickle; they are looked up again on load
        state = self.__dict__.copy()
        del state["_cell"], state["_out"]
        state.pop("_workspace", None)  # buffers, not state
        state.pop("_buffers", None)
        state.pop("_layout", None)
        state.pop("_returned", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind_kernels()

    # ------------------------------------------------------------- interop
    def to_torch_state_dict(self, *, rnn_prefix="", output_prefix=""):
        """The parameters under PyTorch's names, as NumPy arrays.

        The keys are those of ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (one
        layer) and of the ``torch.nn.Linear`` output layer: ``weight_ih_l0``
        (G*H, I), ``weight_hh_l0`` (G*H, H), ``bias_ih_l0`` (G*H,),
        ``bias_hh_l0`` (G*H,), ``weight`` (O, H), ``bias`` (O,). bptt keeps
        one bias where PyTorch has two, so ``bias_ih_l0`` gets all of ``b_h``
        and ``bias_hh_l0`` is zero, except the n block of a GRU, which holds
        ``b_hn``. PyTorch computes the same function with these weights
        (the output activation is not a parameter: apply it yourself).

        Load into PyTorch with, e.g.::

            sd = net.to_torch_state_dict()
            lstm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()
                                  if k.endswith("_l0")})
            linear.load_state_dict({"weight": torch.from_numpy(sd["weight"]),
                                    "bias": torch.from_numpy(sd["bias"])})

        Parameters
        ----------
        rnn_prefix, output_prefix : str, default=""
            Prepended to the recurrent and the output layer's keys, for a
            module holding both (e.g. ``"rnn."`` and ``"fc."``).

        Returns
        -------
        state_dict : dict of str to ndarray
            New arrays of the network's dtype.
        """
        return interop.to_torch_state_dict_layers(self, rnn_prefix=rnn_prefix,
                                                  output_prefix=output_prefix)

    @classmethod
    def from_torch_state_dict(cls, state_dict, *, cell=None, nonlinearity="tanh",
                              output_activation="identity", dtype=None,
                              backend="cython", rnn_prefix="", output_prefix=""):
        """Build a network from PyTorch-named weights.

        The inverse of :meth:`to_torch_state_dict`, and the way to take over
        the weights of a one-layer unidirectional ``torch.nn.RNN`` / ``LSTM``
        / ``GRU`` followed by a ``torch.nn.Linear``: pass the two modules'
        state dicts merged (PyTorch tensors are accepted and copied to
        NumPy). The two PyTorch biases are folded, ``b_h = bias_ih_l0 +
        bias_hh_l0``, except the n block of a GRU: ``b_h[2H:]`` gets
        ``bias_ih_l0[2H:]`` and ``b_hn`` gets ``bias_hh_l0[2H:]``. A
        network's own dict round-trips exactly; a PyTorch dict comes back
        from :meth:`to_torch_state_dict` with the biases folded (the same
        function, bias_hh moved into bias_ih up to rounding).

        Parameters
        ----------
        state_dict : mapping of str to array-like
            ``weight_ih_l0`` (G*H, I), ``weight_hh_l0`` (G*H, H), ``weight``
            (O, H); optionally ``bias_ih_l0``, ``bias_hh_l0`` (G*H,) and
            ``bias`` (O,) (missing biases, as for ``bias=False`` modules, are
            zero). No other keys.
        cell : {cells} or None, default=None
            None infers it from the shapes: the cell with a PyTorch
            counterpart whose G rows of ``weight_hh_l0`` per column they
            have.
        nonlinearity : {"tanh", "relu"}, default="tanh"
            The ``nonlinearity`` of a ``torch.nn.RNN``; not stored in its
            state dict.
        output_activation : {"identity", "sigmoid", "softmax"}, default="identity"
        dtype : {"float32", "float64"} or None, default=None
            None keeps ``weight_hh_l0``'s dtype when it is float32 or float64,
            else float64.
        backend : {"cython", "numpy"}, default="cython"
        rnn_prefix, output_prefix : str, default=""
            Prefixes of the recurrent and the output layer's keys.

        Returns
        -------
        net : RNN
        """
        return interop.from_torch_state_dict_layers(
            cls, state_dict, cell=cell, nonlinearity=nonlinearity,
            output_activation=output_activation, dtype=dtype, backend=backend,
            rnn_prefix=rnn_prefix, output_prefix=output_prefix)

    def __repr__(self):
        return (f"RNN({self.input_size}, {self.hidden_size}, {self.output_size}, "
                f"cell={self.cell!r}, nonlinearity={self.nonlinearity!r}, "
                f"output_activation={self.output_activation!r}, init={self.init!r}, "
                f"dtype={np.dtype(self.dtype).name!r}, backend={self.backend!r}"
                + (f", num_layers={self.num_layers}" if self.num_layers > 1 else "")
                + (", bidirectional=True" if self.bidirectional else "")
                + (f", dropout={self.dropout!r}" if self.dropout else "") + ")")


# the cell lines list the registry's cells
RNN.__doc__ = document_cells(RNN.__doc__)
RNN.from_torch_state_dict.__func__.__doc__ = document_cells(RNN.from_torch_state_dict.__doc__)
