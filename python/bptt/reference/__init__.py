"""NumPy reference implementation of every compiled kernel: the plain maths.

Each module here mirrors one Cython module under ``src/`` function for
function (``reference/elman.py`` <-> ``src/_elman.pyx``,
``reference/output.py`` <-> ``src/_output.pyx``): same names, same
arguments, same in-place outputs, one equation per line. It is the
``backend="numpy"`` of :class:`bptt.RNN` and the twin every parity test
compares the compiled path against.

The arguments the compiled kernels add at the end to partition their work
(``n_threads``, the batch ``slabs`` and ``slab_steps`` of the cells, the
row ``parts`` and ``part_stride`` of the output layer; src/_cellparts.pxd)
are the compiled driver's business and have no twin here: the reference
runs one time-major batch, and the parity tests run the compiled kernels
in every layout against it.
"""
