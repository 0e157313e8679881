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
:func:`bptt._validation.check_target` returns them).
"""

from contextlib import nullcontext

import numpy as np

from . import _threads
from ._threads import serial_blas
from ._validation import target_rows, time_major

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
# took 3% of its step (rnn XL 113-117 -> 108-115 ms kept). Larger buffers
# are freed: there the memory held between calls matters more.
KEEP_WORKSPACE_BYTES = 1 << 26


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
    if not np.isfinite(value):
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
def loss_grad_state(net, X, target, loss, output, truncate, state0):
    """Loss, gradients and final state of ``net`` on validated inputs.

    X (n, T, I) batch-first of the network's dtype; ``target`` as
    check_target returns it; ``truncate`` an int (0: full BPTT); ``state0``
    a validated state. Holds BLAS and splits the batch over threads as
    :func:`holds_blas` and :func:`plan_threads` decide.
    """
    n, T, _ = X.shape
    if not holds_blas(net, n, T):
        return _bptt(net, X, target, loss, output, truncate, state0)
    with serial_blas() as budget:
        return _bptt(net, X, target, loss, output, truncate, state0,
                     plan_threads(net, budget, n))


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


def loss_denominator(net, loss, sequence, n, T):
    """Elements (cross-entropy: rows) the loss's mean runs over."""
    loss_rows = T * n if sequence else n
    return loss_rows if loss == "cross_entropy" else loss_rows * net.output_size


def _bptt(net, X, target, loss, output, truncate, state0, n_threads=1):
    """Forward over every timestep, then BPTT chunk by chunk from the end.

    X is batch-first and validated, target as from check_target.
    Returns the loss, the gradients and the state after the last step.
    """
    n, T, I = X.shape
    H, O = net.hidden_size, net.output_size
    steps = chunk_steps(net, T, n, truncate)
    starts = list(range(0, T, steps))
    sequence = output == "sequence"
    rows_max = steps * n if sequence else n
    # one slab of sequences per thread when the threads divide the batch:
    # each thread then works on its own rows from the first phase to the
    # last (src/_cellparts.pxd, "slabs")
    slabs = n_threads if n_threads > 1 and n % n_threads == 0 else 1
    # dict.pop is atomic: a concurrent call on this network allocates its own
    key = (T, n, steps, rows_max, slabs, net.dtype)
    workspace = net.__dict__.pop("_workspace", {}).get(key)
    if workspace is None:
        workspace = (net._cell.allocate(slabs * T, n // slabs, H, net.dtype),
                     np.empty((slabs * steps, n // slabs, I), dtype=net.dtype),
                     *(np.empty((rows_max, O), dtype=net.dtype) for _ in range(3)),
                     np.empty((slabs * steps, n // slabs, H), dtype=net.dtype))
    value, grads, final_state = _bptt_in(net, workspace, X, target, loss, sequence,
                                         truncate, state0, steps, starts, n_threads, slabs)
    if sum(a.nbytes for a in (*workspace[0], *workspace[1:])) <= KEEP_WORKSPACE_BYTES:
        net._workspace = {key: workspace}
    return value, grads, final_state


def _bptt_in(net, workspace, X, target, loss, sequence, truncate, state0, steps,
             starts, n_threads, slabs):
    """_bptt's work, in the buffers of ``workspace``, in ``slabs`` slabs of
    n / slabs sequences: the cache arrays are (slabs*T, n/slabs, .), slab
    k holding sequences k*n/slabs.. one timestep after another, the chunk
    workspaces likewise (slabs*steps, n/slabs, .), and the output layer's
    rows and target follow that order (src/_cellparts.pxd, "slabs"; one
    slab is the plain time-major layout)."""
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

    denominator = loss_denominator(net, loss, sequence, n, T)
    loss_code = LOSSES.index(loss)
    Hall = cell.hidden(cache).reshape(slabs * T * rows, H)
    grads = {name: np.empty_like(value) for name, value in p.items()}
    if sequence and slabs > 1:
        # target rows (T*n, ...) time-major, in slab order
        target = np.ascontiguousarray(
            target.reshape(T, slabs, rows, -1).swapaxes(0, 1)
        ).reshape(target.shape)
    value = 0.0
    carry = None
    for i, s in enumerate(reversed(starts)):
        e = min(T, s + steps)
        dHc = dH[: slabs * (e - s)]
        if sequence:
            # slab k's rows of this chunk: k*T*rows + s*rows onwards
            value += out.output_layer(
                Hall[s * rows:], p["W_oh"], p["b_o"], act, loss_code, target[s * rows:],
                denominator, Z[:n * (e - s)], Y[:n * (e - s)], dZ[:n * (e - s)],
                grads["W_oh"], grads["b_o"], dHc.reshape(-1, H), i > 0, n_threads,
                slabs, T * rows)
        elif i == 0:
            H_last = _slab_state(cell.hidden(by_step)[T - 1], n)
            dH_last = np.empty_like(H_last)
            value = out.output_layer(H_last, p["W_oh"], p["b_o"], act, loss_code, target,
                                     denominator, Z, Y, dZ, grads["W_oh"], grads["b_o"],
                                     dH_last, False, n_threads, slabs)
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
                              carry, truncate, grads, i > 0, n_threads, None, slabs, T)
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
    n_samples, n_timesteps : int
    """

    def __init__(self, net, X, y, loss, output):
        self.net, self.X, self.y, self.loss, self.output = net, X, y, loss, output
        self.n_samples, self.n_timesteps = X.shape[:2]

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
        target = target_rows(y, self.output)
        state0 = net._check_state(h0, X.shape[0]) if h0 is None else h0
        return loss_grad_state(net, X, target, self.loss, self.output, 0, state0)

    def advance(self, rows, start=0, stop=None, h0=None):
        """The state after timesteps start..stop-1 of a minibatch (forward only)."""
        X = self._slice(rows, start, stop)
        state0 = self.net._check_state(h0, X.shape[0]) if h0 is None else h0
        return forward(self.net, X, state0)[1]

    def _slice(self, rows, start, stop):
        X = self.X[rows]
        if start or stop is not None:
            X = np.ascontiguousarray(X[:, start:stop])
        return X
