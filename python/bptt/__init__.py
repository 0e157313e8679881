"""bptt: recurrent neural networks trained by backpropagation through time.

NumPy in, NumPy out. :class:`RNN` is the network (Elman, LSTM, GRU cells;
forward pass and exact BPTT gradients from compiled Cython + BLAS kernels,
with a NumPy reference twin). :class:`RNNRegressor` and :class:`RNNClassifier`
are scikit-learn estimators that train it; :func:`load` reads what their
``save`` wrote. :class:`SequenceScaler` standardises sequences of any length
for them and :class:`SequencePatcher` shortens long ones; :func:`gradcheck`
checks a network's gradients against finite differences; :mod:`bptt.plot`
draws loss curves, gradient histories and the gradient flow through time
(with matplotlib, an optional extra).

The words of the docs and docstrings (timestep, stream step, optimizer
update; window, chunk, part, slab, ...) are defined once, in
docs/glossary.md.
"""

__version__ = "0.1.0"

from . import plot
from .estimators import RNNClassifier, RNNRegressor
from .gradcheck import GradcheckReport, gradcheck
from .persistence import load
from .preprocessing import SequencePatcher, SequenceScaler
from .rnn import RNN

__all__ = ["RNN", "RNNClassifier", "RNNRegressor", "SequenceScaler", "SequencePatcher",
           "GradcheckReport", "gradcheck", "load", "__version__"]
