/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * Contract tests for include/tripool/buf.h: one test per promise that no
 * other test checks, named after the sentence it quotes.
 *
 * Index: header sentence -> the test that checks it ("here" = this file).
 *  "returns a buffer of the smallest class >= n (n == 0 gives the 64 B class)"
 *      here test_smallest_class_every_boundary; buf_basic test_classes
 *  "huge ... cap = n rounded up to the page size, never retained, unmapped on put"
 *      buf_basic test_classes (cap, not retained); here test_huge_unmapped_on_put
 *  "a thread that exits hands its cache back"      buf_threads test_exit_hands_back
 *  "every tick ... moves idle buffers to a victim tier and frees what stayed
 *   idle for two ticks"                            buf_aging test_two_ticks, test_rescue
 *  "every tick_ops depot operations"               buf_aging test_op_count_ticks
 *  "every tick_interval_ns on the timer service"   buf_aging test_timer_ticks
 *  "Buffers reserved by tp_bufpool_prewarm() are never aged out"
 *                                                  buf_aging test_prewarm_reserve
 *  "max_retained: idle bytes kept ... (depot and thread caches) never exceed it;
 *   a put that would exceed it frees the buffer instead"
 *      buf_basic test_retained_cap (one thread); here test_retained_cap_concurrent_puts;
 *      stress buf_mt (bounds sampled under contention)
 *  "max_inuse ... counted in cap bytes"; "E2BIG (the buffer's cap alone ...)"
 *      here test_inuse_counts_cap_bytes_e2big; buf_basic test_inuse_cap_fail
 *  "Over it, tp_buf_get() fails (NULL, errno EAGAIN) or waits (opts.block_on_cap)"
 *      buf_basic test_inuse_cap_fail, test_inuse_cap_wait
 *  "Every put wakes every waiter that now fits"   here test_put_wakes_every_waiter_that_fits;
 *                                                  buf_wait test_many_waiters
 *  "the 95th-percentile rule"; "calibrate_gets"    buf_aging test_outlier_rule
 *  "get/put/stats/tick/prewarm may be called from any thread at the same time"
 *                                                  stress buf_mt (prewarm included)
 *  "The caller may move it between threads"       stress buf_mt (trades), buf_threads pipeline
 *  "Unloading (dlclose() ...)"                     dl buf_dlclose (plain build only)
 *  "len: 0 on every get"                           buf_basic test_reuse_and_stats; buf_mt
 *  "page_aligned: data page-aligned in every class" here test_smallest_class_every_boundary
 *  "huge_pages: buffers >= 2 MiB 2 MiB-aligned"    buf_basic test_huge_pages
 *  "zero_on_get"; "reset hook on reuse"            buf_basic test_reset_zero_align;
 *                                                  here test_reset_only_on_reuse
 *  "debug: poison, detect double put, foreign and other pools' buffers"   buf_debug
 *  "passthrough"                                   buf_basic test_passthrough
 *  "cache_bytes: per thread, per class cache limit; default 1 MiB, at most
 *   max_retained / 64 (at least one buffer, at most 32); 0 = no thread caches"
 *                                                  here test_cache_bytes_limits
 *  "name: ... its first 31 bytes are copied"      here test_name_copied
 *  "cap_failures: gets refused other than for ENOMEM/EINVAL ... (also when done
 *   before the call)"                              here test_cap_failures_counts_every_refusal
 *  "tp_bufpool_create ... -EINVAL (out NULL)"      buf_basic test_bad_input
 *  "tp_buf_get_timeout ... waits up to timeout_ns ... -EAGAIN (timeout 0), -ETIMEDOUT"
 *      buf_basic test_inuse_cap_fail; here test_timeout_waits_the_whole_timeout
 *  "tp_buf_get_ctx ... also at once when ctx is already done. ctx NULL = background"
 *      buf_wait test_ctx_*; here test_cap_failures_counts_every_refusal (no cap)
 *  "tp_buf_put ... double put ... aborts with a message"   buf_debug test_double_put,
 *                                                  test_other_pool, test_foreign
 *  "tp_buf_free ... buffers still out when their pool was destroyed"
 *                                                  buf_basic test_destroy_outstanding
 *  "tp_bufpool_tick ... calling thread's cache aged at once, other threads' on
 *   their next get/put ... Returns the number of buffers freed"
 *                                                  buf_aging test_two_ticks,
 * test_other_thread_cache_aged "tp_bufpool_prewarm ... -ENOSPC (over max_retained; nothing
 * reserved) ... Reserves add up over calls"                    buf_aging test_prewarm_reserve; here
 * test_prewarm_adds_up_enospc_reserves_nothing "tp_bufpool_destroy ... Buffers still out ... stay
 * valid" buf_basic test_destroy_outstanding "a pool destroyed before a thread exits" (DESIGN;
 * destroy vs exit) buf_threads test_pool_destroyed_first; here test_destroy_races_thread_exits
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "tp_test.h"
#include "tripool/buf.h"

static tp_bufpool *mk(const tp_bufpool_opts *o) {
    tp_bufpool *bp = NULL;
    assert_int_equal(tp_bufpool_create(&bp, o), 0);
    assert_non_null(bp);
    return bp;
}

static struct tp_bufpool_stats stats(tp_bufpool *bp) {
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    return s;
}

/* "tp_buf_get(bp, n) returns a buffer of the smallest class >= n (n == 0
 * gives the 64 B class)" at every class boundary (n = size - 1, size,
 * size + 1), and "page_aligned: data page-aligned in every class". */
static void test_smallest_class_every_boundary(void **st) {
    (void)st;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (int aligned = 0; aligned < 2; aligned++) {
        tp_bufpool_opts o;
        tp_bufpool_opts_init(&o);
        o.max_retained = 0; /* every put frees: the sweep maps 64 MiB at most at once */
        o.page_aligned = aligned;
        tp_bufpool *bp = mk(&o);
        tp_buf *z = tp_buf_get(bp, 0);
        assert_non_null(z);
        assert_int_equal(z->cap, TP_BUF_MIN_SIZE);
        tp_buf_put(bp, z);
        for (unsigned c = 0; c < TP_BUF_NCLASSES; c++) {
            size_t size = TP_BUF_MIN_SIZE << c;
            size_t asks[3] = {size - 1, size, size + 1};
            for (int k = 0; k < 3; k++) {
                tp_buf *b = tp_buf_get(bp, asks[k]);
                assert_non_null(b);
                size_t want;
                if (asks[k] <= TP_BUF_MIN_SIZE)
                    want = TP_BUF_MIN_SIZE;
                else if (asks[k] <= size)
                    want = size;
                else if (size < TP_BUF_MAX_SIZE)
                    want = size * 2;
                else
                    want = (asks[k] + page - 1) / page * page; /* huge */
                if (b->cap != want)
                    fail_msg("get(%zu) gave cap %zu, want %zu", asks[k], b->cap, want);
                if (aligned) assert_int_equal((uintptr_t)b->data % page, 0);
                b->data[0] = 1;
                b->data[b->cap - 1] = 1;
                tp_buf_put(bp, b);
            }
        }
        assert_int_equal(stats(bp).total.outstanding, 0);
        tp_bufpool_destroy(bp);
    }
}

/* "A request above 64 MiB is a "huge" buffer: ... never retained, unmapped
 * on put." mincore() fails with ENOMEM on an address range that is not
 * mapped. */
static void test_huge_unmapped_on_put(void **st) {
    (void)st;
    tp_bufpool *bp = mk(NULL);
    tp_buf *h = tp_buf_get(bp, TP_BUF_MAX_SIZE + 1);
    assert_non_null(h);
    uint8_t *data = h->data;
    size_t cap = h->cap;
    unsigned char vec[4];
    assert_int_equal(mincore(data, 4 * (size_t)sysconf(_SC_PAGESIZE), vec), 0);
    tp_buf_put(bp, h);
    errno = 0;
    assert_int_equal(mincore(data, 4 * (size_t)sysconf(_SC_PAGESIZE), vec), -1);
    assert_int_equal(errno, ENOMEM);
    struct tp_bufpool_stats s = stats(bp);
    assert_int_equal(s.cls[TP_BUF_HUGE].retained, 0);
    assert_int_equal(s.total.retained_bytes, 0);
    assert_int_equal(s.cls[TP_BUF_HUGE].dropped, 1);
    (void)cap;
    tp_bufpool_destroy(bp);
}

/* "max_inuse: bytes handed out at a time, counted in cap bytes (the class
 * size ...), not in the sizes asked for" and "E2BIG (the buffer's cap
 * alone, min_cap rounded up to its class, exceeds max_inuse)". */
static void test_inuse_counts_cap_bytes_e2big(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_inuse = 5000;
    tp_bufpool *bp = mk(&o);
    errno = 0;
    assert_null(tp_buf_get(bp, 4097)); /* 8192 B class: can never fit */
    assert_int_equal(errno, E2BIG);
    tp_buf *b = NULL;
    assert_int_equal(tp_buf_get_timeout(bp, 4097, TP_FOREVER, &b), -E2BIG); /* no hang */
    assert_null(b);
    tp_buf *a = tp_buf_get(bp, 3000); /* 4096 counted, not 3000 */
    assert_non_null(a);
    assert_int_equal(stats(bp).total.inuse_bytes, 4096);
    errno = 0;
    assert_null(tp_buf_get(bp, 900)); /* 4096 + 1024 > 5000 although 3000 + 900 fits */
    assert_int_equal(errno, EAGAIN);
    tp_buf *c = tp_buf_get(bp, 900 - 512); /* 512 B class: 4608 <= 5000 */
    assert_non_null(c);
    assert_int_equal(stats(bp).total.inuse_bytes, 4096 + 512);
    tp_buf_put(bp, a);
    tp_buf_put(bp, c);
    assert_int_equal(stats(bp).total.inuse_bytes, 0);
    /* Huge buffers count their page-rounded cap. */
    o.max_inuse = (size_t)TP_BUF_MAX_SIZE + 2 * (size_t)sysconf(_SC_PAGESIZE);
    tp_bufpool *hp = mk(&o);
    tp_buf *h = tp_buf_get(hp, TP_BUF_MAX_SIZE + 1);
    assert_non_null(h);
    assert_int_equal(stats(hp).total.inuse_bytes, h->cap);
    tp_buf_put(hp, h);
    assert_int_equal(stats(hp).total.inuse_bytes, 0);
    tp_bufpool_destroy(hp);
    tp_bufpool_destroy(bp);
}

struct waiter {
    tp_bufpool *bp;
    size_t size;
    bool blocking_get; /* tp_buf_get with block_on_cap, else get_timeout FOREVER */
    atomic_int done;   /* 1 = got it (and put it back), -1 = error */
};

static void *waiter_main(void *arg) {
    struct waiter *w = arg;
    tp_buf *b = NULL;
    if (w->blocking_get) {
        b = tp_buf_get(w->bp, w->size);
    } else if (tp_buf_get_timeout(w->bp, w->size, TP_FOREVER, &b) != 0) {
        b = NULL;
    }
    if (!b) {
        atomic_store(&w->done, -1);
        return NULL;
    }
    tp_buf_put(w->bp, b);
    atomic_store(&w->done, 1);
    return NULL;
}

/* "Every put wakes every waiter that now fits (a waiter for a big buffer
 * does not hold up one for a small buffer that fits)": a wake-one scheme
 * could wake the big waiter, which cannot fit and sleeps again, and leave
 * the small one asleep with room for it. Both waiters wait without a limit
 * (block_on_cap / TP_FOREVER). */
static void test_put_wakes_every_waiter_that_fits(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_inuse = 8192;
    o.block_on_cap = true;
    for (int round = 0; round < 4; round++) {
        tp_bufpool *bp = mk(&o);
        tp_buf *a = tp_buf_get(bp, 4096), *b = tp_buf_get(bp, 4096);
        assert_non_null(a);
        assert_non_null(b);
        struct waiter big = {bp, 8192, round % 2 == 0, 0}, small = {bp, 4096, round % 2 == 1, 0};
        pthread_t tb, ts;
        /* The big one first, so a FIFO wake-one would pick it. */
        assert_int_equal(pthread_create(&tb, NULL, waiter_main, &big), 0);
        TP_TEST_WAIT_FOR(stats(bp).waits >= 1, 10000);
        assert_int_equal(pthread_create(&ts, NULL, waiter_main, &small), 0);
        TP_TEST_WAIT_FOR(stats(bp).waits >= 2, 10000);
        assert_int_equal(stats(bp).waits, 2);
        tp_buf_put(bp, a); /* room for the small one only */
        TP_TEST_WAIT_FOR(atomic_load(&small.done) != 0, 10000);
        assert_int_equal(atomic_load(&small.done), 1);
        assert_int_equal(atomic_load(&big.done), 0); /* 4096 still out: cannot fit */
        tp_buf_put(bp, b);
        pthread_join(tb, NULL);
        pthread_join(ts, NULL);
        assert_int_equal(atomic_load(&big.done), 1);
        struct tp_bufpool_stats s = stats(bp);
        assert_int_equal(s.total.inuse_bytes, 0);
        assert_int_equal(s.total.outstanding, 0);
        tp_bufpool_destroy(bp);
    }
}

/* "tp_buf_get_timeout ... waits up to timeout_ns for room ... -ETIMEDOUT":
 * not before the timeout ran out, and *out is NULL. */
static void test_timeout_waits_the_whole_timeout(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_inuse = 4096;
    tp_bufpool *bp = mk(&o);
    tp_buf *held = tp_buf_get(bp, 4096);
    assert_non_null(held);
    for (uint64_t ms = 1; ms <= 40; ms *= 5) {
        tp_buf *b = (tp_buf *)1;
        uint64_t t0 = tp_now_ns();
        assert_int_equal(tp_buf_get_timeout(bp, 64, ms * TP_NSEC_PER_MSEC, &b), -ETIMEDOUT);
        assert_true(tp_now_ns() - t0 >= ms * TP_NSEC_PER_MSEC);
        assert_null(b);
    }
    tp_buf_put(bp, held);
    tp_bufpool_destroy(bp);
}

static void cancelled_ctx(tp_ctx **c) {
    assert_int_equal(tp_ctx_with_cancel(NULL, c), 0);
    tp_ctx_cancel(*c);
}

/* "cap_failures: gets refused other than for ENOMEM/EINVAL: over the in-use
 * cap (EAGAIN, E2BIG), timed out, or their context done (also when done
 * before the call)"; and tp_buf_get_ctx "returns the context's error ...
 * also at once when ctx is already done", with or without a cap. */
static void test_cap_failures_counts_every_refusal(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_inuse = 4096;
    tp_bufpool *bp = mk(&o);
    tp_buf *held = tp_buf_get(bp, 4096), *b = NULL;
    assert_non_null(held);
    uint64_t n = stats(bp).cap_failures;
    assert_null(tp_buf_get(bp, 64)); /* EAGAIN */
    assert_int_equal(stats(bp).cap_failures, ++n);
    assert_null(tp_buf_get(bp, 8192)); /* E2BIG */
    assert_int_equal(stats(bp).cap_failures, ++n);
    assert_int_equal(tp_buf_get_timeout(bp, 64, TP_NSEC_PER_MSEC, &b), -ETIMEDOUT);
    assert_int_equal(stats(bp).cap_failures, ++n);
    tp_ctx *c;
    cancelled_ctx(&c);
    assert_int_equal(tp_buf_get_ctx(bp, 64, c, &b), -ECANCELED); /* done before the call */
    assert_null(b);
    assert_int_equal(stats(bp).cap_failures, ++n);
    tp_buf_put(bp, held);
    assert_int_equal(tp_buf_get_ctx(bp, 64, c, &b), -ECANCELED); /* even with room */
    assert_int_equal(stats(bp).cap_failures, ++n);
    /* Not counted: ENOMEM, EINVAL. */
    errno = 0;
    assert_int_equal(tp_buf_get_timeout(bp, SIZE_MAX, 0, &b), -ENOMEM);
    assert_int_equal(tp_buf_get_timeout(bp, 64, 0, NULL), -EINVAL);
    assert_int_equal(stats(bp).cap_failures, n);
    tp_bufpool_destroy(bp);
    /* Without a cap a done context still fails at once. */
    bp = mk(NULL);
    b = (tp_buf *)1;
    assert_int_equal(tp_buf_get_ctx(bp, 64, c, &b), -ECANCELED);
    assert_null(b);
    assert_int_equal(stats(bp).cap_failures, 1);
    assert_int_equal(stats(bp).total.gets, 0);
    tp_ctx_release(c);
    tp_bufpool_destroy(bp);
}

struct hits_arg {
    tp_bufpool *bp;
    size_t size;
    int n;
    uint64_t hits; /* out */
};

/* Another thread gets n buffers and keeps them: its hits are what the depot
 * held, i.e. what the main thread's cache did not keep. */
static void *take_from_depot(void *arg) {
    struct hits_arg *h = arg;
    uint64_t h0 = stats(h->bp).total.hits;
    tp_buf **b = calloc((size_t)h->n, sizeof *b);
    for (int i = 0; i < h->n; i++)
        b[i] = tp_buf_get(h->bp, h->size);
    h->hits = stats(h->bp).total.hits - h0;
    for (int i = 0; i < h->n; i++)
        tp_buf_put(h->bp, b[i]);
    free(b);
    return NULL;
}

/* Main gets and puts n buffers (they go to its cache, overflow to the
 * depot); returns how many another thread then finds in the depot. */
static uint64_t depot_after_puts(const tp_bufpool_opts *o, size_t size, int n) {
    tp_bufpool *bp = mk(o);
    tp_buf **b = calloc((size_t)n, sizeof *b);
    assert_non_null(b);
    for (int i = 0; i < n; i++)
        assert_non_null(b[i] = tp_buf_get(bp, size));
    for (int i = 0; i < n; i++)
        tp_buf_put(bp, b[i]);
    free(b);
    assert_int_equal(stats(bp).total.retained, (size_t)n); /* all kept */
    struct hits_arg h = {bp, size, n, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, take_from_depot, &h), 0);
    pthread_join(t, NULL);
    tp_bufpool_destroy(bp);
    return h.hits;
}

/* "cache_bytes: per thread, per class cache limit; default 1 MiB, at most
 * max_retained / 64 (at least one buffer, at most 32); 0 = no thread
 * caches". A cache over its limit would leave fewer buffers in the depot;
 * a cache that is not there leaves them all. */
static void test_cache_bytes_limits(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.tick_ops = 0;
    uint64_t h;
    /* Default 1 MiB of 4 KiB = 256, capped at 32 per class. */
    h = depot_after_puts(&o, 4096, 100);
    assert_true(h >= 100 - 32);
    assert_true(h < 100); /* the cache is there */
    /* 8 KiB of 4 KiB buffers: 2. */
    o.cache_bytes = 8192;
    h = depot_after_puts(&o, 4096, 100);
    assert_true(h >= 98 && h < 100);
    /* max_retained / 64 = 16 KiB: 4 buffers of 4 KiB although cache_bytes is 1 MiB. */
    o.cache_bytes = 1 << 20;
    o.max_retained = 1 << 20;
    h = depot_after_puts(&o, 4096, 100);
    assert_true(h >= 96 && h < 100);
    /* At least one: 64 KiB buffers with a 4 KiB per-class limit. */
    o.max_retained = 256 * 1024;
    h = depot_after_puts(&o, 65536, 4);
    assert_int_equal(h, 3);
    /* At most 32 even when cache_bytes allows thousands. */
    o.max_retained = (size_t)256 << 20;
    o.cache_bytes = (size_t)1 << 30;
    h = depot_after_puts(&o, 64, 200);
    assert_true(h >= 200 - 32 && h < 200);
    /* 0 = no thread caches, and thread_cache = false: everything in the depot. */
    o.cache_bytes = 0;
    assert_int_equal(depot_after_puts(&o, 4096, 50), 50);
    o.cache_bytes = 1 << 20;
    o.thread_cache = false;
    assert_int_equal(depot_after_puts(&o, 4096, 50), 50);
}

/* "reset: called on a buffer that is reused, before get returns it": not on
 * a new one. */
static void count_reset(tp_buf *b, void *arg) {
    (void)b;
    (*(int *)arg)++;
}

static void test_reset_only_on_reuse(void **st) {
    (void)st;
    int calls = 0;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.reset = count_reset;
    o.reset_arg = &calls;
    tp_bufpool *bp = mk(&o);
    tp_buf *a = tp_buf_get(bp, 100), *b = tp_buf_get(bp, 100);
    assert_int_equal(calls, 0);
    tp_buf_put(bp, a);
    a = tp_buf_get(bp, 100);
    assert_int_equal(calls, 1);
    tp_buf_put(bp, a);
    tp_buf_put(bp, b);
    tp_bufpool_destroy(bp);
}

/* "name: label for messages; its first 31 bytes are copied": the message of
 * a caught misuse names the pool even after the caller's string changed. */
static void double_put_named(void *arg) {
    (void)arg;
    char name[64];
    snprintf(name, sizeof name, "%s", "0123456789abcdefghijklmnopqrstuvwxyz");
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.name = name;
    tp_bufpool *bp = NULL;
    if (tp_bufpool_create(&bp, &o) != 0) _exit(2);
    memset(name, 'X', sizeof name - 1);
    tp_buf *b = tp_buf_get(bp, 10);
    tp_buf_put(bp, b);
    tp_buf_put(bp, b); /* double put: aborts with the pool's name */
}

static void test_name_copied(void **st) {
    (void)st;
    char out[4096];
    int status = tp_test_run_child(double_put_named, NULL, out, sizeof out);
    assert_true(tp_test_aborted(status));
    if (!strstr(out, "pool '0123456789abcdefghijklmnopqrstu'"))
        fail_msg("pool name (31 bytes) not in: %s", out);
}

struct putter {
    tp_bufpool *bp;
    int n;
    pthread_barrier_t *go;
};

static void *get_all_put_all(void *arg) {
    struct putter *p = arg;
    tp_buf **b = calloc((size_t)p->n, sizeof *b);
    for (int i = 0; i < p->n; i++)
        b[i] = tp_buf_get(p->bp, 4096);
    pthread_barrier_wait(p->go);
    for (int i = 0; i < p->n; i++)
        tp_buf_put(p->bp, b[i]);
    pthread_barrier_wait(p->go); /* stay alive: caches still held */
    pthread_barrier_wait(p->go);
    free(b);
    return NULL;
}

/* "max_retained: idle bytes kept by the pool (depot and thread caches)
 * never exceed it; a put that would exceed it frees the buffer instead",
 * with four threads putting at once into their caches and the depot. No
 * buffer is lost: every put is retained or dropped. */
static void test_retained_cap_concurrent_puts(void **st) {
    (void)st;
    enum { T = 4 };
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_retained = 2u << 20; /* 512 buffers of 4 KiB; 8 per cache */
    o.tick_ops = 0;
    tp_bufpool *bp = mk(&o);
    int n = (int)tp_test_scale(400) < 200 ? 200 : (int)tp_test_scale(400);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, T + 1);
    struct putter p = {bp, n, &go};
    pthread_t t[T];
    for (int i = 0; i < T; i++)
        assert_int_equal(pthread_create(&t[i], NULL, get_all_put_all, &p), 0);
    pthread_barrier_wait(&go);
    bool over = false;
    for (int k = 0; k < 200; k++) { /* sample while they put */
        struct tp_bufpool_stats s = stats(bp);
        if (s.total.retained_bytes > o.max_retained || s.reserved_bytes > o.max_retained)
            over = true;
    }
    pthread_barrier_wait(&go);
    struct tp_bufpool_stats s = stats(bp);
    assert_false(over);
    assert_true(s.total.retained_bytes <= o.max_retained);
    assert_true(s.peak_retained <= o.max_retained);
    assert_int_equal(s.total.puts, (uint64_t)T * (uint64_t)n);
    assert_int_equal(s.total.retained + s.total.dropped, (uint64_t)T * (uint64_t)n);
    assert_true(s.total.dropped >= (uint64_t)T * (uint64_t)n - o.max_retained / 4096);
    assert_int_equal(s.total.outstanding, 0);
    pthread_barrier_wait(&go);
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    s = stats(bp); /* exited threads handed their caches back */
    assert_true(s.total.retained_bytes <= o.max_retained);
    assert_int_equal(s.total.retained + s.total.dropped, (uint64_t)T * (uint64_t)n);
    pthread_barrier_destroy(&go);
    tp_bufpool_destroy(bp);
}

/* "tp_bufpool_prewarm ... -ENOSPC (over max_retained; nothing reserved) ...
 * Reserves add up over calls." */
static void test_prewarm_adds_up_enospc_reserves_nothing(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_retained = 5 * 4096;
    o.tick_ops = 0;
    tp_bufpool *bp = mk(&o);
    assert_int_equal(tp_bufpool_prewarm(bp, 4096, 2, false), 0);
    assert_int_equal(tp_bufpool_prewarm(bp, 4000, 2, false), 0);
    struct tp_bufpool_stats s0 = stats(bp);
    assert_int_equal(s0.total.retained, 4);
    assert_int_equal(s0.reserved_bytes, 4 * 4096);
    /* Room for one more, two asked: nothing of it is reserved. */
    assert_int_equal(tp_bufpool_prewarm(bp, 4096, 2, false), -ENOSPC);
    struct tp_bufpool_stats s = stats(bp);
    assert_int_equal(s.total.retained, 4);
    assert_int_equal(s.reserved_bytes, 4 * 4096);
    assert_int_equal(tp_bufpool_prewarm(bp, 4096, 1, false), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(tp_bufpool_tick(bp), 0); /* never aged out: 5 reserved */
    assert_int_equal(stats(bp).total.retained, 5);
    assert_int_equal(tp_bufpool_prewarm(bp, 64, 0, false), 0); /* count 0: nothing */
    tp_bufpool_destroy(bp);
}

struct user {
    tp_bufpool *bp;
    pthread_barrier_t *used;
};

static void *use_then_exit(void *arg) {
    struct user *u = arg;
    tp_buf *b[4];
    for (int i = 0; i < 4; i++)
        b[i] = tp_buf_get(u->bp, (size_t)100 << i);
    for (int i = 0; i < 4; i++)
        tp_buf_put(u->bp, b[i]);
    pthread_barrier_wait(u->used);
    return NULL; /* the exit hands the cache back, racing with destroy */
}

/* buf.h "create/destroy must not race with other calls on the pool" allows
 * a destroy while threads that used the pool exit (their exit is not a
 * call): the exit hook and destroy agree on who frees what (ASan/TSan). */
static void test_destroy_races_thread_exits(void **st) {
    (void)st;
    enum { T = 3 };
    unsigned rounds = tp_test_scale(80);
    for (unsigned r = 0; r < rounds; r++) {
        tp_bufpool *bp = mk(NULL);
        pthread_barrier_t used;
        pthread_barrier_init(&used, NULL, T + 1);
        struct user u = {bp, &used};
        pthread_t t[T];
        for (int i = 0; i < T; i++)
            assert_int_equal(pthread_create(&t[i], NULL, use_then_exit, &u), 0);
        pthread_barrier_wait(&used);
        if (r % 3 == 1) sched_yield();
        tp_bufpool_destroy(bp);
        for (int i = 0; i < T; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&used);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smallest_class_every_boundary),
        cmocka_unit_test(test_huge_unmapped_on_put),
        cmocka_unit_test(test_inuse_counts_cap_bytes_e2big),
        cmocka_unit_test(test_put_wakes_every_waiter_that_fits),
        cmocka_unit_test(test_timeout_waits_the_whole_timeout),
        cmocka_unit_test(test_cap_failures_counts_every_refusal),
        cmocka_unit_test(test_cache_bytes_limits),
        cmocka_unit_test(test_reset_only_on_reuse),
        cmocka_unit_test(test_name_copied),
        cmocka_unit_test(test_retained_cap_concurrent_puts),
        cmocka_unit_test(test_prewarm_adds_up_enospc_reserves_nothing),
        cmocka_unit_test(test_destroy_races_thread_exits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
