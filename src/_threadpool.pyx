"""bptt's thread pool (threadpool.h): the one pool every kernel module shares.

The kernel modules reach it through a capsule (threadpool_api.h); the Python
functions here serve tests and benchmarks. An idle worker spins for 2 ms
(yielding its core at every turn) before it sleeps; the environment variable
``BPTT_SPIN_US`` (read at import) sets that time in µs, 0 to sleep at once.
"""
import os

from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport uint64_t

from _fpmode cimport fp_get, fp_set, flush_bits

import numpy as np

cdef extern from "threadpool.h" nogil:
    ctypedef void (*bptt_part_fn)(void* args, int part, int n_parts) noexcept nogil
    ctypedef struct bptt_threadpool_api:
        void (*run_parts)(bptt_part_fn fn, void* args, int n_parts, int n_threads) noexcept nogil
    const char* BPTT_THREADPOOL_CAPSULE
    int bptt_pool_init()
    void bptt_run_parts(bptt_part_fn fn, void* args, int n_parts, int n_threads)
    long bptt_pool_spin_ns()
    void bptt_pool_set_spin_ns(long ns)
    int bptt_pool_workers()
    uint64_t bptt_pool_worker_parts()
    uint64_t bptt_pool_worker_sleeps()

cdef extern from "handoff.h" nogil:
    double bptt_handoff_ns(long rounds, int n_threads)

cdef bptt_threadpool_api _api
_api.run_parts = bptt_run_parts
if bptt_pool_init() != 0:
    raise OSError("bptt._threadpool: pthread_atfork failed")
_C_API = PyCapsule_New(<void*>&_api, BPTT_THREADPOOL_CAPSULE, NULL)


def _spin_from_environment():
    value = os.environ.get("BPTT_SPIN_US")
    if value is None:
        return
    try:
        us = float(value)
    except ValueError:
        us = -1.0
    if not 0 <= us <= 1e7:
        raise ValueError(
            f"BPTT_SPIN_US must be a number of microseconds from 0 to 10000000; "
            f"got {value!r}.")
    set_spin_us(us)


def workers():
    """Worker threads started so far (they start on first use)."""
    return bptt_pool_workers()


def worker_parts():
    """Parts run by worker threads (not the caller) since the process started."""
    return bptt_pool_worker_parts()


def worker_sleeps():
    """Times a worker has gone to sleep (its spin ran out) since the process started."""
    return bptt_pool_worker_sleeps()


def spin_us():
    """How long an idle worker spins for the next task before it sleeps, in µs."""
    return bptt_pool_spin_ns() / 1000.0


def set_spin_us(double us):
    """Set spin_us (0: workers sleep as soon as they are idle); for benchmarks."""
    if not us >= 0:
        raise ValueError(f"us must be >= 0; got {us!r}")
    bptt_pool_set_spin_ns(<long>(us * 1000))


cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    pthread_t pthread_self()


cdef struct RecordArgs:
    long* owner
    long* calls
    int spin


cdef void record_part(void* args, int part, int n_parts) noexcept nogil:
    cdef RecordArgs* a = <RecordArgs*>args
    cdef volatile long sink = 0
    cdef int i
    for i in range(a.spin):
        sink += i
    a.owner[part] = <long>pthread_self()
    a.calls[part] += 1


def caller_id():
    """The calling thread's pthread id, to compare with run_record's owners."""
    return <long>pthread_self()


def handoff_ns(long rounds=20000, int n_threads=2):
    """Mean round trip in ns of a cache line between the caller and a pool
    worker over ``rounds`` bounces (handoff.h), or -1 when no worker joined
    within 50 ms (always so on ``n_threads`` = 1). On this machine: 40-130
    ns while its two virtual cores share an L3, 350-450 ns in the stretches
    when they do not."""
    cdef double ns
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1; got {rounds}")
    with nogil:
        ns = bptt_handoff_ns(rounds, n_threads)
    return ns


def run_record(int n_parts, int n_threads, int spin=0):
    """Run a part function that records which stack ran each part, for tests.

    Returns (calls, owner): how often each part ran, and the pthread id of
    the thread that ran it.
    """
    if n_parts < 1:
        raise ValueError(f"n_parts must be >= 1; got {n_parts}")
    owner = np.zeros(n_parts, dtype=np.int64)
    calls = np.zeros(n_parts, dtype=np.int64)
    cdef long[::1] owner_view = owner
    cdef long[::1] calls_view = calls
    cdef RecordArgs args
    args.owner = &owner_view[0]
    args.calls = &calls_view[0]
    args.spin = spin
    with nogil:
        bptt_run_parts(record_part, &args, n_parts, n_threads)
    return calls, owner


# ---------------------------------------------------------------- floating point

def fpmode():
    """The calling thread's floating-point control register: x86 MXCSR,
    aarch64 FPCR, 0 where fpmode.h knows none. For tests: a kernel call
    must leave it as it found it."""
    return fp_get()


def set_fpmode(unsigned long long mode):
    """Write the calling thread's floating-point control register (see
    ``fpmode``); for tests, which put back what they read."""
    fp_set(mode)


def flush_mode_bits():
    """The bits of ``fpmode`` the kernels set while they run: FTZ | DAZ
    (0x8040) on x86, FZ (1 << 24) on aarch64, 0 elsewhere (fpmode.h)."""
    return flush_bits()


cdef struct ModeArgs:
    unsigned long long* mode
    long* owner
    int spin


cdef void mode_part(void* args, int part, int n_parts) noexcept nogil:
    cdef ModeArgs* a = <ModeArgs*>args
    cdef volatile long sink = 0
    cdef int i
    for i in range(a.spin):
        sink += i
    a.mode[part] = fp_get()
    a.owner[part] = <long>pthread_self()


def run_fpmodes(int n_parts, int n_threads, int spin=0):
    """Run a part function that records the floating-point mode each part
    ran under, for tests.

    Returns (mode, owner): ``fpmode`` as part p saw it, and the pthread id
    of the thread that ran it.
    """
    if n_parts < 1:
        raise ValueError(f"n_parts must be >= 1; got {n_parts}")
    mode = np.zeros(n_parts, dtype=np.ulonglong)
    owner = np.zeros(n_parts, dtype=np.int64)
    cdef unsigned long long[::1] mode_view = mode
    cdef long[::1] owner_view = owner
    cdef ModeArgs args
    args.mode = &mode_view[0]
    args.owner = &owner_view[0]
    args.spin = spin
    with nogil:
        bptt_run_parts(mode_part, &args, n_parts, n_threads)
    return mode, owner


_spin_from_environment()
