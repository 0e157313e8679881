"""The NumPy reference (python/bptt/reference/) is the plain maths: its BPTT
against central finite differences."""

import numpy as np
import pytest

from helpers import (assert_grads_close, detached_loss, make_data, make_net, make_state,
                     numerical_param_grads)


@pytest.mark.parametrize("truncate", [None, 2, 3])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_reference_gradient_matches_finite_differences(cell, truncate):
    rng = np.random.default_rng(2)
    n, T, I, H, O = 3, 7, 2, 2, 1
    net = make_net(cell, I, H, O, backend="numpy")
    X, y = make_data(rng, n, T, I, O, "mse", "sequence")
    state = make_state(rng, cell, n, H)
    _, grads = net.loss_and_grad(X, y, truncate=truncate, h0=state)
    f = detached_loss(net, X, y, "mse", "sequence", truncate, state)
    assert_grads_close(grads, numerical_param_grads(net, f), rtol=1e-6, atol=1e-8,
                       scale_atol=False)
