"""NumPy reference implementation of every compiled kernel: the plain maths.

Each module here mirrors one Cython module under ``src/`` function for
function (``reference/elman.py`` <-> ``src/_elman.pyx``,
``reference/output.py`` <-> ``src/_output.pyx``): same names, same
arguments (but for the layout ones, below), same in-place outputs, one
equation per line. It is the
``backend="numpy"`` of :class:`bptt.RNN` and the twin every parity test
compares the compiled path against.

Every ``<cell>_backward`` shares these conventions:

- ``dH`` is dL/dH from the layer above; dL/dstate after the last step,
  when later timesteps send one, enters added into ``dH[-1]`` (and for the
  LSTM as ``dc0``), so a long sequence can be processed in chunks of
  timesteps from the end: pass the chunk's first state as the initial state,
  add the later chunk's dh0 into dH[-1] (its dc0 in as dc0) and accumulate.
- ``truncate`` = k > 0 drops every gradient from step t to step t-1 at a
  window start (t % k == 0, t > 0): truncated BPTT, h_{t-1} detached.
- ``accumulate`` adds into the weight gradients instead of writing them.
- ``dh_out`` (and the LSTM's ``dc_out``), (T, B, H) or None, receives at
  [t] the total dL/dh_t (dL/dc_t): from the output at t, from later steps of
  its window and, at the last step, from dstate_next.
- ``norms_out``, float64 (states, T, B) or None, receives at [k, t] the L2
  norm of every row of dh_out[t] (k = 0) and of the LSTM's dc_out[t]
  (k = 1), in float64 (:func:`row_norms`).
- ``norm_means``, float64 (states, T) or None (with ``norms_out``),
  receives at [k, t] the mean of norms_out[k, t] over the B rows.

The arguments the compiled kernels add at the end to partition their work
(``n_threads``, the batch ``slabs`` and ``slab_steps`` of the cells, the
row ``parts`` and ``part_stride`` of the output layer; src/_cellparts.pxd)
are the compiled driver's business and have no twin here: the reference
runs one time-major batch, and the parity tests run the compiled kernels
in every layout against it.
"""

import numpy as np


def row_norms(a):
    """The L2 norm of every row of ``a`` (B, H), taken in float64: the
    state-gradient norms the cells' backward passes report (norms_out)."""
    return np.linalg.norm(a.astype(np.float64), axis=1)
