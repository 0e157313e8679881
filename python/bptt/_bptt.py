"""The BPTT driver: how :class:`bptt.RNN` runs its cells' kernels.

On the floor between the cells (:mod:`bptt._cells`, one cell's kernels
over a time-major batch) and the network (:mod:`bptt.rnn`, configuration
and parameters), this module owns

- the thread and BLAS policy of a call (:func:`holds_blas`,
  :func:`plan_threads`): whether it holds BLAS at one thread and over how
  many of bptt's threads it splits its batch;
- forward's loop over *chunks* of timesteps (:func:`forward`), which keeps
  inference memory independent of the sequence length;
- training's forward and backward pass (:func:`loss_grad_state`): the cache
  of every timestep, workspaces covering one chunk, the batch in *slabs*
  (one per thread; src/_cellparts.pxd), and the workspace kept for the next
  call of the same shapes.

Words: a *timestep* is one element of a sequence; a *chunk* is a run of
timesteps whose workspaces are held at once; a *window* is a run of
``truncate`` timesteps that truncated BPTT cuts the gradient at; a *slab*
is a part of the batch run by one thread from the first phase to the last.
An optimizer's *update* and a stream's *step* belong to other modules.

Every function takes the network (an :class:`bptt.RNN`) and reads its
configuration, its ``_cell`` and ``_out`` kernels and its ``_params``;
inputs arrive validated (batch-first X of the network's dtype, targets as
:func:`bptt._validation.validate_target` returns them; the one-layer path
reads their rows, :func:`bptt._validation.target_rows`).
"""

import math
import sys
import weakref
from contextlib import nullcontext

import numpy as np

from ._cells import BASE_PARAMS
from . import _threads
from ._threads import serial_blas
from ._validation import (check_state, coerce_step_input,
                          rows_by_group, target_rows, time_major)

OUTPUT_ACTIVATIONS = {"identity": 0, "sigmoid": 1, "softmax": 2}
LOSSES = ("mse", "cross_entropy", "binary_cross_entropy")
# forward() runs long sequences in chunks of timesteps holding about this many
# hidden values, so inference memory does not grow with T.
FORWARD_CHUNK_ELEMENTS = 1 << 18
# loss_and_grad() keeps the cache BPTT needs for every timestep, but its
# workspaces (the time-major input, dL/dH, the output layer's rows) cover one
# chunk of timesteps: at least this many rows (timesteps x samples), so the
# chunk GEMMs stay efficient, and at most about 1/10 of the sequence (the
# gradients and the packed recurrent weights share the rest of the 1.3x
# memory budget).
TRAIN_CHUNK_ROWS = 1024
# ... and at most this many rows, and rows of at most this many
# multiply-adds (gates x hidden x (hidden + input) a row): Python raises
# KeyboardInterrupt (Ctrl-C) only between kernel calls, so a chunk's time
# bounds how long it waits. On the loaded 2-core machine a tenth of a
# 40000-step sequence (32 samples, H=96) took 1-1.7 s a chunk, 2^14 rows
# 0.05-0.28 s; an LSTM at H=512 (n=128, T=2000) waited up to 1.9 s for its
# 2^14-row chunks. The S-XL benchmark sizes stay under both.
TRAIN_CHUNK_MAX_ROWS = 1 << 14
TRAIN_CHUNK_MAX_WORK = 1 << 32
# ... unless the workspaces of the whole sequence are this small anyway: then
# one chunk saves the driver's per-chunk calls (about 5% at the M size).
TRAIN_ONE_CHUNK_BYTES = 1 << 22
# loss_and_grad's buffers (cache and chunk workspaces) are kept for the next
# call with the same shapes when they take at most this much: a fresh
# allocation of a few MB comes from mmap and page-faults on first touch,
# which doubled the GRU's M-size training step (glibc trims the heap top
# after each call), and zeroing the fresh pages of the XL-size cache (52 MB)
# took 3% of its step (rnn XL 113-117 -> 108-115 ms kept). The general
# driver's L-size 2-layer bidirectional steps need 142 (rnn), 242 (GRU)
# and 267 MB (LSTM): under the 64 MB this was first, they page-faulted
# 17000-38000 times a step (zeroing pages and unmapping them took about 12%
# of the rnn's step in perf). The memory is the step's own peak, held
# between calls until RNN.release_buffers (the estimators call it after
# fit); larger buffers are freed after each call.
KEEP_WORKSPACE_BYTES = 1 << 29


# sys.getrefcount counts exactly only where the GIL serialises reference
# counting (not on free-threaded builds, not on PyPy, which has no count)
_COUNTS_REFERENCES = (hasattr(sys, "getrefcount")
                      and getattr(sys, "_is_gil_enabled", lambda: True)())


def returned_array(net, key, shape, dtype, fill=None):
    """A new array of ``shape`` for loss_and_grad to return (the state
    gradients), filled with ``fill`` unless None.

    The array returned under ``key`` last time is used again when the
    caller has dropped it: only this network still refers to it (no view,
    dict, or weak reference does). On this VM the first touch of fresh
    pages costs a fault each: the LSTM L-size state gradients (13 MB a
    call) took 1100 faults and 20-35 ms of system time in a 130 ms step.
    NumPy elides temporaries on the same evidence (a reference count of
    one). A caller who keeps the arrays gets new ones on every call."""
    kept = net.__dict__.get("_returned")
    full = (key, shape, dtype)
    arr = None if kept is None else kept.pop(full, None)
    # two references: ``arr`` and getrefcount's argument
    if (arr is None or not _COUNTS_REFERENCES or sys.getrefcount(arr) != 2
            or weakref.getweakrefcount(arr)):
        arr = np.empty(shape, dtype=dtype)
    if arr.nbytes <= KEEP_WORKSPACE_BYTES:
        if kept is None:
            kept = net.__dict__.setdefault("_returned", {})
        kept[full] = arr
    if fill is not None:
        arr.fill(fill)
    return arr


def copy_state(state):
    """A copy of a state (an array, or a tuple of arrays)."""
    if isinstance(state, tuple):
        return tuple(a.copy() for a in state)
    return state.copy()


def _slab_state(state, n):
    """A state (or tuple of states) of shape (slabs, n/slabs, H) as a
    C-contiguous (n, H), as the kernels take it: a view of the cache's rows
    when slabs is 1, else a copy. (A reshape alone is a strided view when the
    slabs hold one sample each: each row is then a timestep of its own slab.)"""
    if isinstance(state, tuple):
        return tuple(np.ascontiguousarray(a.reshape(n, -1)) for a in state)
    return np.ascontiguousarray(state.reshape(n, -1))


def check_loss(value):
    """Raise FloatingPointError for a non-finite loss."""
    if not math.isfinite(value):
        raise FloatingPointError(
            f"the loss is not finite ({value}): the parameters hold NaN/inf or "
            f"the activations overflowed."
        )


# ------------------------------------------------------------ threads and BLAS
def step_work(net, n_samples):
    """Multiply-adds of one timestep of the recurrence for the whole batch."""
    H, G = net.hidden_size, net._cell.gates
    return n_samples * G * H * (H + net.input_size)


def holds_blas(net, n_samples, n_timesteps):
    """Whether a call holds BLAS at one thread (serial_blas) for its run.

    True when the call splits its batch over threads, or when its GEMMs
    are large enough for OpenBLAS to thread them: left to itself,
    OpenBLAS's threads gain nothing at the M size and collapse it (1.4 ->
    5.6 ms) when another process holds a core. Tiny calls leave BLAS
    alone and skip the two calls that hold and restore it.
    """
    step = step_work(net, n_samples)
    return ((n_samples > 1 and step >= 2 * _threads.MIN_WORK_PER_THREAD)
            or step * n_timesteps >= _threads.BLAS_THREADED_WORK)


def plan_threads(net, budget, n_samples):
    """Threads of bptt's pool a call of ``n_samples`` sequences splits over."""
    return _threads.plan_threads(budget, n_samples, step_work(net, n_samples))


# ------------------------------------------------------------------ forward
def forward(net, X, state):
    """The outputs and final state of ``net`` over validated X from ``state``.

    X (n, T, I) batch-first of the network's dtype; returns Y (n, T, O)
    batch-first and the state after the last timestep. Runs in chunks of
    timesteps (FORWARD_CHUNK_ELEMENTS), keeping no cache beyond one chunk.
    """
    n, T, _ = X.shape
    H, O = net.hidden_size, net.output_size
    act = OUTPUT_ACTIVATIONS[net.output_activation]
    chunk = max(1, min(T, FORWARD_CHUNK_ELEMENTS // (n * H * net._cell.gates)))
    cache = net._cell.allocate(chunk, n, H, net.dtype)
    Xc = np.empty((chunk, n, net.input_size), dtype=net.dtype)
    Yt = np.empty((T, n, O), dtype=net.dtype)
    Z = np.empty((chunk * n, O), dtype=net.dtype)
    with serial_blas() if holds_blas(net, n, T) else nullcontext(1) as budget:
        n_threads = plan_threads(net, budget, n)
        for start in range(0, T, chunk):
            stop = min(T, start + chunk)
            _forward_chunk(net, X, start, stop, Xc, cache, state, Z, Yt, act, n_threads)
            state = copy_state(net._cell.state_after(cache, stop - start - 1))
    if not np.isfinite(Yt).all():
        raise FloatingPointError(
            "forward produced non-finite outputs: the parameters hold NaN/inf "
            "or the inputs are too large for the network's dtype."
        )
    return np.ascontiguousarray(Yt.transpose(1, 0, 2)), state


def _forward_chunk(net, X, start, stop, Xc, cache, state, Z, Yt, act, n_threads):
    """forward() of timesteps start..stop-1 into Yt, through the cache buffers."""
    n, H, O = X.shape[0], net.hidden_size, net.output_size
    steps = stop - start
    part = tuple(a[:steps] for a in cache)
    net._cell.forward(time_major(X, start, stop, Xc), net._params, state, part, n_threads)
    rows = steps * n
    net._out.output_forward(net._cell.hidden(part).reshape(rows, H),
                            net._params["W_oh"], net._params["b_o"], act, Z[:rows],
                            Yt[start:stop].reshape(rows, O))


# ----------------------------------------------------------------- training
def loss_grad_state(net, X, target, loss, output, truncate, state0, state_grads=None,
                    weights=None):
    """Loss, gradients and final state of ``net`` on validated inputs.

    X (n, T, I) batch-first of the network's dtype; ``target`` as
    target_rows returns it; ``truncate`` an int (0: full BPTT); ``state0``
    a validated state. Holds BLAS and splits the batch over threads as
    :func:`holds_blas` and :func:`plan_threads` decide. A dict
    ``state_grads`` also receives the state gradients (:func:`state_grads_of`);
    ``weights`` (n,) or None are the sequences' weights in the loss's mean.
    """
    n, T, _ = X.shape
    if not holds_blas(net, n, T):
        return _bptt(net, X, target, loss, output, truncate, state0,
                     state_grads=state_grads, weights=weights)
    with serial_blas() as budget:
        return _bptt(net, X, target, loss, output, truncate, state0,
                     plan_threads(net, budget, n), state_grads, weights)


def one_layer(net, lengths, output="sequence"):
    """Whether a call takes the one-layer path (:func:`forward`,
    :func:`loss_grad_state`): a unidirectional single layer, sequences of
    one length (``lengths`` None) and ``output`` "sequence" or "last"; the
    general driver takes everything else."""
    return lengths is None and not net._layered and output != "mean"


def layout_of(net, X, lengths):
    """The packed layout of batch-first X (n, T, .) whose sequences have
    ``lengths`` (None: all T). The last one made is kept on the network
    for the next call with the same lengths (a training loop's batch):
    making it and its groups took about 5% of a 2-thread ragged step."""
    if lengths is None:
        lengths = np.full(X.shape[0], X.shape[1])
    key = np.asarray(lengths, dtype=np.intp).tobytes()
    # dict.pop is atomic: a concurrent call on this network makes its own
    kept = net.__dict__.pop("_layout", None)
    lay = kept[1] if kept is not None and kept[0] == key else Layout(lengths)
    net._layout = (key, lay)
    return lay


def outputs(net, X, state0, lengths=None, form="array"):
    """The outputs, in the input's ``form`` (check_ragged's), and the final
    state of ``net`` over validated batch-first X (ragged input padded to
    the longest of ``lengths``): the one place that picks the forward
    driver (:func:`one_layer`)."""
    if one_layer(net, lengths):
        return forward(net, X, state0)
    lay = layout_of(net, X, lengths)
    Y, state = layered_forward(net, lay, X, state0)
    return lay.in_form(Y, form, X.shape[1]), state


def loss_grad(net, X, target, loss, output, truncate, state0, lengths=None,
              state_grads=None, weights=None, form="array", width=None):
    """Loss, gradients and final state of ``net``: the one place that picks
    the training driver (:func:`one_layer`: :func:`loss_grad_state`, or
    :func:`layered_loss_grad_state` with dropout masks drawn here).

    X (n, T, I) batch-first of the network's dtype (ragged input padded to
    the longest of ``lengths``, (n,) or None); ``target`` as
    :func:`bptt._validation.validate_target` (or ``check_ragged_target``)
    returns it; ``truncate`` an int (0: full BPTT); ``state0`` a validated
    state; ``state_grads`` a dict that receives the state gradients in the
    input's ``form`` (check_ragged's, ``width`` its padded length);
    ``weights`` (n,) or None.
    """
    if one_layer(net, lengths, output):
        return loss_grad_state(net, X, target_rows(target, output), loss, output, truncate,
                               state0, state_grads, weights)
    lay = layout_of(net, X, lengths)
    return layered_loss_grad_state(net, lay, X, target, loss, output, truncate, state0,
                                   draw_masks(net, lay.rows), state_grads, weights, form,
                                   width)


def state_grads_of(flow, means, keys=("dh", "dc")):
    """loss_and_grad's state gradients from the (n, T, H) arrays the kernels
    filled (dh, then the LSTM's dc), with their per-timestep norms averaged
    over the batch: the float64 (states, T) means the kernels took of their
    rows' norms (norm_means)."""
    out = {}
    for key, a, mean in zip(keys, flow, means):
        out[key] = a
        out[key + "_norm"] = mean
    return out


def chunk_steps(net, T, n, truncate):
    """Timesteps per chunk of loss_and_grad's workspaces."""
    workspace = T * n * (net.hidden_size + net.input_size + 3 * net.output_size)
    if workspace * np.dtype(net.dtype).itemsize <= TRAIN_ONE_CHUNK_BYTES:
        return T
    row_work = net._cell.gates * net.hidden_size * (net.hidden_size + net.input_size)
    rows = max(TRAIN_CHUNK_ROWS, min((T * n) // 10, TRAIN_CHUNK_MAX_ROWS,
                                     TRAIN_CHUNK_MAX_WORK // row_work))
    steps = min(T, max(1, -(-rows // n)))
    if truncate and steps < T:
        # chunk starts on window starts, so the kernels' t % truncate holds
        steps = min(T, -(-steps // truncate) * truncate)
    return steps


def loss_denominator(net, loss, sequence, n, T, weights=None):
    """Elements (cross-entropy: rows) the loss's mean runs over; with sample
    weights each row counts its sequence's weight instead of 1."""
    loss_rows = (T if sequence else 1) * (n if weights is None else weights.sum())
    return loss_rows if loss == "cross_entropy" else loss_rows * net.output_size


def _bptt(net, X, target, loss, output, truncate, state0, n_threads=1, state_grads=None,
          weights=None):
    """Forward over every timestep, then BPTT chunk by chunk from the end.

    X is batch-first and validated, target as from target_rows.
    Returns the loss, the gradients and the state after the last step;
    a dict ``state_grads`` also receives the state gradients.
    """
    n, T, I = X.shape
    H, O = net.hidden_size, net.output_size
    steps = chunk_steps(net, T, n, truncate)
    starts = list(range(0, T, steps))
    sequence = output == "sequence"
    rows_max = steps * n if sequence else n
    # one slab of sequences per thread when the threads divide the batch:
    # each thread then works on its own rows from the first phase to the
    # last (src/_cellparts.pxd, "slabs"); the NumPy reference has no layout
    slabs = (n_threads if n_threads > 1 and n % n_threads == 0 and net.backend == "cython"
             else 1)
    # dict.pop is atomic: a concurrent call on this network allocates its own
    key = (T, n, steps, rows_max, slabs, net.dtype)
    workspace = net.__dict__.pop("_workspace", {}).get(key)
    if workspace is None:
        workspace = (net._cell.allocate(slabs * T, n // slabs, H, net.dtype),
                     np.empty((slabs * steps, n // slabs, I), dtype=net.dtype),
                     *(np.empty((rows_max, O), dtype=net.dtype) for _ in range(3)),
                     np.empty((slabs * steps, n // slabs, H), dtype=net.dtype))
    # state gradients: the kernels write them straight into the batch-first
    # (n, T, H) arrays returned (through their time-major views), the norms
    # of their rows into a (states, T, n) float64 array as they go, and
    # those norms' means over the batch into a (states, T) one; zeros where
    # no backward step writes (windows before the last one's loss)
    flow = None
    if state_grads is not None:
        fill = 0.0 if output == "last" and truncate else None
        states = ("dh", "dc") if net._cell.spec.has_cell_state else ("dh",)
        new = np.empty if fill is None else np.zeros
        flow = (*[returned_array(net, k, (n, T, H), net.dtype, fill) for k in states],
                new((len(states), T, n)), new((len(states), T)))
    value, grads, final_state = _bptt_in(net, workspace, X, target, loss, sequence,
                                         truncate, state0, steps, starts, n_threads, slabs,
                                         flow, weights)
    if flow is not None:
        state_grads.update(state_grads_of(flow[:-2], flow[-1]))
    if sum(a.nbytes for a in (*workspace[0], *workspace[1:])) <= KEEP_WORKSPACE_BYTES:
        net._workspace = {key: workspace}
    return value, grads, final_state


def _bptt_in(net, workspace, X, target, loss, sequence, truncate, state0, steps,
             starts, n_threads, slabs, flow=None, weights=None):
    """_bptt's work, in the buffers of ``workspace``, in ``slabs`` slabs of
    n / slabs sequences: the cache arrays are (slabs*T, n/slabs, .), slab
    k holding sequences k*n/slabs.. one timestep after another, the chunk
    workspaces likewise (slabs*steps, n/slabs, .), and the output layer's
    rows and target follow that order (src/_cellparts.pxd, "slabs"; one
    slab is the plain time-major layout). ``flow``, when given, is a tuple
    of batch-first (n, T, H) arrays that receive dL/dh (and dL/dc) at every
    timestep, then the (states, T, n) float64 array of their rows' norms
    and the (states, T) one of those norms' means over the batch."""
    n, T, I = X.shape
    H = net.hidden_size
    cell, out, p = net._cell, net._out, net._params
    act = OUTPUT_ACTIVATIONS[net.output_activation]
    cache, Xc, Z, Y, dZ, dH = workspace
    rows = n // slabs
    # (slabs*T, rows, .) arrays seen as (T, slabs, rows, .): step t of
    # every slab, in batch order once reshaped to (n, .)
    by_step = tuple(a.reshape(slabs, T, rows, -1).swapaxes(0, 1) for a in cache)
    state = state0
    for s in starts:
        e = min(T, s + steps)
        cell.forward(time_major(X, s, e, Xc, slabs, n_threads), p, state,
                     tuple(a[s:] for a in cache), n_threads, slabs, T)
        state = _slab_state(cell.state_after(by_step, e - 1), n)
    # a copy, so the caller does not keep the whole cache alive through it
    final_state = copy_state(state)

    denominator = loss_denominator(net, loss, sequence, n, T, weights)
    loss_code = LOSSES.index(loss)
    Hall = cell.hidden(cache).reshape(slabs * T * rows, H)
    grads = {name: np.empty_like(value) for name, value in p.items()}
    if sequence and slabs > 1:
        # target rows (T*n, ...) time-major, in slab order
        target = np.ascontiguousarray(
            target.reshape(T, slabs, rows, -1).swapaxes(0, 1)
        ).reshape(target.shape)
    if weights is not None and sequence:
        # one weight per output row (T*n, time-major), in the target's order
        weights = np.ascontiguousarray(np.broadcast_to(
            weights.reshape(slabs, 1, rows), (slabs, T, rows))).reshape(-1)
    value = 0.0
    carry = None
    # the kernels' dh_out (dc_out): time-major (T, n, H) views of the flow
    flow_tm = None if flow is None else (*[a.transpose(1, 0, 2) for a in flow[:-2]],
                                         *flow[-2:])
    for i, s in enumerate(reversed(starts)):
        e = min(T, s + steps)
        dHc = dH[: slabs * (e - s)]
        if sequence:
            # slab k's rows of this chunk: k*T*rows + s*rows onwards
            value += out.output_layer(
                Hall[s * rows:], p["W_oh"], p["b_o"], act, loss_code, target[s * rows:],
                denominator, Z[:n * (e - s)], Y[:n * (e - s)], dZ[:n * (e - s)],
                grads["W_oh"], grads["b_o"], dHc.reshape(-1, H), i > 0, n_threads,
                slabs, T * rows, None if weights is None else weights[s * rows:])
        elif i == 0:
            H_last = _slab_state(cell.hidden(by_step)[T - 1], n)
            dH_last = np.empty_like(H_last)
            value = out.output_layer(H_last, p["W_oh"], p["b_o"], act, loss_code, target,
                                     denominator, Z, Y, dZ, grads["W_oh"], grads["b_o"],
                                     dH_last, False, n_threads, slabs, 0, weights)
            dH_by_slab = dHc.reshape(slabs, e - s, rows, H)
            dH_by_slab[:, :-1] = 0
            dH_by_slab[:, -1] = dH_last.reshape(slabs, rows, H)
        elif carry is None:
            # loss at the last step only, and truncation stopped its
            # gradient: earlier timesteps contribute nothing
            break
        else:
            dHc[...] = 0
        if i == 0:
            check_loss(value)
        chunk_state0 = (state0 if s == 0 else
                        _slab_state(cell.state_after(by_step, s - 1), n))
        # the last chunk forward is the first one backward: Xc still holds it
        Xt = Xc[: slabs * (e - s)] if i == 0 else time_major(X, s, e, Xc, slabs, n_threads)
        carry = cell.backward(Xt, p, chunk_state0, tuple(a[s:] for a in cache), dHc,
                              carry, truncate, grads, i > 0, n_threads, None, slabs, T,
                              flow_tm if flow is None or s == 0 else
                              (*[a[s:] for a in flow_tm[:-2]],
                               flow_tm[-2][:, s:], flow_tm[-1][:, s:]))
        if truncate and s % truncate == 0:
            carry = None  # no gradient crosses a window boundary
    check_loss(value)
    return value, grads, final_state


class TrainingData:
    """Sequences and targets validated once, trained on minibatch by minibatch.

    Made by :meth:`bptt.RNN._training_data` (the estimators' training API):
    X and the target are checked and converted when it is made; a minibatch
    is then a row index array (and optionally a range of timesteps, for
    training window by window), sliced without checking again.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_timesteps, input_size)
        Of the network's dtype.
    y : ndarray
        The target as :func:`bptt._validation.validate_target` returns it.
    weights : ndarray of shape (n_samples,) or None
        The sequences' weights in the loss's mean (None: all 1).
    n_samples, n_timesteps : int
    """

    def __init__(self, net, X, y, loss, output, lengths=None, weights=None):
        self.net, self.X, self.y, self.loss, self.output = net, X, y, loss, output
        self.n_samples, self.n_timesteps = X.shape[:2]
        self.lengths = lengths  # None: every sequence has n_timesteps
        self.weights = weights

    def loss_and_grad(self, rows, start=0, stop=None, h0=None):
        """Loss, gradients and final state on a minibatch.

        Parameters
        ----------
        rows : ndarray of int
            The samples of the minibatch.
        start, stop : int, default=0, None
            Its timesteps start..stop-1 (None: to the end); with
            ``output="last"`` the loss is at the last timestep of X.
        h0 : state or None
            The state before ``start`` (a state this object returned, or
            None for zeros).

        Returns
        -------
        loss : float
        grads : dict of str to ndarray
        state : ndarray or tuple of ndarrays
            The state after the last timestep, to pass on as ``h0``.
        """
        net = self.net
        X = self._slice(rows, start, stop)
        y = self.y[rows]
        if self.output == "sequence":
            y = y[:, start:stop]
        state0 = net._check_state(h0, X.shape[0]) if h0 is None else h0
        weights = None if self.weights is None else np.ascontiguousarray(self.weights[rows])
        lengths = None
        if self.lengths is not None:
            lengths = self.lengths[rows]
            T = int(lengths.max())
            X = np.ascontiguousarray(X[:, :T])
            if self.output == "sequence":
                y = y[:, :T]
        return loss_grad(net, X, y, self.loss, self.output, 0, state0, lengths,
                         weights=weights)

    def advance(self, rows, start=0, stop=None, h0=None):
        """The state after timesteps start..stop-1 of a minibatch (forward only)."""
        X = self._slice(rows, start, stop)
        state0 = self.net._check_state(h0, X.shape[0]) if h0 is None else h0
        return outputs(self.net, X, state0)[1]

    def _slice(self, rows, start, stop):
        if (start or stop is not None) and self.lengths is not None:
            raise ValueError(
                "training window by window (truncate) carries the state forward "
                "through timesteps every sequence of the batch has; these sequences "
                "have lengths of their own. Use truncate=None for ragged X.")
        if (start or stop is not None) and self.output == "mean":
            raise ValueError(
                "training window by window (truncate) needs output='last' or "
                "'sequence': output='mean' reads every timestep of a sequence.")
        if (start or stop is not None) and self.net.bidirectional:
            raise ValueError(
                "training window by window (truncate) carries the state forward in "
                "time, which needs one direction; this network is bidirectional. "
                "Use truncate=None, or RNN.loss_and_grad(..., truncate=k), which "
                "cuts the gradient in both directions.")
        X = self.X[rows]
        if start or stop is not None:
            X = np.ascontiguousarray(X[:, start:stop])
        return X


# ------------------------------------------------ layers, directions, ragged
#
# The general driver: a network is num_layers x D runs of its cell (D = 2
# when bidirectional). Sequences of any lengths are laid out *packed*, as
# PyTorch's packed sequences are: sorted by length (longest first), then
# time-major with only the sequences still running at each timestep, so
# timestep t holds rows offsets[t] .. offsets[t] + batch[t] - 1 and the
# rows of all timesteps number the sum of the lengths. A *segment* is a run
# of timesteps with the same batch: one C-contiguous (steps, batch, .)
# block, which the cell kernels take as it is, so no arithmetic touches
# padding. The backward direction runs the same kernels on each sequence
# reversed within its own length: the same lengths, so the same layout,
# with the rows permuted by ``Layout.rev`` (an involution). Layer l > 0
# reads layer l-1's output [h_fwd(t), h_bwd(t)] (times the dropout mask
# while training); backward, the dX of layer l's runs is layer l-1's dL/dH.
# With several threads the sequences go in groups, one per thread, each
# packed on its own and the groups' rows one after another
# (GroupedLayout): each kernel call runs every group on a thread of its own.


class Buffers:
    """The general driver's arrays, kept on the network for its next call
    with the same shapes (up to KEEP_WORKSPACE_BYTES in all), as _bptt's
    workspace is: fresh arrays of a few hundred kB each come from fresh
    pages, whose first touch made a 2-layer bidirectional M-size step
    several times slower than its kernels. ``get(key, make)`` returns the
    array kept under ``key`` (which names its shape) or ``make()``."""

    def __init__(self, net):
        self.net = net
        # dict.pop is atomic: a concurrent call on this network makes its own
        self.kept = net.__dict__.pop("_buffers", {})
        self.used = {}

    def get(self, key, make):
        arr = self.kept.pop(key, None)
        if arr is None:
            arr = make()
        self.used[key] = arr
        return arr

    def empty(self, tag, shape, dtype):
        return self.get((tag, shape, np.dtype(dtype).str),
                        lambda: np.empty(shape, dtype=dtype))

    def keep(self):
        arrays = [a for v in self.used.values() for a in (v if isinstance(v, tuple) else (v,))]
        if sum(a.nbytes for a in arrays) <= KEEP_WORKSPACE_BYTES:
            self.net._buffers = self.used


class Layout:
    """The packed layout of sequences of the given lengths (see above).

    Attributes
    ----------
    n, T, rows : int
        Sequences, the longest length, and the sum of the lengths.
    lengths : ndarray of shape (n,)
    order : ndarray of shape (n,)
        Sorted position -> sample (longest first; stable).
    sorted_lengths : ndarray of shape (n,)
    segments : list of (t0, t1, batch, r0)
        Timesteps t0..t1-1 running ``batch`` sequences, from row r0.
    segment_table : ndarray of shape (len(segments), 4)
        The same as int64, as the cells' kernels take it
        (src/_cellparts.pxd, "segments").
    last_row : ndarray of shape (n,)
        The row of each sorted sequence's last timestep.
    rev : ndarray of shape (rows,)
        Row (t, j) -> row (T_j - 1 - t, j).
    uniform : bool
        Every length is T (the layout is plain time-major (T, n, .)).
    parts : list of (Layout, int, int)
        Its groups (:class:`GroupedLayout`): here one, ``(self, 0, 0)``.
    first_row : ndarray of shape (n,)
        The row of each sorted sequence's first timestep.
    """

    def __init__(self, lengths):
        lengths = np.asarray(lengths, dtype=np.intp)
        self.n = n = lengths.shape[0]
        self.lengths = lengths
        self.order = np.argsort(-lengths, kind="stable")
        Ls = self.sorted_lengths = lengths[self.order]
        self.T = T = int(Ls[0])
        self.uniform = bool(Ls[-1] == T)
        batch = np.searchsorted(-Ls, -np.arange(T), side="left")
        self.offsets = offsets = np.concatenate([[0], np.cumsum(batch)])
        self.rows = rows = int(offsets[-1])
        starts = np.concatenate([[0], np.flatnonzero(batch[1:] != batch[:-1]) + 1, [T]])
        first = starts[:-1]
        self.segment_table = np.stack([first, starts[1:], batch[first], offsets[first]],
                                      axis=1).astype(np.int64)
        self.segments = [tuple(row) for row in self.segment_table.tolist()]
        self._pieces = {}
        self._groups = {}
        self.last_row = offsets[Ls - 1] + np.arange(n)
        t_of_row = np.repeat(np.arange(T), batch)
        self.j_of_row = j_of_row = np.arange(rows) - offsets[t_of_row]
        self.t_of_row = t_of_row
        self._rev = None
        # (layout, first row, first position) of each group: one, itself
        self.parts = [(self, 0, 0)]
        self.first_row = np.arange(n)
        # the groups' (first row, sequences), T steps each on a uniform
        # layout (rows_by_group), and their (first row, rows)
        # (rows_by_group with T = 1)
        self.group_table = np.array([[0, n]], dtype=np.int64)
        self.group_spans = np.array([[0, rows]], dtype=np.int64)

    @property
    def rev(self):
        """Row (t, j) -> row (T_j - 1 - t, j), made on first use (one
        direction never reads it)."""
        if self._rev is None:
            self._rev = (self.offsets[self.sorted_lengths[self.j_of_row] - 1 - self.t_of_row]
                         + self.j_of_row)
        return self._rev

    def grouped(self, k):
        """This layout with its batch in at most ``k`` groups of sequences
        of about equal summed length, one per thread: a
        :class:`GroupedLayout` (``self`` when k <= 1 or n = 1), kept for
        the next call."""
        k = max(1, min(k, self.n))
        if k == 1:
            return self
        if k not in self._groups:
            self._groups[k] = GroupedLayout(self, k)
        return self._groups[k]

    def pack(self, X, out=None):
        """Batch-first (n, >= T, F) -> packed rows (rows, F), into ``out``
        (rows, F) when given, else a new array."""
        if out is None:
            out = np.empty((self.rows, X.shape[2]), dtype=X.dtype)
        if self.uniform:  # the stable sort kept the order; groups are blocks
            for part, r0, p0 in self.parts:
                time_major(np.ascontiguousarray(X[p0:p0 + part.n, :self.T]), 0, self.T,
                           out[r0:r0 + part.rows].reshape(self.T, part.n, -1))
            return out
        flat = np.ascontiguousarray(X).reshape(-1, X.shape[2])
        np.take(flat, self.order[self.j_of_row] * X.shape[1] + self.t_of_row, axis=0,
                out=out)
        return out

    def unpack(self, rows, fill=0.0, width=None):
        """Packed rows (rows, F) -> batch-first (n, width or T, F), ``fill``
        in the padding."""
        out = np.full((self.n, width or self.T, rows.shape[1]), fill, dtype=rows.dtype)
        out[self.order[self.j_of_row], self.t_of_row] = rows
        return out

    def in_form(self, rows, form, width):
        """Packed per-timestep outputs in the form the input came in: an
        array (n, T, F), NaN-padded (n, width, F), or a list of (T_i, F)."""
        if form == "array":
            return self.unpack(rows)
        if form == "padded":
            return self.unpack(rows, np.nan, width)
        full = self.unpack(rows)
        return [full[i, :L].copy() for i, L in enumerate(self.lengths)]

    def pieces(self, truncate, reverse):
        """The backward pass's pieces of one run (forward, or ``reverse``d
        within each sequence), an int64 table (pieces, 6) as the cells'
        kernels take it (src/_cellparts.pxd, "segments"): rows (t0, t1,
        batch, r0, kernel truncate, cut) from the first, where ``cut`` says
        whose gradient must not flow back past t0 (a window boundary of the
        absolute timeline): 0 nobody's, -1 every row's, k = truncate the
        rows j with (sorted_lengths[j] - t0) % k == 0."""
        k = truncate if truncate and truncate < self.T else 0
        key = (k, bool(reverse) and k > 0)
        if key not in self._pieces:
            if k == 0:  # the segments, never cut
                table = np.concatenate([self.segment_table,
                                        np.zeros((len(self.segments), 2), np.int64)], axis=1)
            else:
                table = np.array(self._cut_pieces(k, reverse), dtype=np.int64).reshape(-1, 6)
            self._pieces[key] = table
        return self._pieces[key]

    def _cut_pieces(self, k, reverse):
        """pieces() for a window 0 < k < T, as a list of rows."""
        Ls = self.sorted_lengths
        # boundaries of run time tau: forward tau = m k; reversed, the
        # absolute boundary m k of sequence j is tau = T_j - m k
        phases = {0} if not reverse else set((Ls % k).tolist())
        pieces = []
        if len(phases) == 1:
            phase = phases.pop()
            for t0, t1, B, r0 in self.segments:
                c = t0 + (phase - t0) % k
                if c > t0 and c < t1:
                    pieces.append((t0, c, B, r0, 0, 0))
                    t0, r0 = c, r0 + (c - t0) * B
                if (t0 - phase) % k == 0:
                    pieces.append((t0, t1, B, r0, k, -1 if t0 > 0 else 0))
                else:
                    pieces.append((t0, t1, B, r0, 0, 0))
            return pieces
        # sequences of different phases: a piece at every boundary of any
        cuts = sorted({int(L - m * k) for L in set(Ls.tolist())
                       for m in range(1, -(-int(L) // k)) if L - m * k > 0})
        for t0, t1, B, r0 in self.segments:
            bounds = [t0] + [c for c in cuts if t0 < c < t1] + [t1]
            for a, b in zip(bounds[:-1], bounds[1:]):
                cut = 0
                if a > 0:
                    whose = (Ls[:B] - a) % k == 0
                    cut = -1 if whose.all() else (k if whose.any() else 0)
                pieces.append((a, b, B, r0 + (a - t0) * B, 0, cut))
        return pieces


class GroupedLayout:
    """A :class:`Layout`'s sequences in ``k`` groups, each packed on its own
    and the groups' rows one after another: the kernels run each group on
    a thread of its own in one call (src/_cellparts.pxd, "groups"), so the
    driver's Python work happens once a step, not once a group per thread.

    Sequences are dealt out longest first in a snake order (0, 1, ...,
    k-1, k-1, ..., 0, 0, ...), so each group gets a share of every length;
    sequences of one length go in k blocks of consecutive sequences (as
    well balanced, and packed by plain copies). A *position* is a
    sequence's place in this layout: the groups' sequences one after
    another, each group's sorted longest first.

    Attributes
    ----------
    n, T, rows, lengths, uniform
        As the Layout's.
    parts : list of (Layout, int, int)
        Each group's own layout, its first row and its first position.
    order : ndarray of shape (n,)
        Position -> sample.
    sorted_lengths : ndarray of shape (n,)
        The lengths by position (sorted within each group).
    segment_table : ndarray of shape (segments, 4)
        The groups' tables one after another, rows shifted to theirs.
    last_row, first_row : ndarray of shape (n,)
        The row of each position's last and first timestep.
    t_of_row, j_of_row : ndarray of shape (rows,)
        Each row's timestep and position.
    rev : ndarray of shape (rows,)
        Row (t, j) -> row (T_j - 1 - t, j), within its group.
    plain_rows, rows_of_plain : ndarray of shape (rows,)
        The plain Layout's row each row holds, and the inverse: an array
        of the plain Layout's rows is ``a[rows_of_plain]`` of this one's.
    """

    def __init__(self, lay, k):
        self.n, self.T, self.rows = lay.n, lay.T, lay.rows
        self.lengths, self.uniform = lay.lengths, lay.uniform
        p = np.arange(lay.n)
        if lay.uniform:
            which = p * k // lay.n
        else:
            turn, seat = np.divmod(p, k)
            which = np.where(turn % 2 == 0, seat, k - 1 - seat)
        positions = [p[which == g] for g in range(k)]
        self.parts, r0, p0 = [], 0, 0
        for pos in positions:
            part = Layout(lay.sorted_lengths[pos])  # already sorted: order kept
            self.parts.append((part, r0, p0))
            r0, p0 = r0 + part.rows, p0 + part.n
        self.order = lay.order[np.concatenate(positions)]
        self.sorted_lengths = lay.lengths[self.order]
        self.segment_table = self._joined(lambda part: part.segment_table)
        self.segments = [tuple(row) for row in self.segment_table.tolist()]
        self.last_row = np.concatenate([part.last_row + r0 for part, r0, _ in self.parts])
        self.first_row = np.concatenate([np.arange(part.n) + r0
                                         for part, r0, _ in self.parts])
        self.t_of_row = np.concatenate([part.t_of_row for part, _, _ in self.parts])
        self.j_of_row = np.concatenate([part.j_of_row + p0 for part, _, p0 in self.parts])
        position = np.empty(lay.n, dtype=np.intp)
        position[lay.order] = np.arange(lay.n)
        self.plain_rows = lay.offsets[self.t_of_row] + position[self.order[self.j_of_row]]
        self.rows_of_plain = np.empty(self.rows, dtype=np.intp)
        self.rows_of_plain[self.plain_rows] = np.arange(self.rows)
        self.group_table = np.array([[r0, part.n] for part, r0, _ in self.parts],
                                    dtype=np.int64).reshape(-1, 2)
        self.group_spans = np.array([[r0, part.rows] for part, r0, _ in self.parts],
                                    dtype=np.int64).reshape(-1, 2)
        self._rev = None
        self._pieces = {}

    def _joined(self, table_of):
        """The groups' int64 tables (rows t0, t1, B, r0, ...) one after
        another, each group's r0 shifted by its first row."""
        tables = []
        for part, r0, _ in self.parts:
            table = table_of(part).copy()
            table[:, 3] += r0
            tables.append(table)
        return np.ascontiguousarray(np.concatenate(tables))

    @property
    def rev(self):
        """Row (t, j) -> row (T_j - 1 - t, j), made on first use."""
        if self._rev is None:
            self._rev = np.concatenate([part.rev + r0 for part, r0, _ in self.parts])
        return self._rev

    def pieces(self, truncate, reverse):
        """The groups' Layout.pieces one after another (their rows shifted)."""
        key = (truncate, bool(reverse))
        if key not in self._pieces:
            self._pieces[key] = self._joined(lambda part: part.pieces(truncate, reverse))
        return self._pieces[key]

    pack = Layout.pack


def suffix(layer, direction):
    """The parameter-name suffix of a layer and direction (DESIGN.md)."""
    return ("" if layer == 0 else f"_l{layer}") + ("_reverse" if direction else "")


def cell_param_names(cell):
    """The names of a cell's own parameters (those of layer 0 forward)."""
    return (*BASE_PARAMS, *cell.spec.extra_params)


def _run_params(net, p, layer, direction):
    sfx = suffix(layer, direction)
    return {name: p[name + sfx] for name in cell_param_names(net._cell)}


def _flat(cache, rows):
    return tuple(a.reshape(rows, -1) for a in cache)


def _run_forward(cell, lay, X, p, state0, cache, n_threads):
    """One run of a cell over packed X (rows, F): one kernel call, which
    loops the segments (the NumPy reference loops them in the binding)."""
    cell.run_forward(X, p, state0, cache, lay.segment_table, n_threads)


def _run_backward(cell, lay, pieces, X, p, state0, cache, dH, grads, n_threads, dX,
                  flow=None):
    """BPTT of one run over its ``pieces`` (Layout.pieces) in one kernel
    call; dH (rows, H) is consumed. ``flow``, when given, is the
    ``dstate_out`` that receives the run's total dL/dstate at every row
    (:meth:`LayeredFlow.run`)."""
    cell.run_backward(X, p, state0, cache, dH, pieces, lay.sorted_lengths, grads, False,
                      n_threads, dX, flow)


def draw_masks(net, rows, rng=None):
    """Dropout masks (0 or 1 / (1 - dropout)) of the outputs of every layer
    but the last, (rows, D*H) each, from the network's random state."""
    if not net.dropout or net.num_layers == 1:
        return None
    rng = net._rng if rng is None else rng
    keep = 1.0 - net.dropout
    width = net._directions * net.hidden_size
    return [(rng.random((rows, width)) < keep).astype(net.dtype) / np.array(keep, net.dtype)
            for _ in range(net.num_layers - 1)]


def _rows_reversed(lay, src, out, scratch=None, add=False, n_threads=1):
    """out[r] = src[lay.rev[r]] (with ``add``: +=) for every packed row r:
    a run's rows in the other direction's order (rev is an involution).
    src and out (rows, F) may be column blocks of wider arrays; ``scratch``,
    a function returning a contiguous (rows, F) array, is called when a
    gather cannot write into ``out`` itself. Returns out.

    Sequences of one length (a uniform layout, the usual minibatch): rev
    reverses the order of the T timesteps of each group's n rows, so this
    is :func:`rows_by_group` (``reverse``), each group on the thread of
    ``n_threads`` that ran it. np.take gathered row by row through the
    index array and needed a buffer and a second pass for a column block:
    the gathers and copies of a 2-layer bidirectional M step took about 5%
    of it."""
    if lay.uniform:  # each group's rows on their own, on its thread
        return rows_by_group(src, out, lay.group_table, lay.T, True, add, n_threads)
    if not add and out.flags.c_contiguous:
        return np.take(src, lay.rev, axis=0, out=out)
    gathered = np.take(src, lay.rev, axis=0, out=scratch())
    if add:
        out += gathered
    else:
        out[...] = gathered
    return out


def _forward_layers(net, lay, X, states, masks, n_threads, buf):
    """Every run forward. Returns the runs [(X, cache)] by layer, the top
    layer's output (rows, D*H) and the final states in sorted order."""
    cell, H, D, rows = net._cell, net.hidden_size, net._directions, lay.rows
    p = net._params
    runs, finals = [], []
    inp = X
    for layer in range(net.num_layers):
        layer_runs = []
        width = D * H
        out = buf.empty(("out", layer), (rows, width), net.dtype) if D > 1 else None
        for d in range(D):
            if d == 0:
                Xd = inp
            else:
                Xd = _rows_reversed(lay, inp, buf.empty(("Xrev", layer), inp.shape,
                                                        net.dtype), n_threads=n_threads)
            cache = buf.get(("cache", layer, d, rows, np.dtype(net.dtype).str),
                            lambda: cell.allocate(rows, 1, H, net.dtype))
            _run_forward(cell, lay, Xd, _run_params(net, p, layer, d),
                         states[layer * D + d], cache, n_threads)
            layer_runs.append((Xd, cache))
            finals.append(cell.state_after(_flat(cache, rows), lay.last_row))
            Hd = cell.hidden(cache).reshape(rows, H)
            if D == 1:
                out = Hd
            elif d == 0:
                # each group's rows on the thread that ran it (rows_by_group)
                rows_by_group(Hd, out[:, :H], lay.group_spans, 1, n_threads=n_threads)
            else:
                _rows_reversed(lay, Hd, out[:, H:],
                               lambda: buf.empty("Hrev", (rows, H), net.dtype),
                               n_threads=n_threads)
        if masks is not None and layer < net.num_layers - 1:
            out = np.multiply(out, masks[layer],
                              out=buf.empty(("dropped", layer), (rows, width), net.dtype))
        inp = out
        runs.append(layer_runs)
    return runs, inp, finals


def _backward_layers(net, lay, runs, states, masks, dtop, truncate, n_threads, buf,
                     flow=None):
    """Every run backward from dL/d(top output) (rows, D*H); the gradients.
    ``flow``, a :class:`LayeredFlow` or None, receives each run's total
    dL/dstate at every row (every row of every run is written by its
    backward piece)."""
    cell, H, D, rows = net._cell, net.hidden_size, net._directions, lay.rows
    p = net._params
    grads = {name: np.empty_like(value) for name, value in p.items()}
    pieces = [lay.pieces(truncate, d == 1) for d in range(D)]
    for layer in reversed(range(net.num_layers)):
        dX_sum = None
        for d in range(D):
            Xd, cache = runs[layer][d]
            if D == 1:
                dH = dtop
            elif d == 0:
                dH = rows_by_group(dtop[:, :H], buf.empty("dH", (rows, H), net.dtype),
                                   lay.group_spans, 1, n_threads=n_threads)
            else:
                dH = _rows_reversed(lay, dtop[:, H:], buf.empty("dH", (rows, H), net.dtype),
                                    n_threads=n_threads)
            dX = buf.empty(("dX", layer, d), Xd.shape, net.dtype) if layer > 0 else None
            sfx = suffix(layer, d)
            g = {name: grads[name + sfx] for name in cell_param_names(cell)}
            run_flow = None
            if flow is not None:
                run_flow = flow.run(layer * D + d, d == 1, lambda k: buf.empty(
                    ("flow_rev", k), (rows, H), net.dtype))
            _run_backward(cell, lay, pieces[d], Xd, _run_params(net, p, layer, d),
                          states[layer * D + d], cache, dH, g, n_threads, dX, run_flow)
            if flow is not None and d == 1:
                flow.restore(layer * D + d, run_flow, lay, n_threads)
            if dX is None:
                continue
            if d == 0:
                dX_sum = dX
            else:
                _rows_reversed(lay, dX, dX_sum,
                               lambda: buf.empty("dX_rev", dX.shape, net.dtype), add=True,
                               n_threads=n_threads)
        if layer > 0:
            dtop = dX_sum if masks is None else np.multiply(dX_sum, masks[layer - 1],
                                                            out=dX_sum)
    return grads


def _sorted_states(net, lay, state0):
    """The validated state0 (the contract's form) as one state per run, in
    sorted order, C-contiguous."""
    spec = net._cell.spec
    LD = net.num_layers * net._directions
    parts = spec.state_arrays(state0)
    if LD == 1:
        parts = tuple(a[None] for a in parts)
    return [spec.state_of([np.ascontiguousarray(a[r][lay.order]) for a in parts])
            for r in range(LD)]


def _unsorted_states(net, lay, finals):
    """Final states by run (sorted order) in the contract's form."""
    spec = net._cell.spec
    parts = [spec.state_arrays(f) for f in finals]
    out = []
    for k in range(len(parts[0])):
        a = np.empty((len(parts), lay.n, net.hidden_size), dtype=net.dtype)
        for r, f in enumerate(parts):
            a[r][lay.order] = f[k]
        out.append(a[0] if len(parts) == 1 else a)
    return spec.state_of(out)


def _pool(lay, top, output, directions):
    """The top output read by the output layer: (rows, .) for "sequence",
    (n, .) in sorted order for "last" and "mean"."""
    if output == "sequence":
        return top
    if output == "last":
        # h_fwd at each sequence's last timestep, h_bwd at t = 0 (rows 0..n-1)
        if directions == 1:
            return top[lay.last_row]
        H = top.shape[1] // 2
        return np.concatenate([top[lay.last_row, :H], top[lay.first_row, H:]], axis=1)
    pooled = np.zeros((lay.n, top.shape[1]), dtype=top.dtype)
    for part, g0, p0 in lay.parts:
        for t0, t1, B, r0 in part.segments:
            r0 += g0
            pooled[p0:p0 + B] += top[r0:r0 + (t1 - t0) * B].reshape(t1 - t0, B, -1).sum(
                axis=0)
    pooled /= lay.sorted_lengths[:, None]
    return pooled


def _unpool(lay, dpooled, output, width, directions, buf):
    """dL/d(top output) (rows, width) from dL/d(what _pool returned)."""
    if output == "sequence":
        return dpooled
    dtop = buf.empty("dtop", (lay.rows, width), dpooled.dtype)
    dtop[...] = 0
    if output == "last":
        H = width // directions
        dtop[lay.last_row, :H] = dpooled[:, :H]
        if directions == 2:
            dtop[lay.first_row, H:] += dpooled[:, H:]
        return dtop
    scaled = dpooled / lay.sorted_lengths[:, None]
    for part, g0, p0 in lay.parts:
        for t0, t1, B, r0 in part.segments:
            r0 += g0
            dtop[r0:r0 + (t1 - t0) * B].reshape(t1 - t0, B, -1)[...] = scaled[p0:p0 + B]
    return dtop


def _layered_output(net, lay, X, state0, output=None):
    """The layers on X batch-first (n, >= T, I), then the output layer on
    their top output (packed rows), or on its pooling for ``output`` "last"
    or "mean" ((n, .) by position). Returns Y, the final states by run (by
    position) and the layout they are in: with several threads, ``lay``
    grouped (:class:`GroupedLayout`)."""
    buf = Buffers(net)
    with serial_blas() if holds_blas(net, lay.n, lay.T) else nullcontext(1) as budget:
        n_threads = plan_threads(net, budget, lay.n)
        lay = lay.grouped(n_threads)  # one group of sequences per thread
        states = _sorted_states(net, lay, state0)
        Xp = lay.pack(X, buf.empty("X", (lay.rows, X.shape[2]), net.dtype))
        Y, finals = _output_step(net, lay, Xp, states, output, n_threads, buf)
    buf.keep()
    if not np.isfinite(Y).all():
        raise FloatingPointError(
            "forward produced non-finite outputs: the parameters hold NaN/inf "
            "or the inputs are too large for the network's dtype."
        )
    return Y, finals, lay


def plain(lay, rows):
    """Packed rows (rows, .) of a grouped layout in the plain Layout's order
    (unchanged for a plain Layout)."""
    return rows if isinstance(lay, Layout) else rows[lay.rows_of_plain]


def _output_step(net, lay, Xp, states, output, n_threads, buf):
    """The layers on packed X (rows, I) from ``states`` (by run, sorted
    order) and the output layer: Y (a new array) and the final states."""
    _, top, finals = _forward_layers(net, lay, Xp, states, None, n_threads, buf)
    if output is not None:
        top = np.ascontiguousarray(_pool(lay, top, output, net._directions))
    Z = buf.empty("Z", (top.shape[0], net.output_size), net.dtype)
    Y = np.empty_like(Z)  # returned
    net._out.output_forward(top, net._params["W_oh"], net._params["b_o"],
                            OUTPUT_ACTIVATIONS[net.output_activation], Z, Y)
    return Y, finals


def layered_forward(net, lay, X, state0):
    """forward() through the general driver: X batch-first (n, >= T, I).
    Returns Y (rows, O) packed and the final state in the contract's form."""
    Y, finals, lay = _layered_output(net, lay, X, state0)
    return plain(lay, Y), _unsorted_states(net, lay, finals)


def layered_readout(net, lay, X, state0, output):
    """The output layer on the pooled top output ("last" or "mean"), (n, O)
    in sample order; X batch-first (n, >= T, I)."""
    Y, _, lay = _layered_output(net, lay, X, state0, output)
    out = np.empty_like(Y)
    out[lay.order] = Y
    return out


class LayeredFlow:
    """Where the general driver's backward runs write the state gradients
    (loss_and_grad(..., return_state_grads=True)), and their result.

    On sequences of one length (``lay.uniform``) *by step*
    (src/_cellparts.pxd, "segments"): each run's kernel writes dL/dstate
    straight into the batch-first (num_layers*D, n, T, H) arrays returned,
    through its time-major view (a reverse run's with its steps reversed),
    the L2 norms of their rows into a float64 (states, num_layers*D, T, n)
    array and those norms' means over the batch into a (states,
    num_layers*D, T) one, so no pass reads them afterwards. (A grouped layout of
    sequences of one length keeps their order: its groups are blocks of
    consecutive sequences.) Otherwise packed (num_layers*D, rows, H) arrays
    in the rows' order of the layout the step ran, a reverse run's mapped
    back into the forward rows' order, which :meth:`result` scatters.

    Parameters
    ----------
    net : RNN
    lay : Layout
        The plain layout of the input (not grouped).
    form : {"array", "padded", "list"}
        The input's form; "padded" to ``width`` timesteps.
    buf : Buffers
        The step's workspaces (the packed arrays).
    """

    def __init__(self, net, lay, form, width, buf):
        LD, H = net.num_layers * net._directions, net.hidden_size
        self.net, self.lay, self.form = net, lay, form
        self.keys = ("dh", "dc")[:len(net._cell.spec.state)]
        self.by_step = lay.uniform
        self.width = width if form == "padded" and width else lay.T
        if self.by_step:
            fill = np.nan if self.width > lay.T else None
            self.arrays = [returned_array(net, key, (LD, lay.n, self.width, H), net.dtype,
                                          fill) for key in self.keys]
            self.norms = np.empty((len(self.keys), LD, lay.T, lay.n))
            # their means over the batch, taken by the kernels (norm_means):
            # np.mean after the step cost the 2-layer bidirectional Elman M
            # step 1.5% (20-30 us, NumPy's code cold after the kernels)
            self.means = np.empty((len(self.keys), LD, lay.T))
        else:
            self.arrays = [buf.empty(("flow", k), (LD, lay.rows, H), net.dtype)
                           for k in range(len(self.keys))]

    def run(self, r, reverse, scratch):
        """The ``dstate_out`` of run r (layer * D + direction) for
        Cell.run_backward; ``reverse`` for a reverse run. Packed, a reverse
        run writes into ``scratch(k)`` ((rows, H), state k) and
        :meth:`restore` maps its rows back."""
        if self.by_step:
            T = self.lay.T
            steps = -1 if reverse else 1
            return (*[a[r, :, :T].transpose(1, 0, 2)[::steps] for a in self.arrays],
                    self.norms[:, r, ::steps], self.means[:, r, ::steps])
        if reverse:
            return tuple(scratch(k) for k in range(len(self.arrays)))
        return tuple(a[r] for a in self.arrays)

    def restore(self, r, run, lay, n_threads):
        """After run r's backward: a packed reverse run's rows (``run``, as
        :meth:`run` gave them) into the forward rows' order of ``lay``."""
        if not self.by_step:
            for a, rows in zip(self.arrays, run):
                _rows_reversed(lay, rows, a[r], n_threads=n_threads)

    def result(self, grouped=None):
        """The state gradients in the input's form, a dict: under each key
        "dh" (and "dc") "array": (n, T, H) for one layer and direction,
        else (num_layers*D, n, T, H); "padded": the same, (n, width, H),
        NaN in the padding; "list": a list of (T_i, H) (or
        (num_layers*D, T_i, H)) arrays; and under ``key + "_norm"``,
        float64 (T,) (or (num_layers*D, T)): at each timestep the L2 norm
        over the hidden units averaged over the sequences that reach it.
        ``grouped``: the :class:`GroupedLayout` of the plain layout the
        step ran, if any (the packed rows are in its order)."""
        lay, LD = self.lay, self.arrays[0].shape[0]
        out = {}
        if self.by_step:
            for key, full, mean in zip(self.keys, self.arrays, self.means):
                if self.form == "list":
                    arrays = [full[:, i].copy() for i in range(lay.n)]
                    out[key] = [x[0] for x in arrays] if LD == 1 else arrays
                else:
                    out[key] = full[0] if LD == 1 else full
                out[key + "_norm"] = mean[0] if LD == 1 else mean
            return out
        # where each flow row goes: (sequence, timestep) of the batch-first array
        sample, step = lay.order[lay.j_of_row], lay.t_of_row
        if grouped is not None:  # flow row g holds the plain layout's row plain_rows[g]
            sample, step = sample[grouped.plain_rows], step[grouped.plain_rows]
        counts = np.diff(lay.offsets)  # sequences running at each timestep
        fill = np.nan if self.form == "padded" else 0.0
        for key, a in zip(self.keys, self.arrays):
            squares = np.einsum("...k,...k->...", a, a, dtype=np.float64)
            if grouped is not None:
                squares = squares[:, grouped.rows_of_plain]
            norms = np.add.reduceat(np.sqrt(squares), lay.offsets[:-1], axis=-1) / counts
            shape = (LD, lay.n, self.width, a.shape[2])
            full = (returned_array(self.net, key, shape, a.dtype, fill)
                    if self.form != "list" else np.full(shape, fill, dtype=a.dtype))
            full[:, sample, step] = a
            if self.form == "list":
                arrays = [full[:, i, :L].copy() for i, L in enumerate(lay.lengths)]
                out[key] = [x[0] for x in arrays] if LD == 1 else arrays
            else:
                out[key] = full[0] if LD == 1 else full
            out[key + "_norm"] = norms[0] if LD == 1 else norms
        return out


def layered_loss_grad_state(net, lay, X, target, loss, output, truncate, state0,
                            masks=None, state_grads=None, weights=None, form="array",
                            width=None):
    """loss_and_grad through the general driver.

    X batch-first (n, >= T, I) (the padding, if any, is never read);
    ``target`` float (n, >= T, O) / int64 (n, >= T) labels batch-first for
    "sequence", (n, O) / (n,) otherwise; ``masks`` as :func:`draw_masks`
    returns them (None: no dropout); ``weights`` (n,) or None the
    sequences' weights in the loss's mean. Returns the loss, the gradients
    and the final state (contract's form); a dict ``state_grads`` also
    receives the state gradients in the input's ``form`` ("array",
    "padded" to ``width`` timesteps, or "list"; :class:`LayeredFlow`).

    With several threads the batch splits into groups of sequences, one
    per thread, balanced by their summed lengths (:class:`GroupedLayout`):
    every kernel call runs each group whole on its own thread (the output
    layer splits its rows), so the step's Python work is done once. The
    dropout ``masks`` are (rows, D*H) in the plain layout's row order.
    """
    buf = Buffers(net)
    plain_lay = lay
    with serial_blas() if holds_blas(net, lay.n, lay.T) else nullcontext(1) as budget:
        n_threads = plan_threads(net, budget, lay.n)
        lay = lay.grouped(n_threads)  # one group of sequences per thread
        if masks is not None and lay is not plain_lay:
            masks = [np.ascontiguousarray(m[lay.plain_rows]) for m in masks]
        states = _sorted_states(net, lay, state0)
        Xp = lay.pack(X, buf.empty("X", (lay.rows, X.shape[2]), net.dtype))
        if output == "sequence":
            labels = target.dtype == np.int64
            packed = lay.pack(target[..., None] if labels else target,
                              buf.empty("target", (lay.rows, 1 if labels else target.shape[2]),
                                        target.dtype))
            target = packed[:, 0] if labels else packed
        else:
            target = np.ascontiguousarray(target[lay.order])
        row_weights = None
        if weights is not None:  # laid out as the target's rows
            if output == "sequence":
                every_step = np.broadcast_to(weights[:, None, None], (lay.n, lay.T, 1))
                row_weights = lay.pack(every_step, np.empty((lay.rows, 1), net.dtype))[:, 0]
            else:
                row_weights = weights[lay.order]
            row_weights = np.ascontiguousarray(row_weights)
        N = lay.rows if output == "sequence" else lay.n
        rows = N if row_weights is None else float(row_weights.sum(dtype=np.float64))
        denominator = rows if loss == "cross_entropy" else rows * net.output_size
        flow = (LayeredFlow(net, plain_lay, form, width, buf) if state_grads is not None
                else None)
        value, grads, finals = _layered_step(
            net, lay, Xp, states, target, row_weights, denominator, loss, output,
            truncate, masks, flow, n_threads, buf)
        final_state = _unsorted_states(net, lay, finals)
        if flow is not None:
            state_grads.update(flow.result(None if lay is plain_lay else lay))
    buf.keep()
    return value, grads, final_state


def _layered_step(net, lay, Xp, states, target, row_weights, denominator, loss, output,
                  truncate, masks, flow, n_threads, buf):
    """Forward, the output layer and backward of packed X (rows, I) from
    ``states`` (by run, sorted order), the target and row weights laid out
    as the output layer's rows, the loss divided by ``denominator``.
    Returns the loss, the gradients and the final states by run (sorted
    order); ``flow`` (a :class:`LayeredFlow`, or None) receives the state
    gradients."""
    runs, top, finals = _forward_layers(net, lay, Xp, states, masks, n_threads, buf)
    Hs = top if output == "sequence" else np.ascontiguousarray(
        _pool(lay, top, output, net._directions))
    N, O = Hs.shape[0], net.output_size
    p = net._params
    grads_out = {"W_oh": np.empty_like(p["W_oh"]), "b_o": np.empty_like(p["b_o"])}
    Z, Y, dZ = (buf.empty(tag, (N, O), net.dtype) for tag in ("Z", "Y", "dZ"))
    dHs = buf.empty("dHs", Hs.shape, net.dtype)
    value = net._out.output_layer(
        Hs, p["W_oh"], p["b_o"], OUTPUT_ACTIVATIONS[net.output_activation],
        LOSSES.index(loss), target, denominator, Z, Y, dZ, grads_out["W_oh"],
        grads_out["b_o"], dHs, False, n_threads, 0, 0, row_weights)
    check_loss(value)
    dtop = _unpool(lay, dHs, output, top.shape[1], net._directions, buf)
    grads = _backward_layers(net, lay, runs, states, masks, dtop, truncate, n_threads,
                             buf, flow)
    grads.update(grads_out)
    return value, grads, finals


class LayeredStepper:
    """:meth:`bptt.RNN.stream` for a stack of unidirectional layers: each
    ``step`` runs every layer's forward kernel on one timestep, then the
    output layer; every buffer is allocated here once."""

    def __init__(self, net, state0):
        cell, H, L = net._cell, net.hidden_size, net.num_layers
        self._cell, self._out = cell, net._out
        self._act = OUTPUT_ACTIVATIONS[net.output_activation]
        self._p = {name: value.copy() for name, value in net.params.items()}  # a snapshot
        self._runs = [_run_params(net, self._p, layer, 0) for layer in range(L)]
        self._spec = cell.spec
        n = self._parts(state0)[0].shape[1]
        self._n, self._n_in, dtype = n, net.input_size, net.dtype
        self._caches = [cell.allocate(1, n, H, dtype) for _ in range(L)]
        self._state = copy_state(state0)
        self._x = np.empty((1, n, net.input_size), dtype=dtype)
        self._z = np.empty((n, net.output_size), dtype=dtype)
        self.y = np.empty_like(self._z)

    @property
    def state(self):
        """A copy of the current state, (num_layers, n, H) (a tuple (h, c)
        for the LSTM)."""
        return copy_state(self._state)

    def reset(self, h0):
        """Set the state (same form and shape as ``state``), validated as
        forward's h0 is."""
        shape = self._parts(self._state)[0].shape
        state = check_state(h0, shape[1], shape[2], self._x.dtype,
                            self._spec.has_cell_state, shape[0])
        for a, b in zip(self._parts(self._state), self._parts(state)):
            a[...] = b

    def _parts(self, state):
        return self._spec.state_arrays(state)

    def step(self, x):
        """Advance one timestep: x (n, I) (or (I,) for n = 1) -> y (n, O)."""
        self._x[0] = coerce_step_input(x, self._n, self._n_in, self._x.dtype)
        inp = self._x
        for layer, (p, cache) in enumerate(zip(self._runs, self._caches)):
            s0 = [np.ascontiguousarray(a[layer]) for a in self._parts(self._state)]
            self._cell.forward(inp, p, self._spec.state_of(s0), cache)
            after = self._cell.state_after(cache, 0)
            for a, b in zip(self._parts(self._state), self._parts(after)):
                a[layer] = b
            inp = self._cell.hidden(cache)
        self._out.output_forward(inp[0], self._p["W_oh"], self._p["b_o"], self._act,
                                 self._z, self.y)
        return self.y
