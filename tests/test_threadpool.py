"""bptt's thread pool (src/threadpool.h): every part runs exactly once, workers
take part when they are awake, and concurrent or forked callers are safe."""

import os
import sys
import threading

import numpy as np
import pytest

import bptt
from bptt import _bptt, _threadpool as pool
from helpers import CELLS, make_problem


@pytest.mark.parametrize("n_parts", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_every_part_runs_once(n_parts, n_threads):
    for spin in (0, 20000):
        calls, owners = pool.run_record(n_parts, n_threads, spin)
        np.testing.assert_array_equal(calls, np.ones(n_parts))
        if n_threads == 1 or n_parts == 1:
            assert set(owners) == {pool.caller_id()}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity")
                    else (os.cpu_count() or 1) < 2, reason="needs two CPUs")
def test_awake_workers_take_parts():
    """A spinning worker claims parts. The scheduler may first place it on the
    caller's CPU, where it cannot run while the caller computes, so the test
    keeps calling until it has been moved. The deadline only turns a worker
    that never runs into a failure: on a loaded machine it can take seconds,
    and an idle one needs a few calls."""
    import time
    before = pool.worker_parts()
    owners = set()
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:
        # parts of tens to hundreds of µs, long enough for a spinning worker
        _, owner = pool.run_record(2, 2, 200000)
        owners.update(owner)
        if pool.worker_parts() > before and len(owners) >= 2:
            break
    assert pool.workers() >= 1
    assert pool.worker_parts() > before
    assert len(owners) >= 2  # the caller and at least one worker ran parts


def test_spin_setting_round_trips():
    old = pool.spin_us()
    try:
        pool.set_spin_us(0)
        assert pool.spin_us() == 0
        # sleeping workers are woken, and the caller does whatever they miss
        calls, _ = pool.run_record(8, 2, 1000)
        np.testing.assert_array_equal(calls, np.ones(8))
    finally:
        pool.set_spin_us(old)
    with pytest.raises(ValueError, match="us must be >= 0"):
        pool.set_spin_us(-1)


@pytest.mark.parametrize("value,expected", [("0", 0.0), ("150.5", 150.5)])
def test_spin_from_the_environment(value, expected):
    import subprocess
    code = "from bptt import _threadpool as p; print(p.spin_us())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "BPTT_SPIN_US": value}, check=True)
    assert float(out.stdout) == expected


@pytest.mark.parametrize("value", ["fast", "-1", "nan"])
def test_bad_spin_in_the_environment_says_what_it_wants(value):
    import subprocess
    code = "import bptt; bptt.RNN(1, 2, 1).forward([[[0.0]]])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "BPTT_SPIN_US": value})
    assert out.returncode != 0
    assert "BPTT_SPIN_US must be a number of microseconds" in out.stderr


def test_import_leaves_the_environment_alone():
    """bptt sets no OpenMP (or other) variable: other libraries in the process,
    PyTorch's OpenMP runtime for one, read them when they load."""
    import subprocess
    code = ("import os; before = dict(os.environ); import bptt; "
            "bptt.RNN(2, 4, 1).loss_and_grad([[[0.0, 1.0]]], [[0.5]]); "
            "print(sorted(set(os.environ.items()) ^ set(before.items())))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_run_record_rejects_no_parts():
    with pytest.raises(ValueError, match="n_parts must be >= 1"):
        pool.run_record(0, 2)


def test_concurrent_callers_get_their_own_results(monkeypatch):
    """Callers in several Python threads share one pool: the one that finds
    it busy runs its parts itself, and every result is the serial one."""
    from bptt import _threads
    monkeypatch.setattr(_threads, "MIN_WORK_PER_THREAD", 1)
    nets = []
    for cell in CELLS:
        net, X, y = make_problem(0, n=6, T=12, I=3, H=8, O=2, cell=cell)
        nets.append((net, X, y, net.loss_and_grad(X, y)))
    failures = []

    def work(net, X, y, expected):
        for _ in range(20):
            value, grads = net.loss_and_grad(X, y)
            if value != pytest.approx(expected[0], rel=1e-12):
                failures.append((net.cell, value, expected[0]))
            for name in grads:
                if not np.allclose(grads[name], expected[1][name], rtol=1e-10, atol=1e-12):
                    failures.append((net.cell, name))

    threads = [threading.Thread(target=work, args=args) for args in nets * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


@pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "fork"),
                    reason="needs fork")
def test_forked_child_starts_its_own_workers():
    pool.run_record(4, 2, 100000)  # the parent has a worker now
    assert pool.workers() >= 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no worker threads came along
        ok = False
        try:
            calls, _ = pool.run_record(16, 2, 20000)
            net, X, y = make_problem(0, n=4, T=8, I=2, H=4, O=1)
            value, _ = net.loss_and_grad(X, y)
            ok = bool((calls == 1).all() and np.isfinite(value))
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    result = os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    assert result == b"1"


def test_threads_used_at_the_m_size(monkeypatch):
    """The M size splits over two threads when two are allowed, and runs on
    one when BLAS is limited to one (the caller's threadpoolctl limit): the
    budget each call plans with is the limit in force when it starts."""
    from threadpoolctl import threadpool_limits
    net = bptt.RNN(32, 64, 8, dtype="float32", random_state=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 20, 32)).astype(np.float32)
    y = rng.standard_normal((32, 20, 8)).astype(np.float32)
    planned = []
    plan = _bptt.plan_threads

    def record(net, budget, n_samples):
        planned.append((budget, plan(net, budget, n_samples)))
        return planned[-1][1]

    monkeypatch.setattr(_bptt, "plan_threads", record)
    for limit in (2, 1, 2):
        planned.clear()
        with threadpool_limits(limits=limit, user_api="blas"):
            before = pool.worker_parts()
            net.loss_and_grad(X, y)
            net.forward(X)
            if limit == 1:  # no part ran on a worker
                assert pool.worker_parts() == before
        assert planned == [(limit, limit)] * 2, (limit, planned)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity")
                    else (os.cpu_count() or 1) < 2, reason="needs two CPUs")
def test_handoff_between_caller_and_worker():
    """handoff_ns bounces a cache line between the caller and a worker and
    returns the mean round trip in ns (benchmarks/modes.py reports it; how
    long it takes depends on the machine and its load, so it is not checked
    here), or -1 when no worker joined within its 50 ms (none awake yet: the
    first call starts them; or, on a loaded machine, none got a core in
    time). Calls are repeated until a worker joins; the deadline only turns
    one that never does into a failure."""
    import time
    results = []
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline and not any(r > 0 for r in results):
        results.append(pool.handoff_ns(2000))
    assert all(r == -1 or r > 0 for r in results), results
    assert results[-1] > 0, results
    with pytest.raises(ValueError, match="rounds must be >= 1; got 0"):
        pool.handoff_ns(0)



def test_handoff_on_one_thread_gives_up():
    """On one thread nobody joins: -1 after the 50 ms timeout, and part 1,
    which the caller runs afterwards, returns at once instead of waiting."""
    assert pool.handoff_ns(100, n_threads=1) == -1
