"""GridSearchCV over RNNRegressor with n_jobs=1 against n_jobs=2 (joblib's
loky, the default; multiprocessing; threading): wall seconds and the CPU
seconds of this process and its worker processes (from /proc), interleaved
in rounds. Equal CPU seconds mean no oversubscription: loky limits each
worker's BLAS to cpu_count // n_jobs threads (OPENBLAS_NUM_THREADS), and
bptt's thread budget follows it; a multiprocessing worker keeps the
parent's budget, and bptt's pool (the caller runs whatever parts a late
worker has not claimed) keeps that from costing.

    python benchmarks/grid_search_jobs.py [--rounds 2] [--epochs 8]
"""

import argparse
import os
import time
import warnings

import numpy as np
from joblib import parallel_backend
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

import bptt

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds():
    """CPU seconds of this process, its child processes running now (from
    /proc) and its children already waited for."""
    me, total = os.getpid(), 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            total += (int(fields[11]) + int(fields[12])) / TICK
    t = os.times()
    return total + t.user + t.system + t.children_user + t.children_system


def search(n_jobs, backend, epochs):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 40, 3))
    y = X[:, :, 0].mean(axis=1) + 0.5 * X[:, -1, 1]
    grid = {"hidden_size": [32, 64], "learning_rate": [0.003, 0.01]}
    est = GridSearchCV(bptt.RNNRegressor(max_epochs=epochs, random_state=0), grid, cv=3,
                       n_jobs=n_jobs)
    if backend is None:
        est.fit(X, y)
    else:
        with parallel_backend(backend, n_jobs=n_jobs):
            est.fit(X, y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    search(2, None, 1)  # start loky's workers: their start-up is not measured
    configs = [(1, None), (2, None), (2, "multiprocessing"), (2, "threading")]
    for _ in range(args.rounds):
        for n_jobs, backend in configs:
            cpu, wall = cpu_seconds(), time.perf_counter()
            search(n_jobs, backend, args.epochs)
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            print(f"n_jobs={n_jobs} {backend or 'loky':16s} wall {wall:6.2f} s  "
                  f"cpu {cpu:6.2f} s  (load average {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
