/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 120
 * Buffer pool under contention: THREADS threads get buffers of mixed sizes
 * (waiting on the in-use cap), stamp them, trade them with each other
 * through exchange slots, verify the stamp and put them back, while a monitor
 * ticks and checks the bounds. Invariants: no buffer is handed to two owners
 * at once (stamps intact), reserved bytes never exceed max_retained, in-use
 * bytes never exceed max_inuse, nothing is lost (outstanding 0, gets == puts
 * at the end). Usage: stress_buf_mt [THREADS [SCALE [ITER]]]. */
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
                tp_buf_put(g_bp, h[k].b);
                h[k].b = NULL;
            }
            continue;
        }
        tp_buf *b = NULL;
        int err = tp_buf_get_timeout(g_bp, pick_size(&r), 20 * TP_NSEC_PER_MSEC, &b);
        if (err == -ETIMEDOUT) {
            atomic_fetch_add(&g_timeouts, 1);
            for (int j = 0; j < HOLD; j++) /* back off: free what we hold */
                if (h[j].b) {
                    tp_buf_put(g_bp, h[j].b);
                    h[j].b = NULL;
                }
            continue;
        }
        if (err) {
            atomic_fetch_add(&g_bad, 1);
            break;
        }
        if (b->len != 0) atomic_fetch_add(&g_bad, 1);
        h[k].b = b;
        h[k].seq = ++seq;
        stamp(b, id, h[k].seq);
    }
    for (int j = 0; j < HOLD; j++)
        if (h[j].b) tp_buf_put(g_bp, h[j].b);
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
        tp_test_sleep_ms(1);
    }
    return NULL;
}

static void run(unsigned threads, bool debug, bool inuse_cap) {
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_retained = g_max_retained;
    g_capped = inuse_cap;
    o.max_inuse = inuse_cap ? g_max_inuse : 0; /* without: the lock-free fast path */
    o.tick_ops = 4096;
    o.debug = debug;
    assert_int_equal(tp_bufpool_create(&g_bp, &o), 0);
    atomic_store(&g_stop, false);
    atomic_store(&g_timeouts, 0);
    pthread_t mon, t[64];
    assert_int_equal(pthread_create(&mon, NULL, monitor, NULL), 0);
    for (unsigned i = 0; i < threads; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1)), 0);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    atomic_store(&g_stop, true);
    pthread_join(mon, NULL);
    for (int i = 0; i < SLOTS; i++) {
        tp_buf *b = atomic_exchange(&g_slot[i], NULL);
        if (b) {
            check(b, 0, 0);
            tp_buf_put(g_bp, b);
        }
    }
    assert_int_equal(atomic_load(&g_bad), 0);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(g_bp, &s);
    assert_int_equal(s.total.outstanding, 0);
    assert_int_equal(s.total.inuse_bytes, 0);
    assert_int_equal(s.total.gets, s.total.puts);
    assert_true(s.total.retained_bytes <= g_max_retained);
    assert_true(s.total.hits > 0);
    printf("threads %u debug %d cap %d: gets %llu hits %.1f%% dropped %llu ticks %llu waits %llu "
           "timeouts %llu peak %zu\n",
           threads, debug, inuse_cap, (unsigned long long)s.total.gets, 100 * s.hit_ratio,
           (unsigned long long)s.total.dropped, (unsigned long long)s.ticks,
           (unsigned long long)s.waits, (unsigned long long)atomic_load(&g_timeouts),
           s.total.peak_bytes);
    tp_bufpool_destroy(g_bp);
}

static unsigned g_threads = 4, g_scale = 1, g_base_iter = 60000;

static void test_stress(void **st) {
    (void)st;
    g_iter = tp_test_scale(g_base_iter * g_scale);
    run(g_threads, false, true);
    run(g_threads, false, false);
    g_iter = tp_test_scale(g_base_iter * g_scale / 10);
    run(g_threads, true, true);
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
