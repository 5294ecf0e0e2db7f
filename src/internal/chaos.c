/* SPDX-License-Identifier: MIT */
/*
 * The TP_CHAOS build's perturbation points (see chaos.h). Empty otherwise.
 *
 * Each thread draws from its own xorshift64* stream, seeded from the process
 * seed and a creation counter, so points cost no shared write. At a point a
 * thread does nothing (~3/4 of the time), sched_yield() (~1/5), or sleeps
 * 1-50 us (~1/32): long enough to let another thread run through a whole
 * publish/park/wake sequence, short enough that stress tests stay bounded.
 */
#include "internal/chaos.h"

#ifdef TP_CHAOS
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Atomic uint64_t chaos_seed;        /* 0 until chosen */
static _Atomic uint64_t chaos_threads;     /* streams handed out */
static _Thread_local uint64_t chaos_state; /* 0 = not seeded yet */

static uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t tp__chaos_seed(void) {
    uint64_t s = atomic_load_explicit(&chaos_seed, memory_order_acquire);
    if (s) return s;
    const char *env = getenv("TP_CHAOS_SEED"); /* test-only build, see chaos.h */
    uint64_t want = env ? strtoull(env, NULL, 0) : 0;
    if (!want) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        want = splitmix((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) | 1;
    }
    uint64_t expect = 0;
    /* acq_rel: the winner's seed is what every thread then reads. */
    if (atomic_compare_exchange_strong_explicit(&chaos_seed, &expect, want, memory_order_acq_rel,
                                                memory_order_acquire)) {
        fprintf(stderr, "tripool chaos: seed=%llu (replay with TP_CHAOS_SEED=%llu)\n",
                (unsigned long long)want, (unsigned long long)want);
        return want;
    }
    return expect;
}

void tp__chaos_point(const char *where) {
    (void)where;
    if (!chaos_state) {
        uint64_t n = atomic_fetch_add_explicit(&chaos_threads, 1, memory_order_relaxed);
        chaos_state = splitmix(tp__chaos_seed() ^ splitmix(n + 1)) | 1;
    }
    uint64_t x = chaos_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    chaos_state = x;
    uint64_t r = (x * 0x2545f4914f6cdd1dull) >> 32;
    unsigned pick = (unsigned)(r & 1023);
    if (pick < 32) {
        struct timespec ts = {0, (long)(1000 + (r >> 10) % 49000)};
        nanosleep(&ts, NULL);
    } else if (pick < 240) {
        sched_yield();
    }
}
#else
typedef int tp__chaos_empty; /* ISO C wants a translation unit to declare something */
#endif
