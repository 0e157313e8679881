"""What bptt's thread pool gains at the M size, with its workers awake or asleep.

Times the Elman training step at the M size (n=32, T=50, I=32, H=64, O=8,
float32) on one thread (``threadpool_limits(1)``), on two with the pool's
workers spinning between calls (bptt's default: a worker spins
``bptt._threadpool.spin_us()`` µs, yielding its core, before it sleeps)
and on two with the workers put to sleep after every call (spin 0, as
OpenMP's passive wait did). A sleeping worker takes long to wake on a
virtual machine (about 0.3 ms here, a third of the step); the caller does
not wait for it but runs the parts it has not claimed, so a late worker
costs nothing but its share. This machine's speed drifts by up to 2x over
seconds (other tenants of the host), so the cases are interleaved in
rounds and each is reported as the median of its rounds' medians:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/wake_cost.py
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import bptt
from bptt import _threadpool as pool


def step_ms(net, X, y, repeats):
    """Median ms of loss_and_grad over ``repeats`` calls."""
    net.loss_and_grad(X, y)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        net.loss_and_grad(X, y)
        times.append(time.perf_counter() - start)
    return np.median(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=200, help="calls per round")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 50, 32)).astype(np.float32)
    y = rng.standard_normal((32, 50, 8)).astype(np.float32)
    net = bptt.RNN(32, 64, 8, dtype="float32", random_state=0)
    default_spin = pool.spin_us()
    cases = (("1 thread", 1, default_spin),
             ("2 threads, workers awake", 2, default_spin),
             ("2 threads, workers asleep", 2, 0.0))
    medians = {label: [] for label, _, _ in cases}
    shares = {label: [] for label, _, _ in cases}
    try:
        for _ in range(args.rounds):
            for label, n_threads, spin_us in cases:
                pool.set_spin_us(spin_us)
                before = pool.worker_parts()
                with threadpool_limits(limits=n_threads, user_api="blas"):
                    medians[label].append(step_ms(net, X, y, args.repeats))
                shares[label].append((pool.worker_parts() - before) / (args.repeats + 1))
    finally:
        pool.set_spin_us(default_spin)
    blas = [(i["internal_api"], i.get("architecture")) for i in threadpool_info()
            if i["user_api"] == "blas"]
    print(f"BLAS: {blas}; Elman M training step, float32; {args.rounds} interleaved "
          f"rounds of {args.repeats} calls")
    for label, _, _ in cases:
        m = medians[label]
        print(f"{label:28s} {np.median(m):6.3f} ms (rounds {min(m):.3f}-{max(m):.3f}), "
              f"{np.mean(shares[label]):.1f} parts per step run by a worker")


if __name__ == "__main__":
    main()
