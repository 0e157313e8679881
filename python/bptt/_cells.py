"""Recurrent cells: what each cell is (its :class:`CellSpec` in :data:`CELLS`)
and how :class:`bptt.RNN` drives its kernels.

Words (timestep, chunk, slab, part, ...) are used as docs/glossary.md
defines them.

:data:`CELLS` is the registry: one :class:`CellSpec` per cell, the one
place that says what a cell is (its public name, kernel modules, gates,
state, extra parameters, initial biases and PyTorch counterpart). The
network (``bptt.rnn``), PyTorch interop (``bptt.interop``), persistence and
the estimators' parameter constraints read it; nothing else names a cell.
Adding a cell takes a kernel module (``src/_<kernel>.pyx``), its NumPy twin
(``bptt/reference/<kernel>.py``), a binding class here and its entry in
:data:`CELLS` (see the README's "How it works").

A binding (a subclass of :class:`CellBinding`) calls the forward and BPTT
kernels of one backend (the compiled ``bptt._<kernel>`` module or its NumPy
twin ``bptt.reference.<kernel>``, which share function names and
signatures but for the compiled kernels' trailing layout arguments, which
only they get: :meth:`CellBinding._layout`). Everything is time-major: X (T, B, I), H (T, B, H).

The interface every binding implements:

``spec`` and ``gates``
    Its :class:`CellSpec`, and the spec's gate count: rows of W_xh / W_hh
    per hidden unit (1 Elman, 4 LSTM, 3 GRU).
``allocate(T, B, H, dtype) -> cache``
    The arrays BPTT must keep, a tuple of arrays with time as the first
    axis (Elman: (H,); gated cells add their gate activations), so
    ``tuple(a[s:e] for a in cache)`` is the cache of timesteps s..e-1.
``forward(X, p, state0, cache, n_threads=1, slabs=1, slab_steps=0)``
    Runs the recurrence over X's timesteps from state0, filling cache;
    the compiled kernels split the batch over n_threads (bptt/_threads.py).
    With ``slabs`` > 1, X and the cache hold that many independent slabs of
    sequences one after another ((slabs*T, B/slabs, .), src/_cellparts.pxd
    says why), and state0 the slabs' states in batch order; the cache
    arrays may hold ``slab_steps`` timesteps per slab, of which this chunk
    is the first X.shape[0] / slabs (pass ``a[s:]`` of each).
``hidden(cache) -> H`` and ``state_after(cache, t) -> state``
    The hidden states (T, B, H), and the state after timestep t in the
    contract's form (h, or (h, c)) as views into the cache.
``backward(X, p, state0, cache, dH, dstate_next, truncate, grads, accumulate, n_threads, dX, slabs, slab_steps, dstate_out)``
    dH (T, B, H) is dL/dH from above; it and the gate activations of the
    cache are consumed as workspace;
    ``dstate_next`` (or None) is dL/dstate after the last timestep, flowing in
    from later timesteps. Writes (or with ``accumulate`` adds) the cell's
    gradients into ``grads`` and returns dL/dstate0 (for the LSTM a tuple
    (dh0, dc0)). Running it chunk by
    chunk from the end, passing each chunk's dstate0 on as the previous
    chunk's dstate_next, is BPTT over the whole sequence (with slabs,
    dstate_next enters at the last timestep of every slab). ``dstate_out`` (or
    None): a tuple of (T, B, H) arrays (with slabs (T, slabs*B, H), rows in
    state0's order; time-major views of batch-first arrays will do), one per
    state array (h, then the LSTM's c), that receive the total dL/dstate at
    every step (from dH, from later timesteps within the truncation window and
    from dstate_next); the kernels' ``dh_out`` (and ``dc_out``), optionally
    followed by a float64 (states, T, B) array (with slabs (states, T,
    slabs*B)) that receives the L2 norm of each of their rows, the kernels'
    ``norms_out``, and optionally a float64 (states, T) array that receives
    those norms' means over the rows, the kernels' ``norm_means``.
``run_forward(X, p, state0, cache, segments, n_threads=1)`` and ``run_backward(X, p, state0, cache, dH, pieces, lengths, grads, accumulate=False, n_threads=1, dX=None, dstate_out=None)``
    (inherited from :class:`CellBinding`) One run of the cell over sequences
    of different lengths in the packed layout (``bptt._bptt.Layout``): X
    (rows, I), the cache ``allocate(rows, 1, H)``, dH and dX (rows, .),
    ``dstate_out`` arrays (rows, H) (and norms (states, rows)), a state
    (n, H) in sorted order; ``segments`` / ``pieces`` the layout's int64
    tables (src/_cellparts.pxd, "segments"), whose batch may be split into
    groups of sequences (a row with t0 = 0 starts one; a layout's groups,
    one per thread). The compiled kernels take the table in one call and
    run each group on a thread of its own; the NumPy reference loops it
    here, one call per segment, passing the states and their gradients
    between them.
``stepper(p, state0, activation) -> Stepper or None``
    (inherited from :class:`CellBinding`) The compiled streaming stepper of
    the cell's kernels (``RNN.stream``, src/_stepper.pxi); None for the
    NumPy backend, which :class:`CellStepper` streams through its forward
    kernel.

Stacked layers feed ``dX`` of layer l+1 into ``dH`` of layer l; a reversed
direction runs the same kernels on X[::-1].
"""

import dataclasses
import functools
import types

import numpy as np

from ._kernels import _KERNEL_MODULES, load_kernels
from ._validation import check_state, coerce_step_input

# The parameters every cell has, in the order RNN.params lists them: the
# cell's extra parameters come after b_h.
BASE_PARAMS = ("W_xh", "W_hh", "b_h")
OUTPUT_PARAMS = ("W_oh", "b_o")


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """What a recurrent cell is: everything bptt knows of it, said once.

    Parameters
    ----------
    name : str
        The public name, ``RNN(cell=name)``.
    kernel : str
        Its kernel modules' name: ``bptt._<kernel>`` compiled from
        ``src/_<kernel>.pyx``, and its NumPy twin ``bptt.reference.<kernel>``.
    binding : type
        The :class:`CellBinding` subclass that calls those kernels.
    gates : tuple of str
        The gate blocks of W_xh, W_hh and b_h, in row order (H rows each);
        one entry for a cell without gates.
    state : tuple of str, default=("h",)
        The state's arrays, each (n, H): ``("h",)`` (the state is an array)
        or ``("h", "c")`` (a tuple; ``h0`` is passed the same way).
    extra_params : mapping of str to (tuple, float), default={}
        Parameters beyond W_xh, W_hh, b_h: ``{name: (shape, initial value)}``,
        "H" in a shape standing for hidden_size (GRU: ``b_hn`` (H,), 0).
        The compiled stepper takes them in this order after b_o.
    initial_bias : mapping of str to float, default={}
        Initial values of b_h's gate blocks other than 0 (LSTM: forget gate 1).
    nonlinearity : bool, default=False
        Whether the cell uses ``RNN(nonlinearity=...)`` (tanh or relu).
    torch_module : str or None, default=None
        Its ``torch.nn`` counterpart ("RNN", "LSTM", "GRU"), whose
        ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0`` and
        ``bias_hh_l0`` are W_xh, W_hh and b_h with PyTorch's two biases
        folded, ``b_h = bias_ih + bias_hh``; None when there is none.
    torch_bias_apart : mapping of str to str, default={}
        The gate blocks of ``bias_hh_l0`` that do not fold into b_h but are
        an extra parameter of their own (GRU: ``{"n": "b_hn"}``, which the
        reset gate multiplies); b_h's block then holds ``bias_ih`` alone.
    """

    name: str
    kernel: str
    binding: type
    gates: tuple
    state: tuple = ("h",)
    extra_params: dict = dataclasses.field(default_factory=dict)
    initial_bias: dict = dataclasses.field(default_factory=dict)
    nonlinearity: bool = False
    torch_module: str = None
    torch_bias_apart: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        # read-only views: a spec is shared by every network of the cell
        for name in ("extra_params", "initial_bias", "torch_bias_apart"):
            object.__setattr__(self, name, types.MappingProxyType(dict(getattr(self, name))))
        object.__setattr__(self, "gates", tuple(self.gates))
        object.__setattr__(self, "state", tuple(self.state))

    @property
    def n_gates(self):
        """G: gate blocks, rows of W_xh / W_hh per hidden unit."""
        return len(self.gates)

    @property
    def has_cell_state(self):
        """Whether the state is a tuple (h, c) rather than one array h."""
        return len(self.state) > 1

    def module(self, backend):
        """The dotted name of the kernel module of ``backend`` ("cython",
        "numpy"); the compiled one without its SIMD suffix."""
        return _KERNEL_MODULES[backend].format(self.kernel)

    @property
    def param_names(self):
        """Every parameter's name, in :attr:`bptt.RNN.params` order."""
        return (*BASE_PARAMS, *self.extra_params, *OUTPUT_PARAMS)

    def param_shapes(self, input_size, hidden_size, output_size):
        """``{name: shape}`` of every parameter of a network of these sizes."""
        G, H = self.n_gates, hidden_size
        shapes = {"W_xh": (G * H, input_size), "W_hh": (G * H, H), "b_h": (G * H,)}
        for name, (shape, _) in self.extra_params.items():
            shapes[name] = tuple(H if d == "H" else d for d in shape)
        shapes["W_oh"] = (output_size, H)
        shapes["b_o"] = (output_size,)
        return shapes

    def gate_rows(self, gate, hidden_size):
        """The rows of gate block ``gate`` in W_xh, W_hh and b_h, a slice."""
        k = self.gates.index(gate)
        return slice(k * hidden_size, (k + 1) * hidden_size)

    def initial_b_h(self, hidden_size):
        """The initial b_h (G*H,), float64: :attr:`initial_bias`, else 0."""
        b_h = np.zeros(self.n_gates * hidden_size)
        for gate, value in self.initial_bias.items():
            b_h[self.gate_rows(gate, hidden_size)] = value
        return b_h

    def initial_extra(self, hidden_size):
        """The initial extra parameters, ``{name: float64 array}``."""
        shapes = self.param_shapes(1, hidden_size, 1)
        return {name: np.full(shapes[name], value)
                for name, (_, value) in self.extra_params.items()}

    def state_arrays(self, state):
        """A state of this cell's form (h, or a tuple (h, c)) as a tuple of
        arrays."""
        return tuple(state) if self.has_cell_state else (state,)

    def state_of(self, arrays):
        """The inverse of :meth:`state_arrays`."""
        return tuple(arrays) if self.has_cell_state else arrays[0]

    @property
    def stepper_params(self):
        """The parameters the compiled Stepper takes, in order
        (src/_stepper.pxi): W_xh, W_hh, b_h, W_oh, b_o, then the extras."""
        return (*BASE_PARAMS, *OUTPUT_PARAMS, *self.extra_params)

    def bind(self, backend, nonlinearity):
        """This cell's binding to its kernels of ``backend``."""
        return self.binding(self, load_kernels(backend, self.kernel), nonlinearity)


def document_cells(doc):
    """``doc`` with ``{cells}`` replaced by the registered cells' names as a
    numpydoc set of choices, ``{"rnn", "lstm", "gru"}``: the ``cell`` lines
    of the docstrings of :class:`bptt.RNN` and the estimators, so that a new
    cell needs no edit there. None (``python -OO``) stays None."""
    if doc is None:
        return None
    return doc.replace("{cells}", "{" + ", ".join(f'"{name}"' for name in CELLS) + "}")


def register(spec):
    """Add ``spec`` to :data:`CELLS` after checking that it is consistent.

    Parameters
    ----------
    spec : CellSpec

    Returns
    -------
    spec : CellSpec
        Unchanged.
    """
    if not isinstance(spec, CellSpec):
        raise TypeError(f"register takes a CellSpec; got {type(spec).__name__}.")
    problems = []
    if spec.name in CELLS:
        problems.append(f"the name {spec.name!r} is taken")
    if not spec.gates or len(set(spec.gates)) != len(spec.gates):
        problems.append(f"gates must be distinct names, at least one; got {spec.gates}")
    if spec.state not in (("h",), ("h", "c")):
        problems.append(f"state must be ('h',) or ('h', 'c'); got {spec.state}")
    clash = set(spec.extra_params) & {*BASE_PARAMS, *OUTPUT_PARAMS}
    if clash:
        problems.append(f"extra_params reuse the names {sorted(clash)}")
    unknown = set(spec.initial_bias) | set(spec.torch_bias_apart)
    if unknown - set(spec.gates):
        problems.append(f"initial_bias / torch_bias_apart name gates {sorted(unknown)}, "
                        f"not all among {spec.gates}")
    if spec.torch_module is not None:
        for gate, name in spec.torch_bias_apart.items():
            if spec.extra_params.get(name, ((None,), None))[0] != ("H",):
                problems.append(f"torch_bias_apart[{gate!r}] = {name!r} must be an extra "
                                f"parameter of shape ('H',)")
        held = set(spec.extra_params) - set(spec.torch_bias_apart.values())
        if held:
            problems.append(f"torch_module is set, but PyTorch has no place for the extra "
                            f"parameters {sorted(held)}")
    if not (isinstance(spec.binding, type) and issubclass(spec.binding, CellBinding)):
        problems.append(f"binding must be a CellBinding subclass; got {spec.binding!r}")
    if problems:
        raise ValueError(f"cannot register cell {spec.name!r}: " + "; ".join(problems) + ".")
    CELLS[spec.name] = spec
    return spec


class CellBinding:
    """The base of the cells' bindings: the spec, the kernel module and the
    nonlinearity; the compiled stepper."""

    def __init__(self, spec, kernels, nonlinearity):
        self.spec = spec
        self.gates = spec.n_gates
        self.kernels = kernels
        self.relu = spec.nonlinearity and nonlinearity == "relu"
        self.reference = is_reference(kernels)

    def _layout(self, X, cache, n_threads, slabs, slab_steps):
        """The cache and the trailing layout arguments of a call to the kernels.

        How the work is partitioned (threads, batch slabs, cache timesteps
        per slab; src/_cellparts.pxd) is the compiled kernels' business. The
        NumPy reference is the plain maths over one time-major batch: it runs
        one slab, gets the chunk's X.shape[0] timesteps of the cache and no
        layout arguments.
        """
        if not self.reference:
            return cache, (n_threads, slabs, slab_steps)
        if slabs != 1:
            raise ValueError(f"the NumPy reference runs one slab; got slabs={slabs}.")
        return tuple(a[:X.shape[0]] for a in cache), ()

    def _packed(self, segments, **backward):
        """The compiled kernels' keyword arguments of the packed layout:
        ``segments``, and backward's ``lengths``."""
        if segments is None:
            return {}
        if self.reference:
            raise ValueError("the NumPy reference runs one time-major batch; segments "
                             "are looped by run_forward / run_backward.")
        return {"segments": segments, **backward}

    def stepper(self, p, state0, activation):
        return _compiled_stepper(self, p, state0, activation)

    def run_forward(self, X, p, state0, cache, segments, n_threads=1):
        """One run over packed rows X (rows, I) from state0 (n, H, sorted
        order), filling the cache (``allocate(rows, 1, H)``) segment by
        segment; ``segments`` int64 (k, 4): t0, t1, B, r0 (Layout), possibly
        in groups (a row with t0 = 0 starts one, whose sequences are the
        next rows of state0; src/_cellparts.pxd, "segments"), which the
        compiled kernels run one per thread."""
        if not self.reference:
            self.forward(X[:, None], p, state0, cache, n_threads, segments=segments)
            return
        for table, rows in _groups_of(segments):
            self._run_forward_group(X, p, _rows_of(state0, rows), cache, table)

    def _run_forward_group(self, X, p, state0, cache, segments):
        """run_forward of one group's segments from its state0 (the NumPy
        reference)."""
        state = state0
        for t0, t1, B, r0 in segments[:, :4].tolist():
            r1 = r0 + (t1 - t0) * B
            part = tuple(a[r0:r1].reshape(t1 - t0, B, -1) for a in cache)
            self.forward(X[r0:r1].reshape(t1 - t0, B, -1), p, _rows_of(state, B), part)
            state = self.state_after(part, t1 - t0 - 1)

    def run_backward(self, X, p, state0, cache, dH, pieces, lengths, grads,
                     accumulate=False, n_threads=1, dX=None, dstate_out=None):
        """BPTT of one run over packed rows, piece by piece from the end.

        ``pieces`` int64 (k, 6): t0, t1, B, r0, truncate, cut (Layout.pieces;
        cut -1: no gradient crosses t0, k > 0: none from the sequences j with
        (lengths[j] - t0) % k == 0, the sorted ``lengths``). dH (rows, H) is
        consumed; dX (rows, I) or None; ``dstate_out``: (rows, H) arrays, one
        per state array, optionally followed by float64 (states, rows) norms
        of their rows; or *by step* (src/_cellparts.pxd, "segments"): (steps,
        n, H) arrays, any strides, whose element (t, p) receives timestep
        t of the sequence in h0's row p, norms (states, steps, n) and,
        when every sequence runs every step, optionally their means over
        the sequences (states, steps) (the kernels' ``norm_means``). Writes
        (or with ``accumulate`` adds) the gradients into ``grads``; returns
        dL/dstate0 (n, H) (the LSTM: (dh0, dc0)).
        """
        n_states = len(self.spec.state)
        means = None
        if (self.reference and dstate_out is not None and dstate_out[0].ndim == 3
                and len(dstate_out) == n_states + 2):
            # the kernels' norm_means: the norms' means over every group's rows
            *dstate_out, means = dstate_out
            steps = _every_step(pieces)
        if not self.reference:
            out = None
            if dstate_out is not None and dstate_out[0].ndim == 2:  # packed rows
                out = tuple(a[:, None] if k < n_states else a[:, :, None]
                            for k, a in enumerate(dstate_out))
            elif dstate_out is not None:
                out = tuple(dstate_out)
            return self.backward(X[:, None], p, state0, cache, dH[:, None], None, 0, grads,
                                 accumulate, n_threads,
                                 None if dX is None else dX[:, None], dstate_out=out,
                                 segments=pieces, lengths=lengths)
        carries = []
        for g, (table, rows) in enumerate(_groups_of(pieces)):
            carries.append(self._run_backward_group(
                X, p, _rows_of(state0, rows), cache, dH, table,
                None if lengths is None else lengths[rows], grads, accumulate or g > 0, dX,
                _by_step_rows(dstate_out, rows, n_states)))
        if means is not None:
            means[:, :steps] = dstate_out[-1][:, :steps].mean(axis=-1)
        if len(carries) == 1:
            return carries[0]
        if isinstance(carries[0], tuple):
            return tuple(np.concatenate(parts) for parts in zip(*carries))
        return np.concatenate(carries)

    def _run_backward_group(self, X, p, state0, cache, dH, pieces, lengths, grads,
                            accumulate, dX, dstate_out):
        """run_backward of one group's pieces, its state0 and lengths (the
        NumPy reference)."""
        n_states = len(self.spec.state)
        flat = tuple(a.reshape(X.shape[0], -1) for a in cache)
        carry = None
        for i, (t0, t1, B, r0, k, cut) in enumerate(pieces[::-1].tolist()):
            r1 = r0 + (t1 - t0) * B

            def block(a):
                return a[r0:r1].reshape(t1 - t0, B, -1)

            if t0 == 0:
                s0 = _rows_of(state0, B)
            else:
                prev = r0 - int(pieces[len(pieces) - i - 2, 2])  # timestep t0 - 1
                s0 = self.state_after(flat, slice(prev, prev + B))
            out = None
            if dstate_out is not None and dstate_out[0].ndim == 3:  # by step
                out = tuple(a[t0:t1, :B] if j < n_states else a[:, t0:t1, :B]
                            for j, a in enumerate(dstate_out))
            elif dstate_out is not None:
                out = tuple(block(a) if j < n_states else
                            a[:, r0:r1].reshape(a.shape[0], t1 - t0, B)
                            for j, a in enumerate(dstate_out))
            carry = self.backward(block(X), p, s0, tuple(block(a) for a in cache),
                                  block(dH), None if carry is None else _pad_rows(carry, B),
                                  k, grads, accumulate or i > 0, 1,
                                  None if dX is None else block(dX), dstate_out=out)
            if t0 == 0:
                continue
            if cut == -1:
                carry = None
            elif cut > 0:
                _zero_rows(carry, (lengths[:B] - t0) % cut == 0)
        return carry


class ElmanCell(CellBinding):
    """h_t = f(W_xh x_t + W_hh h_{t-1} + b_h), f = tanh or relu."""

    def allocate(self, T, B, n_hidden, dtype):
        return (np.empty((T, B, n_hidden), dtype=dtype),)

    def hidden(self, cache):
        return cache[0]

    def state_after(self, cache, t):
        return cache[0][t]

    def forward(self, X, p, state0, cache, n_threads=1, slabs=1, slab_steps=0,
                segments=None):
        cache, layout = self._layout(X, cache, n_threads, slabs, slab_steps)
        self.kernels.elman_forward(X, p["W_xh"], p["W_hh"], p["b_h"], state0, self.relu,
                                   cache[0], *layout, **self._packed(segments))

    def backward(self, X, p, state0, cache, dH, dstate_next, truncate, grads,
                 accumulate=False, n_threads=1, dX=None, slabs=1, slab_steps=0,
                 dstate_out=None, segments=None, lengths=None):
        if dstate_next is not None:
            _last_steps(dH, slabs)[...] += _by_slab(dstate_next, slabs)
        dh0 = np.empty_like(state0)
        cache, layout = self._layout(X, cache, n_threads, slabs, slab_steps)
        self.kernels.elman_backward(
            X, p["W_xh"], p["W_hh"], state0, cache[0], dH, self.relu, truncate,
            grads["W_xh"], grads["W_hh"], grads["b_h"], dh0, accumulate, dX, *layout,
            *(dstate_out or ()), **self._packed(segments, lengths=lengths),
        )
        return dh0


class LSTMCell(CellBinding):
    """Gates i, f, g, o (PyTorch's order) stacked in W_xh, W_hh, b_h (4H rows).

    i, f, o = sigmoid(.), g = tanh(.) of W_xh x_t + W_hh h_{t-1} + b_h;
    c_t = f*c_{t-1} + i*g ; h_t = o*tanh(c_t). The state is (h, c).
    """

    def allocate(self, T, B, n_hidden, dtype):
        # gate outputs G, cell states C, hidden states H
        return (np.empty((T, B, 4 * n_hidden), dtype=dtype),
                np.empty((T, B, n_hidden), dtype=dtype),
                np.empty((T, B, n_hidden), dtype=dtype))

    def hidden(self, cache):
        return cache[2]

    def state_after(self, cache, t):
        return cache[2][t], cache[1][t]

    def forward(self, X, p, state0, cache, n_threads=1, slabs=1, slab_steps=0,
                segments=None):
        h0, c0 = state0
        cache, layout = self._layout(X, cache, n_threads, slabs, slab_steps)
        G, C, H = cache
        self.kernels.lstm_forward(X, p["W_xh"], p["W_hh"], p["b_h"], h0, c0, G, C, H,
                                  *layout, **self._packed(segments))

    def backward(self, X, p, state0, cache, dH, dstate_next, truncate, grads,
                 accumulate=False, n_threads=1, dX=None, slabs=1, slab_steps=0,
                 dstate_out=None, segments=None, lengths=None):
        h0, c0 = state0
        cache, layout = self._layout(X, cache, n_threads, slabs, slab_steps)
        G, C, H = cache
        # dc0 enters as dL/dc after the last timestep and leaves as dL/dc0
        dh0 = np.empty_like(h0)
        if dstate_next is None:
            dc0 = np.zeros_like(c0)
        else:
            _last_steps(dH, slabs)[...] += _by_slab(dstate_next[0], slabs)
            dc0 = np.array(dstate_next[1], copy=True)
        self.kernels.lstm_backward(
            X, p["W_xh"], p["W_hh"], h0, c0, G, C, H, dH, truncate,
            grads["W_xh"], grads["W_hh"], grads["b_h"], dh0, dc0, accumulate, dX, *layout,
            *(dstate_out or ()), **self._packed(segments, lengths=lengths),
        )
        return dh0, dc0


class GRUCell(CellBinding):
    """Gates r, z, n (PyTorch's order) stacked in W_xh, W_hh, b_h (3H rows).

    r, z = sigmoid(.) of W_x x_t + W_h h_{t-1} + b_h (their rows);
    n = tanh(W_xn x_t + b_n + r*(W_hn h_{t-1} + b_hn));
    h_t = (1 - z)*n + z*h_{t-1}. b_hn (H,) is a parameter of its own because
    r multiplies it.
    """

    def allocate(self, T, B, n_hidden, dtype):
        # gate outputs G, W_hn h + b_hn per timestep HN, hidden states H
        return (np.empty((T, B, 3 * n_hidden), dtype=dtype),
                np.empty((T, B, n_hidden), dtype=dtype),
                np.empty((T, B, n_hidden), dtype=dtype))

    def hidden(self, cache):
        return cache[2]

    def state_after(self, cache, t):
        return cache[2][t]

    def forward(self, X, p, state0, cache, n_threads=1, slabs=1, slab_steps=0,
                segments=None):
        cache, layout = self._layout(X, cache, n_threads, slabs, slab_steps)
        G, HN, H = cache
        Gh = np.empty((state0.shape[0], G.shape[2]), dtype=X.dtype)
        self.kernels.gru_forward(X, p["W_xh"], p["W_hh"], p["b_h"], p["b_hn"], state0,
                                 G, HN, H, Gh, *layout, **self._packed(segments))

    def backward(self, X, p, state0, cache, dH, dstate_next, truncate, grads,
                 accumulate=False, n_threads=1, dX=None, slabs=1, slab_steps=0,
                 dstate_out=None, segments=None, lengths=None):
        cache, layout = self._layout(X, cache, n_threads, slabs, slab_steps)
        G, HN, H = cache
        if dstate_next is not None:
            _last_steps(dH, slabs)[...] += _by_slab(dstate_next, slabs)
        dh0 = np.empty_like(state0)
        self.kernels.gru_backward(
            X, p["W_xh"], p["W_hh"], state0, G, HN, H, dH, truncate,
            grads["W_xh"], grads["W_hh"], grads["b_h"], grads["b_hn"], dh0, accumulate, dX,
            *layout, *(dstate_out or ()), **self._packed(segments, lengths=lengths),
        )
        return dh0


def is_reference(kernels):
    """Whether a kernel module is the NumPy reference (bptt.reference.<name>)."""
    return kernels.__name__.startswith("bptt.reference.")


class ReferenceOutput:
    """The NumPy output layer called as the compiled one is.

    The compiled ``output_layer`` takes the layout of its rows last
    (``n_threads``, ``parts``, ``part_stride``: with ``part_stride`` its N rows
    are dHs's, read from the front of longer Hs and target arrays); the
    reference takes N rows of each. With one part the layout is only that
    cut, which this makes; output_forward is the reference's own.
    """

    def __init__(self, kernels):
        self._kernels = kernels

    def output_forward(self, Hs, W_oh, b_o, activation, Z, Y):
        self._kernels.output_forward(Hs, W_oh, b_o, activation, Z, Y)

    def output_layer(self, Hs, W_oh, b_o, activation, loss, target, denominator, Z, Y,
                     dZ, dW_oh, db_o, dHs, accumulate=False, n_threads=1, parts=0,
                     part_stride=0, row_weights=None):
        if parts > 1:
            raise ValueError(f"the NumPy reference runs one part; got parts={parts}.")
        N = dHs.shape[0]
        return self._kernels.output_layer(Hs[:N], W_oh, b_o, activation, loss, target[:N],
                                          denominator, Z, Y, dZ, dW_oh, db_o, dHs,
                                          accumulate,
                                          None if row_weights is None else row_weights[:N])


def output_kernels(kernels):
    """The output layer's kernel module as the driver calls it: the compiled
    module itself, or the NumPy reference through :class:`ReferenceOutput`."""
    return ReferenceOutput(kernels) if is_reference(kernels) else kernels


def _rows_of(state, B):
    """The first B rows of a state (or tuple of states); B may be a slice."""
    rows = B if isinstance(B, slice) else slice(None, B)
    if isinstance(state, tuple):
        return tuple(a[rows] for a in state)
    return state[rows]


def _groups_of(table):
    """A segments table's groups (src/_cellparts.pxd, "groups": a row with
    t0 = 0 starts one): a list of (its rows of the table, the slice of the
    state's rows its sequences take)."""
    starts = np.flatnonzero(table[:, 0] == 0).tolist() + [table.shape[0]]
    groups, base = [], 0
    for a, b in zip(starts[:-1], starts[1:]):
        n = int(table[a, 2])
        groups.append((table[a:b], slice(base, base + n)))
        base += n
    return groups


def _every_step(pieces):
    """The steps of a table of pieces whose every sequence runs every step
    (each group keeps its first batch and ends at the last step), for
    norm_means; ValueError otherwise, as the kernels say."""
    steps, batch = int(pieces[:, 1].max()), 0
    for i, (t0, t1, B) in enumerate(pieces[:, :3].tolist()):
        batch = B if t0 == 0 else batch
        last = i + 1 == len(pieces) or pieces[i + 1, 0] == 0
        if B != batch or (last and t1 != steps):
            raise ValueError("norm_means takes sequences of one length: with segments, "
                             "dh_out by step and every sequence running every step.")
    return steps


def _by_step_rows(dstate_out, rows, n_states):
    """A group's part of run_backward's ``dstate_out``: by step, its
    sequences' (a slice of h0's rows); packed rows, all of them (the
    pieces' r0 address them)."""
    if dstate_out is None or dstate_out[0].ndim == 2:
        return dstate_out
    return tuple(a[:, rows] if j < n_states else a[:, :, rows]
                 for j, a in enumerate(dstate_out))


def _pad_rows(state, B):
    """A state (or tuple) padded with zero rows to B rows."""
    if isinstance(state, tuple):
        return tuple(_pad_rows(a, B) for a in state)
    if state.shape[0] == B:
        return state
    out = np.zeros((B, state.shape[1]), dtype=state.dtype)
    out[:state.shape[0]] = state
    return out


def _zero_rows(state, mask):
    """Zero the rows of a state (or tuple) where the (B,) ``mask`` is True."""
    for a in state if isinstance(state, tuple) else (state,):
        a[:mask.shape[0]][mask] = 0


def _by_slab(state, slabs):
    """A (B, H) state as (slabs, B / slabs, H)."""
    return state.reshape(slabs, -1, state.shape[-1])


def _last_steps(dH, slabs):
    """dH[-1] of every slab of a (slabs*T, B/slabs, H) array, as (slabs, B/slabs, H)."""
    return dH.reshape(slabs, -1, *dH.shape[1:])[:, -1]


def _compiled_stepper(cell, p, state0, activation):
    """The cell kernels' compiled Stepper (src/_stepper.pxi), or None when
    they have none (the NumPy backend); its ``reset`` validates."""
    if not hasattr(cell.kernels, "Stepper"):
        return None
    spec = cell.spec
    params = tuple(p[name] for name in spec.stepper_params)
    arrays = spec.state_arrays(state0)
    stepper = _checked(cell.kernels.Stepper)(params, arrays, cell.relu, activation,
                                             coerce_step_input)
    stepper._state_form = _state_form(spec, arrays)
    return stepper


def _state_form(spec, arrays):
    """check_state's arguments after h0 for states of ``spec``'s cell shaped
    like ``arrays`` (its state as a tuple of (n, H) arrays)."""
    n, n_hidden = arrays[0].shape
    return n, n_hidden, arrays[0].dtype.type, spec.has_cell_state


class _CheckedReset:
    """``reset(h0)`` validated by check_state, as forward's h0 is: the
    compiled Stepper copies whatever it is given into its state buffers."""

    def reset(self, h0):
        """Set the state to ``h0`` (same form and shapes as ``state``)."""
        super().reset(check_state(h0, *self._state_form))


@functools.lru_cache(maxsize=None)
def _checked(stepper_type):
    # a Python subclass: step stays the compiled method, reset gains the check
    return type(stepper_type.__name__, (_CheckedReset, stepper_type),
                {"__module__": stepper_type.__module__, "__doc__": stepper_type.__doc__})


class CellStepper:
    """Streaming inference through a cell's forward kernel, one stream step
    (one timestep of every stream) at a time.

    :meth:`bptt.RNN.stream` for the NumPy backend: every buffer (a one-timestep
    cache, the time-major input, the outputs) is allocated here once, and each
    ``step`` runs the cell's forward kernel on T = 1 and the output layer.
    """

    def __init__(self, cell, out, p, state0, activation):
        self._spec = cell.spec
        # the state's arrays, (h,) or (h, c), updated in place
        self._arrays = tuple(a.copy() for a in self._spec.state_arrays(state0))
        n, n_hidden = self._arrays[0].shape
        self._cell, self._out, self._activation = cell, out, activation
        self._p = {name: value.copy() for name, value in p.items()}  # a snapshot
        dtype = self._p["W_hh"].dtype
        self._n_in = self._p["W_xh"].shape[1]
        self._cache = cell.allocate(1, n, n_hidden, dtype)
        self._x = np.empty((1, n, self._n_in), dtype=dtype)
        self._z = np.empty((n, self._p["W_oh"].shape[0]), dtype=dtype)
        self.y = np.empty_like(self._z)

    @property
    def state(self):
        """A copy of the current state (h, or (h, c))."""
        return self._spec.state_of([a.copy() for a in self._arrays])

    def reset(self, h0):
        """Set the state (same form and shape as ``state``), validated as
        forward's h0 is."""
        state = check_state(h0, *_state_form(self._spec, self._arrays))
        self._set_state(state)

    def _set_state(self, state):
        for a, b in zip(self._arrays, self._spec.state_arrays(state), strict=True):
            a[...] = b

    def step(self, x):
        """Advance one timestep: x (n, I) (or (I,) for n = 1) -> y (n, O)."""
        n = self._x.shape[1]
        self._x[0] = coerce_step_input(x, n, self._n_in, self._x.dtype)
        self._cell.forward(self._x, self._p, self._spec.state_of(self._arrays), self._cache)
        self._set_state(self._cell.state_after(self._cache, 0))
        self._out.output_forward(self._cell.hidden(self._cache)[0], self._p["W_oh"],
                                 self._p["b_o"], self._activation, self._z, self.y)
        return self.y


# The registry: public name -> CellSpec. register() adds to it.
CELLS = {}

register(CellSpec(
    name="rnn", kernel="elman", binding=ElmanCell, gates=("h",), nonlinearity=True,
    torch_module="RNN"))
register(CellSpec(
    name="lstm", kernel="lstm", binding=LSTMCell, gates=("i", "f", "g", "o"),
    state=("h", "c"),
    # the forget gate starts at 1 (Gers et al. 2000; Jozefowicz et al.
    # 2015): the cell starts out remembering
    initial_bias={"f": 1.0}, torch_module="LSTM"))
register(CellSpec(
    name="gru", kernel="gru", binding=GRUCell, gates=("r", "z", "n"),
    extra_params={"b_hn": (("H",), 0.0)}, torch_module="GRU",
    torch_bias_apart={"n": "b_hn"}))
