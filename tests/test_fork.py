"""bptt is safe where users put it: a forked child (also one forked while
another thread is inside a kernel and inside ``serial_blas``) works and
gets its parent's BLAS thread budget, and joblib (loky, multiprocessing) and
``GridSearchCV(n_jobs=2)`` run fits in parallel with the serial results.

Each scenario runs in its own Python process with a timeout, and every
forked child is waited for with a timeout too, so a hang fails the test
instead of stalling the suite.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "fork"),
                                reason="needs fork")

# Runs in the scenario's process: fork, run fn() in the child, send its
# pickled result back; a child that does not answer in time is killed and
# reported as hung.
FORK_HELPER = '''
import os, pickle, select, signal

def in_child(fn, timeout=30.0):
    """("ok", fn()) from a forked child, ("error", repr) or ("hung", None)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            try:
                out = ("ok", fn())
            except BaseException as exc:
                out = ("error", repr(exc))
            data = pickle.dumps(out)
            while data:
                data = data[os.write(write, data):]
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while True:
        ready, _, _ = select.select([read], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            return ("hung", None)
        chunk = os.read(read, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return pickle.loads(b"".join(chunks)) if chunks else ("error", "no answer")
'''


def run_scenario(tmp_path, body, timeout=240):
    """Run a script (FORK_HELPER, then body) in a fresh interpreter; the JSON
    object it prints last."""
    script = tmp_path / "scenario.py"
    script.write_text(FORK_HELPER + textwrap.dedent(body))
    # the machine's BLAS default, not a limit inherited from the test run
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_model_used_before_fork_works_in_the_child(tmp_path):
    """A network and an estimator used (with bptt's threads and the BLAS
    hold) before the fork give the parent's results in the child, and a fit
    in the child gives the parent's fit."""
    out = run_scenario(tmp_path, '''
        import json
        import numpy as np
        from threadpoolctl import threadpool_limits
        import bptt
        from bptt import _threadpool, _threads

        rng = np.random.default_rng(0)
        X = rng.standard_normal((16, 30, 4))
        y = rng.standard_normal((16, 30, 2))
        ys = X[:, :, 0].mean(axis=1)
        # two threads, so the pool has a worker and serial_blas holds BLAS,
        # even on a one-CPU machine
        with threadpool_limits(limits=2, user_api="blas"):
            nets = [bptt.RNN(4, 64, 2, cell=cell, random_state=0)
                    for cell in ("rnn", "lstm", "gru")]
            reg = bptt.RNNRegressor(hidden_size=32, max_epochs=3, random_state=0,
                                    dtype="float64")
            reg.fit(X, ys)

            def work():
                results = []
                for net in nets:
                    value, grads = net.loss_and_grad(X, y)
                    results.append((net.forward(X)[0], value, grads))
                refit = bptt.RNNRegressor(hidden_size=32, max_epochs=3,
                                          random_state=0, dtype="float64").fit(X, ys)
                return results, reg.predict(X), refit.predict(X), _threads._active

            parent = work()
            workers = _threadpool.workers()
            status, child = in_child(work)
        assert workers >= 1 or _threads._get_blas_threads is None, workers
        assert status == "ok", (status, child)
        for (Yp, vp, gp), (Yc, vc, gc) in zip(parent[0], child[0]):
            np.testing.assert_allclose(Yc, Yp, rtol=1e-12, atol=1e-14)
            assert abs(vc - vp) <= 1e-12 * abs(vp)
            for name in gp:
                np.testing.assert_allclose(gc[name], gp[name], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(child[1], parent[1], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(child[2], parent[2], rtol=1e-9, atol=1e-12)
        assert child[3] == 0
        print(json.dumps({"ok": True}))
    ''')
    assert out["ok"]


def test_fork_while_another_thread_trains(tmp_path):
    """Fork many times while another thread runs loss_and_grad (inside a
    kernel, inside serial_blas, which holds BLAS at one thread): every child
    finishes, runs with its parent's BLAS thread budget (threadpoolctl), and
    a network of the parent gives the parent's result in it."""
    out = run_scenario(tmp_path, '''
        import json, threading, time
        import numpy as np
        from threadpoolctl import ThreadpoolController, threadpool_limits
        import bptt
        from bptt import _threads

        def blas_threads(controller):
            return sorted((i["filepath"], i["num_threads"]) for i in controller.info()
                          if i["user_api"] == "blas")

        controller = ThreadpoolController()
        rng = np.random.default_rng(0)
        X = rng.standard_normal((16, 40, 4))
        y = rng.standard_normal((16, 40, 2))
        net = bptt.RNN(4, 48, 2, random_state=0)
        with threadpool_limits(limits=2, user_api="blas"):
            budget = blas_threads(controller)
            reference = net.forward(X[:4, :10])[0]
            stop = threading.Event()
            calls = [0]

            def train():
                trained = bptt.RNN(4, 64, 2, random_state=1)
                while not stop.is_set():
                    trained.loss_and_grad(X, y)
                    calls[0] += 1

            def child():
                return (blas_threads(controller), _threads._active,
                        net.forward(X[:4, :10])[0])

            thread = threading.Thread(target=train)
            thread.start()
            while calls[0] == 0:
                time.sleep(0.001)
            results = []
            for k in range(50):
                time.sleep(0.0005 * (k % 5))  # vary the moment of the fork
                results.append(in_child(child))
            stop.set()
            thread.join()
            after = blas_threads(controller)
        hung = sum(status == "hung" for status, _ in results)
        errors = [value for status, value in results if status == "error"]
        ok = [value for status, value in results if status == "ok"]
        wrong_blas = sum(value[0] != budget for value in ok)
        still_active = sum(value[1] != 0 for value in ok)
        wrong = sum(not np.allclose(value[2], reference, rtol=1e-12, atol=1e-14)
                    for value in ok)
        print(json.dumps({"hung": hung, "errors": errors[:3], "wrong_blas": wrong_blas,
                          "still_active": still_active, "wrong": wrong,
                          "restored": after == budget, "calls": calls[0],
                          "budget": budget}))
    ''')
    assert out["calls"] > 1
    assert out["hung"] == 0 and out["errors"] == [], out
    assert out["wrong_blas"] == 0 and out["still_active"] == 0, out
    assert out["wrong"] == 0 and out["restored"], out


PARALLEL_BODY = '''
    import json, warnings
    import numpy as np
    from joblib import Parallel, delayed
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV
    import bptt

    def problem():
        rng = np.random.default_rng(0)
        X = rng.standard_normal((72, 10, 2))
        y = X[:, :, 0].mean(axis=1) + 0.5 * X[:, -1, 1]
        return X, y

    def fit_predict(seed):
        X, y = problem()
        # float64: the RTOL below is float64 rounding
        reg = bptt.RNNRegressor(hidden_size=32, max_epochs=3, random_state=seed,
                                dtype="float64")
        return reg.fit(X, y).predict(X)

    def relative_difference(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return float(np.abs(a - b).max() / max(1.0, np.abs(a).max()))

    if __name__ == "__main__":
        warnings.simplefilter("ignore", ConvergenceWarning)
        out = {}
        # the parent trains first, so its pool and BLAS hold were in use
        serial = [fit_predict(seed) for seed in range(4)]
        for backend in ("loky", "multiprocessing"):
            parallel = Parallel(n_jobs=2, backend=backend)(
                delayed(fit_predict)(seed) for seed in range(4))
            out[backend] = max(relative_difference(a, b)
                               for a, b in zip(serial, parallel))
        X, y = problem()
        grid = {"hidden_size": [8, 32], "learning_rate": [0.01, 0.03]}
        searches = {}
        for n_jobs in (1, 2):
            searches[n_jobs] = GridSearchCV(
                bptt.RNNRegressor(max_epochs=3, random_state=0, dtype="float64"), grid, cv=3,
                n_jobs=n_jobs).fit(X, y)
        out["grid_best"] = [searches[1].best_params_, searches[2].best_params_]
        out["grid_scores"] = relative_difference(
            searches[1].cv_results_["mean_test_score"],
            searches[2].cv_results_["mean_test_score"])
        out["grid_predict"] = relative_difference(searches[1].predict(X[:5]),
                                                  searches[2].predict(X[:5]))
        print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def parallel_runs(tmp_path_factory):
    """One process runs the fits serially, with joblib's loky and
    multiprocessing backends (2 jobs), and a GridSearchCV with n_jobs=1 and
    2 (the worker processes are shared, so their start-up is paid once)."""
    return run_scenario(tmp_path_factory.mktemp("parallel"), PARALLEL_BODY)


# a worker process may run another number of threads than the parent,
# which sums in another order: the results agree to rounding
RTOL = 1e-8


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_joblib_runs_fits_in_parallel(parallel_runs, backend):
    """Fits in joblib workers finish and predict what the same fits give in
    the parent (multiprocessing forks the parent after it has trained)."""
    assert parallel_runs[backend] <= RTOL, parallel_runs


def test_grid_search_with_two_jobs(parallel_runs):
    """GridSearchCV(n_jobs=2) over an RNNRegressor finishes and scores every
    candidate as n_jobs=1 does."""
    best_serial, best_parallel = parallel_runs["grid_best"]
    assert best_parallel == best_serial
    assert parallel_runs["grid_scores"] <= RTOL, parallel_runs
    assert parallel_runs["grid_predict"] <= RTOL, parallel_runs
