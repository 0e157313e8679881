"""BPTT gradients of the Elman network against central finite differences."""

import numpy as np
import pytest

from helpers import (ACTIVATION_LOSSES, detached_loss_and_grad, make_problem,
                     numerical_param_grads, window_states)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("truncate", [None, 1, 2, 3])
@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("activation,loss", ACTIVATION_LOSSES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_gradient_matches_finite_differences(nonlinearity, activation, loss, output,
                                             truncate, backend):
    net, X, y = make_problem(1, n=3, T=7, I=2, H=4, O=3, loss=loss, output=output,
                             nonlinearity=nonlinearity, output_activation=activation,
                             backend=backend)
    h0 = 0.5 * np.random.default_rng(5).standard_normal((3, 4))
    value, grads = net.loss_and_grad(X, y, loss=loss, output=output,
                                     truncate=truncate, h0=h0)
    # Truncated BPTT is the gradient of the loss with the state entering each
    # window held fixed at its value under the current parameters.
    states = window_states(net, X, truncate, h0=h0)

    def loss_fn():
        return detached_loss_and_grad(net, X, y, loss=loss, output=output,
                                      truncate=truncate, states=states)[0]

    assert value == pytest.approx(loss_fn(), rel=1e-12)
    expected = numerical_param_grads(net, loss_fn)
    assert set(grads) == set(net.params)
    for name in grads:
        assert grads[name].shape == net.params[name].shape
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-6, atol=1e-8,
                                   err_msg=name)
    # no parameter gets a trivially zero gradient (the check would be vacuous)
    assert all(np.abs(g).max() > 0 for g in grads.values())


@pytest.mark.parametrize("truncate", [None, 2])
def test_gradient_with_respect_to_h0_flows_through_the_first_window(truncate):
    # The gradient reaches h0 through the first window: a loss that depends
    # on h0 must change the parameter gradients when h0 changes.
    net, X, y = make_problem(2, n=2, T=6, I=1, H=3, O=1)
    _, g_zero = net.loss_and_grad(X, y, truncate=truncate)
    _, g_h0 = net.loss_and_grad(X, y, truncate=truncate, h0=np.ones((2, 3)))
    assert not np.allclose(g_zero["W_hh"], g_h0["W_hh"])
