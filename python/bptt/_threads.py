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
so ``threadpoolctl.threadpool_limits(1)`` (or OPENBLAS_NUM_THREADS=1, which
joblib's loky backend sets in its workers) makes bptt single-threaded too.

The hold on BLAS survives what users do around it: a KeyboardInterrupt at
any point, and ``os.fork()`` from another thread at any moment (the child
gets its parent's BLAS thread count back; the pool's workers are restarted
by its own fork handler, src/threadpool.h).
"""

import ctypes
import os
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

# The process-wide state of serial_blas: how many uses are inside (over all
# threads), the BLAS thread count to restore when the last one leaves, and
# each thread's own depth (for a fork, below). An RLock, so that a signal
# handler running bptt inside another use's critical section (same thread)
# does not deadlock.
_lock = threading.RLock()
_active = 0
_saved = 1
_depth = threading.local()


class serial_blas:
    """Context manager: BLAS on one thread inside, the thread budget as value.

    Nested and concurrent uses share one process-wide count, so the BLAS
    setting is restored when the last one leaves. Without a BLAS whose
    thread count can be read and set, the budget is 1 (bptt's threads and
    the BLAS's own would otherwise oversubscribe the cores).

    The count and the BLAS setting stay consistent through a
    KeyboardInterrupt (a use that did not finish entering undoes its part)
    and through ``os.fork()`` from any thread at any moment (the fork
    handlers below).
    """

    def __enter__(self):
        global _active, _saved
        if _get_blas_threads is None:
            return 1
        # A KeyboardInterrupt is raised only where the interpreter checks for
        # signals: after a call, at a function's start, on a loop's jump. The
        # stores that count this use have no call between them; an interrupt
        # before them undoes the BLAS setting (under the lock, so no other
        # use reads it meanwhile), one after them (releasing the lock) leaves
        # a counted use, which __exit__ undoes. Either way no trace is left.
        entered = False
        try:
            with _lock:
                depth = getattr(_depth, "value", 0)
                saved = _saved
                held = False
                try:
                    if _active == 0:
                        saved = max(1, _get_blas_threads())
                        held = saved > 1
                        if held:
                            _set_blas_threads(1)
                except BaseException:
                    if held:
                        _set_blas_threads(saved)
                    raise
                _saved = saved
                _active += 1
                _depth.value = depth + 1
                entered = True
            return saved
        except BaseException:
            if entered:
                self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc):
        global _active
        if _get_blas_threads is None:
            return False
        with _lock:
            _depth.value -= 1
            _active -= 1
            if _active == 0 and _saved > 1:
                _set_blas_threads(_saved)
        return False


def _before_fork():
    # Fork only between critical sections: the ctypes calls inside them
    # release the GIL, so another thread may be in one now; wait for it to
    # leave, so the child copies a consistent count and BLAS setting.
    _lock.acquire()


def _after_fork_in_parent():
    _lock.release()


def _after_fork_in_child():
    """The child has only the forking thread: the uses of the parent's other
    threads never leave here, so drop them, and when none of the child's
    own is left, give BLAS back the thread count they had set aside."""
    global _lock, _active
    _lock = threading.RLock()  # the parent's is held by the forking thread
    parent_active = _active
    _active = getattr(_depth, "value", 0)
    if parent_active > 0 and _active == 0 and _saved > 1:
        _set_blas_threads(_saved)


if hasattr(os, "register_at_fork") and _get_blas_threads is not None:
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


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
