"""``python -m bptt demo gradients``: vanishing and exploding gradients, seen.

The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015): each
sequence has T = 100 steps of two inputs, a random value in [0, 1) and a
marker that is 1 at two steps (one in each half) and 0 elsewhere; the target
is the sum of the two marked values. Predicting 1 every time scores the
mean squared error 1/6 (the variance of the sum); doing better needs the
value from the first half, 50 to 100 steps before the loss.

For each network the demo measures, before training, how much of the
gradient of the loss at the last step reaches the first one (the ratio of
the mean norms of dL/dh_t at t = 1 and t = T, from ``loss_and_grad(...,
return_state_grads=True)``), then trains it for a fixed budget of seconds on
fresh batches and reports the test error reached. The networks:

- tanh with small random weights (``init="uniform"``, PyTorch's default):
  the gradient vanishes, about geometrically in the distance;
- ReLU with the identity as W_hh (IRNN, Le et al. 2015): kept;
- LSTM: kept by the cell state (forget gate bias 1);
- tanh with large recurrent weights (an orthogonal W_hh times
  EXPLODING_SCALE): the gradient explodes; trained without clipping and
  with ``clip_norm``.

Every network trains with the same optimizer (Adam, the estimators'
default), learning rate and batch size; all but the "no clipping" run clip
the global gradient norm at CLIP_NORM, as the estimators' ``clip_norm``
does.
"""

import time

import numpy as np

from .optimizers import AdamOptimizer
from .rnn import RNN

T = 100
HIDDEN = 32
BATCH = 32
TEST_SAMPLES = 256
LEARNING_RATE = 0.01
CLIP_NORM = 1.0
EXPLODING_SCALE = 3.0
BASELINE_MSE = 1 / 6  # predicting 1, the mean of the target


def adding_problem(n, rng, steps=T):
    """X (n, steps, 2) and y (n,) of the adding problem."""
    X = np.zeros((n, steps, 2))
    X[:, :, 0] = rng.uniform(size=(n, steps))
    rows = np.arange(n)
    first = rng.integers(0, steps // 2, size=n)
    second = rng.integers(steps // 2, steps, size=n)
    X[rows, first, 1] = 1.0
    X[rows, second, 1] = 1.0
    return X, X[rows, first, 0] + X[rows, second, 0]


def networks(seed):
    """[(name, network, clip_norm)] of the demo, freshly initialised."""
    tanh_small = RNN(2, HIDDEN, 1, init="uniform", random_state=seed)
    irnn = RNN(2, HIDDEN, 1, nonlinearity="relu", init="identity", random_state=seed)
    lstm = RNN(2, HIDDEN, 1, cell="lstm", random_state=seed)
    runs = [("tanh, small random W_hh", tanh_small, CLIP_NORM),
            ("ReLU, identity W_hh (IRNN)", irnn, CLIP_NORM),
            ("LSTM", lstm, CLIP_NORM)]
    for clip in (None, CLIP_NORM):
        net = RNN(2, HIDDEN, 1, init="orthogonal", random_state=seed)
        net.params["W_hh"] = EXPLODING_SCALE * net.params["W_hh"]
        label = "no clipping" if clip is None else f"clip_norm={clip:g}"
        runs.append((f"tanh, W_hh x{EXPLODING_SCALE:g}, {label}", net, clip))
    return runs


def gradient_flow(net, X, y):
    """The per-timestep mean norms of dL/dh_t for the loss at the last step."""
    return net.loss_and_grad(X, y, output="last", return_state_grads=True)[2]["dh_norm"]


def test_mse(net, X, y):
    """Mean squared error of the last step's output, inf when it is not finite."""
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            Y, _ = net.forward(X)
        except FloatingPointError:
            return np.inf
        mse = float(np.mean((Y[:, -1, 0] - y) ** 2))
    return mse if np.isfinite(mse) else np.inf


def train(net, clip_norm, seconds, rng, X_test, y_test):
    """Adam on fresh batches for ``seconds``.

    Returns (updates, curve, diverged): curve is a list of (seconds, test
    MSE) pairs, from 0 to the end; diverged says the run stopped early on a
    non-finite loss or step.
    """
    arrays = list(net.params.values())  # updated in place, as the estimators do
    opt = AdamOptimizer(arrays, LEARNING_RATE)
    curve = [(0.0, test_mse(net, X_test, y_test))]
    updates, diverged = 0, False
    start = time.perf_counter()
    next_eval = seconds / 10
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= next_eval or elapsed >= seconds:
            curve.append((elapsed, test_mse(net, X_test, y_test)))
            next_eval += seconds / 10
        if elapsed >= seconds:
            break
        X, y = adding_problem(BATCH, rng)
        try:
            loss, grads = net.loss_and_grad(X, y, output="last")
        except FloatingPointError:
            diverged = True
            break
        grads = [grads[name] for name in net.params]
        scale = 1.0
        if clip_norm is not None:
            norm = np.sqrt(sum(float(np.vdot(g, g)) for g in grads))
            if norm > clip_norm:
                scale = clip_norm / norm
        if not opt.step(arrays, grads, scale):
            diverged = True
            break
        updates += 1
    if diverged:
        curve.append((time.perf_counter() - start, np.inf))
    return updates, curve, diverged


def run(seconds=5.0, seed=0, png=None, out=print):
    """Run the demo: print the table, write the figure to ``png`` (when given
    and matplotlib is installed). Returns the rows as dicts."""
    rng = np.random.default_rng(seed)
    X_probe, y_probe = adding_problem(BATCH, rng)
    X_test, y_test = adding_problem(TEST_SAMPLES, rng)
    out(f"The adding problem, T={T}: the target is the sum of the two marked values; "
        f"predicting 1 scores MSE {BASELINE_MSE:.3f}.")
    out(f"H={HIDDEN}, batch {BATCH}, Adam (learning rate {LEARNING_RATE}), "
        f"{seconds:g} s of training each.\n")
    rows = []
    for name, net, clip in networks(seed):
        flow = gradient_flow(net, X_probe, y_probe)
        ratio = flow[0] / flow[-1] if flow[-1] > 0 else np.nan
        updates, curve, diverged = train(net, clip, seconds, np.random.default_rng(seed + 1),
                                         X_test, y_test)
        rows.append({"name": name, "flow": flow, "ratio": ratio, "updates": updates,
                     "curve": curve, "diverged": diverged, "mse": curve[-1][1]})
    table = format_table(rows, seconds)
    out(table)
    if png is not None:
        try:
            figure(rows, png)
        except ImportError:
            out(f"\n(no figure: it needs matplotlib, an optional extra: "
                f'pip install "bptt[plot]")')
        else:
            out(f"\nfigure written to {png}")
    return rows


def format_table(rows, seconds):
    """The demo's table, in Markdown."""
    lines = ["| network | ‖dL/dh_1‖ / ‖dL/dh_T‖ before training | updates in "
             f"{seconds:g} s | test MSE after (predicting 1: {BASELINE_MSE:.3f}) |",
             "|---|---:|---:|---:|"]
    for row in rows:
        mse = "diverged" if row["diverged"] or not np.isfinite(row["mse"]) else (
            f"{row['mse']:.4f}")
        lines.append(f"| {row['name']} | {row['ratio']:.2e} | {row['updates']} | {mse} |")
    return "\n".join(lines)


def figure(rows, path):
    """Two panels: the gradient flow before training, and the test error
    during training; written to ``path`` (PNG)."""
    from .plot import _pyplot, plot_gradient_flow

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    try:
        plot_gradient_flow({row["name"]: row["flow"] for row in rows}, ax=left,
                           relative=True)
        left.set_title(f"Gradient flow before training (adding problem, T={T})")
        for i, row in enumerate(rows):
            times, mse = np.array(row["curve"]).T
            right.plot(times, np.minimum(mse, 10.0), color=f"C{i}", label=row["name"])
        right.axhline(BASELINE_MSE, color="0.4", linestyle="--", label="predicting 1")
        right.set_yscale("log")
        right.set_xlabel("seconds of training")
        right.set_ylabel("test MSE (clipped at 10)")
        right.set_title("Training in a fixed budget")
        right.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
