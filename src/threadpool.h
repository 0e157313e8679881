/* bptt's thread pool: runs the parts of a kernel on the calling thread and
 * on persistent workers (bptt/_threads.py says how many).
 *
 * Why not OpenMP: a parallel region ends only when every thread of its team
 * has run, so each region waits for its sleeping threads to wake. On the
 * virtual machines bptt is measured on that wake costs about 0.3 ms, as much
 * as a whole forward pass at the M size; an OpenMP thread that spins instead
 * (OMP_WAIT_POLICY=ACTIVE, GOMP_SPINCOUNT) never yields its core, so when
 * another process wants that core, every region waits for a scheduler
 * timeslice (measured 25x slower under one CPU hog).
 *
 * Here the parts are claimed, not assigned: the calling thread starts on
 * them at once and takes whatever no worker has claimed, so a late worker
 * costs nothing and the call never waits for a thread that is not running
 * a part. A worker spins on the next task for BPTT_SPIN_NS after its last
 * part, yielding its core at every turn (so a process that wants the core
 * gets it), then sleeps; back-to-back kernel calls in a training loop find
 * their workers awake. One caller owns the pool at a time: a concurrent
 * caller runs its parts itself.
 *
 * Claims: `claim` packs (task generation << 32 | next unclaimed part). A
 * worker reads the task and claims part p of generation g by compare-and-swap
 * on the whole word, so a claim fails if the task it read was finished and
 * replaced meanwhile. The caller publishes the next task only after every
 * part of the current one is done.
 */
#ifndef BPTT_THREADPOOL_H
#define BPTT_THREADPOOL_H

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BPTT_CPU_RELAX() _mm_pause()
#else
#define BPTT_CPU_RELAX() __asm__ __volatile__("" ::: "memory")
#endif

#include "fpmode.h"
#include "threadpool_api.h"

#define BPTT_MAX_WORKERS 63
/* how long an idle worker spins for the next task before it sleeps */
#define BPTT_SPIN_NS 2000000L
/* ... and how much of that it spins without yielding its core */
#define BPTT_EAGER_NS 50000L

static struct {
    bptt_part_fn fn;           /* the current task; written before `claim` */
    void *args;
    int n_parts;
    uint64_t claim;            /* generation << 32 | next unclaimed part */
    int done;                  /* parts of the current task finished */
    int busy;                  /* a caller owns the pool */
    int n_workers;
    int sleepers;              /* workers waiting on `wake` */
    long spin_ns;
    uint64_t worker_parts;     /* parts run by workers, for tests */
    uint64_t worker_sleeps;    /* times a worker went to sleep, for tests */
    pthread_mutex_t lock;
    pthread_cond_t wake;
} bptt_pool = {NULL, NULL, 0, 0, 0, 0, 0, 0, BPTT_SPIN_NS, 0, 0,
               PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static long bptt_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static uint32_t bptt_generation(void) {
    return (uint32_t)(__atomic_load_n(&bptt_pool.claim, __ATOMIC_ACQUIRE) >> 32);
}

/* Run unclaimed parts of task `generation` until none is left; the number run. */
static int bptt_run_claims(uint32_t generation) {
    int ran = 0;
    for (;;) {
        uint64_t word = __atomic_load_n(&bptt_pool.claim, __ATOMIC_ACQUIRE);
        if ((uint32_t)(word >> 32) != generation)
            return ran;
        bptt_part_fn fn = __atomic_load_n(&bptt_pool.fn, __ATOMIC_ACQUIRE);
        void *args = __atomic_load_n(&bptt_pool.args, __ATOMIC_ACQUIRE);
        int n_parts = __atomic_load_n(&bptt_pool.n_parts, __ATOMIC_ACQUIRE);
        uint32_t part = (uint32_t)word;
        if (part >= (uint32_t)n_parts)
            return ran;
        if (!__atomic_compare_exchange_n(&bptt_pool.claim, &word, word + 1, 0,
                                         __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            continue;  /* another thread claimed it, or a new task began */
        fn(args, (int)part, n_parts);
        __atomic_fetch_add(&bptt_pool.done, 1, __ATOMIC_RELEASE);
        ran++;
    }
}

/* Wait until a task later than `seen` is published; spin, then sleep. The
 * first BPTT_EAGER_NS of the spin do not yield: the regions of one kernel
 * call follow each other within microseconds, and a sched_yield costs
 * several on a virtual machine. */
static uint32_t bptt_wait_for_task(uint32_t seen) {
    uint32_t generation;
    long start = bptt_now_ns(), idle;
    long spin_ns = __atomic_load_n(&bptt_pool.spin_ns, __ATOMIC_RELAXED);
    for (;;) {
        for (int i = 0; i < 32; i++) {
            if ((generation = bptt_generation()) != seen)
                return generation;
            BPTT_CPU_RELAX();
        }
        idle = bptt_now_ns() - start;
        if (idle > spin_ns)
            break;
        if (idle > BPTT_EAGER_NS)
            sched_yield();
    }
    __atomic_fetch_add(&bptt_pool.worker_sleeps, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&bptt_pool.lock);
    __atomic_fetch_add(&bptt_pool.sleepers, 1, __ATOMIC_SEQ_CST);
    while ((generation = bptt_generation()) == seen)
        pthread_cond_wait(&bptt_pool.wake, &bptt_pool.lock);
    __atomic_fetch_sub(&bptt_pool.sleepers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&bptt_pool.lock);
    return generation;
}

static void *bptt_worker_main(void *unused) {
    uint32_t seen = bptt_generation();
    (void)unused;
    /* a worker runs nothing but kernel parts: it flushes subnormals for
     * good (fpmode.h) */
    (void)bptt_fp_flush_enter();
    for (;;) {
        seen = bptt_wait_for_task(seen);
        int ran = bptt_run_claims(seen);
        if (ran)
            __atomic_fetch_add(&bptt_pool.worker_parts, (uint64_t)ran, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* Start workers until there are `wanted` (the caller owns the pool). */
static void bptt_start_workers(int wanted) {
    if (wanted > BPTT_MAX_WORKERS)
        wanted = BPTT_MAX_WORKERS;
    while (bptt_pool.n_workers < wanted) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attr, bptt_worker_main, NULL);
        pthread_attr_destroy(&attr);
        if (failed)
            return;  /* the caller runs the parts no worker takes */
        bptt_pool.n_workers++;
    }
}

/* A forked child has none of its parent's threads. */
static void bptt_pool_after_fork(void) {
    pthread_mutex_init(&bptt_pool.lock, NULL);
    pthread_cond_init(&bptt_pool.wake, NULL);
    bptt_pool.n_workers = 0;
    bptt_pool.sleepers = 0;
    bptt_pool.busy = 0;
}

static long bptt_pool_spin_ns(void) {
    return __atomic_load_n(&bptt_pool.spin_ns, __ATOMIC_RELAXED);
}

static void bptt_pool_set_spin_ns(long ns) {
    __atomic_store_n(&bptt_pool.spin_ns, ns, __ATOMIC_RELAXED);
}

static int bptt_pool_workers(void) {
    return __atomic_load_n(&bptt_pool.n_workers, __ATOMIC_RELAXED);
}

static uint64_t bptt_pool_worker_parts(void) {
    return __atomic_load_n(&bptt_pool.worker_parts, __ATOMIC_RELAXED);
}

static uint64_t bptt_pool_worker_sleeps(void) {
    return __atomic_load_n(&bptt_pool.worker_sleeps, __ATOMIC_RELAXED);
}

static int bptt_pool_init(void) {
    return pthread_atfork(NULL, NULL, bptt_pool_after_fork);
}

/* bptt_run_parts, with the caller's floating-point mode already set. */
static void bptt_run_parts_flushed(bptt_part_fn fn, void *args, int n_parts,
                                   int n_threads) {
    int expected = 0;
    if (n_threads > n_parts)
        n_threads = n_parts;
    if (n_threads <= 1 ||
        !__atomic_compare_exchange_n(&bptt_pool.busy, &expected, 1, 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        for (int part = 0; part < n_parts; part++)
            fn(args, part, n_parts);
        return;
    }
    bptt_start_workers(n_threads - 1);
    __atomic_store_n(&bptt_pool.fn, fn, __ATOMIC_RELAXED);
    __atomic_store_n(&bptt_pool.args, args, __ATOMIC_RELAXED);
    __atomic_store_n(&bptt_pool.n_parts, n_parts, __ATOMIC_RELAXED);
    __atomic_store_n(&bptt_pool.done, 0, __ATOMIC_RELAXED);
    uint32_t generation = bptt_generation() + 1;
    __atomic_store_n(&bptt_pool.claim, (uint64_t)generation << 32, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&bptt_pool.sleepers, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&bptt_pool.lock);
        pthread_cond_broadcast(&bptt_pool.wake);
        pthread_mutex_unlock(&bptt_pool.lock);
    }
    bptt_run_claims(generation);
    /* only parts that a running worker claimed are left */
    for (int turn = 0; __atomic_load_n(&bptt_pool.done, __ATOMIC_ACQUIRE) < n_parts; turn++) {
        if (turn < 4096)
            BPTT_CPU_RELAX();
        else
            sched_yield();
    }
    __atomic_store_n(&bptt_pool.busy, 0, __ATOMIC_RELEASE);
}

/* Run fn(args, part, n_parts) for every part in 0..n_parts-1, on up to
 * n_threads threads (the caller's included); returns when all are done.
 * Every kernel phase runs here, so this is where the calling thread
 * flushes subnormals to zero (fpmode.h: the workers always do) and gets
 * its own floating-point mode back after. */
static void bptt_run_parts(bptt_part_fn fn, void *args, int n_parts, int n_threads) {
    bptt_fpmode saved = bptt_fp_flush_enter();
    bptt_run_parts_flushed(fn, args, n_parts, n_threads);
    bptt_fp_flush_leave(saved);
}

#endif
