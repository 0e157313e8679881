"""The cells' packed-segments mode (src/_cellparts.pxd, "segments"): one
compiled kernel call runs a whole run of sequences of different lengths,
looping the layout's segments (forward) and pieces (backward) in C.

The NumPy reference loops the same tables in the binding
(CellBinding.run_forward / run_backward), one call per segment, passing the
state and its gradient between them as the driver did: that loop is the
plain maths, and the compiled single call must match it on every layout.
"""

import numpy as np
import pytest

import bptt
from bptt import _bptt, _cells

from helpers import CELL_NONLINEARITIES, HAS_CELL_STATE

# (lengths, truncate, reverse): n = 1, T_i = 1, one long sequence among
# short ones, equal lengths (one segment), truncation forward and reversed
# (cuts of every row, and cuts by mask when the lengths' phases differ)
LAYOUTS = [
    ([1], 0, False),
    ([7], 0, False),
    ([7], 3, True),
    ([1, 1, 1], 0, False),
    ([5, 1, 3, 1, 2], 0, False),
    ([20, 2, 1, 3, 2], 0, False),
    ([6, 6, 6, 6], 0, False),
    ([6, 6, 6, 6], 2, False),
    ([9, 4, 7, 2, 7, 1], 3, False),
    ([9, 4, 7, 2, 7, 1], 3, True),
    ([11, 10, 8, 5, 5, 3], 2, True),
    ([8, 8, 4, 4], 4, True),
]


def _problem(cell, lengths, dtype, I=3, H=4, seed=0, groups=1):
    """A binding pair (compiled, reference), parameters, the layout (in
    ``groups`` groups of sequences: Layout.grouped), packed X and a state0
    by position, all of ``dtype``."""
    spec = _cells.CELLS[cell]
    rng = np.random.default_rng(seed)
    lay = _bptt.Layout(np.array(lengths)).grouped(groups)
    G = spec.n_gates
    p = {"W_xh": rng.uniform(-0.6, 0.6, (G * H, I)), "W_hh": rng.uniform(-0.6, 0.6, (G * H, H)),
         "b_h": rng.uniform(-0.3, 0.3, G * H)}
    for name in spec.extra_params:
        p[name] = rng.uniform(-0.3, 0.3, H)
    p = {k: v.astype(dtype) for k, v in p.items()}
    X = rng.standard_normal((lay.rows, I)).astype(dtype)
    state0 = spec.state_of([0.5 * rng.standard_normal((lay.n, H)).astype(dtype)
                            for _ in spec.state])
    return spec, lay, p, X, state0, rng


def _bindings(spec, nonlinearity):
    return spec.bind("cython", nonlinearity), spec.bind("numpy", nonlinearity)


def _states(spec, state):
    return spec.state_arrays(state)


def _run(cell_obj, spec, lay, p, X, state0, dH, pieces, accumulate, n_threads, with_dX,
         with_flow, with_norms, grads0, dtype):
    """Forward then backward of one run through ``cell_obj``; everything
    the kernels write."""
    H = p["W_hh"].shape[1]
    cache = cell_obj.allocate(lay.rows, 1, H, dtype)
    cell_obj.run_forward(X, p, state0, cache, lay.segment_table, n_threads)
    after = tuple(a.copy() for a in cache)
    grads = {k: v.copy() for k, v in grads0.items()}
    dX = np.full((lay.rows, X.shape[1]), np.nan, dtype) if with_dX else None
    states = len(spec.state)
    flow = None
    if with_flow:
        flow = tuple(np.full((lay.rows, H), np.nan, dtype) for _ in range(states))
        if with_norms:
            flow += (np.full((states, lay.rows), np.nan),)
    dstate0 = cell_obj.run_backward(X, p, state0, cache, dH.copy(), pieces, lay.sorted_lengths,
                                    grads, accumulate, n_threads, dX, flow)
    return after, grads, dX, flow, dstate0


def _close(a, b, rtol, atol, what):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def every_layout(test):
    """Parametrize ``test`` over every layout, cell, dtype and 1 to 3
    groups of sequences."""
    for mark in (pytest.mark.parametrize("groups", [1, 2, 3]),
                 pytest.mark.parametrize("dtype", ["float64", "float32"]),
                 pytest.mark.parametrize("cell,nonlinearity", CELL_NONLINEARITIES),
                 pytest.mark.parametrize("lengths,truncate,reverse", LAYOUTS)):
        test = mark(test)
    return test


@every_layout
def test_segments_match_the_reference(cell, nonlinearity, lengths, truncate, reverse, dtype,
                                      groups):
    """One compiled call per run against the reference's call per segment:
    caches, gradients (written and accumulated), dX, dL/dstate0, the state
    gradients and their norms, on 1 and 2 threads; the batch in 1 to 3
    groups of sequences (src/_cellparts.pxd, "groups"), which the kernels
    run one per thread."""
    spec, lay, p, X, state0, rng = _problem(cell, lengths, dtype, groups=groups)
    compiled, reference = _bindings(spec, nonlinearity)
    H = p["W_hh"].shape[1]
    dH = rng.standard_normal((lay.rows, H)).astype(dtype)
    pieces = lay.pieces(truncate, reverse)
    grads0 = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in p.items()}
    # the reference in float64 on the same values
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    s64 = spec.state_of([a.astype(np.float64) for a in _states(spec, state0)])
    g64 = {k: v.astype(np.float64) for k, v in grads0.items()}
    rtol, atol = (1e-12, 1e-13) if dtype == "float64" else (1e-4, 1e-4)
    for accumulate, n_threads, with_dX, with_flow, with_norms in [
            (False, 1, True, True, True), (True, 2, False, True, False),
            (False, 2, True, False, False), (True, 1, True, True, True)]:
        want = _run(reference, spec, lay, p64, X.astype(np.float64), s64,
                    dH.astype(np.float64), pieces, accumulate, 1, with_dX, with_flow,
                    with_norms, g64, np.float64)
        got = _run(compiled, spec, lay, p, X, state0, dH, pieces, accumulate, n_threads,
                   with_dX, with_flow, with_norms, grads0, dtype)
        tag = f"accumulate={accumulate} n_threads={n_threads}"
        for k, (a, b) in enumerate(zip(got[0], want[0])):
            _close(a, b, rtol, atol, f"cache[{k}] {tag}")
        for name in p:
            _close(got[1][name], want[1][name], rtol, atol, f"d{name} {tag}")
        if with_dX:
            _close(got[2], want[2], rtol, atol, f"dX {tag}")
        if with_flow:
            for k, (a, b) in enumerate(zip(got[3], want[3])):
                _close(a, b, rtol, atol, f"dstate_out[{k}] {tag}")
        for a, b in zip(_states(spec, got[4]), _states(spec, want[4])):
            _close(a, b, rtol, atol, f"dstate0 {tag}")


@every_layout
def test_state_gradients_by_step(cell, nonlinearity, lengths, truncate, reverse, dtype,
                                 groups):
    """dstate_out by step (src/_cellparts.pxd, "segments"): each row lands
    at (its timestep, its position) of (steps, n, H) arrays and their norms
    at the same place of (states, steps, n), through the strided views of
    batch-first arrays with a spare timestep, steps forward or reversed
    (a negative stride), on 1 and 2 threads and in 1 to 3 groups; equal to
    the packed rows the same call writes, compiled and reference alike,
    and nothing else is written. When every sequence runs every step, the
    norms' means over the sequences too (norm_means); else they are
    refused."""
    spec, lay, p, X, state0, rng = _problem(cell, lengths, dtype, groups=groups)
    H, S, W = p["W_hh"].shape[1], len(spec.state), lay.T + 1
    dH = rng.standard_normal((lay.rows, H)).astype(dtype)
    pieces = lay.pieces(truncate, reverse)
    grads0 = {k: np.zeros_like(v) for k, v in p.items()}
    compiled, reference = _bindings(spec, nonlinearity)
    packed = _run(compiled, spec, lay, p, X, state0, dH, pieces, False, 1, False, True, True,
                  grads0, dtype)[3]
    want = [np.full((W, lay.n, H), np.nan, dtype) for _ in range(S)]
    want_norms = np.full((S, W, lay.n), np.nan)
    for k in range(S):
        want[k][lay.t_of_row, lay.j_of_row] = packed[k]
    want_norms[:, lay.t_of_row, lay.j_of_row] = packed[S]
    for binding, n_threads, steps in [(compiled, 1, 1), (compiled, 2, -1),
                                      (reference, 1, -1), (compiled, 2, 1)]:
        full = [np.full((lay.n, W, H), np.nan, dtype) for _ in range(S)]
        norms = np.full((S, lay.n, W), np.nan)
        means = np.full((S, W), np.nan)
        flow = (*[a.transpose(1, 0, 2)[::steps] for a in full],
                norms.transpose(0, 2, 1)[:, ::steps], means[:, ::steps])
        cache = binding.allocate(lay.rows, 1, H, dtype)
        binding.run_forward(X, p, state0, cache, lay.segment_table, n_threads)

        def backward(flow):
            binding.run_backward(X, p, state0, cache, dH.copy(), pieces, lay.sorted_lengths,
                                 {k: v.copy() for k, v in grads0.items()}, False, n_threads,
                                 None, flow)

        tag = f"{binding.__class__.__name__} n_threads={n_threads} steps={steps}"
        if lay.uniform:
            backward(flow)
            _close(flow[S + 1][:, :lay.T], flow[S][:, :lay.T].mean(axis=-1), 1e-12, 0,
                   f"norm_means {tag}")
            assert np.isnan(flow[S + 1][:, lay.T:]).all()
        else:
            with pytest.raises(ValueError, match="every sequence running every step"):
                backward(flow)
            backward(flow[:-1])
        # float32: other threads split the rows' products otherwise
        rtol = 1e-12 if dtype == "float64" else 1e-5 if binding is compiled else 1e-4
        for k in range(S):
            _close(flow[k], want[k], rtol, rtol, f"dstate_out[{k}] {tag}")
        _close(flow[S], want_norms, rtol, rtol, f"norms {tag}")


def test_state_gradients_by_step_are_checked():
    """By step, dh_out has h0's rows as its second dimension and at least
    the table's timesteps; norms_out follows it."""
    spec, lay, p, X, state0, _ = _problem("rnn", [3, 2, 1], "float64")
    from bptt import _elman
    H = 4
    cache = np.zeros((lay.rows, 1, H))
    _elman.elman_forward(X[:, None], p["W_xh"], p["W_hh"], p["b_h"], state0, False, cache,
                         1, 1, 0, lay.segment_table)
    args = (X[:, None], p["W_xh"], p["W_hh"], state0, cache, np.zeros((lay.rows, 1, H)),
            False)
    grads = (np.empty_like(p["W_xh"]), np.empty_like(p["W_hh"]), np.empty_like(p["b_h"]),
             np.empty_like(state0))
    pieces = lay.pieces(0, False)
    _elman.elman_backward(*args, 0, *grads, dh_out=np.zeros((3, 3, H)),
                          norms_out=np.zeros((1, 3, 3)), segments=pieces)
    with pytest.raises(ValueError, match=r"packed rows, shape \(6, 1, 4\), or by step, "
                                         r"shape \(3 or more, 3, 4\)"):
        _elman.elman_backward(*args, 0, *grads, dh_out=np.zeros((3, 2, H)), segments=pieces)
    with pytest.raises(ValueError, match=r"dh_out must have shape \(3, 3, 4\) \(or more rows\)"):
        _elman.elman_backward(*args, 0, *grads, dh_out=np.zeros((2, 3, H)), segments=pieces)
    with pytest.raises(ValueError, match=r"norms_out must have shape \(1, 3 or more, 3\)"):
        _elman.elman_backward(*args, 0, *grads, dh_out=np.zeros((3, 3, H)),
                              norms_out=np.zeros((1, 6, 1)), segments=pieces)


@pytest.mark.parametrize("cell,nonlinearity", CELL_NONLINEARITIES)
def test_equal_lengths_are_the_plain_call(cell, nonlinearity):
    """With equal lengths the table is one segment: the packed call is the
    time-major call on the same rows, bit for bit."""
    spec, lay, p, X, state0, rng = _problem(cell, [5, 5, 5], "float64")
    compiled, _ = _bindings(spec, nonlinearity)
    H = p["W_hh"].shape[1]
    packed = compiled.allocate(lay.rows, 1, H, np.float64)
    compiled.run_forward(X, p, state0, packed, lay.segment_table)
    plain = compiled.allocate(5, 3, H, np.float64)
    compiled.forward(X.reshape(5, 3, -1), p, state0, plain)
    for a, b in zip(packed, plain):
        np.testing.assert_array_equal(a.reshape(b.shape), b)
    dH = rng.standard_normal((lay.rows, H))
    g1 = {k: np.empty_like(v) for k, v in p.items()}
    g2 = {k: np.empty_like(v) for k, v in p.items()}
    d1 = compiled.run_backward(X, p, state0, packed, dH.copy(), lay.pieces(2, False),
                               lay.sorted_lengths, g1)
    d2 = compiled.backward(X.reshape(5, 3, -1), p, state0, plain, dH.reshape(5, 3, H).copy(),
                           None, 2, g2)
    for name in p:
        np.testing.assert_allclose(g1[name], g2[name], rtol=1e-13, atol=1e-14)
    for a, b in zip(_states(spec, d1), _states(spec, d2)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


class _Counting:
    """A kernel module whose forward and backward calls are counted."""

    def __init__(self, module, counts):
        self._module, self._counts = module, counts

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        if name.endswith("_forward") or name.endswith("_backward"):
            def counted(*args, **kwargs):
                self._counts[name] = self._counts.get(name, 0) + 1
                return attr(*args, **kwargs)
            return counted
        return attr


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("threads", [1, 2])
def test_one_kernel_call_per_run(cell, threads, monkeypatch):
    """Ragged input: every run (layer x direction) is one forward and one
    backward kernel call, however many segments its layout has (so the
    per-segment path cannot come back unnoticed); with several threads too,
    whose groups of sequences the call runs one per thread."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    lengths = [9, 2, 7, 7, 1, 5, 3, 8]
    X = [rng.standard_normal((L, 2)) for L in lengths]
    y = rng.standard_normal((len(lengths), 1))
    net = bptt.RNN(2, 16, 1, cell=cell, num_layers=2, bidirectional=True, random_state=0)
    lay = _bptt.Layout(np.array(lengths))
    assert len(lay.segments) >= 6
    counts = {}
    cell_obj = net._cell
    cell_obj.__dict__["kernels"] = _Counting(cell_obj.kernels, counts)
    try:
        # force the threads plan: the batch is too small to split by itself
        monkeypatch.setattr(_bptt, "plan_threads", lambda net, budget, n: threads)
        with threadpool_limits(limits=threads, user_api="blas"):
            net.loss_and_grad(X, y, output="last", truncate=3)
    finally:
        del cell_obj.__dict__["kernels"]
    runs = 2 * 2  # layers x directions
    kernel = _cells.CELLS[cell].kernel
    assert counts == {f"{kernel}_forward": runs, f"{kernel}_backward": runs}


def test_numpy_backend_loops_segments_in_the_binding():
    """The reference backend gets no segments argument (the plain maths,
    one call per segment)."""
    spec, lay, p, X, state0, _ = _problem("rnn", [4, 2, 1], "float64")
    _, reference = _bindings(spec, "tanh")
    cache = reference.allocate(lay.rows, 1, 4, np.float64)
    with pytest.raises(ValueError, match="reference runs one time-major batch"):
        reference.forward(X[:, None], p, state0, cache, segments=lay.segment_table)


@pytest.mark.parametrize("table,message", [
    ([[0, 1, 3, 0]], "segments cover 3 rows; X has 6"),
    ([[0, 1, 2, 0], [1, 3, 1, 3]], "does not follow"),
    ([[0, 1, 3, 0], [2, 3, 1, 3], [3, 4, 1, 4]], "does not follow"),
    ([[0, 1, 3, 0], [1, 2, 4, 3]], "does not follow"),
    ([[0, 1, 3, 0], [1, 0, 1, 3]], "does not follow"),
    ([[0, 1, 3]], "shape"),
    # groups (a row with t0 = 0 starts one): more sequences than h0 has rows,
    # or fewer
    ([[0, 2, 2, 0], [0, 2, 2, 4]], "does not follow"),
    ([[0, 3, 1, 0], [0, 3, 1, 3]], "groups start with 2 sequences in all; h0 has 3"),
])
def test_bad_segment_tables_are_refused(table, message):
    spec, lay, p, X, state0, _ = _problem("rnn", [3, 2, 1, 1][:3], "float64")
    from bptt import _elman
    assert lay.rows == 6
    H = 4
    cache = np.empty((lay.rows, 1, H))
    with pytest.raises(ValueError, match=message):
        _elman.elman_forward(X[:, None], p["W_xh"], p["W_hh"], p["b_h"], state0, False,
                             cache, 1, 1, 0, np.array(table, dtype=np.int64))


def test_bad_piece_tables_are_refused():
    spec, lay, p, X, state0, _ = _problem("rnn", [3, 2, 1], "float64")
    from bptt import _elman
    H = 4
    cache = np.zeros((lay.rows, 1, H))
    args = (X[:, None], p["W_xh"], p["W_hh"], state0, cache, np.zeros((lay.rows, 1, H)),
            False)
    grads = (np.empty_like(p["W_xh"]), np.empty_like(p["W_hh"]), np.empty_like(p["b_h"]),
             np.empty_like(state0))
    pieces = lay.pieces(0, False)
    with pytest.raises(ValueError, match="truncate must be 0"):
        _elman.elman_backward(*args, 2, *grads, segments=pieces)
    with pytest.raises(ValueError, match="norm_means takes sequences of one length"):
        _elman.elman_backward(*args, 0, *grads, dh_out=np.zeros((lay.rows, 1, H)),
                              norms_out=np.zeros((1, lay.rows, 1)),
                              norm_means=np.zeros((1, lay.rows)), segments=pieces)
    with pytest.raises(ValueError, match="shape"):
        _elman.elman_backward(*args, 0, *grads, segments=lay.segment_table)
    cut = pieces.copy()
    cut[1, 5] = 2
    with pytest.raises(ValueError, match="needs lengths"):
        _elman.elman_backward(*args, 0, *grads, segments=cut)
    with pytest.raises(ValueError, match="lengths must have shape"):
        _elman.elman_backward(*args, 0, *grads, segments=cut,
                              lengths=np.array([3, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="lengths without segments"):
        # a plain call of one sequence over the same rows
        _elman.elman_backward(*args[:3], state0[:1], *args[4:], 0, *grads[:3], grads[3][:1],
                              lengths=np.array([3, 2, 1], dtype=np.int64))
    with pytest.raises(ValueError, match=r"packed rows, shape \(rows, 1, I\)"):
        _elman.elman_backward(X.reshape(3, 2, -1), p["W_xh"], p["W_hh"], state0,
                              cache.reshape(3, 2, H), np.zeros((3, 2, H)), False, 0, *grads,
                              segments=pieces)


@pytest.mark.parametrize("lengths,truncate,reverse", LAYOUTS)
def test_piece_tables_cover_the_segments(lengths, truncate, reverse):
    """Layout.pieces refines the segments, and its cuts are where the
    absolute timeline's window boundaries are for every sequence."""
    lay = _bptt.Layout(np.array(lengths))
    pieces = lay.pieces(truncate, reverse)
    assert pieces.dtype == np.int64 and pieces.shape[1] == 6
    assert pieces[0, 0] == 0 and pieces[-1, 1] == lay.T
    np.testing.assert_array_equal(pieces[1:, 0], pieces[:-1, 1])
    for t0, t1, B, r0, k, cut in pieces.tolist():
        assert B == int(np.sum(lay.sorted_lengths > t0))
        assert r0 == lay.offsets[t0]
        Ls = lay.sorted_lengths[:B]
        # a sequence's boundary at run time t0 (reversed: absolute L - t0)
        at = (((Ls - t0) if reverse else np.full(B, t0)) % truncate == 0) if truncate \
            and truncate < lay.T else np.zeros(B, bool)
        if t0 == 0:
            assert cut == 0
        elif at.all():
            assert cut == -1
        elif at.any():
            assert cut == truncate
        else:
            assert cut == 0


@pytest.mark.parametrize("truncate,reverse", [(0, False), (7, False), (7, True), (600, True)])
@pytest.mark.parametrize("cell,nonlinearity", CELL_NONLINEARITIES)
def test_blocks_of_long_layouts_match_the_reference(cell, nonlinearity, truncate, reverse):
    """Layouts of more rows than a kernel block (src/_cellparts.pxd,
    BLOCK_ROWS backward, BLOCK_BYTES of pre-activations forward): the
    blocks' projections, weight gradients and carries (windows cut at block
    starts) add up to the reference's call per segment."""
    # a first segment of 151 x 9 rows: more than a block both ways
    lengths = [300, 250, 160, 157, 151, 170, 300, 299, 164]
    spec, lay, p, X, state0, rng = _problem(cell, lengths, "float64", I=5, H=40, seed=3)
    assert 151 * 9 > 1024 and 151 * 9 * spec.n_gates * 40 * 8 > 1 << 18
    compiled, reference = _bindings(spec, nonlinearity)
    p = {k: 0.5 * v for k, v in p.items()}  # keep 300 steps of relu finite
    dH = rng.standard_normal((lay.rows, 40))
    pieces = lay.pieces(truncate, reverse)
    grads0 = {k: rng.standard_normal(v.shape) for k, v in p.items()}
    want = _run(reference, spec, lay, p, X, state0, dH, pieces, False, 1, True, True, True,
                grads0, np.float64)
    for n_threads in (1, 2):
        got = _run(compiled, spec, lay, p, X, state0, dH, pieces, False, n_threads, True,
                   True, True, grads0, np.float64)
        for k, (a, b) in enumerate(zip(got[0], want[0])):
            _close(a, b, 1e-10, 1e-12, f"cache[{k}]")
        for name in p:
            _close(got[1][name], want[1][name], 1e-10, 1e-12, f"d{name}")
        _close(got[2], want[2], 1e-10, 1e-12, "dX")
        for k, (a, b) in enumerate(zip(got[3], want[3])):
            _close(a, b, 1e-10, 1e-12, f"dstate_out[{k}]")
        for a, b in zip(_states(spec, got[4]), _states(spec, want[4])):
            _close(a, b, 1e-10, 1e-12, "dstate0")


def test_no_hidden_units():
    """H = 0 (a direct kernel call): nothing to compute, no crash."""
    from bptt import _elman
    lay = _bptt.Layout(np.array([3, 1]))
    X = np.ones((lay.rows, 1, 2))
    H = np.empty((lay.rows, 1, 0))
    _elman.elman_forward(X, np.empty((0, 2)), np.empty((0, 0)), np.empty(0), np.empty((2, 0)),
                         False, H, 1, 1, 0, lay.segment_table)
    grads = (np.empty((0, 2)), np.empty((0, 0)), np.empty(0), np.empty((2, 0)))
    dX = np.full((lay.rows, 1, 2), np.nan)
    _elman.elman_backward(X, np.empty((0, 2)), np.empty((0, 0)), np.empty((2, 0)), H,
                          np.empty((lay.rows, 1, 0)), False, 0, *grads, False, dX,
                          segments=lay.pieces(0, False))
    np.testing.assert_array_equal(dX, 0)
