"""Threads: bptt splits the batch across its own threads, BLAS runs serial.

Why: the recurrence is one small GEMM per timestep. Letting OpenBLAS
thread each of those synchronises its threads at every step, which gains
little on an idle machine and collapses (10-100x slower) when another
process holds a core. The sequences of a batch are independent, so the
kernels instead split their work into parts on bptt's thread pool
(src/threadpool.h): a slice of the batch for the whole time loop (no
synchronisation per step), row ranges of the large GEMMs, timestep ranges
of the weight gradients. When the threads divide a training step's batch,
each thread instead takes a slab of the batch and does all of its work,
phase after phase (src/_cellparts.pxd, "slabs"), so no rows pass between
the cores. The calling thread claims parts too, so a worker
that is slow to wake, or whose core another process holds, costs nothing
but its share. Meanwhile SciPy's OpenBLAS (the one the kernels call through
``scipy.linalg.cython_blas``) is set to one thread, and restored after.

The thread budget is the BLAS thread count in force when the call starts,
so ``threadpoolctl.threadpool_limits(1)`` (or OPENBLAS_NUM_THREADS=1)
makes bptt single-threaded too.
"""

import ctypes
import threading

_SET_NAMES = ("scipy_openblas_set_num_threads", "openblas_set_num_threads",
              "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_")
_GET_NAMES = ("scipy_openblas_get_num_threads", "openblas_get_num_threads",
              "scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_")


def _find_blas_controls():
    """The set/get thread functions of the BLAS behind scipy's cython_blas."""
    try:
        import scipy.linalg.cython_blas as cython_blas
        lib = ctypes.CDLL(cython_blas.__file__)  # dlsym also searches its BLAS
    except (ImportError, OSError):
        return None, None
    setter = getter = None
    for name in _SET_NAMES:
        if hasattr(lib, name):
            setter = getattr(lib, name)
            setter.argtypes, setter.restype = [ctypes.c_int], None
            break
    for name in _GET_NAMES:
        if hasattr(lib, name):
            getter = getattr(lib, name)
            getter.argtypes, getter.restype = [], ctypes.c_int
            break
    if setter is None or getter is None:
        return None, None
    return setter, getter


_set_blas_threads, _get_blas_threads = _find_blas_controls()
_lock = threading.Lock()
_active = 0
_saved = 1


class serial_blas:
    """Context manager: BLAS on one thread inside, the thread budget as value.

    Nested and concurrent uses share one process-wide count, so the BLAS
    setting is restored when the last one leaves. Without a BLAS whose
    thread count can be read and set, the budget is 1 (bptt's threads and
    the BLAS's own would otherwise oversubscribe the cores).
    """

    def __enter__(self):
        global _active, _saved
        if _get_blas_threads is None:
            return 1
        with _lock:
            if _active == 0:
                _saved = max(1, _get_blas_threads())
                if _saved > 1:
                    _set_blas_threads(1)
            _active += 1
            return _saved

    def __exit__(self, *exc):
        global _active
        if _get_blas_threads is None:
            return False
        with _lock:
            _active -= 1
            if _active == 0 and _saved > 1:
                _set_blas_threads(_saved)
        return False


# A thread gets at least this many rows x gates x hidden units x (hidden +
# input) multiply-adds per timestep: below it, claiming parts and the
# smaller per-thread GEMMs cost more than the split saves. Measured on 2
# cores (Elman, T = 50, two threads against one): 4 x 16 x 24 per step 0.87x,
# 8 x 32 x 40 1.09x, 16 x 32 x 48 1.18x, the M size (32 x 64 x 96) 1.3-1.6x.
MIN_WORK_PER_THREAD = 1 << 13


# A call with at least this many multiply-adds (timesteps x step work) has
# GEMMs that OpenBLAS would thread (it does above about 2^18 per GEMM), so it
# holds BLAS at one thread even when it runs on one thread itself.
BLAS_THREADED_WORK = 1 << 18


def plan_threads(budget, n_samples, step_work):
    """How many threads to split a batch of n_samples over.

    ``step_work`` is the multiply-adds of one timestep for the whole batch.
    """
    if budget <= 1 or n_samples < 2:
        return 1
    return max(1, min(budget, n_samples, step_work // MIN_WORK_PER_THREAD))
