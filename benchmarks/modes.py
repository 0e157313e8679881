"""A training step's time over a stretch of wall time, window by window.

For seconds to minutes at a time this machine's two virtual cores stop
sharing an L3: a cache line then takes 370-450 ns to pass between them
instead of 40-130 ns (README, Performance). Before bptt gave each thread
a slab of sequences of its own, its two-thread M step ran 1.8x slower in
those stretches. A median over a whole run hides them; this prints, for
every window, the step's median and the round trip of a cache line
between the caller and a pool worker (``bptt._threadpool.handoff_ns``),
so a stretch shows up as a run of large handoff times. With --torch each
window also times PyTorch's step on the same data and weights (compare.py's
nn.RNN/LSTM/GRU + Linear, on as many threads), half the window each; its
OpenMP threads may still spin when the next handoff is timed, which then
reads in µs.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/modes.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/modes.py --threads 1
    python benchmarks/modes.py --cell lstm --seconds 30 --window 1 --torch
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import bptt
from bptt import _threadpool
from compare import make_torch_step

SIZES = {"S": (1, 100, 1, 16, 1), "M": (32, 50, 32, 64, 8),
         "L": (64, 100, 64, 256, 16), "XL": (128, 200, 128, 512, 32)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="rnn", choices=["rnn", "lstm", "gru"])
    parser.add_argument("--size", default="M", choices=sorted(SIZES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--torch", action="store_true",
                        help="also time PyTorch's step in every window")
    args = parser.parse_args()

    n, T, I, H, O = SIZES[args.size]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, T, I)).astype(np.float32)
    y = rng.standard_normal((n, T, O)).astype(np.float32)
    net = bptt.RNN(I, H, O, cell=args.cell, dtype="float32", random_state=0)
    systems = {"bptt": lambda: net.loss_and_grad(X, y)}
    if args.torch:
        import torch
        torch.set_num_threads(args.threads)
        systems["torch"] = make_torch_step(torch, args.cell, net, X, y, "float32")[0]
    window = args.window / len(systems)
    with threadpool_limits(args.threads):
        for step in systems.values():
            for _ in range(3):
                step()
        medians, handoffs = {name: [] for name in systems}, []
        _threadpool.handoff_ns(100)  # the first call may start the workers
        end = time.perf_counter() + args.seconds
        while time.perf_counter() < end:
            handoffs.append(_threadpool.handoff_ns(2000))
            for name, step in systems.items():
                times = []
                window_end = time.perf_counter() + window
                while time.perf_counter() < window_end:
                    start = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - start)
                medians[name].append(np.median(times) * 1e6)
    for name, values in medians.items():
        print(f"{name} {args.cell} {args.size}, {args.threads} thread(s), median µs per "
              f"{args.window:g} s window:")
        print(" ".join(f"{m:.0f}" for m in values))
    print("cache-line round trip between two pool threads, ns, before each window "
          "(-1: no worker joined):")
    print(" ".join(f"{h:.0f}" for h in handoffs))


if __name__ == "__main__":
    main()
