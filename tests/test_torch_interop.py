"""Outputs and gradients against PyTorch (torch.nn.RNN / LSTM / GRU followed
by torch.nn.Linear with the same weights), and state-dict exchange with it.
Skipped when PyTorch is not installed; bptt itself never imports it."""

import numpy as np
import pytest

import bptt
from helpers import (ACTIVATION_LOSSES, TORCH_CELL_NONLINEARITIES, assert_grads_close, make_data,
                     make_state)

torch = pytest.importorskip("torch")
F = torch.nn.functional
# small problems: threads only add overhead (the NumPy reference is compared
# with the compiled kernels in test_lstm.py and test_gru.py, so only the latter meets torch)
torch.set_num_threads(1)

def torch_modules(net):
    """PyTorch modules (float64) holding the weights of a bptt network."""
    I, H, O = net.input_size, net.hidden_size, net.output_size
    if net.cell == "rnn":
        rnn = torch.nn.RNN(I, H, nonlinearity=net.nonlinearity, batch_first=True,
                           dtype=torch.float64)
    else:
        module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[net.cell]
        rnn = module(I, H, batch_first=True, dtype=torch.float64)
    linear = torch.nn.Linear(H, O, dtype=torch.float64)
    sd = net.to_torch_state_dict(rnn_prefix="rnn.", output_prefix="fc.")
    rnn.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in sd.items()
                         if k.startswith("rnn.")})
    linear.load_state_dict({k[3:]: torch.from_numpy(v) for k, v in sd.items()
                            if k.startswith("fc.")})
    return rnn, linear


def torch_state(cell, h0):
    if h0 is None:
        return None
    if cell == "lstm":
        return tuple(torch.from_numpy(s)[None] for s in h0)
    return torch.from_numpy(h0)[None]


def detach(state):
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def torch_forward(rnn, linear, X, h0, truncate, act):
    """Logits and outputs; the state is detached at every window start."""
    T = X.shape[1]
    k = truncate or T
    state, hs = h0, []
    for start in range(0, T, k):
        if state is not None and start > 0:
            state = detach(state)
        h, state = rnn(X[:, start:start + k], state)
        hs.append(h)
    Z = linear(torch.cat(hs, dim=1))
    Y = {"identity": Z, "sigmoid": torch.sigmoid(Z),
         "softmax": torch.softmax(Z, dim=-1)}[act]
    return Z, Y, state


def torch_loss(Z, Y, y, loss, output):
    if output == "last":
        Z, Y = Z[:, -1], Y[:, -1]
    if loss == "cross_entropy":
        return F.cross_entropy(Z.reshape(-1, Z.shape[-1]), torch.from_numpy(y).reshape(-1))
    target = torch.from_numpy(np.asarray(y, dtype=np.float64)).reshape(Y.shape)
    if loss == "binary_cross_entropy":
        return F.binary_cross_entropy_with_logits(Z, target)
    return F.mse_loss(Y, target)


def torch_grads(cell, rnn, linear):
    """PyTorch's gradients under bptt's names (d b_h = d bias_ih)."""
    grads = {"W_xh": rnn.weight_ih_l0.grad, "W_hh": rnn.weight_hh_l0.grad,
             "b_h": rnn.bias_ih_l0.grad, "W_oh": linear.weight.grad, "b_o": linear.bias.grad}
    if cell == "gru":
        H = rnn.hidden_size
        grads["b_hn"] = rnn.bias_hh_l0.grad[2 * H:]
        # r and z biases are folded: both PyTorch copies get the same gradient
        np.testing.assert_allclose(rnn.bias_hh_l0.grad[:2 * H], rnn.bias_ih_l0.grad[:2 * H])
    else:
        np.testing.assert_allclose(rnn.bias_hh_l0.grad, rnn.bias_ih_l0.grad)
    return {k: v.numpy() for k, v in grads.items()}


def make_net(cell, nonlinearity, I, H, O, act, backend="cython", seed=0):
    net = bptt.RNN(I, H, O, cell=cell, nonlinearity=nonlinearity, output_activation=act,
                   backend=backend, random_state=seed)
    rng = np.random.default_rng(seed + 1)
    for name, value in net.params.items():
        net.params[name] = rng.normal(0, 0.5, value.shape)
    return net


@pytest.mark.parametrize("h0", [False, True], ids=["h0=None", "h0"])
@pytest.mark.parametrize("truncate", [None, 3])
@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("act,loss", ACTIVATION_LOSSES)
@pytest.mark.parametrize("cell,nonlinearity", TORCH_CELL_NONLINEARITIES)
def test_outputs_and_gradients_match_torch(cell, nonlinearity, loss, act, output,
                                           truncate, h0):
    rng = np.random.default_rng(2)
    n, T, I, H, O = 3, 7, 2, 4, 3
    net = make_net(cell, nonlinearity, I, H, O, act)
    X, y = make_data(rng, n, T, I, O, loss, output)
    state = make_state(rng, cell, n, H) if h0 else None
    rnn, linear = torch_modules(net)
    Xt = torch.from_numpy(X)

    Y, last = net.forward(X, h0=state)
    with torch.no_grad():
        _, Yt, last_t = torch_forward(rnn, linear, Xt, torch_state(cell, state), None, act)
    np.testing.assert_allclose(Y, Yt.numpy(), rtol=1e-10, atol=1e-12)
    last_t = [s[0].numpy() for s in (last_t if isinstance(last_t, tuple) else (last_t,))]
    last = list(last) if isinstance(last, tuple) else [last]
    for u, v in zip(last, last_t, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)

    value, grads = net.loss_and_grad(X, y, loss=loss, output=output, truncate=truncate,
                                     h0=state)
    Z, Yt, _ = torch_forward(rnn, linear, Xt, torch_state(cell, state), truncate, act)
    loss_t = torch_loss(Z, Yt, y, loss, output)
    loss_t.backward()
    assert value == pytest.approx(loss_t.item(), rel=1e-10)
    assert_grads_close(grads, torch_grads(cell, rnn, linear), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cell,nonlinearity", TORCH_CELL_NONLINEARITIES)
def test_torch_weights_load_into_bptt(cell, nonlinearity):
    """A PyTorch model (random PyTorch init, two biases) computes the same
    function after from_torch_state_dict, and comes back with the biases
    folded: the same function in PyTorch again."""
    torch.manual_seed(0)
    I, H, O = 3, 5, 2
    if cell == "rnn":
        rnn = torch.nn.RNN(I, H, nonlinearity=nonlinearity, batch_first=True)
    else:
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](I, H, batch_first=True)
    linear = torch.nn.Linear(H, O)
    sd = {**{f"rnn.{k}": v for k, v in rnn.state_dict().items()},
          **{f"fc.{k}": v for k, v in linear.state_dict().items()}}
    net = bptt.RNN.from_torch_state_dict(sd, nonlinearity=nonlinearity,
                                         rnn_prefix="rnn.", output_prefix="fc.")
    assert net.cell == cell and net.dtype == np.float32
    X = np.random.default_rng(0).normal(size=(4, 6, I)).astype(np.float32)
    with torch.no_grad():
        Yt = linear(rnn(torch.from_numpy(X))[0]).numpy()
    Y, _ = net.forward(X)
    np.testing.assert_allclose(Y, Yt, rtol=1e-5, atol=1e-6)

    back = net.to_torch_state_dict()
    rnn2 = type(rnn)(I, H, batch_first=True) if cell != "rnn" else torch.nn.RNN(
        I, H, nonlinearity=nonlinearity, batch_first=True)
    rnn2.load_state_dict({k: torch.from_numpy(v) for k, v in back.items() if k.endswith("_l0")})
    with torch.no_grad():
        Yt2 = linear(rnn2(torch.from_numpy(X))[0]).numpy()
    np.testing.assert_allclose(Yt2, Yt, rtol=1e-5, atol=1e-6)
    # and the bptt -> dict -> bptt leg is exact
    again = bptt.RNN.from_torch_state_dict(back, nonlinearity=nonlinearity)
    for k in net.params:
        np.testing.assert_array_equal(again.params[k], net.params[k])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_float32_matches_torch(cell):
    rng = np.random.default_rng(3)
    n, T, I, H, O = 8, 40, 4, 16, 2
    net = make_net(cell, "tanh", I, H, O, "identity")
    rnn, linear = torch_modules(net)
    net32 = bptt.RNN.from_torch_state_dict(net.to_torch_state_dict(), dtype="float32")
    X, y = make_data(rng, n, T, I, O, "mse", "sequence")
    value, grads = net32.loss_and_grad(X, y)
    Z, Yt, _ = torch_forward(rnn, linear, torch.from_numpy(X), None, None, "identity")
    loss_t = torch_loss(Z, Yt, y, "mse", "sequence")
    loss_t.backward()
    assert value == pytest.approx(loss_t.item(), rel=1e-5)
    assert_grads_close(grads, torch_grads(cell, rnn, linear), rtol=1e-3, atol=1e-4)
