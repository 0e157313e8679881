"""What the gradient-flow option costs: loss_and_grad with and without
``return_state_grads=True``, side by side (issue 17: at most 10% more).

For every cell and size (compare.py's SIZES, its data and float32 default),
the two calls are timed in alternating rounds in one process
(compare.run_interleaved), so drift hits both alike. Prints a Markdown table:
median ms per call off and on, and on / off.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/state_grads_overhead.py
    ... --cells lstm --sizes M --seconds 3 --dtype float64
"""

import argparse
from types import SimpleNamespace

import numpy as np

import bptt
from compare import SIZES, make_data, run_interleaved, summarize


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default="rnn,lstm,gru")
    ap.add_argument("--sizes", default="M,L")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--seconds", type=float, default=1.5,
                    help="timing budget per variant per size (1.5)")
    args = ap.parse_args(argv)
    timing = SimpleNamespace(repeats=None, min_repeats=5, seconds=args.seconds, gap=0.0)
    print(f"bptt {bptt.__version__}, {bptt.rnn.compiled_variant()} kernels, {args.dtype}")
    print("| cell | size | off (ms) | on (ms) | on / off |")
    print("|---|---|---:|---:|---:|")
    for cell in args.cells.split(","):
        for size in args.sizes.split(","):
            n, T, I, H, O = SIZES[size]
            net = bptt.RNN(I, H, O, cell=cell, dtype=args.dtype, random_state=0)
            X, y = make_data(SIZES[size], args.dtype)
            fns = {"off": lambda: net.loss_and_grad(X, y),
                   "on": lambda: net.loss_and_grad(X, y, return_state_grads=True)}
            times = {k: summarize(v)["median"] * 1e3
                     for k, v in run_interleaved(fns, timing).items()}
            print(f"| {cell} | {size} | {times['off']:.2f} | {times['on']:.2f} | "
                  f"{times['on'] / times['off']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
