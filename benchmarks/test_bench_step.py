"""pytest-benchmark suites: one training step and one inference pass.

``net.loss_and_grad(X, y, loss="mse", output="sequence")`` (forward, loss on
every step, full BPTT) and ``net.forward(X)`` on the sizes below, for both
backends, float32 and float64, and every cell this bptt has (cells that are
not available yet are skipped).

    python -m pytest benchmarks                        # timings, a few minutes
    python -m pytest benchmarks -k "rnn and XL"        # a subset
    python -m pytest benchmarks --benchmark-disable    # smoke run, one call each

Each benchmark gets a time budget (BPTT_BENCH_SECONDS, default 1 s): the
number of rounds is budget / (time of one call), clamped to [3, 200], so the
slow combinations (NumPy reference on XL, ~1 s a call) stay bounded.
"""

import os

import numpy as np
import pytest

import bptt
from compare import GATES, SIZES, step_flops  # the sizes and FLOP count compare.py reports

BUDGET = float(os.environ.get("BPTT_BENCH_SECONDS", "1.0"))


def make_net(cell, size, dtype, backend):
    n, T, I, H, O = SIZES[size]
    try:
        net = bptt.RNN(I, H, O, cell=cell, dtype=dtype, backend=backend, random_state=0)
    except ValueError as exc:  # cell not in this version of bptt
        pytest.skip(f"cell {cell!r} not available: {exc}")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, T, I)).astype(dtype)
    y = rng.standard_normal((n, T, O)).astype(dtype)
    return net, X, y


def run(benchmark, fn):
    """Time fn with a bounded number of rounds (one call when disabled)."""
    if getattr(benchmark, "disabled", False):
        return benchmark(fn)
    import time

    fn()  # warm-up, and an estimate of one call
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    rounds = int(min(200, max(3, BUDGET / max(one, 1e-6))))
    iterations = 1 if one > 1e-3 else int(min(100, 1e-3 / max(one, 1e-7)))
    return benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=0)


params = pytest.mark.parametrize
cells = params("cell", list(GATES))
sizes = params("size", list(SIZES))
dtypes = params("dtype", ["float32", "float64"])
backends = params("backend", ["cython", "numpy"])


def grid(test):
    """Every cell, size, dtype and backend."""
    return cells(sizes(dtypes(backends(test))))


@grid
def test_loss_and_grad(benchmark, cell, size, dtype, backend):
    net, X, y = make_net(cell, size, dtype, backend)
    benchmark.group = f"loss_and_grad {cell} {size}"
    benchmark.extra_info.update(shape=SIZES[size], flops=step_flops(cell, *SIZES[size]))
    loss, grads = run(benchmark, lambda: net.loss_and_grad(X, y, loss="mse",
                                                          output="sequence"))
    assert np.isfinite(loss)
    assert set(grads) == set(net.params)


@grid
def test_forward(benchmark, cell, size, dtype, backend):
    net, X, _ = make_net(cell, size, dtype, backend)
    benchmark.group = f"forward {cell} {size}"
    benchmark.extra_info.update(shape=SIZES[size])
    Y, _ = run(benchmark, lambda: net.forward(X))
    assert Y.shape == X.shape[:2] + (net.output_size,)
