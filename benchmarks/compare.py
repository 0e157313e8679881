"""Time bptt's training step against the NumPy reference, PyTorch and JAX.

One interleaved run: for every cell and size, all systems are warmed up, then
timed in rounds, the order of the systems rotating every round, so that drift
(other load on the machine, clock changes) hits everyone equally. Prints a
header describing the machine and the BLAS kernel actually used, a markdown
table ready to paste into the README, and PASS/FAIL lines for the speed
targets of the issues.

Recommended command (OpenBLAS reads these two variables once, at load time;
some of our machines set them, which can select a slower kernel; this script
never changes them, it only reports them and the kernel in use)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare.py

Options::

    --cells rnn,lstm,gru   cells to time (unavailable ones are skipped)
    --sizes S,M,L,XL       configurations (see SIZES)
    --dtype float32        float32 (default) or float64
    --repeats N            timed calls per system and size (default: adaptive,
                           about --seconds per system per size, at least 5)
    --seconds S            timing budget per system per size (default 1.5)
    --quick                budget 0.3 s, at least 3 repeats, small GEMM peak
    --threads N            thread count for BLAS (threadpoolctl) and torch;
                           XLA's pool cannot be resized after import: reported
    --no-torch, --no-jax   leave a peer out
    --json out.json        save every raw timing and the header
    --subnormal            also time the subnormal check (below)
    --subnormal-only       only the header and the subnormal check
    --layers               also time the layers and ragged checks (below)
    --layers-only          only the header and the layers and ragged checks

The layers check (issue 14): a training step (forward, MSE on every step,
full BPTT) of a 2-layer bidirectional network against torch's
nn.RNN/LSTM/GRU(num_layers=2, bidirectional=True) + nn.Linear and the same
network in JAX (jit of value_and_grad over lax.scan runs) at each size
(targets: 1.5x the best peer at M, 1.2x at L). The
ragged check: 64 sequences of lengths uniform in [20, 200] (seed 0), I=16,
H=128, O=4, output="last": bptt on the list against torch over
pack_padded_sequence(enforce_sorted=False) (target >= 2x) and against bptt
on the same batch padded to 200 with every sequence real (target <= 1.15 x
sum of lengths / (64 x 200)).

The subnormal check (issue 12): loss_and_grad with the loss at the last step
(output="last") against the loss at every step (output="sequence"), n=32,
I=1, H=64, T=1000 and 3000, float32 and float64, the two timed in alternating
rounds. With the loss at the last step the gradient shrinks step by step on
its way back into the subnormal range, where many x86 cores take a slow path
per operation unless the kernels flush subnormals to zero (src/fpmode.h);
the target is last / sequence <= 1.2x.

What is timed (one call = one training step, inputs identical in shape):

- bptt:  net.loss_and_grad(X, y, loss="mse", output="sequence"), compiled
  backend: forward, MSE on every step, full BPTT, every gradient.
- numpy: the same call with backend="numpy" (the reference implementation).
- torch: nn.RNN/LSTM/GRU(batch_first=True) + nn.Linear, forward, MSE on every
  step, backward; gradients set to None before each step.
- jax:   jax.jit(jax.value_and_grad(loss)) of a lax.scan cell + linear output,
  block_until_ready on the loss and gradients.

Every peer gets bptt's weights, and its loss (and dW_hh) is checked against
bptt's before timing: a WARNING is printed if they differ by more than 1e-3
relative, so the table compares identical computations.
"""

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np

import bptt
from bptt._cells import CELLS
from bptt.rnn import compiled_variant

SIZES = {  # name: (n_samples, n_timesteps, input_size, hidden_size, output_size)
    "S": (1, 100, 1, 16, 1),
    "M": (32, 50, 32, 64, 8),
    "L": (64, 100, 64, 256, 16),
    "XL": (128, 200, 128, 512, 32),
}
GATES = {name: spec.n_gates for name, spec in CELLS.items()}  # G, from the cell registry
STREAM = (1, 1000, 1, 64, 1)  # one long sequence, inference only
SYSTEMS = ("bptt", "numpy", "torch", "jax")
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")

# Speed targets of the issues: (label, cell, size, metric, threshold).
# metric: "numpy" / "torch" / "best" = speed-up of bptt over that system,
# "peak" = share of the measured sgemm peak.
TARGETS = [
    ("(a) issue: compiled >= 10x NumPy reference", "rnn", "S", "numpy", 10.0),
    ("(a) issue: compiled >= 3x NumPy reference", "rnn", "M", "numpy", 3.0),
    ("(a) issue: >= 60% of sgemm peak", "rnn", "XL", "peak", 0.60),
    ("(b) Elman >= 2x best of torch/jax", "rnn", "S", "best", 2.0),
    ("(b) Elman >= 2x best of torch/jax", "rnn", "M", "best", 2.0),
    ("(b) Elman >= 1.2x best of torch/jax", "rnn", "L", "best", 1.2),
    ("(b) Elman >= 1.1x best of torch/jax", "rnn", "XL", "best", 1.1),
    ("(b) Elman >= 80% of sgemm peak", "rnn", "XL", "peak", 0.80),
]
for _cell in ("lstm", "gru"):
    TARGETS += [
        (f"(c) issue 4: {_cell} >= 3x torch", _cell, "S", "torch", 3.0),
        (f"(c) issue 4: {_cell} >= 3x torch", _cell, "M", "torch", 3.0),
        (f"(c) issue 4: {_cell} not slower than torch", _cell, "L", "torch", 1.0),
        (f"(c) issue 4: {_cell} not slower than torch", _cell, "XL", "torch", 1.0),
        (f"(c) issue 5: {_cell} >= 2x best of torch/jax", _cell, "S", "best", 2.0),
        (f"(c) issue 5: {_cell} >= 2x best of torch/jax", _cell, "M", "best", 2.0),
        (f"(c) issue 5: {_cell} >= 1.2x best of torch/jax", _cell, "L", "best", 1.2),
        (f"(c) issue 5: {_cell} >= 1.2x best of torch/jax", _cell, "XL", "best", 1.2),
    ]
STREAM_TARGET_US = 2.0  # (d) streaming forward, microseconds per timestep
# (e) subnormal check: (n, I, H, O) and the sequence lengths; the target ratio
SUBNORMAL_SHAPE = (32, 1, 64, 1)
SUBNORMAL_STEPS = (1000, 3000)
SUBNORMAL_TARGET = 1.2


def step_flops(cell, n, T, I, H, O):
    """Multiply-adds x 2 of one training step: forward + 2x for backward."""
    G = GATES[cell]
    return 3 * 2 * T * n * (G * I * H + G * H * H + H * O)


# ---------------------------------------------------------------- timing
def timeit_once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def summarize(times):
    a = np.asarray(times)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"median": float(med), "iqr": float(q3 - q1), "n": int(a.size),
            "min": float(a.min())}


def run_interleaved(fns, args):
    """Time every system of ``fns`` (name -> callable) in rotating rounds.

    Each system runs a block of calls per round; the order of the systems
    rotates every round. Short calls get one untimed lead-in call per block,
    so that another library's thread pool still spinning from the previous
    block does not land on the first timed call.
    """
    est = {}
    for name, fn in fns.items():  # warm-up (jax compiles here)
        fn()
        est[name] = min(timeit_once(fn) for _ in range(2))
    reps = {}
    for name, t in est.items():
        if args.repeats:
            reps[name] = args.repeats
        else:
            reps[name] = int(min(2000, max(args.min_repeats,
                                           math.ceil(args.seconds / max(t, 1e-7)))))
    n_rounds = max(1, min(min(reps.values()), 5))
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(n_rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn = fns[name]
            block = math.ceil(reps[name] / n_rounds)
            block = min(block, reps[name] - len(times[name]))
            if block <= 0:
                continue
            if args.gap > 0:
                # let the previous system's spinning worker threads go to sleep
                time.sleep(args.gap)
            if est[name] < 0.02:
                fn()
            for _ in range(block):
                times[name].append(timeit_once(fn))
    return times


def measure_sgemm_peak(size, seconds):
    """GFLOP/s of a large float32 numpy matmul (median of >= 5 calls)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b
    t = timeit_once(lambda: a @ b)
    reps = max(5, min(50, math.ceil(seconds / t)))
    ts = [timeit_once(lambda: a @ b) for _ in range(reps)]
    return 2.0 * size ** 3 / float(np.median(ts)) / 1e9


# ---------------------------------------------------------------- systems
def make_bptt(cell, dtype, backend, shape):
    n, T, I, H, O = shape
    try:
        return bptt.RNN(I, H, O, cell=cell, dtype=dtype, backend=backend, random_state=0)
    except ValueError:
        return None


def make_data(shape, dtype):
    n, T, I, H, O = shape
    rng = np.random.default_rng(42)
    X = rng.standard_normal((n, T, I)).astype(dtype)
    y = rng.standard_normal((n, T, O)).astype(dtype)
    return X, y


def torch_modules(torch, cell, net, dtype):
    """torch RNN + Linear holding bptt's weights (see the docstring mapping)."""
    I, H, O = net.input_size, net.hidden_size, net.output_size
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    rnn = cls(I, H, batch_first=True).to(tdtype)
    lin = torch.nn.Linear(H, O).to(tdtype)
    p = net.params
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(p["W_xh"]))
        rnn.weight_hh_l0.copy_(torch.from_numpy(p["W_hh"]))
        rnn.bias_ih_l0.copy_(torch.from_numpy(p["b_h"]))
        rnn.bias_hh_l0.zero_()
        if cell == "gru":
            rnn.bias_hh_l0[2 * H:].copy_(torch.from_numpy(p["b_hn"]))
        lin.weight.copy_(torch.from_numpy(p["W_oh"]))
        lin.bias.copy_(torch.from_numpy(p["b_o"]))
    return rnn, lin


def make_torch_step(torch, cell, net, X, y, dtype):
    rnn, lin = torch_modules(torch, cell, net, dtype)
    params = list(rnn.parameters()) + list(lin.parameters())
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    mse = torch.nn.functional.mse_loss

    def step():
        for q in params:
            q.grad = None
        out, _ = rnn(Xt)
        loss = mse(lin(out), yt)
        loss.backward()
        return loss

    def check():
        loss = step()
        return float(loss.item()), rnn.weight_hh_l0.grad.numpy().copy()

    return step, check


def make_torch_forward(torch, cell, net, X, dtype):
    rnn, lin = torch_modules(torch, cell, net, dtype)
    Xt = torch.from_numpy(X)

    def fwd():
        with torch.inference_mode():
            out, _ = rnn(Xt)
            return lin(out)

    return fwd


def jax_run_cell(jax, cell):
    """run_cell(p, X): the hidden states (T, n, H) of one cell's run over X
    (n, T, I) from zeros, p holding W_xh, W_hh, b_h (and b_hn)."""
    jnp = jax.numpy

    def run_cell(p, X):
        """Hidden states (T, n, H) of X (n, T, I); input projection hoisted."""
        Xs = jnp.swapaxes(X, 0, 1)
        A = Xs @ p["W_xh"].T + p["b_h"]
        n, H = X.shape[0], p["W_hh"].shape[1]
        h0 = jnp.zeros((n, H), X.dtype)
        if cell == "rnn":
            def f(h, a):
                h = jnp.tanh(a + h @ p["W_hh"].T)
                return h, h
            carry = h0
        elif cell == "lstm":
            def f(hc, a):
                h, c = hc
                g = a + h @ p["W_hh"].T
                i, fg, gg, o = jnp.split(g, 4, axis=-1)
                c = jax.nn.sigmoid(fg) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), h
            carry = (h0, h0)
        else:  # gru
            def f(h, a):
                gh = h @ p["W_hh"].T
                ar, az, an = jnp.split(a, 3, axis=-1)
                hr, hz, hn = jnp.split(gh, 3, axis=-1)
                r = jax.nn.sigmoid(ar + hr)
                z = jax.nn.sigmoid(az + hz)
                nn = jnp.tanh(an + r * (hn + p["b_hn"]))
                h = (1 - z) * nn + z * h
                return h, h
            carry = h0
        _, Hs = jax.lax.scan(f, carry, A)
        return Hs

    return run_cell


def jax_cell_fns(jax, cell):
    jnp = jax.numpy
    run_cell = jax_run_cell(jax, cell)

    def output(p, X):
        return run_cell(p, X) @ p["W_oh"].T + p["b_o"]  # (T, n, O)

    def loss(p, X, y):
        return jnp.mean((output(p, X) - jnp.swapaxes(y, 0, 1)) ** 2)

    return output, loss


def make_jax_step(jax, cell, net, X, y):
    _, loss = jax_cell_fns(jax, cell)
    vg = jax.jit(jax.value_and_grad(loss))
    p = {k: jax.numpy.asarray(v) for k, v in net.params.items()}
    Xj, yj = jax.numpy.asarray(X), jax.numpy.asarray(y)

    def step():
        return jax.block_until_ready(vg(p, Xj, yj))

    def check():
        value, grads = step()
        return float(value), np.asarray(grads["W_hh"])

    return step, check


def make_jax_layered_step(jax, cell, net, X, y):
    """A training step of a stacked (bidirectional) network in JAX, as the
    layers check times it: MSE at every step, full BPTT; returns (step,
    loss) with loss the value of the first step (to check against bptt's)."""
    jnp = jax.numpy
    run_cell = jax_run_cell(jax, cell)
    names = ("W_xh", "W_hh", "b_h") + (("b_hn",) if cell == "gru" else ())
    D = 2 if net.bidirectional else 1

    def loss(p, X, y):
        inp = X
        for layer in range(net.num_layers):
            outs = []
            for d in range(D):
                sfx = ("" if layer == 0 else f"_l{layer}") + ("_reverse" if d else "")
                q = {k: p[k + sfx] for k in names}
                # equal lengths: the backward direction runs the reversed time axis
                Hs = run_cell(q, inp[:, ::-1] if d else inp)
                outs.append(Hs[::-1] if d else Hs)
            inp = jnp.swapaxes(jnp.concatenate(outs, axis=-1), 0, 1)  # (n, T, D*H)
        Z = inp @ p["W_oh"].T + p["b_o"]
        return jnp.mean((Z - y) ** 2)

    vg = jax.jit(jax.value_and_grad(loss))
    p = {k: jax.numpy.asarray(v) for k, v in net.params.items()}
    Xj, yj = jax.numpy.asarray(X), jax.numpy.asarray(y)

    def step():
        return jax.block_until_ready(vg(p, Xj, yj))

    return step, float(step()[0])


def make_jax_forward(jax, cell, net, X):
    output, _ = jax_cell_fns(jax, cell)
    f = jax.jit(output)
    p = {k: jax.numpy.asarray(v) for k, v in net.params.items()}
    Xj = jax.numpy.asarray(X)
    return lambda: jax.block_until_ready(f(p, Xj))


def rel_diff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def run_subnormal(args):
    """The subnormal check: for every cell, dtype and T, loss_and_grad with
    output="last" and output="sequence" on the issue's problem, timed
    interleaved (run_interleaved). Returns one dict per combination."""
    n, I, H, O = SUBNORMAL_SHAPE
    rows = []
    for cell in args.cells:
        for dtype in ("float32", "float64"):
            for T in SUBNORMAL_STEPS:
                net = make_bptt(cell, dtype, "cython", (n, T, I, H, O))
                if net is None:
                    continue
                X = np.random.default_rng(0).standard_normal((n, T, I)).astype(dtype)
                targets = {"sequence": X[..., 0], "last": X[:, -1, 0]}
                fns = {out: (lambda out=out: net.loss_and_grad(X, targets[out], output=out))
                       for out in targets}
                t0 = time.perf_counter()
                times = run_interleaved(fns, args)
                stats = {out: summarize(ts) for out, ts in times.items()}
                ratio = stats["last"]["median"] / stats["sequence"]["median"]
                rows.append({"cell": cell, "dtype": dtype, "T": T,
                             "shape": (n, T, I, H, O), "times": times, "stats": stats,
                             "ratio": ratio})
                print(f"  subnormal {cell:4s} {dtype} T={T}: sequence "
                      f"{stats['sequence']['median'] * 1e3:.1f} ms, last "
                      f"{stats['last']['median'] * 1e3:.1f} ms, ratio {ratio:.2f}"
                      f"   [{time.perf_counter() - t0:.1f} s]", flush=True)
    return rows


def print_subnormal(rows):
    n, I, H, O = SUBNORMAL_SHAPE
    print()
    print(f"Subnormal check (`loss_and_grad`, n={n}, I={I}, H={H}, O={O}): the loss at "
          f"the last step against the loss at every step, timed in alternating rounds; "
          f"median (IQR) in ms; ratio = last / sequence (target <= "
          f"{SUBNORMAL_TARGET:g}x).")
    print()
    print('| cell | dtype | T | output="sequence" ms | output="last" ms '
          '| last / sequence |')
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        st = r["stats"]
        print(f"| {r['cell']} | {r['dtype']} | {r['T']} | {fmt_ms(st['sequence'])} | "
              f"{fmt_ms(st['last'])} | {fmt_x(r['ratio'])} |")


# ---------------------------------------------------------------- layers
LAYERS_TARGETS = {"M": 1.5, "L": 1.2}  # x the best peer, 2-layer bidirectional
RAGGED = dict(n=64, low=20, high=200, I=16, H=128, O=4)


def torch_layered(torch, net, dtype):
    """torch's stacked bidirectional module + Linear holding net's weights."""
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[net.cell]
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    D = 2 if net.bidirectional else 1
    rnn = cls(net.input_size, net.hidden_size, num_layers=net.num_layers,
              bidirectional=net.bidirectional, batch_first=True).to(tdtype)
    lin = torch.nn.Linear(D * net.hidden_size, net.output_size).to(tdtype)
    sd = net.to_torch_state_dict(rnn_prefix="rnn.", output_prefix="fc.")
    rnn.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in sd.items()
                         if k.startswith("rnn.")})
    lin.load_state_dict({"weight": torch.from_numpy(sd["fc.weight"]),
                         "bias": torch.from_numpy(sd["fc.bias"])})
    return rnn, lin, list(rnn.parameters()) + list(lin.parameters())


def run_layers(args, torch, jax=None):
    """The layers and ragged checks (issue 14), timed interleaved."""
    rows = []
    for cell in args.cells:
        for size in [s for s in args.sizes if s in LAYERS_TARGETS]:
            shape = SIZES[size]
            n, T, I, H, O = shape
            net = bptt.RNN(I, H, O, cell=cell, dtype=args.dtype, num_layers=2,
                           bidirectional=True, random_state=0)
            X, y = make_data(shape, args.dtype)
            fns = {"bptt": lambda: net.loss_and_grad(X, y)}
            if torch is not None:
                rnn, lin, params = torch_layered(torch, net, args.dtype)
                Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

                def step(rnn=rnn, lin=lin, params=params, Xt=Xt, yt=yt):
                    for q in params:
                        q.grad = None
                    out, _ = rnn(Xt)
                    loss = torch.nn.functional.mse_loss(lin(out), yt)
                    loss.backward()
                fns["torch"] = step
            if jax is not None:
                fns["jax"], jax_loss = make_jax_layered_step(jax, cell, net, X, y)
                ours = net.loss_and_grad(X, y)[0]
                if not np.isclose(jax_loss, ours, rtol=1e-3):
                    print(f"  WARNING: jax's loss {jax_loss:.6g} != bptt's {ours:.6g}")
            t0 = time.perf_counter()
            stats = {k: summarize(v) for k, v in run_interleaved(fns, args).items()}
            peers = {k: stats[k]["median"] for k in ("torch", "jax") if k in stats}
            ratio = (min(peers.values()) / stats["bptt"]["median"] if peers else None)
            print(f"  layers {cell:4s} {size}: bptt {stats['bptt']['median'] * 1e3:.2f} ms"
                  + "".join(f", {k} {v * 1e3:.2f} ms" for k, v in peers.items())
                  + (f", x{ratio:.2f} best peer" if ratio else "")
                  + f"   [{time.perf_counter() - t0:.1f} s]", flush=True)
            if ratio is not None:
                need = LAYERS_TARGETS[size]
                rows.append({"kind": "layers", "cell": cell, "size": size, "stats": stats,
                             "label": f"(f) issue 14: 2-layer bidirectional >= {need:g}x "
                                      f"best of {'/'.join(peers)} [{cell} {size}]",
                             "value": ratio, "need": f"{need:g}x",
                             "verdict": "PASS" if ratio >= need else "FAIL"})
    r = RAGGED
    rng = np.random.default_rng(0)
    lengths = rng.integers(r["low"], r["high"] + 1, size=r["n"])
    frac = lengths.sum() / (r["n"] * r["high"])
    for cell in args.cells:
        net = bptt.RNN(r["I"], r["H"], r["O"], cell=cell, dtype=args.dtype, random_state=0)
        seqs = [rng.standard_normal((L, r["I"])).astype(args.dtype) for L in lengths]
        full = rng.standard_normal((r["n"], r["high"], r["I"])).astype(args.dtype)
        y = rng.standard_normal((r["n"], r["O"])).astype(args.dtype)
        fns = {"ragged": lambda: net.loss_and_grad(seqs, y, output="last"),
               "padded": lambda: net.loss_and_grad(full, y, output="last")}
        if torch is not None:
            rnn, lin, params = torch_layered(torch, net, args.dtype)
            pad = np.zeros((r["n"], r["high"], r["I"]), dtype=args.dtype)
            for i, x in enumerate(seqs):
                pad[i, :len(x)] = x
            Xt, yt, Lt = torch.from_numpy(pad), torch.from_numpy(y), torch.tensor(lengths)
            pack = torch.nn.utils.rnn.pack_padded_sequence

            def step(rnn=rnn, lin=lin, params=params):
                for q in params:
                    q.grad = None
                _, state = rnn(pack(Xt, Lt, batch_first=True, enforce_sorted=False))
                h = state[0] if isinstance(state, tuple) else state
                loss = torch.nn.functional.mse_loss(lin(h[-1]), yt)
                loss.backward()
            fns["torch"] = step
        t0 = time.perf_counter()
        stats = {k: summarize(v) for k, v in run_interleaved(fns, args).items()}
        over_padded = stats["ragged"]["median"] / stats["padded"]["median"]
        print(f"  ragged {cell:4s}: list {stats['ragged']['median'] * 1e3:.1f} ms, padded "
              f"{stats['padded']['median'] * 1e3:.1f} ms (x{over_padded:.2f}; sum of lengths "
              f"/ (n T) = {frac:.3f})"
              + (f", torch packed {stats['torch']['median'] * 1e3:.1f} ms"
                 if "torch" in stats else "") + f"   [{time.perf_counter() - t0:.1f} s]",
              flush=True)
        need = 1.15 * frac
        rows.append({"kind": "ragged", "cell": cell, "stats": stats,
                     "label": f"(g) issue 14: ragged <= {need:.3f} x padded [{cell}]",
                     "value": over_padded, "need": f"<= {need:.3f}x",
                     "verdict": "PASS" if over_padded <= need else "FAIL"})
        if "torch" in stats:
            ratio = stats["torch"]["median"] / stats["ragged"]["median"]
            rows.append({"kind": "ragged", "cell": cell, "stats": stats,
                         "label": f"(g) issue 14: ragged >= 2x torch packed [{cell}]",
                         "value": ratio, "need": "2x",
                         "verdict": "PASS" if ratio >= 2 else "FAIL"})
    return rows


def print_layers(rows):
    print()
    print("Layers and ragged input (issue 14), median (IQR) in ms, interleaved:")
    print()
    print("| check | bptt ms | padded ms | torch ms | jax ms | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        st = r["stats"]
        main = st.get("bptt", st.get("ragged"))
        print(f"| {r['label']} | {fmt_ms(main)} | {fmt_ms(st.get('padded'))} | "
              f"{fmt_ms(st.get('torch'))} | {fmt_ms(st.get('jax'))} | {fmt_x(r['value'])} |")


# ---------------------------------------------------------------- header
def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        model = info.get("Model name", "").strip()
        flags = info.get("Flags", "")
    except (OSError, subprocess.SubprocessError, ValueError):
        model, flags = "", ""
    if not model:
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        model = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
    simd = [f for f in ("avx512f", "avx2", "fma", "neon") if f in flags.split()]
    return f"{model or platform.processor() or 'unknown'} ({os.cpu_count()} logical CPUs"\
           f"{', ' + ' '.join(simd) if simd else ''})"


def blas_kernels():
    from threadpoolctl import threadpool_info
    rows = []
    for lib in threadpool_info():
        rows.append({k: lib.get(k) for k in ("user_api", "internal_api", "version",
                                             "architecture", "corearch", "num_threads",
                                             "threading_layer", "filepath")
                     if lib.get(k) is not None})
    return rows


def git_commit():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def fmt_ms(s):
    if s is None:
        return "—"
    ms = s["median"] * 1e3
    iqr = s["iqr"] * 1e3
    digits = 3 if ms < 1 else (2 if ms < 100 else 1)
    return f"{ms:.{digits}f} ({iqr:.{digits}f})"


def fmt_x(v):
    return "—" if v is None else f"{v:.2f}x"


# ---------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default="rnn,lstm,gru")
    ap.add_argument("--sizes", default="S,M,L,XL")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--subnormal", action="store_true",
                    help="also time output='last' against output='sequence' (issue 12)")
    ap.add_argument("--subnormal-only", action="store_true",
                    help="only the header and the subnormal check")
    ap.add_argument("--layers", action="store_true",
                    help="also time 2-layer bidirectional steps and ragged input (issue 14)")
    ap.add_argument("--layers-only", action="store_true",
                    help="only the header and the layers and ragged checks")
    args = ap.parse_args(argv)
    if args.subnormal_only:
        args.subnormal = args.no_torch = args.no_jax = True
    if args.layers_only:
        args.layers = True
    args.cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    args.sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    for s in args.sizes:
        if s not in SIZES:
            ap.error(f"unknown size {s!r}; choose from {','.join(SIZES)}")
    for c in args.cells:
        if c not in GATES:
            ap.error(f"unknown cell {c!r}; choose from {','.join(GATES)}")
    if args.seconds is None:
        args.seconds = 0.3 if args.quick else 1.5
    args.min_repeats = 3 if args.quick else 5
    # pause between blocks: OpenBLAS/OpenMP/Eigen workers spin ~0.1 s after work
    args.gap = 0.12 if (args.threads or 2) > 1 else 0.0
    if args.repeats is not None and args.repeats < 1:
        ap.error("--repeats must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    from threadpoolctl import threadpool_limits

    # Load bptt's compiled kernels (and so SciPy's OpenBLAS) before asking
    # threadpoolctl which BLAS is in use.
    make_bptt("rnn", args.dtype, "cython", (1, 1, 1, 1, 1)).forward(np.zeros((1, 1, 1)))
    limiter = None
    if args.threads:
        limiter = threadpool_limits(limits=args.threads)
    kernels = blas_kernels()
    blas_threads = max((k.get("num_threads", 1) for k in kernels
                        if k.get("user_api") == "blas"), default=1)
    threads = args.threads or blas_threads

    torch = jax = None
    notes = []
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            notes.append("torch not importable: skipped")
    if not args.no_jax:
        try:
            import jax
            if args.dtype == "float64":
                jax.config.update("jax_enable_x64", True)
            jax.numpy.zeros(1).block_until_ready()
        except ImportError:
            notes.append("jax not importable: skipped")
            jax = None

    load0 = os.getloadavg()
    peak_size = 2048 if args.quick else 3072
    peak0 = measure_sgemm_peak(peak_size, 1.0)

    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "bptt": bptt.__version__, "git": git_commit(),
        "bptt_build": compiled_variant(),
        "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None),
        "jax": getattr(jax, "__version__", None),
        "env": {v: os.environ.get(v) for v in ENV_VARS},
        "threads": threads,
        "blas": kernels,
        "torch_threads": torch.get_num_threads() if torch else None,
        "dtype": args.dtype,
        "quick": args.quick,
        "loadavg_start": load0,
    }
    print("# bptt training-step comparison")
    print(f"date: {meta['date']}   cpu: {meta['cpu']}")
    print(f"python {meta['python']}  bptt {meta['bptt']} ({meta['git']}, "
          f"{meta['bptt_build']} build)  numpy {np.__version__}"
          f"  torch {meta['torch']}  jax {meta['jax']}")
    for k in kernels:
        arch = k.get("architecture") or k.get("corearch") or "?"
        print(f"kernel: {k.get('internal_api')} {k.get('version')} arch={arch} "
              f"threads={k.get('num_threads')} ({os.path.basename(k.get('filepath', ''))})")
    print("env: " + "  ".join(f"{v}={os.environ.get(v, '<unset>')}" for v in ENV_VARS))
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_L2_SIZE"):
        print("NOTE: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set; recommended: "
              "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare.py")
    print(f"threads: {threads} (BLAS via threadpoolctl, torch.set_num_threads"
          f"{'' if torch else ' n/a'}; XLA uses its own pool, not changeable after import)")
    print(f"dtype: {args.dtype}  budget: {args.seconds:g} s/system/size"
          f"{'  (quick mode)' if args.quick else ''}  load average at start: "
          f"{load0[0]:.2f}")
    print(f"sgemm peak (numpy float32 {peak_size}^2 matmul, median): {peak0:.1f} GFLOP/s")
    for note in notes:
        print("note:", note)
    if threads > 1 and load0[0] > 0.5 * (os.cpu_count() or 1):
        print(f"WARNING: load average {load0[0]:.2f} on {os.cpu_count()} CPUs: other "
              f"processes compete for the cores; multi-threaded per-timestep GEMMs "
              f"(every system here) slow down by large, erratic factors when a worker "
              f"thread is descheduled. Prefer an idle machine, or --threads 1.")
    sys.stdout.flush()

    results = []  # one dict per (cell, size)
    for cell in ([] if args.subnormal_only or args.layers_only else args.cells):
        if make_bptt(cell, args.dtype, "cython", (1, 1, 1, 1, 1)) is None:
            print(f"note: cell {cell!r} not available in this bptt: skipped")
            continue
        for size in args.sizes:
            shape = SIZES[size]
            X, y = make_data(shape, args.dtype)
            net = make_bptt(cell, args.dtype, "cython", shape)
            # non-zero biases, so the weight mapping to the peers is really checked
            rng = np.random.default_rng(1)
            for name, value in net.params.items():
                if name.startswith("b"):
                    net.params[name] = rng.uniform(-0.1, 0.1, value.shape)
            ref = make_bptt(cell, args.dtype, "numpy", shape)
            ref.params = dict(net.params)
            loss_b, grads_b = net.loss_and_grad(X, y)
            fns = {"bptt": lambda: net.loss_and_grad(X, y),
                   "numpy": lambda: ref.loss_and_grad(X, y)}
            checks = {"numpy": lambda: (lambda r: (r[0], r[1]["W_hh"]))(ref.loss_and_grad(X, y))}
            if torch is not None:
                fns["torch"], checks["torch"] = make_torch_step(torch, cell, net, X, y, args.dtype)
            if jax is not None:
                fns["jax"], checks["jax"] = make_jax_step(jax, cell, net, X, y)
            agree = {}
            for name, check in checks.items():
                loss_p, dWhh = check()
                dl, dg = rel_diff(loss_p, loss_b), rel_diff(dWhh, grads_b["W_hh"])
                agree[name] = {"loss": loss_p, "loss_rel": dl, "dW_hh_rel": dg}
                if dl > 1e-3 or dg > 1e-2:
                    print(f"WARNING: {cell} {size}: {name} disagrees with bptt: loss "
                          f"{loss_p:.6g} vs {loss_b:.6g} (rel {dl:.1e}), dW_hh rel {dg:.1e}")
            t0 = time.perf_counter()
            times = run_interleaved(fns, args)
            stats = {name: summarize(ts) for name, ts in times.items()}
            row = {"cell": cell, "size": size, "shape": shape, "loss": float(loss_b),
                   "flops": step_flops(cell, *shape), "stats": stats, "times": times,
                   "agreement": agree}
            results.append(row)
            b = stats["bptt"]["median"]
            print(f"  {cell:4s} {size:2s}: " + "  ".join(
                f"{k} {v['median'] * 1e3:.3f} ms (n={v['n']})" for k, v in stats.items())
                + f"   [{time.perf_counter() - t0:.1f} s; loss agreement "
                + ", ".join(f"{k} {v['loss_rel']:.0e}" for k, v in agree.items()) + "]",
                flush=True)

    # streaming: inference over one long sequence
    stream = []
    for cell in ([] if args.subnormal_only or args.layers_only else args.cells):
        net = make_bptt(cell, args.dtype, "cython", STREAM)
        if net is None:
            continue
        ref = make_bptt(cell, args.dtype, "numpy", STREAM)
        X, _ = make_data(STREAM, args.dtype)
        fns = {"bptt": lambda: net.forward(X), "numpy": lambda: ref.forward(X)}
        if torch is not None:
            fns["torch"] = make_torch_forward(torch, cell, net, X, args.dtype)
        if jax is not None:
            fns["jax"] = make_jax_forward(jax, cell, net, X)
        times = run_interleaved(fns, args)
        stream.append({"cell": cell, "shape": STREAM, "times": times,
                       "stats": {k: summarize(v) for k, v in times.items()}})

    subnormal = run_subnormal(args) if args.subnormal else []
    layers = run_layers(args, torch, jax) if args.layers else []

    peak1 = measure_sgemm_peak(peak_size, 1.0)
    peak = max(peak0, peak1)
    load1 = os.getloadavg()
    meta.update(sgemm_peak_start=peak0, sgemm_peak_end=peak1, sgemm_peak=peak,
                loadavg_end=load1)

    # ------------------------------------------------------------ report
    def speedups(row):
        st = row["stats"]
        b = st["bptt"]["median"]
        out = {k: st[k]["median"] / b if k in st else None for k in SYSTEMS[1:]}
        peers = [st[k]["median"] for k in ("torch", "jax") if k in st]
        out["best"] = min(peers) / b if peers else None
        gflops = row["flops"] / b / 1e9
        out["gflops"], out["peak"] = gflops, gflops / peak
        return out

    print()
    print(f"sgemm peak: {peak0:.1f} GFLOP/s at start, {peak1:.1f} at end; using "
          f"{peak:.1f}.  load average start {load0[0]:.2f}, end {load1[0]:.2f}")
    if not args.subnormal_only:
        print()
        print(f"Training step (`loss_and_grad`, MSE on every step, full BPTT), {args.dtype}, "
              f"{threads} thread(s); median (IQR) in ms; `×` = speed-up of bptt (>1: bptt "
              f"faster).")
        print()
        print("| cell | size | n, T, I, H, O | bptt ms | NumPy ref ms | torch ms | jax ms "
              "| × NumPy | × torch | × jax | × best peer | bptt GFLOP/s | % sgemm peak |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        sp = speedups(row)
        row["speedups"] = sp
        st = row["stats"]
        print(f"| {row['cell']} | {row['size']} | {', '.join(map(str, row['shape']))} | "
              + " | ".join(fmt_ms(st.get(k)) for k in SYSTEMS) + " | "
              + " | ".join(fmt_x(sp[k]) for k in ("numpy", "torch", "jax", "best"))
              + f" | {sp['gflops']:.1f} | {100 * sp['peak']:.0f}% |")
    if stream:
        T = STREAM[1]
        print()
        print(f"Streaming inference (`forward`, n={STREAM[0]}, T={T}, I={STREAM[2]}, "
              f"H={STREAM[3]}, O={STREAM[4]}), µs per timestep, median (IQR):")
        print()
        print("| cell | bptt µs/step | NumPy ref µs/step | torch µs/step | jax µs/step |")
        print("|---|---:|---:|---:|---:|")
        for s in stream:
            cells = []
            for k in SYSTEMS:
                v = s["stats"].get(k)
                cells.append("—" if v is None else
                             f"{v['median'] / T * 1e6:.2f} ({v['iqr'] / T * 1e6:.2f})")
            print(f"| {s['cell']} | " + " | ".join(cells) + " |")
    if subnormal:
        print_subnormal(subnormal)
    if layers:
        print_layers(layers)

    # ------------------------------------------------------------ targets
    print()
    print("Targets:")
    by_key = {(r["cell"], r["size"]): r for r in results}
    verdicts = []
    for label, cell, size, metric, thr in TARGETS:
        if cell not in args.cells or args.subnormal_only or args.layers_only:
            continue
        row = by_key.get((cell, size))
        val = None if row is None else row["speedups"].get(metric)
        if val is None:
            why = "not measured" if row is None else f"{metric} not available"
            line = f"SKIP {label} [{cell} {size}]: {why}"
            verdict = "SKIP"
        else:
            ok = val >= thr
            verdict = "PASS" if ok else "FAIL"
            shown = (f"{100 * val:.0f}% (need {100 * thr:.0f}%)" if metric == "peak"
                     else f"{val:.2f}x (need {thr:g}x)")
            line = f"{verdict} {label} [{cell} {size}]: {shown}"
        print(line)
        verdicts.append({"label": label, "cell": cell, "size": size, "metric": metric,
                         "threshold": thr, "value": val, "verdict": verdict})
    for s in stream:
        us = s["stats"]["bptt"]["median"] / STREAM[1] * 1e6
        verdict = "PASS" if us < STREAM_TARGET_US else "FAIL"
        print(f"{verdict} (d) streaming forward < {STREAM_TARGET_US:g} µs/step "
              f"[{s['cell']} H={STREAM[3]} T={STREAM[1]}]: {us:.2f} µs/step")
        verdicts.append({"label": "(d) streaming forward", "cell": s["cell"],
                         "metric": "us_per_step", "threshold": STREAM_TARGET_US,
                         "value": us, "verdict": verdict})
    for r in subnormal:
        verdict = "PASS" if r["ratio"] <= SUBNORMAL_TARGET else "FAIL"
        label = f"(e) issue 12: output='last' <= {SUBNORMAL_TARGET:g}x output='sequence'"
        print(f"{verdict} {label} [{r['cell']} {r['dtype']} T={r['T']}]: {r['ratio']:.2f}x")
        verdicts.append({"label": label, "cell": r["cell"], "dtype": r["dtype"], "T": r["T"],
                         "metric": "last_over_sequence", "threshold": SUBNORMAL_TARGET,
                         "value": r["ratio"], "verdict": verdict})
    for r in layers:
        print(f"{r['verdict']} {r['label']}: {r['value']:.2f}x (need {r['need']})")
        verdicts.append({k: r[k] for k in ("label", "value", "verdict")})
    if load0[0] > 0.5 * (os.cpu_count() or 1) or load1[0] > 0.5 * (os.cpu_count() or 1):
        print(f"NOTE: the machine was busy (load average {load0[0]:.2f} -> {load1[0]:.2f} "
              f"on {os.cpu_count()} CPUs): absolute numbers are noisy; the ratios are "
              f"interleaved and so more robust.")

    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "results": results, "stream": stream,
                       "subnormal": subnormal, "layers": layers, "targets": verdicts}, fh, indent=1,
                      default=str)
        print(f"raw numbers saved to {args.json}")
    if limiter is not None:
        limiter.restore_original_limits()


if __name__ == "__main__":
    main()
