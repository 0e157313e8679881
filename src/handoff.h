/* How long a cache line takes to pass between the caller and a worker of
 * bptt's pool: the machine property that decides whether splitting a
 * kernel's phases differently is cheap (src/_cellparts.pxd, "slabs").
 *
 * bptt_handoff_ns(rounds, n_threads) runs one task of two parts on the pool. Part 0
 * (the caller) and part 1 (a worker) bounce a counter `rounds` times, each
 * waiting for the other's increment; the result is the mean round trip in
 * ns. If no other thread joins within 50 ms (no worker awake, or one
 * core), part 0 gives up and the result is -1; part 1, run by the caller
 * after it, then sees that and returns at once.
 */
#ifndef BPTT_HANDOFF_H
#define BPTT_HANDOFF_H

#include "threadpool.h"

typedef struct {
    long counter __attribute__((aligned(64)));
    int state __attribute__((aligned(64)));  /* 0, then JOINED or ABANDONED */
    long rounds;
    double ns;
} bptt_handoff_args;

enum { BPTT_HANDOFF_JOINED = 1, BPTT_HANDOFF_ABANDONED = 2 };

static void bptt_handoff_part(void *p, int part, int n_parts) {
    bptt_handoff_args *a = (bptt_handoff_args *)p;
    int idle = 0;
    (void)n_parts;
    if (part == 1) {
        if (!__atomic_compare_exchange_n(&a->state, &idle, BPTT_HANDOFF_JOINED, 0,
                                         __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return;  /* part 0 gave up: run by the caller after it */
        for (long i = 0; i < a->rounds; i++) {
            while (__atomic_load_n(&a->counter, __ATOMIC_ACQUIRE) != 2 * i + 1)
                BPTT_CPU_RELAX();
            __atomic_store_n(&a->counter, 2 * i + 2, __ATOMIC_RELEASE);
        }
        return;
    }
    long deadline = bptt_now_ns() + 50000000L;
    while (__atomic_load_n(&a->state, __ATOMIC_SEQ_CST) != BPTT_HANDOFF_JOINED) {
        if (bptt_now_ns() > deadline &&
            __atomic_compare_exchange_n(&a->state, &idle, BPTT_HANDOFF_ABANDONED, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            a->ns = -1;
            return;
        }
        idle = 0;
        BPTT_CPU_RELAX();
    }
    long start = bptt_now_ns();
    for (long i = 0; i < a->rounds; i++) {
        __atomic_store_n(&a->counter, 2 * i + 1, __ATOMIC_RELEASE);
        while (__atomic_load_n(&a->counter, __ATOMIC_ACQUIRE) != 2 * i + 2)
            BPTT_CPU_RELAX();
    }
    a->ns = (double)(bptt_now_ns() - start) / (a->rounds > 0 ? a->rounds : 1);
}

static double bptt_handoff_ns(long rounds, int n_threads) {
    bptt_handoff_args a = {0};
    a.rounds = rounds;
    bptt_run_parts(bptt_handoff_part, &a, 2, n_threads);
    return a.ns;
}

#endif
