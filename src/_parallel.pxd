# The kernels' split over threads: bptt_parallel(fn, args, n_parts, n_threads)
# runs fn(args, part, n_parts) for every part on bptt's shared thread pool
# (threadpool.h says why it is not OpenMP). A kernel module calls
# import_threadpool() once at import.
cdef extern from "threadpool_api.h" nogil:
    ctypedef void (*bptt_part_fn)(void* args, int part, int n_parts) noexcept nogil
    void bptt_parallel(bptt_part_fn fn, void* args, int n_parts, int n_threads)
    int import_threadpool "bptt_import_threadpool"() except -1 with gil


cdef inline int balanced_parts(int n_threads, int limit) noexcept nogil:
    """Parts for a split whose pieces cost alike (rows, timesteps): two per
    thread, so that a thread that starts late or runs slower leaves its
    second part to the others; one on one thread; at most ``limit``."""
    cdef int parts = 1 if n_threads <= 1 else 2 * n_threads
    return max(1, min(parts, limit))
