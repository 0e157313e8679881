"""Where the general driver's 2-layer bidirectional step loses against its parts.

Timed interleaved in one process (rounds of 5 calls each, medians):

- ``parts``: the M-size 2-layer bidirectional training step (MSE at every
  step, full BPTT, float32) against the sum of its four runs done as
  one-layer networks on the one-layer path (two with I, two with 2H
  inputs); the step also computes layer 2's dX, which the parts do not.
- ``kernels``: one cell's forward and forward + backward over the same
  (T, n) batch, as the one-layer path calls the kernel (time-major) and as
  the general driver does (packed segments, one segment for equal lengths).

Usage::

    python benchmarks/layers_overhead.py [--cells lstm,rnn,gru] [--threads 1]
        [--rounds 10] [--what parts,kernels]
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import bptt
from bptt import _bptt

n, T, I, H, O = 32, 50, 32, 64, 8  # the M size


def interleaved(fns, rounds, calls=5):
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            times[k].append((time.perf_counter() - t0) / calls * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


def parts(cell, rounds):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, T, I)).astype("float32")
    X2 = rng.standard_normal((n, T, 2 * H)).astype("float32")
    y = rng.standard_normal((n, T, O)).astype("float32")
    kw = dict(cell=cell, dtype="float32", random_state=0)
    deep = bptt.RNN(I, H, O, num_layers=2, bidirectional=True, **kw)
    a, b = bptt.RNN(I, H, O, **kw), bptt.RNN(2 * H, H, O, **kw)
    med = interleaved({"step": lambda: deep.loss_and_grad(X, y),
                       "run I": lambda: a.loss_and_grad(X, y),
                       "run 2H": lambda: b.loss_and_grad(X2, y)}, rounds)
    total = 2 * med["run I"] + 2 * med["run 2H"]
    print(f"  {cell}: 2-layer bidirectional {med['step']:.2f} ms, its four runs as one-layer "
          f"networks {total:.2f} ms (I: {med['run I']:.2f}, 2H: {med['run 2H']:.2f}); "
          f"step / parts = {med['step'] / total:.2f}")


def kernels(cell, rounds):
    rng = np.random.default_rng(0)
    net = bptt.RNN(I, H, O, cell=cell, dtype="float32", random_state=0)
    c, p = net._cell, net._params
    s0 = net._check_state(None, n)
    lay = _bptt.Layout(np.full(n, T))
    X = rng.standard_normal((T, n, I)).astype("float32")
    Xp = X.reshape(T * n, I)
    dH = rng.standard_normal((T, n, H)).astype("float32")
    plain, packed = c.allocate(T, n, H, np.float32), c.allocate(T * n, 1, H, np.float32)
    grads = {k: np.empty_like(v) for k, v in p.items()}
    pieces = lay.pieces(0, False)

    def plain_step():
        c.forward(X, p, s0, plain, 1)
        c.backward(X, p, s0, plain, dH.copy(), None, 0, grads, False, 1)

    def packed_step():
        c.run_forward(Xp, p, s0, packed, lay.segment_table, 1)
        c.run_backward(Xp, p, s0, packed, dH.reshape(T * n, H).copy(), pieces,
                       lay.sorted_lengths, grads, False, 1)

    med = interleaved({
        "fwd time-major": lambda: c.forward(X, p, s0, plain, 1),
        "fwd segments": lambda: c.run_forward(Xp, p, s0, packed, lay.segment_table, 1),
        "fwd+bwd time-major": plain_step, "fwd+bwd segments": packed_step}, rounds, 20)
    print(f"  {cell}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in med.items())
          + f"; segments / time-major: forward {med['fwd segments'] / med['fwd time-major']:.2f}"
          f", both {med['fwd+bwd segments'] / med['fwd+bwd time-major']:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="lstm,rnn,gru")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--what", default="parts,kernels")
    args = ap.parse_args()
    with threadpool_limits(args.threads):
        for what in args.what.split(","):
            print(f"{what} ({args.threads} thread(s), M size, float32):")
            for cell in args.cells.split(","):
                {"parts": parts, "kernels": kernels}[what](cell, args.rounds)


if __name__ == "__main__":
    main()
