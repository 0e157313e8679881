"""The BPTT driver's training API (bptt._bptt.TrainingData): a minibatch
of data validated once equals loss_and_grad on the same slice."""

import numpy as np
import pytest

import bptt

from helpers import CELLS, HAS_CELL_STATE


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("output", ["sequence", "last"])
def test_training_data_slices_match_loss_and_grad(cell, output):
    rng = np.random.default_rng(0)
    net = bptt.RNN(3, 5, 2, cell=cell, random_state=0)
    X = rng.standard_normal((7, 9, 3))
    y = rng.standard_normal((7, 9, 2) if output == "sequence" else (7, 2))
    data = net._training_data(X, y, loss="mse", output=output)
    rows = np.array([5, 0, 3])
    loss, grads, state = data.loss_and_grad(rows)
    ref, ref_grads = net.loss_and_grad(X[rows], y[rows], output=output)
    assert loss == pytest.approx(ref, rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-10, atol=1e-12)
    # a window of timesteps from a carried state
    h = data.advance(rows, 0, 4)
    _, h_ref = net.forward(X[rows][:, :4])
    np.testing.assert_allclose(np.asarray(h[0] if HAS_CELL_STATE[cell] else h),
                               np.asarray(h_ref[0] if HAS_CELL_STATE[cell] else h_ref))
    loss, grads, _ = data.loss_and_grad(rows, 4, None, h)
    yw = y[rows][:, 4:] if output == "sequence" else y[rows]
    ref, ref_grads = net.loss_and_grad(X[rows][:, 4:], yw, output=output, h0=h_ref)
    assert loss == pytest.approx(ref, rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-10, atol=1e-12)


def test_training_data_validates_once():
    net = bptt.RNN(2, 3, 1, random_state=0)
    with pytest.raises(ValueError, match="features"):
        net._training_data(np.zeros((4, 5, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="shape"):
        net._training_data(np.zeros((4, 5, 2)), np.zeros((4, 6)))
