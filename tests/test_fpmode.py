"""Subnormals are flushed to zero inside the compiled kernels, and only there
(src/fpmode.h, issue 12): every kernel call leaves its caller's floating-point
mode as it found it, NumPy keeps IEEE subnormals, and a long float32 run
whose gradient sinks into the subnormal range still matches the reference."""

import platform
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import bptt
from bptt import _threadpool as pool
from bptt.optimizers import OPTIMIZERS
from bptt.rnn import load_kernels
from helpers import CELLS, assert_grads_close

FLUSH = pool.flush_mode_bits()
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
# MXCSR's low six bits are sticky exception flags, which NumPy clears around
# its own ufunc calls; the rest (masks, rounding, FTZ, DAZ) is the mode
CONTROL = ~0x3F if X86 else ~0
needs_flush = pytest.mark.skipif(FLUSH == 0, reason="no flush-to-zero control on this CPU")

MXCSR_DAZ, MXCSR_FTZ, MXCSR_ROUND_TO_ZERO = 0x0040, 0x8000, 0x6000
# the modes a caller may hold: the default, and (x86) only one of the flush
# bits, both, or another rounding mode, each of which must come back as it was
CALLER_MODES = {"default": 0}
if X86:
    CALLER_MODES.update(daz=MXCSR_DAZ, ftz=MXCSR_FTZ, both=MXCSR_DAZ | MXCSR_FTZ,
                        round_to_zero=MXCSR_ROUND_TO_ZERO)


def numpy_is_ieee():
    """NumPy in this thread makes and reads subnormals (no FTZ, no DAZ)."""
    for dtype in (np.float32, np.float64):
        tiny = np.finfo(dtype).tiny
        made = dtype(tiny) * dtype(0.01)            # FTZ would give 0
        read = dtype(tiny / 4) * dtype(2)           # DAZ would read tiny / 4 as 0
        if not (made != 0 and read == dtype(tiny / 2)):
            return False
    return True


def kernel_calls(cell, n_threads):
    """(name, call) for every kind of compiled kernel call, on a problem big
    enough for n_threads to split the batch (bptt/_threads.py)."""
    n, T, I, H, O = 16, 20, 3, 32, 2
    rng = np.random.default_rng(0)
    net = bptt.RNN(I, H, O, cell=cell, dtype="float32", random_state=0)
    X = rng.standard_normal((n, T, I)).astype(np.float32)
    y_seq = rng.standard_normal((n, T, O)).astype(np.float32)
    y_last = rng.standard_normal((n, O)).astype(np.float32)
    stream = net.stream(n)
    x = X[:, 0].copy()
    _, grads = net.loss_and_grad(X, y_seq)
    params = [v.copy() for v in net.params.values()]
    steps = {name: OPTIMIZERS[name](params) for name in OPTIMIZERS}
    g = [v for v in grads.values()]
    calls = [
        ("forward", lambda: net.forward(X)),
        ("loss_and_grad sequence", lambda: net.loss_and_grad(X, y_seq)),
        ("loss_and_grad last", lambda: net.loss_and_grad(X, y_last, output="last")),
        ("loss_and_grad truncated", lambda: net.loss_and_grad(X, y_seq, truncate=7)),
        ("stream step", lambda: stream.step(x)),
        ("pool parts", lambda: pool.run_record(4, n_threads, 1000)),
    ]
    calls += [(f"{name} step", lambda o=o: o.step(params, g)) for name, o in steps.items()]
    return calls


def test_flush_bits_are_the_architectures():
    if X86:
        assert FLUSH & MXCSR_FTZ  # every SSE unit has FTZ; DAZ nearly every one
        assert FLUSH & ~(MXCSR_FTZ | MXCSR_DAZ) == 0
    elif platform.machine().lower() in ("aarch64", "arm64"):
        assert FLUSH == 1 << 24  # FPCR.FZ
    else:
        assert FLUSH == 0


@needs_flush
@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_pool_parts_run_flushed_and_the_callers_mode_comes_back(n_threads):
    before = pool.fpmode()
    for spin in (0, 20000):
        modes, _ = pool.run_fpmodes(8, n_threads, spin)
        assert all(int(m) & FLUSH == FLUSH for m in modes), [hex(m) for m in modes]
        assert pool.fpmode() == before  # exception flags included


@needs_flush
def test_workers_run_flushed():
    """Parts the pool's workers claim run flushed too (the caller's above)."""
    import time
    caller = pool.caller_id()
    seen = {}
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and len(seen) < 2:
        modes, owners = pool.run_fpmodes(4, 2, 200000)
        seen.update(zip(owners.tolist(), modes.tolist()))
    assert all(m & FLUSH == FLUSH for m in seen.values())
    if len(seen) < 2:  # one core, or the worker never got it: nothing to check
        pytest.skip("no worker took a part within 5 s")
    assert set(seen) - {caller}


@pytest.mark.parametrize("mode", list(CALLER_MODES))
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_kernel_calls_leave_the_callers_mode(cell, threads, mode):
    with threadpool_limits(limits=threads, user_api="blas"):
        calls = kernel_calls(cell, threads)
        original = pool.fpmode()
        start = (original & ~(MXCSR_DAZ | MXCSR_FTZ | MXCSR_ROUND_TO_ZERO)
                 | CALLER_MODES[mode]) if X86 else original
        pool.set_fpmode(start)
        try:
            for name, call in calls:
                call()
                assert pool.fpmode() & CONTROL == start & CONTROL, (
                    f"{name} left {pool.fpmode():#x}, was {start:#x}")
        finally:
            pool.set_fpmode(original)
        assert pool.fpmode() == original


@pytest.mark.parametrize("threads", [1, 2])
def test_numpy_keeps_subnormals_after_kernel_calls(threads):
    assert numpy_is_ieee()
    with threadpool_limits(limits=threads, user_api="blas"):
        for cell in CELLS:
            for name, call in kernel_calls(cell, threads):
                call()
                assert numpy_is_ieee(), f"after {name}"


def test_numpy_keeps_subnormals_in_other_threads():
    """A kernel call in one thread changes no other thread's mode."""
    results = []
    net = bptt.RNN(1, 16, 1, dtype="float32", random_state=0)
    X = np.ones((4, 50, 1), dtype=np.float32)

    def work():
        for _ in range(20):
            net.loss_and_grad(X, X[:, -1, 0], output="last")
        results.append(numpy_is_ieee())

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(200):
        assert numpy_is_ieee()
    for t in threads:
        t.join(timeout=60)
    assert results == [True, True]


def decaying_gradient(dtype, T=120, B=3, n_hidden=4):
    """An Elman backward pass whose dA[t] is exactly 2^(-10 (T-1-t)): W_hh =
    2^-10 I, zero inputs and states (tanh' = 1), dL/dH = 1 at the last step.
    The powers pass the smallest normal number (2^-126, 2^-1022) and then
    the subnormal range on their way to 0."""
    W_hh = np.eye(n_hidden, dtype=dtype) * dtype(2.0 ** -10)
    W_xh = np.ones((n_hidden, 1), dtype=dtype)
    X = np.zeros((T, B, 1), dtype=dtype)
    h0 = np.zeros((B, n_hidden), dtype=dtype)
    H = np.zeros((T, B, n_hidden), dtype=dtype)
    out = {}
    for backend in ("cython", "numpy"):
        dA = np.zeros((T, B, n_hidden), dtype=dtype)
        dA[-1] = 1
        grads = (np.empty_like(W_xh), np.empty_like(W_hh),
                 np.empty(n_hidden, dtype=dtype), np.empty_like(h0))
        with np.errstate(under="ignore"):
            load_kernels(backend, "elman").elman_backward(
                X, W_xh, W_hh, h0, H, dA, False, 0, *grads)
        out[backend] = dA
    return out["cython"], out["numpy"]


def subnormal(a):
    return (a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)


@needs_flush
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormal_results_are_flushed_inside_the_kernel(dtype):
    fast, ref = decaying_gradient(dtype)
    powers = -10.0 * np.arange(fast.shape[0])[::-1]   # log2 of the exact dA[t]
    exact = np.exp2(powers).astype(dtype)              # 0 where even 2^-149 is too small
    # the reference is IEEE: the exact powers, subnormals included
    assert subnormal(ref).any()
    np.testing.assert_array_equal(ref, np.broadcast_to(exact[:, None, None], ref.shape))
    # the kernel: the same normal numbers, and 0 for every subnormal one
    assert not subnormal(fast).any()
    flushed = np.where(subnormal(exact), dtype(0), exact)
    np.testing.assert_array_equal(fast, np.broadcast_to(flushed[:, None, None], fast.shape))
    # which is within the smallest normal number of the reference
    np.testing.assert_allclose(fast, ref, rtol=0, atol=np.finfo(dtype).tiny)


@pytest.mark.parametrize("cell", CELLS)
def test_long_float32_last_output_parity(cell):
    """The issue's case, shortened (n = 8, H = 32): the loss at the last of
    1000 steps, whose gradient sinks into the subnormal range for the Elman
    and GRU cells (checked below for the Elman cell). Compiled float32
    against the float64 reference, at the long-sequence tolerance of
    test_elman.py."""
    n, T, I, H = 8, 1000, 1, 32
    X = np.random.default_rng(0).standard_normal((n, T, I))
    y = X[:, -1, 0]
    fast = bptt.RNN(I, H, 1, cell=cell, dtype="float32", random_state=0)
    ref = bptt.RNN(I, H, 1, cell=cell, dtype="float64", backend="numpy", random_state=0)
    ref.params = {k: v.astype(np.float64) for k, v in fast.params.items()}
    loss_f, grads_f = fast.loss_and_grad(X.astype(np.float32), y.astype(np.float32),
                                         output="last")
    loss_r, grads_r = ref.loss_and_grad(X, y, output="last")
    assert loss_f == pytest.approx(loss_r, rel=1e-3)
    assert_grads_close(grads_f, grads_r, rtol=1e-3, atol=1e-3)
    assert numpy_is_ieee()
    if cell == "rnn":
        # the same backward pass in IEEE float32 (the reference kernels) meets
        # subnormals: this case is one the flush changes
        dA = reference_last_step_gradient(fast, X.astype(np.float32))
        assert subnormal(dA).mean() > 0.01


def reference_last_step_gradient(net, X):
    """dL/dA of every step for a unit gradient at the last hidden state,
    through the NumPy reference Elman kernels in the net's dtype."""
    kernels = load_kernels("numpy", "elman")
    p = net.params
    n, T, _ = X.shape
    Xt = np.ascontiguousarray(X.transpose(1, 0, 2))
    h0 = np.zeros((n, net.hidden_size), dtype=X.dtype)
    H = np.empty((T, n, net.hidden_size), dtype=X.dtype)
    kernels.elman_forward(Xt, p["W_xh"], p["W_hh"], p["b_h"], h0, False, H)
    dA = np.zeros_like(H)
    dA[-1] = 1
    with np.errstate(under="ignore"):
        kernels.elman_backward(Xt, p["W_xh"], p["W_hh"], h0, H, dA, False, 0,
                               np.empty_like(p["W_xh"]), np.empty_like(p["W_hh"]),
                               np.empty_like(p["b_h"]), np.empty_like(h0))
    return dA
