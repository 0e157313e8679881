"""The NumPy reference (python/bptt/reference/) is the plain maths: its BPTT
against central finite differences and against PyTorch's autograd, the
total state gradients it reports per timestep (dh_out, dc_out), and the
cell interface handing it one time-major batch with no layout arguments."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from bptt import _bptt, _threads
from helpers import (CELLS, GATES, TORCH_CELLS, assert_grads_close, cell_kernels, detached_loss,
                     make_data, make_net, make_state, numerical_param_grads)


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


# ------------------------------------------------------------------ autograd
def reference_bptt(cell, p, X, state0, R, dstate_next, truncate):
    """The reference kernels' forward and backward with L = sum(R * H) plus
    dstate_next . (the state after the last step): every output by name."""
    k = cell_kernels("numpy", cell)
    T, B, _ = X.shape
    H = p["W_hh"].shape[1]
    out = {name: np.empty_like(p[name]) for name in p}
    out.update(dX=np.empty_like(X), dh=np.empty((T, B, H)), h0=np.empty((B, H)))
    dH = R.copy()
    dH[-1] += dstate_next[0]  # as the cell interface passes dstate_next in
    Hs = np.empty((T, B, H))
    common = (out["W_xh"], out["W_hh"], out["b_h"])
    if cell == "rnn":
        k.elman_forward(X, p["W_xh"], p["W_hh"], p["b_h"], state0[0], False, Hs)
        k.elman_backward(X, p["W_xh"], p["W_hh"], state0[0], Hs, dH, False, truncate,
                         *common, out["h0"], False, out["dX"], dh_out=out["dh"])
    elif cell == "lstm":
        G, C = np.empty((T, B, 4 * H)), np.empty((T, B, H))
        k.lstm_forward(X, p["W_xh"], p["W_hh"], p["b_h"], *state0, G, C, Hs)
        out.update(c0=dstate_next[1].copy(), dc=np.empty((T, B, H)))
        k.lstm_backward(X, p["W_xh"], p["W_hh"], *state0, G, C, Hs, dH, truncate,
                        *common, out["h0"], out["c0"], False, out["dX"], dh_out=out["dh"],
                        dc_out=out["dc"])
    else:
        G, HN = np.empty((T, B, 3 * H)), np.empty((T, B, H))
        k.gru_forward(X, p["W_xh"], p["W_hh"], p["b_h"], p["b_hn"], state0[0], G, HN, Hs,
                      np.empty((B, 3 * H)))
        k.gru_backward(X, p["W_xh"], p["W_hh"], state0[0], G, HN, Hs, dH, truncate,
                       *common, out["b_hn"], out["h0"], False, out["dX"], dh_out=out["dh"])
    return out


def torch_bptt(torch, cell, p, X, state0, R, dstate_next, truncate):
    """The same loss through PyTorch's autograd, the cell written out step by
    step from the contract's equations, the state detached at every window
    start; the gradient of every state kept with retain_grad."""
    t = {name: torch.tensor(value, requires_grad=True) for name, value in p.items()}
    Xt = torch.tensor(X, requires_grad=True)
    state = [torch.tensor(s, requires_grad=True) for s in state0]
    start, hs, cs = list(state), [], []
    for step in range(X.shape[0]):
        if truncate and step > 0 and step % truncate == 0:
            state = [s.detach() for s in state]
        a = Xt[step] @ t["W_xh"].T + t["b_h"]
        if cell == "rnn":
            state = [torch.tanh(a + state[0] @ t["W_hh"].T)]
        elif cell == "lstm":
            i, f, g, o = (a + state[0] @ t["W_hh"].T).chunk(4, dim=1)
            c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
            state = [torch.sigmoid(o) * torch.tanh(c), c]
        else:
            a_r, a_z, a_n = a.chunk(3, dim=1)
            g_r, g_z, g_n = (state[0] @ t["W_hh"].T).chunk(3, dim=1)
            r, z = torch.sigmoid(a_r + g_r), torch.sigmoid(a_z + g_z)
            n = torch.tanh(a_n + r * (g_n + t["b_hn"]))
            state = [(1 - z) * n + z * state[0]]
        for s, kept in zip(state, (hs, cs)):
            s.retain_grad()
            kept.append(s)
    loss = (torch.tensor(R) * torch.stack(hs)).sum()
    loss = loss + sum((torch.tensor(d) * s).sum() for d, s in zip(dstate_next, state))
    loss.backward()
    out = {name: value.grad.numpy() for name, value in t.items() if name in p}
    out.update(dX=Xt.grad.numpy(), h0=start[0].grad.numpy(),
               dh=np.stack([h.grad.numpy() for h in hs]))
    if cell == "lstm":
        out.update(c0=start[1].grad.numpy(), dc=np.stack([c.grad.numpy() for c in cs]))
    return out


@pytest.mark.parametrize("truncate", [0, 2, 3])
@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_backward_is_autograd_with_state_gradients_per_step(cell, truncate):
    """Every output of the reference's backward (the weight gradients, dX,
    dh0 and dc0, and dh_out / dc_out: the total dL/dh_t and dL/dc_t from the
    output at t, later steps of its window and dstate_next) equals PyTorch's
    autograd in float64, the state detached at window starts."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10 * CELLS.index(cell) + truncate)
    T, B, I, H = 7, 3, 2, 4
    G = GATES[cell]
    p = {"W_xh": rng.normal(0, 0.5, (G * H, I)), "W_hh": rng.normal(0, 0.5, (G * H, H)),
         "b_h": rng.normal(0, 0.5, G * H)}
    if cell == "gru":
        p["b_hn"] = rng.normal(0, 0.5, H)
    X = rng.normal(size=(T, B, I))
    state0 = [rng.normal(size=(B, H)) for _ in range(2 if cell == "lstm" else 1)]
    R = rng.normal(size=(T, B, H))
    dstate_next = [rng.normal(size=(B, H)) for _ in state0]
    got = reference_bptt(cell, p, X, state0, R, dstate_next, truncate)
    expected = torch_bptt(torch, cell, p, X, state0, R, dstate_next, truncate)
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-13,
                                   err_msg=name)
    # the check is not vacuous: later steps add to dL/dh_t beyond the output's R
    assert not np.allclose(got["dh"][:-1], R[:-1])


# ------------------------------------------------------------------ layout
@pytest.mark.parametrize("cell", CELLS)
def test_cell_interface_gives_the_reference_one_batch(cell):
    """The reference takes no layout arguments: the cell interface hands it
    the chunk's timesteps of a longer cache, and refuses a slab layout."""
    net = make_net(cell, 2, 3, 1, backend="numpy")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 2, 2))
    state0 = make_state(rng, cell, 2, 3)
    state0 = tuple(state0) if cell == "lstm" else state0
    exact = net._cell.allocate(4, 2, 3, np.float64)
    net._cell.forward(X, net.params, state0, exact)
    longer = net._cell.allocate(6, 2, 3, np.float64)
    net._cell.forward(X, net.params, state0, longer, 2, 1, 6)
    for a, b in zip(exact, longer, strict=True):
        np.testing.assert_array_equal(b[:4], a)
    with pytest.raises(ValueError, match="the NumPy reference runs one slab; got slabs=2"):
        net._cell.forward(X, net.params, state0, exact, 2, 2)


@pytest.mark.parametrize("cell", CELLS)
def test_numpy_backend_trains_in_one_slab_under_threads(monkeypatch, cell):
    """With threads to split the batch over, the compiled path lays it out in
    slabs; the NumPy backend still runs the reference on the one batch, and
    its step is the serial one."""
    net = make_net(cell, 3, 4, 2, backend="numpy")
    rng = np.random.default_rng(1)
    X, y = make_data(rng, 6, 5, 3, 2, "mse", "sequence")
    serial = net.loss_and_grad(X, y, truncate=2)
    monkeypatch.setattr(_threads, "MIN_WORK_PER_THREAD", 1)
    with threadpool_limits(limits=2, user_api="blas"):
        assert _bptt.plan_threads(net, 2, 6) == 2
        value, grads = net.loss_and_grad(X, y, truncate=2)
    assert [key[4] for key in net._workspace] == [1]  # one slab
    assert value == pytest.approx(serial[0], rel=1e-12)
    assert_grads_close(grads, serial[1], rtol=1e-12, atol=1e-14)
