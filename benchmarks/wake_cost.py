"""Cost of one two-thread parallel region of the kernels, under OMP_WAIT_POLICY.

Times elman_forward on a problem with no work to speak of (n=2, T=1, H=1),
on one thread and split over two, so the difference is what starting a
parallel region costs: with passive waiting (bptt's default) the second
thread sleeps between regions and must be woken. Run it under both
policies to compare:

    OMP_WAIT_POLICY=PASSIVE python benchmarks/wake_cost.py
    OMP_WAIT_POLICY=ACTIVE python benchmarks/wake_cost.py
"""

import os
import time

import numpy as np

import bptt


def main(repeats=3000):
    net = bptt.RNN(1, 1, 1, dtype="float32", random_state=0)
    cell, params = net._cell, net.params
    X = np.ones((1, 2, 1), dtype=np.float32)  # time-major (T, B, I)
    cache = cell.allocate(1, 2, 1, np.float32)
    h0 = np.zeros((2, 1), dtype=np.float32)
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    for n_threads in (1, 2):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            cell.forward(X, params, h0, cache, n_threads)
            times.append(time.perf_counter() - start)
        print(f"{n_threads} thread(s): median {np.median(times) * 1e6:.1f} us, "
              f"p90 {np.percentile(times, 90) * 1e6:.1f} us per call")


if __name__ == "__main__":
    main()
