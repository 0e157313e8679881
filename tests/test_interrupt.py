"""KeyboardInterrupt (Ctrl-C) during ``fit``, ``forward`` or ``loss_and_grad``
arrives as KeyboardInterrupt and leaves the model usable: its weights are
those of a complete update (never part of one), an early-stopping fit
restores its best weights, and the BLAS thread setting and bptt's own
state are restored.

The SIGINT tests send a real signal from a timer thread, in a fresh Python
process with a timeout (a hang fails instead of stalling the suite); the
in-process tests raise KeyboardInterrupt at chosen points instead.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import bptt
from bptt import RNNRegressor
from bptt import optimizers as optimizers_module

SIGINT_SCRIPT = '''
import json, os, signal, threading, time
import numpy as np
from threadpoolctl import ThreadpoolController, threadpool_limits
import bptt
from bptt import _threads

controller = ThreadpoolController()


def blas_threads():
    return sorted((i["filepath"], i["num_threads"]) for i in controller.info()
                  if i["user_api"] == "blas")


from interrupting import interrupted  # tests/interrupting.py, on PYTHONPATH


class Recording(bptt.RNNRegressor):
    """Keeps the weights before each update, and at the end of each epoch
    (where early stopping scores them); sets `started` at the 20th update
    and at the end of the 2nd epoch."""

    def _step(self, grads, *args):
        self.before_step = {k: v.copy() for k, v in self.net_.params.items()}
        self.steps_started = getattr(self, "steps_started", 0) + 1
        if self.steps_started == 20 and not self.early_stopping:
            self.started.set()
        return super()._step(grads, *args)

    def _validation_score(self, X, y):
        score = super()._validation_score(X, y)
        self.epoch_ends = getattr(self, "epoch_ends", []) + [
            (score, {k: v.copy() for k, v in self.net_.params.items()})]
        if len(self.epoch_ends) == 2:
            self.started.set()
        return score


def complete_update(est):
    """'before' when every weight is as before the last update began,
    'after' when every array moved (a whole SGD step), else 'part'."""
    same = [np.array_equal(est.net_.params[k], est.before_step[k])
            for k in est.before_step]
    return "before" if all(same) else "after" if not any(same) else "part"


out = {"fit": [], "early": [], "forward": [], "loss_and_grad": []}
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 20, 3))
y = X[:, :, 0].mean(axis=1) + 0.5 * X[:, -1, 1]
with threadpool_limits(limits=2, user_api="blas"):
    budget = blas_threads()
    # fit: SGD, so that a complete update moves every weight array
    for delay in (0.0, 0.05, 0.2):
        est = Recording(hidden_size=32, optimizer="sgd", learning_rate=0.01,
                        max_epochs=10**6, n_iter_no_change=10**6, random_state=0)
        est.started = threading.Event()
        got, latency = interrupted(lambda: est.fit(X, y), delay, est.started)
        out["fit"].append({
            "got": got, "latency": latency, "steps": getattr(est, "steps_started", 0),
            "update": complete_update(est) if hasattr(est, "before_step") else None,
            "finite": bool(np.isfinite(est.predict(X)).all()),
            "stray": hasattr(est, "_best_params"), "active": _threads._active})
    # early stopping: the best epoch's weights come back
    for delay in (0.0, 0.1):
        est = Recording(hidden_size=8, learning_rate=0.05, max_epochs=10**6,
                        early_stopping=True, n_iter_no_change=10**6, random_state=0)
        est.started = threading.Event()
        got, latency = interrupted(lambda: est.fit(X[:64], y[:64]), delay, est.started)
        ends = getattr(est, "epoch_ends", [])
        scores = [score for score, _ in ends]
        best = ends[int(np.argmax(scores))][1] if ends else None
        out["early"].append({
            "got": got, "latency": latency, "epochs": len(ends),
            "best_restored": best is not None and all(
                np.array_equal(est.net_.params[k], best[k]) for k in best),
            "finite": bool(np.isfinite(est.predict(X)).all()),
            "stray": hasattr(est, "_best_params")})
    # forward and loss_and_grad of long sequences (seconds here; tenths of a
    # second on a fast machine: the signal comes early in them)
    net = bptt.RNN(8, 320, 4, dtype="float32", random_state=0)
    Xs = rng.standard_normal((4, 5, 8))
    ys = rng.standard_normal((4, 5, 4))
    reference = net.forward(Xs)[0], net.loss_and_grad(Xs, ys)[0]
    Xf = rng.standard_normal((32, 20000, 8)).astype(np.float32)
    Xl = rng.standard_normal((16, 4000, 8)).astype(np.float32)
    yl = rng.standard_normal((16, 4000, 4)).astype(np.float32)
    for name, call in (("forward", lambda: net.forward(Xf)),
                       ("loss_and_grad", lambda: net.loss_and_grad(Xl, yl))):
        for delay in (0.01, 0.05):
            got, latency = interrupted(call, delay)
            out[name].append({
                "got": got, "latency": latency, "active": _threads._active,
                "same": bool(np.array_equal(net.forward(Xs)[0], reference[0])
                             and net.loss_and_grad(Xs, ys)[0] == reference[1])})
    out["blas_restored"] = blas_threads() == budget
print(json.dumps(out))
'''

STORM_SCRIPT = '''
import json, os, random, signal, threading, time
import numpy as np
from threadpoolctl import ThreadpoolController, threadpool_limits
import bptt
from bptt import _threads

controller = ThreadpoolController()


def blas_threads():
    return sorted((i["filepath"], i["num_threads"]) for i in controller.info()
                  if i["user_api"] == "blas")


rng = np.random.default_rng(0)
net = bptt.RNN(4, 48, 2, random_state=0)
X = rng.standard_normal((16, 12, 4))
y = rng.standard_normal((16, 12, 2))
with threadpool_limits(limits=2, user_api="blas"):
    budget = blas_threads()
    expected = net.loss_and_grad(X, y)[0]
    stop = threading.Event()

    def storm():
        pick = random.Random(0)
        while not stop.is_set():
            time.sleep(pick.uniform(0.0005, 0.004))
            os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=storm)
    caught = calls = 0
    end = time.monotonic() + 1.5
    sender.start()
    while True:  # a signal may land anywhere, the except clauses included
        try:
            while time.monotonic() < end:
                try:
                    net.loss_and_grad(X, y)
                    net.forward(X)
                    calls += 1
                except KeyboardInterrupt:
                    caught += 1
            stop.set()
            sender.join()
            break
        except KeyboardInterrupt:
            caught += 1
    time.sleep(0.05)
    out = {"caught": caught, "calls": calls, "active": _threads._active,
           "blas_restored": blas_threads() == budget,
           "same": net.loss_and_grad(X, y)[0] == expected}
print(json.dumps(out))
'''


# A suite started in the background (a shell ignores SIGINT for its
# background jobs, and children inherit the ignore) would give the scripts
# an ignored SIGINT, which Python then never turns into KeyboardInterrupt:
# they restore Python's own handler first.
_RESTORE_SIGINT = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"


def _run(tmp_path, script, timeout=180):
    path = tmp_path / "interrupt.py"
    path.write_text(_RESTORE_SIGINT + textwrap.dedent(script))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    # the scripts import tests/interrupting.py
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.abspath(__file__)),
                                                      env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


needs_sigint = pytest.mark.skipif(sys.platform == "win32",
                                  reason="sends SIGINT to its own process")


@pytest.fixture(scope="module")
def sigint_runs(tmp_path_factory):
    """fit (plain and early-stopping), forward and loss_and_grad, each
    interrupted by SIGINT from a timer at a few moments."""
    return _run(tmp_path_factory.mktemp("sigint"), SIGINT_SCRIPT)


@needs_sigint
def test_sigint_during_fit_leaves_a_complete_update(sigint_runs):
    for run in sigint_runs["fit"]:
        assert run["got"], run  # arrived as KeyboardInterrupt, fit did not finish
        assert run["steps"] >= 20, run
        assert run["update"] in ("before", "after"), run
        assert run["finite"] and not run["stray"] and run["active"] == 0, run


@needs_sigint
def test_sigint_during_early_stopping_fit_restores_best_weights(sigint_runs):
    for run in sigint_runs["early"]:
        assert run["got"], run
        assert run["epochs"] >= 2, run
        assert run["best_restored"], run
        assert run["finite"] and not run["stray"], run


@needs_sigint
@pytest.mark.parametrize("call", ["forward", "loss_and_grad"])
def test_sigint_during_a_long_call(sigint_runs, call):
    for run in sigint_runs[call]:
        assert run["got"], run
        assert run["active"] == 0 and run["same"], run
    assert sigint_runs["blas_restored"]


@needs_sigint
def test_sigint_storm_keeps_blas_and_counts_consistent(tmp_path):
    """SIGINT every few ms, landing anywhere (inside kernels, in serial_blas
    entering or leaving): afterwards no use is counted, BLAS has its thread
    count back, and results are unchanged."""
    out = _run(tmp_path, STORM_SCRIPT)
    assert out["caught"] > 20 and out["calls"] > 0, out
    assert out["active"] == 0 and out["blas_restored"] and out["same"], out


# ---------------------------------------------------------------- in-process
def test_interrupt_between_copies_completes_the_step(monkeypatch):
    """A KeyboardInterrupt after the optimizer copied some arrays of a step:
    it copies the rest before the interrupt goes on (one whole step)."""
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal(2)]
    grads = [rng.standard_normal(p.shape) for p in params]
    expected = [p.copy() for p in params]
    optimizers_module.SGDOptimizer(expected, 0.1).step(expected, grads)
    copyto = np.copyto
    calls = []

    def interrupted_copyto(dst, src, *args, **kwargs):
        copyto(dst, src, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(optimizers_module.np, "copyto", interrupted_copyto)
    with pytest.raises(KeyboardInterrupt):
        optimizers_module.SGDOptimizer(params, 0.1).step(params, grads)
    for got, want in zip(params, expected):
        np.testing.assert_array_equal(got, want)


def _interrupt_at(est_cls, batch):
    """A subclass whose ``batch``-th batch raises KeyboardInterrupt after
    its update, recording the initial weights and the weights and
    validation score of every epoch."""

    class Interrupted(est_cls):
        def _train_batch(self, *args):
            if not hasattr(self, "initial"):
                self.initial = {k: v.copy() for k, v in self.net_.params.items()}
            loss = super()._train_batch(*args)
            self.batches = getattr(self, "batches", 0) + 1
            self.after_batch = {k: v.copy() for k, v in self.net_.params.items()}
            if self.batches == batch:
                raise KeyboardInterrupt
            return loss

        def _validation_score(self, X, y):
            score = super()._validation_score(X, y)
            self.epoch_ends = getattr(self, "epoch_ends", []) + [
                (score, {k: v.copy() for k, v in self.net_.params.items()})]
            return score

    return Interrupted


@pytest.mark.parametrize("batch", [1, 2, 23])
def test_interrupted_early_stopping_restores_best(seq_data, batch):
    """Interrupted in the first epoch (the initial weights are the best so
    far) or later (the best-scoring epoch's): those weights come back, and
    no _best_params is left behind."""
    X, y = seq_data
    est = _interrupt_at(RNNRegressor, batch)(
        hidden_size=8, learning_rate=0.05, batch_size=8, max_epochs=100,
        early_stopping=True, validation_fraction=0.25, n_iter_no_change=100,
        random_state=0)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, y)
    ends = getattr(est, "epoch_ends", [])
    assert len(ends) == (batch - 1) // 4  # 30 training samples: 4 batches an epoch
    best = ends[int(np.argmax([score for score, _ in ends]))][1] if ends else est.initial
    for k in best:
        np.testing.assert_array_equal(est.net_.params[k], best[k])
    assert not hasattr(est, "_best_params")
    assert np.isfinite(est.predict(X)).all()
    if ends:  # not the initial weights: training moved them
        assert not np.array_equal(est.net_.params["W_hh"], est.initial["W_hh"])


def test_interrupt_without_early_stopping_keeps_the_last_update(seq_data):
    """Without early stopping an interrupted fit keeps the weights of its
    last complete update, not an earlier epoch's."""
    X, y = seq_data
    est = _interrupt_at(RNNRegressor, 7)(hidden_size=8, batch_size=8, max_epochs=100,
                                          random_state=0)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, y)
    assert est.n_iter_ == 1 and len(est.loss_curve_) == 1  # 5 batches an epoch
    for k in est.after_batch:
        np.testing.assert_array_equal(est.net_.params[k], est.after_batch[k])
    assert not hasattr(est, "_best_params")
    assert np.isfinite(est.predict(X)).all()


def test_interrupt_inside_the_step_drops_the_optimizer(seq_data, monkeypatch):
    """An interrupt inside the optimizer's step may leave its moments part
    way: the estimator drops it, so a later partial_fit starts afresh."""
    X, y = seq_data
    est = RNNRegressor(hidden_size=4, random_state=0).partial_fit(X, y)
    assert hasattr(est, "_optimizer")
    step = type(est._optimizer).step

    def interrupted_step(self, *args, **kwargs):
        step(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(type(est._optimizer), "step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        est.partial_fit(X, y)
    assert not hasattr(est, "_optimizer")
    monkeypatch.undo()
    est.partial_fit(X, y)
    assert np.isfinite(est.predict(X)).all()
