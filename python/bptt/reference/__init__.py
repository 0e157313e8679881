"""NumPy reference implementation of every compiled kernel.

Each module here mirrors one Cython module under ``src/`` function for
function (``reference/elman.py`` <-> ``src/_elman.pyx``,
``reference/output.py`` <-> ``src/_output.pyx``): same names, same
arguments, same in-place outputs, one equation per line. It is the
``backend="numpy"`` of :class:`bptt.RNN` and the twin every parity test
compares the compiled path against.
"""
