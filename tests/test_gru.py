"""The GRU cell (src/_gru.pyx, python/bptt/reference/gru.py): the gated
cells' suite (cell_suite.py). What is particular to the GRU, its b_hn and the
bias folding of the PyTorch exchange, is tested in test_interop.py and
test_torch_interop.py."""

from cell_suite import GatedCellSuite


class TestGRU(GatedCellSuite):
    cell = "gru"
