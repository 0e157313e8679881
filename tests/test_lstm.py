"""The LSTM cell (src/_lstm.pyx, python/bptt/reference/lstm.py): the gated
cells' suite (cell_suite.py), and what is particular to the LSTM: its state
is a pair (h, c)."""

import numpy as np
import pytest

import bptt
from cell_suite import GatedCellSuite
from helpers import make_data, make_net


class TestLSTM(GatedCellSuite):
    cell = "lstm"


def test_truncated_gradient_differs_from_full_gradient():
    # guards the truncation tests against a no-op truncate
    rng = np.random.default_rng(3)
    net = make_net("lstm", 2, 3, 1)
    X, y = make_data(rng, 2, 6, 2, 1, "mse", "sequence")
    _, full = net.loss_and_grad(X, y)
    _, cut = net.loss_and_grad(X, y, truncate=2)
    assert not np.allclose(full["W_hh"], cut["W_hh"])


def test_lstm_state_must_be_a_pair():
    net = bptt.RNN(2, 3, 1, cell="lstm")
    X = np.zeros((2, 4, 2))
    with pytest.raises(ValueError, match=r"tuple \(h0, c0\)"):
        net.forward(X, h0=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="c0 must have shape"):
        net.forward(X, h0=(np.zeros((2, 3)), np.zeros((2, 4))))
