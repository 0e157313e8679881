"""What the gradient-flow option costs: loss_and_grad with and without
``return_state_grads=True``, side by side (issue 17: at most 10% more).

For every cell and size (compare.py's SIZES, its data and float32 default),
the two calls alternate call by call in one process (which goes first
alternates too), for --seconds and at least 10 pairs, so the load of a
shared machine hits both alike; blocks of calls (compare.run_interleaved)
let it drift between the blocks. Prints a Markdown table: median ms per call
off and on, on / off of the medians, and the median of the pairs' ratios.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/state_grads_overhead.py
    ... --cells lstm --sizes M --seconds 3 --dtype float64
    ... --layered    (2-layer bidirectional networks: the general driver)
"""

import argparse
import time

import numpy as np

import bptt
from compare import SIZES, make_data


def alternate(off, on, seconds, min_pairs=10):
    """Seconds per call of ``off`` and ``on``, alternating call by call."""
    off(), on()  # warm-up: workspaces, thread pool
    times = {off: [], on: []}
    end = time.perf_counter() + seconds
    while len(times[on]) < min_pairs or time.perf_counter() < end:
        pair = (off, on) if len(times[on]) % 2 == 0 else (on, off)
        for fn in pair:
            start = time.perf_counter()
            fn()
            times[fn].append(time.perf_counter() - start)
    return np.array(times[off]), np.array(times[on])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default="rnn,lstm,gru")
    ap.add_argument("--sizes", default="M,L")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="timing budget per cell and size (3)")
    ap.add_argument("--layered", action="store_true",
                    help="2-layer bidirectional networks (compare.py's layers check)")
    args = ap.parse_args(argv)
    layers = dict(num_layers=2, bidirectional=True) if args.layered else {}
    print(f"bptt {bptt.__version__}, {bptt.rnn.compiled_variant()} kernels, {args.dtype}"
          f"{', 2 layers, bidirectional' if args.layered else ''}")
    print("| cell | size | off (ms) | on (ms) | on / off | pairs' median |")
    print("|---|---|---:|---:|---:|---:|")
    for cell in args.cells.split(","):
        for size in args.sizes.split(","):
            n, T, I, H, O = SIZES[size]
            net = bptt.RNN(I, H, O, cell=cell, dtype=args.dtype, random_state=0, **layers)
            X, y = make_data(SIZES[size], args.dtype)
            off, on = alternate(lambda: net.loss_and_grad(X, y),
                                lambda: net.loss_and_grad(X, y, return_state_grads=True),
                                args.seconds)
            print(f"| {cell} | {size} | {np.median(off) * 1e3:.2f} | "
                  f"{np.median(on) * 1e3:.2f} | {np.median(on) / np.median(off):.3f} | "
                  f"{np.median(on / off):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
