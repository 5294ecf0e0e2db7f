/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 120
 * Buffer pool under contention: THREADS threads get buffers of mixed sizes
 * (waiting on the in-use cap), stamp them, trade them with each other
 * through exchange slots, verify the stamp and put them back, while a monitor
 * ticks, prewarms and checks the bounds. Invariants, each checked by the test
 * itself and not only by the pool's counters:
 *  - no buffer is handed out twice: a registry of buffers out (CAS 0 -> 1 on
 *    every get, 1 -> 0 before every put) and stamps at both ends;
 *  - the in-use cap is never exceeded: the test's own sum of the caps it
 *    holds (added after get, removed before put) stays <= max_inuse;
 *  - reserved and retained bytes never exceed max_retained (sampled);
 *  - every waiter is woken: a phase where every get waits without a limit
 *    (tp_buf_get with block_on_cap, get_timeout TP_FOREVER, get_ctx NULL)
 *    must finish; a watchdog fails the test if no get completes for 20 s;
 *  - nothing is lost: outstanding 0, gets == puts at the end.
 * Usage: stress_buf_mt [THREADS [SCALE [ITER]]]. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "tp_test.h"
#include "tripool/buf.h"

#define SLOTS 8
#define HOLD 4

static tp_bufpool *g_bp;
static _Atomic(tp_buf *) g_slot[SLOTS];
static atomic_bool g_stop;
static atomic_int g_bad;
static _Atomic uint64_t g_timeouts;
static unsigned g_iter;
static bool g_capped; /* set before the monitor starts */
static size_t g_max_retained = 4u << 20, g_max_inuse = 3u << 20;
static _Atomic uint64_t g_held_bytes; /* the test's own in-use count */
static _Atomic uint64_t g_progress;   /* gets completed (watchdog) */

/* Buffers out, by address: 1 while handed out. Open addressing, never
 * shrinks; the pool recycles a small set of addresses, so it stays small. */
#define REG_SIZE (1u << 18)
static struct {
    _Atomic uintptr_t key;
    atomic_int out;
} g_reg[REG_SIZE];

static atomic_int *reg_slot(const tp_buf *b) {
    uintptr_t k = (uintptr_t)b, h = (k >> 6) * 0x9E3779B97F4A7C15ull;
    for (unsigned i = 0; i < REG_SIZE; i++) {
        unsigned j = (unsigned)((h + i) & (REG_SIZE - 1));
        uintptr_t cur = atomic_load(&g_reg[j].key);
        if (cur == k) return &g_reg[j].out;
        if (cur == 0) {
            uintptr_t z = 0;
            if (atomic_compare_exchange_strong(&g_reg[j].key, &z, k) || z == k)
                return &g_reg[j].out;
        }
    }
    return NULL; /* full: not tracked (reported) */
}

static atomic_int g_untracked;

/* After a get: the buffer must not be out already; counts its cap. */
static void got(tp_buf *b) {
    atomic_int *o = reg_slot(b);
    int zero = 0;
    if (!o) {
        atomic_fetch_add(&g_untracked, 1);
    } else if (!atomic_compare_exchange_strong(o, &zero, 1)) {
        fprintf(stderr, "buffer %p handed out twice\n", (void *)b);
        atomic_fetch_add(&g_bad, 1);
    }
    uint64_t held = atomic_fetch_add(&g_held_bytes, b->cap) + b->cap;
    if (g_capped && held > g_max_inuse) {
        fprintf(stderr, "in-use cap exceeded: the test holds %llu > %zu\n",
                (unsigned long long)held, g_max_inuse);
        atomic_fetch_add(&g_bad, 1);
    }
    atomic_fetch_add_explicit(&g_progress, 1, memory_order_relaxed);
}

/* Before a put. */
static void giving_back(tp_buf *b) {
    atomic_fetch_sub(&g_held_bytes, b->cap);
    atomic_int *o = reg_slot(b);
    int one = 1;
    if (o && !atomic_compare_exchange_strong(o, &one, 0)) {
        fprintf(stderr, "buffer %p put but not out\n", (void *)b);
        atomic_fetch_add(&g_bad, 1);
    }
}

static void put(tp_buf *b) {
    giving_back(b);
    tp_buf_put(g_bp, b);
}

struct stamp {
    uint64_t owner, seq;
};

static void stamp(tp_buf *b, uint64_t owner, uint64_t seq) {
    struct stamp s = {owner, seq};
    memcpy(b->data, &s, sizeof s);
    memcpy(b->data + b->cap - sizeof s, &s, sizeof s);
}

static void check(tp_buf *b, uint64_t owner, uint64_t seq) {
    struct stamp s1, s2;
    memcpy(&s1, b->data, sizeof s1);
    memcpy(&s2, b->data + b->cap - sizeof s2, sizeof s2);
    if (s1.owner != owner || s1.seq != seq || s2.owner != owner || s2.seq != seq)
        atomic_fetch_add(&g_bad, 1);
}

static uint64_t rnd(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static size_t pick_size(uint64_t *r) {
    uint64_t v = rnd(r) % 100;
    if (v < 60) return (size_t)(rnd(r) % 4096); /* small */
    if (v < 95) return (size_t)(rnd(r) % 65536) + 1;
    return (size_t)(rnd(r) % (1u << 20)) + 1; /* occasionally large */
}

struct held {
    tp_buf *b;
    uint64_t seq;
};

static void *worker(void *arg) {
    uint64_t id = (uint64_t)(uintptr_t)arg, r = id * 0x9E3779B97F4A7C15ull + 1, seq = 0;
    struct held h[HOLD] = {{0}};
    for (unsigned i = 0; i < g_iter; i++) {
        unsigned k = (unsigned)(rnd(&r) % HOLD);
        if (h[k].b) {
            check(h[k].b, id, h[k].seq);
            if (rnd(&r) % 4 == 0) {
                /* Trade: give ours away, take whatever was in the slot. */
                tp_buf *mine = h[k].b;
                stamp(mine, 0, 0); /* ownership moves with the pointer */
                tp_buf *got =
                    atomic_exchange_explicit(&g_slot[rnd(&r) % SLOTS], mine, memory_order_acq_rel);
                h[k].b = got;
                if (got) {
                    check(got, 0, 0);
                    h[k].seq = ++seq;
                    stamp(got, id, h[k].seq);
                }
            } else {
                put(h[k].b);
                h[k].b = NULL;
            }
            continue;
        }
        tp_buf *b = NULL;
        int err;
        if (rnd(&r) % 2) { /* tp_buf_get: its inline fast path when uncapped */
            b = tp_buf_get(g_bp, pick_size(&r));
            err = b ? 0 : errno == EAGAIN ? -ETIMEDOUT : -errno;
        } else {
            err = tp_buf_get_timeout(g_bp, pick_size(&r), 20 * TP_NSEC_PER_MSEC, &b);
        }
        if (err == -ETIMEDOUT) {
            atomic_fetch_add(&g_timeouts, 1);
            for (int j = 0; j < HOLD; j++) /* back off: free what we hold */
                if (h[j].b) {
                    put(h[j].b);
                    h[j].b = NULL;
                }
            continue;
        }
        if (err) {
            atomic_fetch_add(&g_bad, 1);
            break;
        }
        if (b->len != 0) atomic_fetch_add(&g_bad, 1);
        got(b);
        h[k].b = b;
        h[k].seq = ++seq;
        stamp(b, id, h[k].seq);
    }
    for (int j = 0; j < HOLD; j++)
        if (h[j].b) put(h[j].b);
    return NULL;
}

/* Every get waits without a limit; one buffer held at a time, so all
 * threads together can always make progress: a get that never returns is a
 * lost wake-up. */
static void *blocker(void *arg) {
    uint64_t id = (uint64_t)(uintptr_t)arg, r = id * 0x2545F4914F6CDD1Dull + 7;
    for (unsigned i = 0; i < g_iter; i++) {
        size_t size = rnd(&r) % 8 == 0 ? (size_t)1 << 20 : pick_size(&r);
        tp_buf *b = NULL;
        int err = 0;
        switch (id % 3) {
        case 0:
            b = tp_buf_get(g_bp, size); /* block_on_cap */
            if (!b) err = -errno;
            break;
        case 1:
            err = tp_buf_get_timeout(g_bp, size, TP_FOREVER, &b);
            break;
        default:
            err = tp_buf_get_ctx(g_bp, size, NULL, &b);
            break;
        }
        if (err || !b) {
            fprintf(stderr, "blocking get failed: %d\n", err);
            atomic_fetch_add(&g_bad, 1);
            break;
        }
        got(b);
        stamp(b, id, i);
        if (rnd(&r) % 4 == 0) sched_yield();
        check(b, id, i);
        put(b);
    }
    return NULL;
}

static atomic_int g_blockers_left;

static void *watchdog(void *arg) {
    (void)arg;
    uint64_t last = atomic_load(&g_progress), still = 0;
    while (atomic_load(&g_blockers_left) > 0) {
        tp_test_sleep_ms(100);
        uint64_t now = atomic_load(&g_progress);
        still = now == last ? still + 1 : 0;
        last = now;
        if (still >= 200) { /* 20 s without a single get: someone was not woken */
            struct tp_bufpool_stats s;
            tp_bufpool_stats(g_bp, &s);
            fprintf(stderr, "watchdog: no get for 20 s, %d waiters left, in use %zu of %zu\n",
                    atomic_load(&g_blockers_left), s.total.inuse_bytes, g_max_inuse);
            abort();
        }
    }
    return NULL;
}

static void *blocker_main(void *arg) {
    blocker(arg);
    atomic_fetch_sub(&g_blockers_left, 1);
    return NULL;
}

static void *monitor(void *arg) {
    (void)arg;
    unsigned n = 0;
    while (!atomic_load(&g_stop)) {
        struct tp_bufpool_stats s;
        tp_bufpool_stats(g_bp, &s);
        if (s.reserved_bytes > g_max_retained || (g_capped && s.total.inuse_bytes > g_max_inuse) ||
            s.peak_retained > g_max_retained) {
            fprintf(stderr, "bound broken: reserved %zu inuse %zu peak_retained %zu\n",
                    s.reserved_bytes, s.total.inuse_bytes, s.peak_retained);
            atomic_fetch_add(&g_bad, 1);
        }
        if (++n % 8 == 0) tp_bufpool_tick(g_bp);
        if (n % 64 == 0) { /* prewarm races with everything else; may not fit */
            int rc = tp_bufpool_prewarm(g_bp, (size_t)512 << (n / 64 % 6), 2, false);
            if (rc != 0 && rc != -ENOSPC) atomic_fetch_add(&g_bad, 1);
        }
        tp_test_sleep_ms(1);
    }
    return NULL;
}

static void run(unsigned threads, bool debug, bool inuse_cap, bool blocking) {
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_retained = g_max_retained;
    g_capped = inuse_cap;
    o.max_inuse = inuse_cap ? g_max_inuse : 0; /* without: the lock-free fast path */
    o.block_on_cap = blocking;
    o.tick_ops = 4096;
    o.debug = debug;
    assert_int_equal(tp_bufpool_create(&g_bp, &o), 0);
    atomic_store(&g_stop, false);
    atomic_store(&g_timeouts, 0);
    atomic_store(&g_blockers_left, (int)threads);
    pthread_t mon, dog, t[64];
    assert_int_equal(pthread_create(&mon, NULL, monitor, NULL), 0);
    if (blocking) assert_int_equal(pthread_create(&dog, NULL, watchdog, NULL), 0);
    for (unsigned i = 0; i < threads; i++)
        assert_int_equal(pthread_create(&t[i], NULL, blocking ? blocker_main : worker,
                                        (void *)(uintptr_t)(i + 1)),
                         0);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    if (blocking) pthread_join(dog, NULL);
    atomic_store(&g_stop, true);
    pthread_join(mon, NULL);
    for (int i = 0; i < SLOTS; i++) {
        tp_buf *b = atomic_exchange(&g_slot[i], NULL);
        if (b) {
            check(b, 0, 0);
            put(b);
        }
    }
    assert_int_equal(atomic_load(&g_bad), 0);
    assert_int_equal(atomic_load(&g_held_bytes), 0);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(g_bp, &s);
    assert_int_equal(s.total.outstanding, 0);
    assert_int_equal(s.total.inuse_bytes, 0);
    assert_int_equal(s.total.gets, s.total.puts);
    assert_true(s.total.retained_bytes <= g_max_retained);
    assert_true(s.total.hits > 0);
    printf("threads %u debug %d cap %d blocking %d: gets %llu hits %.1f%% dropped %llu ticks %llu "
           "waits %llu "
           "timeouts %llu peak %zu\n",
           threads, debug, inuse_cap, blocking, (unsigned long long)s.total.gets, 100 * s.hit_ratio,
           (unsigned long long)s.total.dropped, (unsigned long long)s.ticks,
           (unsigned long long)s.waits, (unsigned long long)atomic_load(&g_timeouts),
           s.total.peak_bytes);
    tp_bufpool_destroy(g_bp);
}

static unsigned g_threads = 4, g_scale = 1, g_base_iter = 60000;

static void test_stress(void **st) {
    (void)st;
    g_iter = tp_test_scale(g_base_iter * g_scale);
    run(g_threads, false, true, false);
    run(g_threads, false, false, false);
    g_iter = tp_test_scale(g_base_iter * g_scale / 4);
    run(g_threads < 3 ? 3 : g_threads, false, true, true); /* all three wait kinds */
    g_iter = tp_test_scale(g_base_iter * g_scale / 10);
    run(g_threads, true, true, false);
    if (atomic_load(&g_untracked))
        printf("registry full: %d gets untracked\n", atomic_load(&g_untracked));
}

int main(int argc, char **argv) {
    if (argc > 1) g_threads = (unsigned)atoi(argv[1]);
    if (argc > 2) g_scale = (unsigned)atoi(argv[2]);
    if (argc > 3) g_base_iter = (unsigned)atoi(argv[3]);
    if (g_threads < 1 || g_threads > 64) g_threads = 4;
    if (g_scale < 1) g_scale = 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_stress)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
