/* Flush-to-zero for bptt's kernels: subnormal results become 0 and
 * subnormal inputs read as 0 while a kernel runs.
 *
 * Why: going back from the last step of a long sequence, BPTT's gradient
 * shrinks geometrically into the subnormal range (below 1.2e-38 in float32,
 * 2.2e-308 in float64), and on many x86 cores (Intel's in particular) every
 * multiply or add that takes or makes a subnormal costs a microcode assist
 * of about 100 cycles: float32 training with the loss at the last step
 * (`output="last"`) ran 10-28x slower than with the loss at every step
 * (issue 12). Values that small are far below any tolerance the results are
 * compared at, so the kernels flush them to zero: x86 MXCSR.FTZ (results)
 * and MXCSR.DAZ (inputs); aarch64 FPCR.FZ (both). Elsewhere this is a no-op.
 *
 * The mode is per thread and the caller's must not change: NumPy (the
 * reference backend, the user's own code) stays IEEE. So a kernel call sets
 * it on entry and puts the caller's register back, unchanged, on exit
 * (bptt_fp_flush_enter / bptt_fp_flush_leave); bptt_run_parts
 * (threadpool.h) does this for every split kernel phase, and the pool's own
 * worker threads, which run nothing but kernel parts, set it once at start.
 * Kernel code outside bptt_run_parts wraps itself the same way
 * (_fpmode.pxd). Only the flush bits change: rounding stays the caller's.
 */
#ifndef BPTT_FPMODE_H
#define BPTT_FPMODE_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || (defined(__i386__) && defined(__SSE2__))
#include <xmmintrin.h>

typedef uint64_t bptt_fpmode;

#define BPTT_MXCSR_FTZ 0x8000u
#define BPTT_MXCSR_DAZ 0x0040u

static inline bptt_fpmode bptt_fp_get(void) { return _mm_getcsr(); }
/* The compiler knows nothing of the mode: the memory barriers keep the
 * kernel's loads and stores (and so its arithmetic) on their side of a
 * switch. */
static inline void bptt_fp_set(bptt_fpmode mode) {
    __asm__ __volatile__("" ::: "memory");
    _mm_setcsr((unsigned int)mode);
    __asm__ __volatile__("" ::: "memory");
}

/* The first x86-64 processors may lack DAZ, and setting a bit the CPU does
 * not have faults: FXSAVE's MXCSR_MASK says which bits exist (0 there
 * means the default mask, without DAZ). Read once. */
static unsigned int bptt_fp_flush_cached = 0;

static inline bptt_fpmode bptt_fp_flush_bits(void) {
    unsigned int bits = __atomic_load_n(&bptt_fp_flush_cached, __ATOMIC_RELAXED);
    if (bits == 0) {
        unsigned char area[512] __attribute__((aligned(16)));
        uint32_t mask;
        memset(area, 0, sizeof(area));
        __asm__ __volatile__("fxsave %0" : "=m"(area));
        memcpy(&mask, area + 28, sizeof(mask));
        if (mask == 0)
            mask = 0xffbfu;
        bits = BPTT_MXCSR_FTZ | (mask & BPTT_MXCSR_DAZ);
        __atomic_store_n(&bptt_fp_flush_cached, bits, __ATOMIC_RELAXED);
    }
    return bits;
}

#elif defined(__aarch64__)

typedef uint64_t bptt_fpmode;

static inline bptt_fpmode bptt_fp_get(void) {
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    return fpcr;
}
static inline void bptt_fp_set(bptt_fpmode mode) {
    __asm__ __volatile__("msr fpcr, %0" : : "r"(mode) : "memory");
}
/* FPCR.FZ flushes subnormal inputs and results of single and double
 * precision (FZ16, bit 19, would do half precision, which bptt has not) */
static inline bptt_fpmode bptt_fp_flush_bits(void) { return (uint64_t)1 << 24; }

#else

/* no flush control known here: the kernels run IEEE, as the reference */
typedef uint64_t bptt_fpmode;
static inline bptt_fpmode bptt_fp_get(void) { return 0; }
static inline void bptt_fp_set(bptt_fpmode mode) { (void)mode; }
static inline bptt_fpmode bptt_fp_flush_bits(void) { return 0; }

#endif

/* Turn flushing on for this thread; returns the mode to restore. Writes
 * the register only when a flush bit is off (a write costs more than a
 * read on some cores), so a nested call costs one read. */
static inline bptt_fpmode bptt_fp_flush_enter(void) {
    bptt_fpmode saved = bptt_fp_get(), bits = bptt_fp_flush_bits();
    if ((saved & bits) != bits)
        bptt_fp_set(saved | bits);
    return saved;
}

/* Put back the mode bptt_fp_flush_enter returned: the whole register, so
 * the caller's control bits and exception flags are as they were before
 * the kernel ran. */
static inline void bptt_fp_flush_leave(bptt_fpmode saved) {
    if (bptt_fp_get() != saved)
        bptt_fp_set(saved);
}

#endif
