"""How long Ctrl-C waits: SIGINT from a timer thread during ``fit``,
``forward`` and ``loss_and_grad``, and the seconds from the signal to the
KeyboardInterrupt (issue 12: within a second).

Python raises KeyboardInterrupt only between kernel calls, so the wait is
at most one kernel call: one chunk of ``forward`` (_bptt.FORWARD_CHUNK_ELEMENTS)
or of ``loss_and_grad`` (_bptt.TRAIN_CHUNK_MAX_ROWS, TRAIN_CHUNK_MAX_WORK), or
whatever NumPy call is running (building a network at H=512 runs a QR
decomposition on NumPy's BLAS).

    python benchmarks/interrupt_latency.py
"""

import os
import sys
import warnings

import numpy as np

import bptt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from interrupting import interrupted  # noqa: E402  (tests/interrupting.py)


def latency(call, delay):
    """Seconds from SIGINT (sent `delay` s into call()) to KeyboardInterrupt,
    or None when the call ended first."""
    return interrupted(call, delay)[1]


def main():
    rng = np.random.default_rng(0)
    cases = []
    for size, (n, T, I, H) in {"M": (32, 50, 32, 64), "XL": (128, 200, 128, 512)}.items():
        X = rng.standard_normal((4 * n, T, I)).astype(np.float32)
        est = bptt.RNNRegressor(hidden_size=H, dtype="float32", batch_size=n,
                                max_epochs=10**6, n_iter_no_change=10**6, random_state=0)
        cases.append((f"fit {size}", lambda est=est, X=X: est.fit(X, X[:, -1, 0])))
    net = bptt.RNN(8, 96, 4, random_state=0)
    Xl = rng.standard_normal((32, 40000, 8))
    yl = rng.standard_normal((32, 40000, 4))
    cases.append(("forward n=32 T=40000 H=96", lambda: net.forward(Xl)))
    cases.append(("loss_and_grad n=32 T=40000 H=96", lambda: net.loss_and_grad(Xl, yl)))
    big = bptt.RNN(128, 512, 32, cell="lstm", dtype="float32", random_state=0)
    Xb = rng.standard_normal((128, 2000, 128)).astype(np.float32)
    yb = rng.standard_normal((128, 2000, 32)).astype(np.float32)
    cases.append(("loss_and_grad lstm n=128 T=2000 H=512 f32",
                  lambda: big.loss_and_grad(Xb, yb)))
    warnings.simplefilter("ignore")
    print(f"load average {os.getloadavg()[0]:.1f}; SIGINT 0.5, 0.8 and 1.1 s into each call")
    for name, call in cases:
        waits = [latency(call, delay) for delay in (0.5, 0.8, 1.1)]
        print(f"{name:45s} ms: " + " ".join(
            "ended" if w is None else f"{1e3 * w:.1f}" for w in waits), flush=True)


if __name__ == "__main__":
    main()
