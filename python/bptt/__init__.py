"""bptt: recurrent neural networks trained by backpropagation through time.

NumPy in, NumPy out. :class:`RNN` is the network (Elman, LSTM, GRU cells;
forward pass and exact BPTT gradients from compiled Cython + BLAS kernels,
with a NumPy reference twin). :class:`RNNRegressor` and :class:`RNNClassifier`
are scikit-learn estimators that train it; :func:`load` reads what their
``save`` wrote.
"""

__version__ = "0.1.0"

import os

# The compiled kernels split each batch over OpenMP threads (bptt/_threads.py).
# With OpenMP's default wait policy a thread waiting at the end of a parallel
# region spins, which on a machine where another process holds a core makes
# a region wait for a scheduler timeslice: measured 10-20x slower than one
# thread. Passive waiting costs nothing measurable on an idle machine. The
# policy is read when the OpenMP runtime loads, i.e. when the first kernel is
# imported, so it is set here; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .estimators import RNNClassifier, RNNRegressor
from .persistence import load
from .rnn import RNN

__all__ = ["RNN", "RNNClassifier", "RNNRegressor", "load", "__version__"]
