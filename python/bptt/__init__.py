"""bptt: recurrent neural networks trained by backpropagation through time.

NumPy in, NumPy out. :class:`RNN` is the network (Elman, LSTM, GRU cells;
forward pass and exact BPTT gradients from compiled Cython + BLAS kernels,
with a NumPy reference twin).
"""

__version__ = "0.1.0"

from .rnn import RNN

__all__ = ["RNN", "__version__"]
