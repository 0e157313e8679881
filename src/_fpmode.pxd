# The kernels' floating-point mode (fpmode.h): subnormals flushed to zero
# inside a kernel call, the caller's mode put back after. Every split phase
# gets it from bptt_parallel (threadpool.h, bptt_run_parts); kernel code that
# runs outside bptt_parallel wraps itself:
#
#     cdef fp_mode saved
#     with nogil:
#         saved = flush_enter()
#         ...
#         flush_leave(saved)
cdef extern from "fpmode.h" nogil:
    ctypedef unsigned long long fp_mode "bptt_fpmode"
    fp_mode flush_enter "bptt_fp_flush_enter"()
    void flush_leave "bptt_fp_flush_leave"(fp_mode saved)
    fp_mode fp_get "bptt_fp_get"()
    void fp_set "bptt_fp_set"(fp_mode mode)
    fp_mode flush_bits "bptt_fp_flush_bits"()
