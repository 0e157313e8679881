"""pytest-benchmark suite for issue 12's subnormal check.

``net.loss_and_grad(X, y, output=...)`` with the loss at the last step
(``"last"``) and at every step (``"sequence"``) on the issue's problem
(n=32, I=1, H=64, O=1, T=1000 and 3000, X standard normal), compiled
backend, for every cell, float32 and float64. With the loss at the last
step, the gradient shrinks on its way back through the sequence into the
subnormal range, where many x86 cores take a slow path for every operation
unless the kernels flush subnormals to zero (src/fpmode.h); each group
``subnormal <cell> <dtype> T=<T>`` holds the two outputs, whose times should
be within 1.2x of each other.

    python -m pytest benchmarks/test_bench_subnormal.py
    python -m pytest benchmarks/test_bench_subnormal.py -k "lstm and float32"

``benchmarks/compare.py --subnormal-only`` times the two outputs in
alternating rounds in one process and prints their ratio against the target.
"""

import numpy as np
import pytest

import bptt
from test_bench_step import run

N, I, H, O = 32, 1, 64, 1


@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("T", [1000, 3000])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_subnormal_last_against_sequence(benchmark, cell, dtype, T, output):
    net = bptt.RNN(I, H, O, cell=cell, dtype=dtype, random_state=0)
    X = np.random.default_rng(0).standard_normal((N, T, I)).astype(dtype)
    y = X[..., 0] if output == "sequence" else X[:, -1, 0]
    benchmark.group = f"subnormal {cell} {dtype} T={T}"
    benchmark.extra_info.update(shape=(N, T, I, H, O), output=output)
    loss, grads = run(benchmark, lambda: net.loss_and_grad(X, y, output=output))
    assert np.isfinite(loss)
    assert all(np.isfinite(g).all() for g in grads.values())
