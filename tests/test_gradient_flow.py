"""Gradient flow: ``loss_and_grad(..., return_state_grads=True)`` (issue 17).

dL/dh_t (and dL/dc_t for the LSTM) at every timestep, computed by the cell
kernels during the backward pass they run anyway, against PyTorch autograd's
``retain_grad`` on hidden states computed step by step from the contract's
equations (with the state detached at every window start for truncation);
compiled against the NumPy reference, on threads (the slab layout) and in
chunks of timesteps; and the option off leaves everything as it was.
"""

import numpy as np
import pytest

import bptt
from bptt import _threads
from bptt import _bptt
from helpers import make_problem

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
LOSS_ACTIVATION = {"mse": "identity", "cross_entropy": "softmax",
                   "binary_cross_entropy": "sigmoid"}


def _problem(cell, nonlinearity, loss, output, *, n=3, T=7, I=2, H=4, O=3, seed=0,
             backend="cython", h0=True):
    net, X, y = make_problem(seed, n=n, T=T, I=I, H=H, O=O, loss=loss, output=output,
                             cell=cell, nonlinearity=nonlinearity,
                             output_activation=LOSS_ACTIVATION[loss], backend=backend)
    state = None
    if h0:
        rng = np.random.default_rng(seed + 100)
        state = rng.standard_normal((n, H))
        if cell == "lstm":
            state = (state, rng.standard_normal((n, H)))
    return net, X, y, state


# ---------------------------------------------------------------- PyTorch

def torch_state_grads(net, X, y, *, loss, output, truncate, h0):
    """(loss, dL/dh (n, T, H), dL/dc (n, T, H) or None) by PyTorch autograd.

    The cell is written out from the contract's equations, one timestep at a
    time, so every h_t (and c_t) is a tensor of its own whose ``.grad``
    autograd fills (``retain_grad``); the state is detached where a window
    starts, which is what truncated BPTT computes.
    """
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    # parameters that require grad, so every h_t is a node of the graph
    p = {k: torch.tensor(np.array(v, dtype=np.float64), requires_grad=True)
         for k, v in net.params.items()}
    Xt = torch.from_numpy(np.asarray(X, dtype=np.float64))
    n, T, _ = Xt.shape
    H = net.hidden_size
    if h0 is None:
        h, c = torch.zeros(n, H, dtype=torch.float64), torch.zeros(n, H, dtype=torch.float64)
    elif net.cell == "lstm":
        h, c = (torch.from_numpy(np.array(s, dtype=np.float64)) for s in h0)
    else:
        h, c = torch.from_numpy(np.array(h0, dtype=np.float64)), None
    hs, cs = [], []
    for t in range(T):
        if truncate and t > 0 and t % truncate == 0:
            h = h.detach()
            c = c.detach() if c is not None else None
        x = Xt[:, t]
        if net.cell == "rnn":
            a = x @ p["W_xh"].T + h @ p["W_hh"].T + p["b_h"]
            h = torch.tanh(a) if net.nonlinearity == "tanh" else torch.relu(a)
        elif net.cell == "lstm":
            a = x @ p["W_xh"].T + h @ p["W_hh"].T + p["b_h"]
            i, f, g, o = a.split(H, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            c.retain_grad()
            cs.append(c)
            h = torch.sigmoid(o) * torch.tanh(c)
        else:
            a = x @ p["W_xh"].T + p["b_h"]
            gh = h @ p["W_hh"].T
            r = torch.sigmoid(a[:, :H] + gh[:, :H])
            z = torch.sigmoid(a[:, H:2 * H] + gh[:, H:2 * H])
            nn_ = torch.tanh(a[:, 2 * H:] + r * (gh[:, 2 * H:] + p["b_hn"]))
            h = (1 - z) * nn_ + z * h
        h.retain_grad()
        hs.append(h)
    top = torch.stack(hs, dim=1) if output == "sequence" else hs[-1]
    z = top @ p["W_oh"].T + p["b_o"]
    target = torch.from_numpy(np.asarray(y))
    O = net.output_size
    if loss == "cross_entropy":
        value = F.cross_entropy(z.reshape(-1, O), target.reshape(-1).long())
    elif loss == "binary_cross_entropy":
        value = F.binary_cross_entropy_with_logits(z, target.reshape(z.shape).double())
    else:
        value = F.mse_loss(z, target.reshape(z.shape).double())
    value.backward()

    def grads_of(states):
        return np.stack([s.grad.numpy() if s.grad is not None else np.zeros((n, H))
                         for s in states], axis=1)

    return value.item(), grads_of(hs), grads_of(cs) if cs else None


def _assert_flow_close(actual, expected, rtol=1e-7):
    """Relative to each array's scale: entries far below it (the gradient
    at early timesteps can vanish) are compared with an absolute floor."""
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-12 * scale)


@pytest.mark.parametrize("truncate", [None, 1, 3])
@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "binary_cross_entropy"])
@pytest.mark.parametrize("cell,nonlinearity", CELLS)
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_state_grads_equal_torch_autograd(backend, cell, nonlinearity, loss, output,
                                          truncate):
    pytest.importorskip("torch")
    net, X, y, h0 = _problem(cell, nonlinearity, loss, output, backend=backend)
    value, grads, flow = net.loss_and_grad(X, y, loss=loss, output=output,
                                           truncate=truncate, h0=h0,
                                           return_state_grads=True)
    t_value, dh, dc = torch_state_grads(net, X, y, loss=loss, output=output,
                                        truncate=truncate, h0=h0)
    assert value == pytest.approx(t_value, rel=1e-12)
    assert sorted(flow) == (["dc", "dc_norm", "dh", "dh_norm"] if cell == "lstm"
                            else ["dh", "dh_norm"])
    assert flow["dh"].shape == X.shape[:2] + (net.hidden_size,)
    assert flow["dh"].dtype == np.float64
    _assert_flow_close(flow["dh"], dh)
    np.testing.assert_allclose(flow["dh_norm"], np.linalg.norm(dh, axis=2).mean(axis=0),
                               rtol=1e-7, atol=1e-12 * np.abs(dh).max())
    if cell == "lstm":
        _assert_flow_close(flow["dc"], dc)
        np.testing.assert_allclose(flow["dc_norm"],
                                   np.linalg.norm(dc, axis=2).mean(axis=0),
                                   rtol=1e-7, atol=1e-12 * np.abs(dc).max())
    if output == "last" and truncate:
        # only the last window sees the loss: nothing reaches earlier steps
        first = (X.shape[1] - 1) // truncate * truncate
        assert not flow["dh"][:, :first].any()


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
def test_state_grads_without_h0_and_single_steps(cell, nonlinearity):
    """h0 left out (zeros), T = 1, n = 1, H = 1: the shapes' edges."""
    pytest.importorskip("torch")
    for n, T, H in [(1, 1, 1), (1, 5, 1), (2, 1, 3)]:
        net, X, y, _ = _problem(cell, nonlinearity, "mse", "sequence", n=n, T=T, H=H,
                                h0=False)
        _, _, flow = net.loss_and_grad(X, y, return_state_grads=True)
        _, dh, dc = torch_state_grads(net, X, y, loss="mse", output="sequence",
                                      truncate=None, h0=None)
        assert flow["dh"].shape == (n, T, H) and flow["dh_norm"].shape == (T,)
        _assert_flow_close(flow["dh"], dh)
        if dc is not None:
            _assert_flow_close(flow["dc"], dc)


# ------------------------------------------------- compiled against reference

def _flow_of(net, X, y, **kwargs):
    return net.loss_and_grad(X, y, return_state_grads=True, **kwargs)


def _assert_same_flow(a, b, rtol):
    assert a[0] == pytest.approx(b[0], rel=rtol)
    for name in b[1]:
        np.testing.assert_allclose(a[1][name], b[1][name], rtol=rtol,
                                   atol=rtol * np.abs(b[1][name]).max(), err_msg=name)
    assert sorted(a[2]) == sorted(b[2])
    for key in b[2]:
        np.testing.assert_allclose(a[2][key], b[2][key], rtol=rtol,
                                   atol=rtol * np.abs(b[2][key]).max(), err_msg=key)


@pytest.mark.parametrize("truncate", [None, 2, 3])
@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("cell,nonlinearity", CELLS)
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-4)])
def test_compiled_equals_reference_in_chunks_and_slabs(monkeypatch, cell, nonlinearity,
                                                       output, truncate, dtype, rtol):
    """The compiled kernels' state gradients equal the reference's, serial
    in one chunk, in several chunks of timesteps, and on 2 threads (one
    slab of the batch per thread), chunked or not."""
    n, T = 6, 11
    nets = {}
    for backend in ("numpy", "cython"):
        net, X, y, h0 = _problem(cell, nonlinearity, "mse", output, n=n, T=T, H=5,
                                 backend=backend, seed=3)
        twin = bptt.RNN(2, 5, 3, cell=cell, nonlinearity=nonlinearity, dtype=dtype,
                        backend=backend)
        twin.params = net.params
        nets[backend] = twin
    if dtype == "float32":
        X = X.astype(np.float32)
        h0 = tuple(s.astype(np.float32) for s in h0) if cell == "lstm" else h0.astype(
            np.float32)
    args = dict(output=output, truncate=truncate, h0=h0)
    expected = _flow_of(nets["numpy"], X, y, **args)
    assert expected[2]["dh"].dtype == np.dtype(dtype)
    _assert_same_flow(_flow_of(nets["cython"], X, y, **args), expected, rtol)
    # chunks of timesteps (a chunk starts on a window start)
    monkeypatch.setattr(_bptt, "TRAIN_ONE_CHUNK_BYTES", 0)
    monkeypatch.setattr(_bptt, "TRAIN_CHUNK_ROWS", 12)
    assert _bptt.chunk_steps(nets["cython"], T, n, truncate) < T
    for net in nets.values():
        _assert_same_flow(_flow_of(net, X, y, **args), expected, rtol)
    # 2 threads: the slab layout, chunked and in one chunk
    from threadpoolctl import threadpool_limits
    monkeypatch.setattr(_threads, "MIN_WORK_PER_THREAD", 1)
    with threadpool_limits(limits=2, user_api="blas"):
        assert _bptt.plan_threads(nets["cython"], 2, n) == 2
        _assert_same_flow(_flow_of(nets["cython"], X, y, **args), expected, rtol)
        assert any(key[4] == 2 for key in nets["cython"]._workspace)  # slabs ran
        monkeypatch.setattr(_bptt, "TRAIN_ONE_CHUNK_BYTES", 1 << 22)
        _assert_same_flow(_flow_of(nets["cython"], X, y, **args), expected, rtol)


@pytest.mark.parametrize("cell,nonlinearity", CELLS)
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_option_off_is_bit_identical(cell, nonlinearity, backend):
    """return_state_grads=False (the default) returns what loss_and_grad
    always returned; with it on, loss and gradients are the same bits."""
    net, X, y, h0 = _problem(cell, nonlinearity, "mse", "sequence", n=4, T=9,
                             backend=backend)
    for truncate in (None, 4):
        plain = net.loss_and_grad(X, y, truncate=truncate, h0=h0)
        off = net.loss_and_grad(X, y, truncate=truncate, h0=h0, return_state_grads=False)
        on = net.loss_and_grad(X, y, truncate=truncate, h0=h0, return_state_grads=True)
        assert len(plain) == len(off) == 2 and len(on) == 3
        for other in (off, on):
            assert other[0] == plain[0]
            for name in plain[1]:
                assert np.array_equal(other[1][name], plain[1][name]), name


def test_state_grads_are_fresh_arrays():
    """The arrays returned are the caller's: the next call does not change them."""
    net, X, y, h0 = _problem("lstm", "tanh", "mse", "sequence", n=4, T=9)
    first = net.loss_and_grad(X, y, h0=h0, return_state_grads=True)[2]
    kept = {k: v.copy() for k, v in first.items()}
    net.loss_and_grad(2 * X, y, h0=h0, return_state_grads=True)
    for key in kept:
        assert np.array_equal(first[key], kept[key])
        assert first[key].flags.c_contiguous and first[key].flags.writeable


def _flows(net, X, y, **kw):
    return net.loss_and_grad(X, y, return_state_grads=True, **kw)[2]


@pytest.mark.parametrize("output,truncate", [("sequence", None), ("last", 3)])
@pytest.mark.parametrize("layers,bidirectional,ragged", [
    (1, False, False), (2, True, False), (1, False, True), (2, True, True)])
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_state_grads_recycle_only_dropped_arrays(monkeypatch, cell, layers, bidirectional,
                                                 ragged, output, truncate):
    """A call may write its state gradients into the arrays the previous
    call returned once the caller has dropped them (no page faults on fresh
    memory); arrays the caller still refers to (directly, through a view,
    a dict or a weak reference) are never touched, and a recycled array
    holds exactly what a fresh one would ("last" with truncation: the zeros
    before the last window included, in chunks of timesteps)."""
    import weakref
    monkeypatch.setattr(_bptt, "TRAIN_ONE_CHUNK_BYTES", 0)
    monkeypatch.setattr(_bptt, "TRAIN_CHUNK_ROWS", 12)
    lengths = [9, 4, 9, 6] if ragged else [9] * 4
    net, Xs, y, h0 = _layered_problem(cell, "tanh", "mse", output, lengths,
                                      layers=layers, bidirectional=bidirectional)
    X, Y = (Xs, y) if ragged else (np.stack(Xs), np.asarray(y))

    def scaled(s):
        return [x * s for x in X] if ragged else X * s

    kw = dict(truncate=truncate, h0=h0, output=output)
    expected = [_flows(net, scaled(s), Y, **kw) for s in (1.0, 0.5, 2.0)]
    expected = [{k: (v if isinstance(v, list) else v.copy()) for k, v in e.items()}
                for e in expected]
    net.release_buffers()

    def address(flows):
        dh = flows["dh"]
        return (dh[0] if isinstance(dh, list) else dh).__array_interface__["data"][0]

    def check(got, want):
        for key in want:
            if isinstance(want[key], list):
                for a, b in zip(got[key], want[key]):
                    np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_array_equal(got[key], want[key])

    # held directly: the next call returns other memory, the first is unchanged
    first = _flows(net, X, Y, **kw)
    second = _flows(net, scaled(0.5), Y, **kw)
    assert address(second) != address(first)
    check(first, expected[0])
    check(second, expected[1])
    # held through a view, a dict, or only a weak reference: not recycled
    for hold in (lambda f: f["dh"][..., :1] if not isinstance(f["dh"], list) else f["dh"],
                 lambda f: {"kept": f["dh"]},
                 lambda f: f):
        kept = hold(first)
        spent = address(first)
        del first
        first = _flows(net, X, Y, **kw)
        assert address(first) != spent
        check(first, expected[0])
        del kept
    # the last array returned, referred to only weakly: freed, not overwritten
    del second
    third = _flows(net, scaled(2.0), Y, **kw)
    check(third, expected[2])
    if not ragged:
        ref = weakref.ref(third["dh"])
        del third
        third = _flows(net, scaled(2.0), Y, **kw)
        assert ref() is None
        check(third, expected[2])
    # dropped: recycled (the list form copies per sequence, so arrays only)
    spent = address(third)
    del third
    again = _flows(net, scaled(0.5), Y, **kw)
    check(again, expected[1])
    if not ragged and _bptt._COUNTS_REFERENCES:
        assert address(again) == spent
    assert {k: v.dtype for k, v in again.items() if not isinstance(v, list)} == {
        k: v.dtype for k, v in expected[1].items() if not isinstance(v, list)}
    # recycled after a call that wrote every timestep: truncation's zeros again
    del again
    _flows(net, scaled(0.5), Y, **{**kw, "truncate": None})
    check(_flows(net, scaled(0.5), Y, **kw), expected[1])


def test_release_buffers_and_pickle_drop_the_recycled_state_grads():
    import pickle
    net, X, y, h0 = _problem("gru", "tanh", "mse", "sequence", n=4, T=9)
    _flows(net, X, y, h0=h0)
    assert net.__dict__.get("_returned")
    assert "_returned" not in net.__getstate__()
    assert pickle.loads(pickle.dumps(net)).__dict__.get("_returned") is None
    net.release_buffers()
    assert "_returned" not in net.__dict__


def test_return_state_grads_must_be_a_bool():
    net, X, y, _ = _problem("rnn", "tanh", "mse", "sequence")
    with pytest.raises(TypeError, match="return_state_grads must be True or False"):
        net.loss_and_grad(X, y, return_state_grads="yes")


# ------------------------------------------------------------- the kernels

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_kernels_check_the_state_gradient_shapes(cell, backend):
    """dh_out (and dc_out) have the hidden states' shape, else a ValueError
    naming the argument (the compiled kernels) before anything is written."""
    from bptt._kernels import load_kernels
    k = load_kernels(backend, bptt._cells.CELLS[cell].kernel)
    G = bptt._cells.CELLS[cell].n_gates
    layout = () if backend == "numpy" else (1, 1, 0)  # the reference has no layout
    T, B, I, H = 4, 2, 3, 5
    rng = np.random.default_rng(0)
    X = rng.standard_normal((T, B, I))
    W_xh, W_hh = rng.standard_normal((G * H, I)), rng.standard_normal((G * H, H))
    b_h, h0 = np.zeros(G * H), np.zeros((B, H))
    grads = (np.empty((G * H, I)), np.empty((G * H, H)), np.empty(G * H))
    bad = np.empty((T, B, H + 1))

    def run(dh_out, dc_out=None):
        dH = rng.standard_normal((T, B, H))
        if cell == "rnn":
            Hs = np.empty((T, B, H))
            k.elman_forward(X, W_xh, W_hh, b_h, h0, False, Hs)
            k.elman_backward(X, W_xh, W_hh, h0, Hs, dH, False, 0, *grads, np.empty((B, H)),
                             False, None, *layout, dh_out=dh_out)
        elif cell == "lstm":
            cache = np.empty((T, B, 4 * H)), np.empty((T, B, H)), np.empty((T, B, H))
            k.lstm_forward(X, W_xh, W_hh, b_h, h0, h0, *cache)
            k.lstm_backward(X, W_xh, W_hh, h0, h0, *cache, dH, 0, *grads,
                            np.empty((B, H)), np.zeros((B, H)), False, None, *layout,
                            dh_out=dh_out, dc_out=dc_out)
        else:
            cache = np.empty((T, B, 3 * H)), np.empty((T, B, H)), np.empty((T, B, H))
            k.gru_forward(X, W_xh, W_hh, b_h, np.zeros(H), h0, *cache,
                          np.empty((B, 3 * H)))
            k.gru_backward(X, W_xh, W_hh, h0, *cache, dH, 0, *grads, np.empty(H),
                           np.empty((B, H)), False, None, *layout, dh_out=dh_out)
        return dH

    dh_out = np.full((T, B, H), np.nan)
    run(dh_out)
    assert np.isfinite(dh_out).all()
    # the time-major view of a batch-first array, as the driver passes it
    batch_first = np.full((B, T, H), np.nan)
    dc_first = np.full((B, T, H), np.nan)
    run(batch_first.transpose(1, 0, 2), dc_first.transpose(1, 0, 2))
    assert np.isfinite(batch_first).all()
    if cell == "lstm":
        assert np.isfinite(dc_first).all()
    if backend == "cython":
        with pytest.raises(ValueError, match="dh_out"):
            run(bad)
        with pytest.raises(ValueError, match="dh_out must have contiguous rows"):
            run(np.empty((T, B, 2 * H))[:, :, ::2])
        if cell == "lstm":
            with pytest.raises(ValueError, match="dc_out"):
                run(np.empty((T, B, H)), bad)
            with pytest.raises(ValueError, match="dc_out must have dh_out's strides"):
                run(np.empty((T, B, H)), np.empty((B, T, H)).transpose(1, 0, 2))


# ------------------------------------------- layers, directions, ragged input

def torch_layered_state_grads(net, Xs, y, *, loss, output, truncate, h0, masks=None,
                              rows_of=None):
    """dL/dh and dL/dc (lists over sequences of (num_layers*D, T_i, H)) by
    PyTorch autograd, one sequence at a time from the contract's equations.

    Every layer and direction is run step by step so each h_t is a tensor
    of its own (``retain_grad``); the backward direction starts at each
    sequence's own last timestep; with ``truncate=k`` the state is detached
    at every boundary m*k of the absolute timeline, in both directions.
    ``masks`` (the dropout masks the driver drew, packed rows) with
    ``rows_of[i][t]`` the packed row of sequence i's timestep t.
    """
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    p = {k: torch.tensor(np.array(v, dtype=np.float64), requires_grad=True)
         for k, v in net.params.items()}
    H, L, D = net.hidden_size, net.num_layers, 2 if net.bidirectional else 1
    lstm = net.cell == "lstm"
    if h0 is not None and L * D == 1:
        h0 = tuple(a[None] for a in h0) if lstm else h0[None]
    hs = [[[None] * len(x) for _ in range(L * D)] for x in Xs]
    cs = [[[None] * len(x) for _ in range(L * D)] for x in Xs]
    tops = []

    def step(x, h, c, q):
        if net.cell == "rnn":
            a = x @ q["W_xh"].T + h @ q["W_hh"].T + q["b_h"]
            return (torch.tanh(a) if net.nonlinearity == "tanh" else torch.relu(a)), None
        if lstm:
            a = x @ q["W_xh"].T + h @ q["W_hh"].T + q["b_h"]
            i, f, g, o = a.split(H)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        a = x @ q["W_xh"].T + q["b_h"]
        gh = h @ q["W_hh"].T
        r = torch.sigmoid(a[:H] + gh[:H])
        z = torch.sigmoid(a[H:2 * H] + gh[H:2 * H])
        nn_ = torch.tanh(a[2 * H:] + r * (gh[2 * H:] + q["b_hn"]))
        return (1 - z) * nn_ + z * h, None

    for i, x in enumerate(Xs):
        Ti = len(x)
        inp = [row for row in torch.from_numpy(np.asarray(x, dtype=np.float64))]
        for layer in range(L):
            outs = [[] for _ in range(Ti)]
            for d in range(D):
                r = layer * D + d
                sfx = ("" if layer == 0 else f"_l{layer}") + ("_reverse" if d else "")
                q = {k: p[k + sfx] for k in ("W_xh", "W_hh", "b_h", "b_hn") if k + sfx in p}
                if h0 is None:
                    h, c = torch.zeros(H, dtype=torch.float64), torch.zeros(H, dtype=torch.float64)
                elif lstm:
                    h, c = (torch.from_numpy(np.array(s[r, i])) for s in h0)
                else:
                    h, c = torch.from_numpy(np.array(h0[r, i])), None
                times = range(Ti) if d == 0 else range(Ti - 1, -1, -1)
                for t in times:
                    boundary = t if d == 0 else t + 1
                    if truncate and 0 < boundary < Ti and boundary % truncate == 0:
                        h = h.detach()
                        c = c.detach() if c is not None else None
                    h, c = step(inp[t], h, c, q)
                    h.retain_grad()
                    hs[i][r][t] = h
                    if lstm:
                        c.retain_grad()
                        cs[i][r][t] = c
                    outs[t].append(h)
            inp = [torch.cat(o) for o in outs]
            if masks is not None and layer < L - 1:
                inp = [o * torch.from_numpy(masks[layer][rows_of[i][t]])
                       for t, o in enumerate(inp)]
        if output == "sequence":
            tops.append(torch.stack(inp))
        elif output == "last":
            tops.append(torch.cat([inp[-1][:H], inp[0][H:]])[None] if D == 2 else inp[-1][None])
        else:
            tops.append(torch.stack(inp).mean(dim=0, keepdim=True))
    z = torch.cat(tops) @ p["W_oh"].T + p["b_o"]
    if output == "sequence":
        target = np.concatenate([np.asarray(t).reshape(len(x), -1)
                                 for t, x in zip(y, Xs)])
    else:
        target = np.asarray(y)
    target = torch.from_numpy(target)
    if loss == "cross_entropy":
        value = F.cross_entropy(z, target.reshape(-1).long())
    else:
        value = F.mse_loss(z, target.reshape(z.shape).double())
    value.backward()

    def grads_of(states):
        return [np.stack([np.stack([s.grad.numpy() if s.grad is not None else np.zeros(H)
                                    for s in run]) for run in seq]) for seq in states]

    return value.item(), grads_of(hs), grads_of(cs) if lstm else None


def _layered_problem(cell, nonlinearity, loss, output, lengths, *, layers, bidirectional,
                     backend="cython", dropout=0.0, I=2, H=3, O=2, seed=0):
    rng = np.random.default_rng(seed)
    net = bptt.RNN(I, H, O, cell=cell, nonlinearity=nonlinearity, num_layers=layers,
                   bidirectional=bidirectional, dropout=dropout,
                   output_activation=LOSS_ACTIVATION[loss], backend=backend,
                   random_state=seed)
    # weights large enough that the flow neither vanishes nor is trivial
    net.params = {k: v * 1.5 for k, v in net.params.items()}
    Xs = [rng.standard_normal((L, I)) for L in lengths]
    n = len(lengths)
    if output == "sequence":
        y = ([rng.integers(0, O, L) for L in lengths] if loss == "cross_entropy"
             else [rng.standard_normal((L, O)) for L in lengths])
    else:
        y = rng.integers(0, O, n) if loss == "cross_entropy" else rng.standard_normal((n, O))
    LD = layers * (2 if bidirectional else 1)
    h0 = rng.standard_normal((LD, n, H))
    if cell == "lstm":
        h0 = (h0, rng.standard_normal((LD, n, H)))
    if LD == 1:  # the contract's (n, H)
        h0 = tuple(a[0] for a in h0) if cell == "lstm" else h0[0]
    return net, Xs, y, h0


def _padded(arrays, width, fill=np.nan):
    out = np.full((len(arrays), width, *arrays[0].shape[1:]), fill)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
    return out


LAYERED = [(1, True), (2, False), (2, True), (3, False)]


@pytest.mark.parametrize("output,loss,truncate", [
    ("sequence", "mse", None), ("sequence", "mse", 2), ("sequence", "cross_entropy", 3),
    ("last", "mse", 2), ("mean", "cross_entropy", 3)])
@pytest.mark.parametrize("layers,bidirectional", LAYERED)
@pytest.mark.parametrize("cell,nonlinearity", CELLS)
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_layered_ragged_state_grads_equal_torch(backend, cell, nonlinearity, layers,
                                                bidirectional, output, loss, truncate):
    lengths = [7, 4, 7, 1, 5]
    net, Xs, y, h0 = _layered_problem(cell, nonlinearity, loss, output, lengths,
                                      layers=layers, bidirectional=bidirectional,
                                      backend=backend)
    value, _, flow = net.loss_and_grad(Xs, y, loss=loss, output=output,
                                       truncate=truncate, h0=h0, return_state_grads=True)
    ref_value, dh, dc = torch_layered_state_grads(net, Xs, y, loss=loss, output=output,
                                                  truncate=truncate, h0=h0)
    assert value == pytest.approx(ref_value, rel=1e-10)
    LD = layers * (2 if bidirectional else 1)
    assert isinstance(flow["dh"], list) and len(flow["dh"]) == len(lengths)
    for key, ref in (("dh", dh), ("dc", dc)):
        if ref is None:
            assert key not in flow
            continue
        scale = max(np.abs(r).max() for r in ref)
        for got, want, L in zip(flow[key], ref, lengths):
            assert got.shape == ((L, net.hidden_size) if LD == 1 else (LD, L, net.hidden_size))
            np.testing.assert_allclose(got if LD > 1 else got[None], want, rtol=1e-7,
                                       atol=1e-12 * scale)
        # the norms: per timestep, averaged over the sequences that reach it
        norms = flow[key + "_norm"]
        T = max(lengths)
        assert norms.shape == ((T,) if LD == 1 else (LD, T))
        expected = np.stack([
            np.mean([np.linalg.norm(r[:, t], axis=-1) for r in ref if r.shape[1] > t], axis=0)
            for t in range(T)], axis=-1)
        np.testing.assert_allclose(norms, expected.reshape(norms.shape), rtol=1e-9,
                                   atol=1e-12 * scale)


@pytest.mark.parametrize("output,loss,truncate", [
    ("sequence", "mse", None), ("sequence", "cross_entropy", 3), ("last", "mse", 2),
    ("mean", "cross_entropy", 4)])
@pytest.mark.parametrize("layers,bidirectional", LAYERED)
@pytest.mark.parametrize("cell,nonlinearity", CELLS)
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_layered_equal_length_state_grads_equal_torch(monkeypatch, backend, cell,
                                                      nonlinearity, layers, bidirectional,
                                                      output, loss, truncate):
    """Sequences of one length: the kernels write the state gradients by
    step straight into the returned (num_layers*D, n, T, H) arrays (a
    reverse run's through a reversed view), on one thread and with the
    batch in two groups of sequences (2 threads); the same as autograd."""
    from threadpoolctl import threadpool_limits
    lengths = [6] * 5
    net, Xs, y, h0 = _layered_problem(cell, nonlinearity, loss, output, lengths,
                                      layers=layers, bidirectional=bidirectional,
                                      backend=backend)
    ref_value, dh, dc = torch_layered_state_grads(net, Xs, y, loss=loss, output=output,
                                                  truncate=truncate, h0=h0)
    LD = layers * (2 if bidirectional else 1)
    X, Y = np.stack(Xs), np.asarray(y)
    monkeypatch.setattr(_threads, "MIN_WORK_PER_THREAD", 1)
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            assert _bptt.plan_threads(net, threads, len(lengths)) == threads
            value, _, flow = net.loss_and_grad(X, Y, loss=loss, output=output,
                                               truncate=truncate, h0=h0,
                                               return_state_grads=True)
        assert value == pytest.approx(ref_value, rel=1e-10)
        for key, ref in (("dh", dh), ("dc", dc)):
            if ref is None:
                assert key not in flow
                continue
            want = np.stack(ref, axis=1)  # (LD, n, T, H)
            got = flow[key] if LD > 1 else flow[key][None]
            assert got.shape == want.shape
            scale = np.abs(want).max()
            np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-12 * scale,
                                       err_msg=f"{key}, {threads} threads")
            norms = flow[key + "_norm"]
            expected = np.linalg.norm(want, axis=-1).mean(axis=1)
            np.testing.assert_allclose(norms if LD > 1 else norms[None], expected,
                                       rtol=1e-9, atol=1e-12 * scale)


@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_state_grads_padded_and_equal_length_forms(cell, layers, bidirectional, truncate):
    """NaN-padded input gets NaN-padded state gradients; equal-length
    stacked/bidirectional input (num_layers*D, n, T, H) arrays; the same
    numbers as the list form."""
    lengths = [6, 3, 6, 2]
    net, Xs, y, h0 = _layered_problem(cell, "tanh", "mse", "sequence", lengths,
                                      layers=layers, bidirectional=bidirectional)
    kw = dict(truncate=truncate, h0=h0, return_state_grads=True)
    _, _, as_list = net.loss_and_grad(Xs, y, **kw)
    width = 8
    _, _, padded = net.loss_and_grad(_padded(Xs, width), _padded(y, width), **kw)
    LD = layers * (2 if bidirectional else 1)
    dh = padded["dh"] if LD > 1 else padded["dh"][None]
    assert dh.shape == (LD, len(lengths), width, net.hidden_size)
    for i, L in enumerate(lengths):
        got = as_list["dh"][i] if LD > 1 else as_list["dh"][i][None]
        np.testing.assert_array_equal(dh[:, i, :L], got)
        assert np.isnan(dh[:, i, L:]).all()
    assert padded["dh_norm"].shape[-1] == max(lengths)
    np.testing.assert_array_equal(padded["dh_norm"], as_list["dh_norm"])
    # equal lengths: arrays, the same numbers as one sequence at a time
    Xe = np.stack([x[:2] for x in Xs])
    ye = np.stack([t[:2] for t in y])
    _, _, whole = net.loss_and_grad(Xe, ye, **kw)
    _, _, pieces = net.loss_and_grad(list(Xe), list(ye), **kw)
    shape = (len(lengths), 2, net.hidden_size)
    assert whole["dh"].shape == (shape if LD == 1 else (LD, *shape))
    np.testing.assert_allclose(whole["dh"], np.stack(pieces["dh"], axis=-3), rtol=1e-12,
                               atol=1e-15)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_state_grads_with_dropout_equal_torch(monkeypatch, cell):
    """With dropout, dL/dh is the gradient of the layer's output before its
    mask; the masks are those the driver drew in this call."""
    lengths = [5, 3, 5]
    net, Xs, y, h0 = _layered_problem(cell, "tanh", "mse", "sequence", lengths, layers=3,
                                      bidirectional=True, dropout=0.4)
    drawn = []
    real = _bptt.draw_masks

    def record(net_, rows, rng=None):
        masks = real(net_, rows, rng)
        drawn.append(masks)
        return masks

    monkeypatch.setattr(_bptt, "draw_masks", record)
    _, _, flow = net.loss_and_grad(Xs, y, truncate=2, h0=h0, return_state_grads=True)
    lay = _bptt.Layout(np.array(lengths))
    position = np.argsort(lay.order)
    rows_of = [[int(lay.offsets[t] + position[i]) for t in range(L)]
               for i, L in enumerate(lengths)]
    _, dh, dc = torch_layered_state_grads(net, Xs, y, loss="mse", output="sequence",
                                          truncate=2, h0=h0, masks=drawn[0],
                                          rows_of=rows_of)
    for key, ref in (("dh", dh), ("dc", dc)):
        if ref is None:
            continue
        for got, want in zip(flow[key], ref):
            np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-12)


# ------------------------------------------------- the norms of the rows

def _kernel_backward(k, cell, X, p, h0, dH, layout, *, dh_out=None, dc_out=None,
                     norms_out=None, norm_means=None):
    """A cell's kernels forward then backward on X (T, B, I), dH consumed."""
    T, B, _ = X.shape
    H = p["W_hh"].shape[1]
    dt = X.dtype
    grads = tuple(np.empty_like(p[name]) for name in ("W_xh", "W_hh", "b_h"))
    outs = dict(dh_out=dh_out, norms_out=norms_out, norm_means=norm_means)
    if cell == "rnn":
        Hs = np.empty((T, B, H), dt)
        k.elman_forward(X, p["W_xh"], p["W_hh"], p["b_h"], h0, False, Hs, *layout)
        k.elman_backward(X, p["W_xh"], p["W_hh"], h0, Hs, dH, False, 0, *grads,
                         np.empty((B, H), dt), False, None, *layout, **outs)
    elif cell == "lstm":
        cache = np.empty((T, B, 4 * H), dt), np.empty((T, B, H), dt), np.empty((T, B, H), dt)
        k.lstm_forward(X, p["W_xh"], p["W_hh"], p["b_h"], h0, h0, *cache, *layout)
        k.lstm_backward(X, p["W_xh"], p["W_hh"], h0, h0, *cache, dH, 0, *grads,
                        np.empty((B, H), dt), np.ones((B, H), dt), False, None, *layout,
                        dc_out=dc_out, **outs)
    else:
        cache = np.empty((T, B, 3 * H), dt), np.empty((T, B, H), dt), np.empty((T, B, H), dt)
        k.gru_forward(X, p["W_xh"], p["W_hh"], p["b_h"], p["b_hn"], h0, *cache,
                      np.empty((B, 3 * H), dt), *layout)
        k.gru_backward(X, p["W_xh"], p["W_hh"], h0, *cache, dH, 0, *grads,
                       np.empty(H, dt), np.empty((B, H), dt), False, None, *layout, **outs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_kernels_write_the_norms_of_the_state_gradient_rows(cell, dtype):
    """norms_out[k, t, b] is the L2 norm (float64) of row b of dh_out[t]
    (k = 0) and of the LSTM's dc_out[t] (k = 1), norm_means[k, t] their mean
    over the rows: in the reference, and in the compiled kernels equal to
    it, serial and with the batch split over 2 threads, written through any
    strides (transposed views here); float32 rows of 1e20 (squares beyond
    float32) give finite norms."""
    from bptt._kernels import load_kernels
    spec = bptt._cells.CELLS[cell]
    S = 2 if cell == "lstm" else 1
    T, B, I, H = 6, 5, 3, 7
    rng = np.random.default_rng(4)
    p = {"W_xh": rng.normal(0, 0.5, (spec.n_gates * H, I)),
         "W_hh": rng.normal(0, 0.5, (spec.n_gates * H, H)),
         "b_h": rng.normal(0, 0.5, spec.n_gates * H), "b_hn": rng.normal(0, 0.5, H)}
    p = {name: value.astype(dtype) for name, value in p.items()}
    X = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    for scale in (1.0, 1e20):
        dH = (scale * rng.standard_normal((T, B, H))).astype(dtype)
        results = {}
        for backend, layout in (("numpy", ()), ("cython", (1, 1, 0)), ("cython", (2, 1, 0))):
            k = load_kernels(backend, spec.kernel)
            outs = [np.full((T, B, H), np.nan, dtype) for _ in range(S)]
            norms = np.full((S, B, T), np.nan).transpose(0, 2, 1)  # (S, T, B), strided
            means = np.full((T, S), np.nan).T  # (S, T), strided
            _kernel_backward(k, cell, X, p, h0, dH.copy(), layout, dh_out=outs[0],
                             dc_out=outs[1] if S == 2 else None, norms_out=norms,
                             norm_means=means)
            for a, got, mean in zip(outs, norms, means):
                assert np.isfinite(a).all() and np.isfinite(got).all()
                expected = np.linalg.norm(a.astype(np.float64), axis=2)
                np.testing.assert_allclose(got, expected, rtol=1e-13)
                np.testing.assert_allclose(mean, expected.mean(axis=1), rtol=1e-13)
            results[backend, layout] = outs, norms, means
        ref_outs, ref_norms, ref_means = results["numpy", ()]
        rtol = 1e-10 if dtype == np.float64 else 1e-4
        for outs, norms, means in results.values():
            for a, ref in zip((*outs, norms, means), (*ref_outs, ref_norms, ref_means)):
                np.testing.assert_allclose(a, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_kernels_check_norms_out(cell):
    """norms_out is float64 (states, >= T, B) and needs dh_out (the norms are
    of its rows), else a ValueError naming it before anything is written."""
    from bptt._kernels import load_kernels
    spec = bptt._cells.CELLS[cell]
    k = load_kernels("cython", spec.kernel)
    T, B, I, H = 4, 3, 2, 5
    rng = np.random.default_rng(5)
    p = {"W_xh": rng.normal(0, 0.5, (spec.n_gates * H, I)),
         "W_hh": rng.normal(0, 0.5, (spec.n_gates * H, H)),
         "b_h": np.zeros(spec.n_gates * H), "b_hn": np.zeros(H)}
    X, h0 = rng.standard_normal((T, B, I)), np.zeros((B, H))
    S = 2 if cell == "lstm" else 1
    dc = {"dc_out": np.empty((T, B, H))} if cell == "lstm" else {}

    def run(norms_out, **outs):
        _kernel_backward(k, cell, X, p, h0, rng.standard_normal((T, B, H)), (1, 1, 0),
                         norms_out=norms_out, **outs)

    longer = np.full((S, T + 2, B), -1.0)  # more steps than T: the first T written
    means = np.full((S, T + 1), -1.0)
    run(longer, dh_out=np.empty((T, B, H)), norm_means=means, **dc)
    assert (longer[:, :T] >= 0).all() and (longer[:, T:] == -1).all()
    np.testing.assert_allclose(means[:, :T], longer[:, :T].mean(axis=2), rtol=1e-13)
    assert (means[:, T:] == -1).all()
    with pytest.raises(ValueError, match="norms_out needs dh_out"):
        run(np.empty((S, T, B)))
    with pytest.raises(ValueError, match="norm_means needs norms_out"):
        run(None, dh_out=np.empty((T, B, H)), norm_means=np.empty((S, T)), **dc)
    for bad in [(S, T - 1), (S + 1, T)]:
        with pytest.raises(ValueError, match=r"norm_means must have shape"):
            run(np.empty((S, T, B)), dh_out=np.empty((T, B, H)), norm_means=np.empty(bad),
                **dc)
    for bad in [(S, T - 1, B), (S, T, B + 1), (S + 1, T, B)]:
        with pytest.raises(ValueError, match=r"norms_out must have shape"):
            run(np.empty(bad), dh_out=np.empty((T, B, H)), **dc)
    if cell == "lstm":
        # without dc_out, the norms of dh_out's rows only
        run(np.empty((1, T, B)), dh_out=np.empty((T, B, H)))
        with pytest.raises(ValueError, match=r"norms_out must have shape \(1, "):
            run(np.empty((2, T, B)), dh_out=np.empty((T, B, H)))
    with pytest.raises(ValueError, match="Buffer dtype mismatch"):
        run(np.empty((S, T, B), np.float32), dh_out=np.empty((T, B, H)), **dc)
