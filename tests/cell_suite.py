"""The tests every gated cell passes (LSTM, GRU): parity of the compiled
kernels with the NumPy reference, gradients against finite differences,
state handling and initialisation.

A kernel family's test file (test_lstm.py, test_gru.py) runs them by
subclassing :class:`GatedCellSuite` with its ``cell``; its own file holds
what is particular to the cell.
"""

import numpy as np
import pytest

import bptt
import bptt._bptt
from bptt import _cells
from helpers import (
    ACTIVATION_LOSSES,
    GATES,
    HAS_CELL_STATE,
    as_list,
    assert_grads_close,
    detached_loss,
    make_data,
    make_net,
    make_state,
    numerical_gradient,
    numerical_param_grads,
    twin,
)


def cell_forward(cell_obj, X, p, state0):
    """Allocate a cell's cache and run its forward kernel: (H, cache)."""
    T, B, _ = X.shape
    cache = cell_obj.allocate(T, B, p["W_hh"].shape[1], X.dtype)
    cell_obj.forward(X, p, state0, cache)
    return cell_obj.hidden(cache), cache


# ------------------------------------------------------------------ parity
SHAPES = [  # n, T, I, H, O
    (1, 1, 1, 1, 1),
    (1, 6, 2, 1, 2),
    (3, 1, 2, 4, 3),
    (4, 9, 3, 5, 2),
]


def check_parity(net_a, net_b, X, y, loss, output, truncate, h0, rtol, atol):
    Ya, sa = net_a.forward(X, h0=h0)
    Yb, sb = net_b.forward(X, h0=h0)
    np.testing.assert_allclose(Ya, Yb, rtol=rtol, atol=atol)
    for u, v in zip(as_list(sa), as_list(sb), strict=True):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)
    la, ga = net_a.loss_and_grad(X, y, loss=loss, output=output, truncate=truncate, h0=h0)
    lb, gb = net_b.loss_and_grad(X, y, loss=loss, output=output, truncate=truncate, h0=h0)
    assert la == pytest.approx(lb, rel=rtol, abs=atol)
    assert_grads_close(ga, gb, rtol=rtol, atol=atol)


class GatedCellSuite:
    """Subclass as ``class TestLSTM(GatedCellSuite): cell = "lstm"``."""

    cell = None

    # ------------------------------------------------------------------ gradients
    @pytest.mark.parametrize("h0", [False, True], ids=["h0=None", "h0"])
    @pytest.mark.parametrize("truncate", [None, 2])
    @pytest.mark.parametrize("output", ["sequence", "last"])
    @pytest.mark.parametrize("act,loss", ACTIVATION_LOSSES)
    def test_gradient_matches_finite_differences(self, loss, act, output, truncate, h0):
        cell = self.cell
        rng = np.random.default_rng(1)
        n, T, I, H, O = 2, 5, 2, 3, 3
        net = make_net(cell, I, H, O, act=act)
        X, y = make_data(rng, n, T, I, O, loss, output)
        state = make_state(rng, cell, n, H) if h0 else None
        value, grads = net.loss_and_grad(X, y, loss=loss, output=output,
                                         truncate=truncate, h0=state)
        f = detached_loss(net, X, y, loss, output, truncate, state)
        assert value == pytest.approx(f(), rel=1e-12)
        assert_grads_close(grads, numerical_param_grads(net, f), rtol=1e-6, atol=1e-8,
                           scale_atol=False)

    @pytest.mark.parametrize("backend", ["cython", "numpy"])
    def test_kernel_state_and_input_gradients(self, backend):
        """dL/dstate0 (dh0, dc0) and the optional dX against finite differences,
        with L = sum(R * H) for a fixed random R."""
        cell = self.cell
        rng = np.random.default_rng(4)
        T, B, I, H = 4, 2, 3, 3
        net = make_net(cell, I, H, 1, backend=backend)
        cell_obj, p = net._cell, net.params
        X = rng.normal(size=(T, B, I))
        state0 = make_state(rng, cell, B, H)
        R = rng.normal(size=(T, B, H))

        def loss():
            Hs, _ = cell_forward(cell_obj, X, p, state0)
            return float(np.sum(R * Hs))

        Hs, cache = cell_forward(cell_obj, X, p, state0)
        grads = {k: np.empty_like(v) for k, v in p.items()}
        dX = np.empty_like(X)
        dstate0 = cell_obj.backward(X, p, state0, cache, R.copy(), None, 0, grads, dX=dX)
        np.testing.assert_allclose(dX, numerical_gradient(loss, X), rtol=1e-6, atol=1e-8)
        if HAS_CELL_STATE[cell]:
            for d, s in zip(dstate0, state0):
                np.testing.assert_allclose(d, numerical_gradient(loss, s), rtol=1e-6, atol=1e-8)
        else:
            np.testing.assert_allclose(dstate0, numerical_gradient(loss, state0),
                                       rtol=1e-6, atol=1e-8)

    @pytest.mark.parametrize("backend", ["cython", "numpy"])
    @pytest.mark.parametrize("truncate", [0, 2])
    def test_backward_in_chunks_equals_one_pass(self, truncate, backend):
        """The kernels' accumulate flag and state-gradient carry (dc0 in, for the
        LSTM) let BPTT run chunk by chunk from the end of the sequence."""
        cell = self.cell
        rng = np.random.default_rng(13)
        T, B, I, H, s = 8, 2, 3, 3, 4
        net = make_net(cell, I, H, 1, backend=backend)
        c, p = net._cell, net.params
        X = rng.normal(size=(T, B, I))
        state0 = make_state(rng, cell, B, H)
        R = rng.normal(size=(T, B, H))
        zeros = {k: np.full_like(v, np.nan) for k, v in p.items()}

        _, cache = cell_forward(c, X, p, state0)
        whole = {k: v.copy() for k, v in zeros.items()}
        # the cell's binding calls its backward kernel (the registry's, as
        # the driver does)
        dstate_whole = c.backward(X, p, state0, cache, R.copy(), None, truncate, whole)

        _, cache1 = cell_forward(c, X[:s], p, state0)
        state_s = tuple(a.copy() for a in as_list(c.state_after(cache1, s - 1)))
        state_s = c.spec.state_of(state_s)
        _, cache2 = cell_forward(c, X[s:], p, state_s)
        chunks = {k: v.copy() for k, v in zeros.items()}
        carry = c.backward(X[s:], p, state_s, cache2, R[s:].copy(), None, truncate, chunks)
        if truncate and s % truncate == 0:
            carry = c.spec.state_of([np.zeros_like(a) for a in as_list(carry)])
        # the carry enters as dstate_next: dh into dH[-1], dc into the kernel's dc0
        dstate_chunks = c.backward(X[:s], p, state0, cache1, R[:s].copy(), carry, truncate,
                                   chunks, True)
        assert_grads_close(chunks, whole, rtol=1e-12, atol=1e-14)
        for u, v in zip(as_list(dstate_chunks), as_list(dstate_whole), strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)

    @pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n{}T{}I{}H{}O{}".format(*s))
    @pytest.mark.parametrize("h0", [False, True], ids=["h0=None", "h0"])
    @pytest.mark.parametrize("truncate", [None, 2])
    @pytest.mark.parametrize("output", ["sequence", "last"])
    @pytest.mark.parametrize("act,loss", ACTIVATION_LOSSES)
    def test_cython_matches_numpy_float64(self, loss, act, output, truncate, h0, shape):
        cell = self.cell
        n, T, I, H, O = shape
        rng = np.random.default_rng(5)
        net = make_net(cell, I, H, O, act=act)
        X, y = make_data(rng, n, T, I, O, loss, output)
        state = make_state(rng, cell, n, H) if h0 else None
        check_parity(net, twin(net, "numpy"), X, y, loss, output, truncate, state,
                     rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("truncate", [None, 3])
    @pytest.mark.parametrize("output", ["sequence", "last"])
    @pytest.mark.parametrize("act,loss", ACTIVATION_LOSSES)
    def test_float32_matches_float64_reference(self, loss, act, output, truncate):
        cell = self.cell
        rng = np.random.default_rng(6)
        n, T, I, H, O = 4, 12, 3, 6, 3
        net = make_net(cell, I, H, O, act=act)
        X, y = make_data(rng, n, T, I, O, loss, output)
        state = make_state(rng, cell, n, H)
        net32 = twin(net, "cython", "float32")
        ref = twin(net, "numpy")
        # tolerances relative to each gradient's largest entry
        check_parity(net32, ref, X, y, loss, output, truncate, state, rtol=1e-4, atol=1e-4)
        assert net32.loss_and_grad(X, y, loss=loss, output=output)[1]["W_hh"].dtype == np.float32

    @pytest.mark.parametrize("truncate", [None, 50])
    def test_long_sequence_parity(self, truncate):
        cell = self.cell
        rng = np.random.default_rng(7)
        n, T, I, H, O = 2, 1000, 2, 3, 1
        net = make_net(cell, I, H, O)
        X, y = make_data(rng, n, T, I, O, "mse", "sequence")
        check_parity(net, twin(net, "numpy"), X, y, "mse", "sequence", truncate, None,
                     rtol=1e-10, atol=1e-12)

    # ------------------------------------------------------------------ state
    @pytest.mark.parametrize("backend", ["cython", "numpy"])
    def test_forward_state_continues_the_sequence(self, backend):
        cell = self.cell
        rng = np.random.default_rng(8)
        net = make_net(cell, 2, 4, 2, backend=backend)
        X = rng.normal(size=(3, 10, 2))
        Y, state = net.forward(X)
        Y1, s1 = net.forward(X[:, :4])
        Y2, s2 = net.forward(X[:, 4:], h0=s1)
        np.testing.assert_allclose(np.concatenate([Y1, Y2], axis=1), Y, rtol=1e-12, atol=1e-14)
        if HAS_CELL_STATE[cell]:
            assert isinstance(state, tuple) and len(state) == 2
            for u, v in zip(s2, state):
                assert u.shape == (3, 4)
                np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)
        else:
            assert state.shape == (3, 4)
            np.testing.assert_allclose(s2, state, rtol=1e-12, atol=1e-14)

    def test_forward_in_chunks_equals_one_pass(self, monkeypatch):
        cell = self.cell
        rng = np.random.default_rng(9)
        net = make_net(cell, 2, 3, 2)
        X = rng.normal(size=(2, 23, 2))
        h0 = make_state(rng, cell, 2, 3)
        Y, state = net.forward(X, h0=h0)
        monkeypatch.setattr(bptt._bptt, "FORWARD_CHUNK_ELEMENTS", 2 * 3 * GATES[cell] * 5)
        Yc, state_c = net.forward(X, h0=h0)
        np.testing.assert_allclose(Yc, Y, rtol=1e-12, atol=1e-14)
        for u, v in zip(as_list(state_c), as_list(state), strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)

    def test_forward_keeps_inputs_unchanged(self):
        cell = self.cell
        rng = np.random.default_rng(10)
        net = make_net(cell, 2, 3, 1)
        X = rng.normal(size=(2, 5, 2))
        h0 = make_state(rng, cell, 2, 3)
        X_copy = X.copy()
        h0_copy = [s.copy() for s in as_list(h0)]
        params = {k: v.copy() for k, v in net.params.items()}
        net.loss_and_grad(X, np.zeros((2, 5)), h0=h0, truncate=2)
        net.forward(X, h0=h0)
        np.testing.assert_array_equal(X, X_copy)
        for u, v in zip(as_list(h0), h0_copy, strict=True):
            np.testing.assert_array_equal(u, v)
        for k in params:
            np.testing.assert_array_equal(net.params[k], params[k])

    # ------------------------------------------------------------------ init
    @pytest.mark.parametrize("init", ["orthogonal", "xavier", "identity", "uniform"])
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_initialisation(self, dtype, init):
        cell = self.cell
        I, H, O = 3, 5, 2
        G = GATES[cell]
        spec = _cells.CELLS[cell]
        net = bptt.RNN(I, H, O, cell=cell, init=init, dtype=dtype, random_state=0)
        p = net.params
        shapes = {"W_xh": (G * H, I), "W_hh": (G * H, H), "b_h": (G * H,),
                  "W_oh": (O, H), "b_o": (O,)}
        # the cell's extra parameters (GRU: b_hn (H,)) start at their values
        for name, (shape, _) in spec.extra_params.items():
            shapes[name] = tuple(H if d == "H" else d for d in shape)
        assert {k: v.shape for k, v in p.items()} == shapes
        assert all(v.dtype == np.dtype(dtype) for v in p.values())
        for name, (_, value) in spec.extra_params.items():
            np.testing.assert_array_equal(p[name], value)
        # b_h: 0 but for the gate blocks of initial_bias (LSTM: forget gate 1)
        expected_bias = np.zeros(G * H)
        for gate, value in spec.initial_bias.items():
            k = spec.gates.index(gate)
            expected_bias[k * H:(k + 1) * H] = value
        np.testing.assert_array_equal(p["b_h"], expected_bias)
        blocks = p["W_hh"].astype(np.float64).reshape(G, H, H)
        if init == "orthogonal":
            for block in blocks:
                np.testing.assert_allclose(block @ block.T, np.eye(H), atol=1e-5)
            assert not np.allclose(blocks[0], blocks[1])
        elif init == "identity":
            for block in blocks:
                np.testing.assert_array_equal(block, np.eye(H))
        elif init == "uniform":
            assert np.abs(blocks).max() <= 1 / np.sqrt(H)
        # the same seed gives the same network
        again = bptt.RNN(I, H, O, cell=cell, init=init, dtype=dtype, random_state=0)
        for k in p:
            np.testing.assert_array_equal(p[k], again.params[k])
        Y, _ = net.forward(np.ones((2, 4, I)))
        assert np.isfinite(Y).all()
