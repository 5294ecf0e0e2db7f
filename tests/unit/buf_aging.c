/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * Aging: a tick moves idle buffers to the victim tier and frees what stayed
 * idle two ticks; reuse rescues a buffer; the prewarmed reserve survives;
 * operation-count ticks; other threads' caches are aged on their next call;
 * the 95th-percentile rule drops outliers. */
#include <pthread.h>
#include <sys/mman.h>

#include "tp_test.h"
#include "tripool/buf.h"

static tp_bufpool *mk(bool cache, uint64_t tick_ops) {
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.thread_cache = cache;
    o.tick_ops = tick_ops;
    tp_bufpool *bp = NULL;
    assert_int_equal(tp_bufpool_create(&bp, &o), 0);
    return bp;
}

static size_t retained(tp_bufpool *bp) {
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    return s.total.retained;
}

static void test_two_ticks(void **st) {
    (void)st;
    for (int cache = 0; cache < 2; cache++) {
        tp_bufpool *bp = mk(cache, 0);
        tp_buf *b[4];
        for (int i = 0; i < 4; i++)
            b[i] = tp_buf_get(bp, 4096);
        for (int i = 0; i < 4; i++)
            tp_buf_put(bp, b[i]);
        assert_int_equal(retained(bp), 4);
        assert_int_equal(tp_bufpool_tick(bp), 0); /* now victims */
        assert_int_equal(retained(bp), 4);
        assert_int_equal(tp_bufpool_tick(bp), 4); /* idle two ticks: freed */
        assert_int_equal(retained(bp), 0);
        struct tp_bufpool_stats s;
        tp_bufpool_stats(bp, &s);
        assert_int_equal(s.aged, 4);
        assert_int_equal(s.ticks, 2);
        assert_int_equal(s.total.inuse_bytes, 0);
        assert_int_equal(s.reserved_bytes, 0); /* credit came back too */
        tp_bufpool_destroy(bp);
    }
}

static void test_rescue(void **st) {
    (void)st;
    tp_bufpool *bp = mk(false, 0);
    tp_buf *a = tp_buf_get(bp, 4096), *b = tp_buf_get(bp, 4096);
    tp_buf_put(bp, a);
    tp_buf_put(bp, b);
    assert_int_equal(tp_bufpool_tick(bp), 0);
    tp_buf *x = tp_buf_get(bp, 4096); /* rescues one victim */
    assert_non_null(x);
    tp_buf_put(bp, x);
    assert_int_equal(tp_bufpool_tick(bp), 1); /* the other one was idle two ticks */
    assert_int_equal(retained(bp), 1);
    assert_int_equal(tp_bufpool_tick(bp), 1);
    assert_int_equal(retained(bp), 0);
    tp_bufpool_destroy(bp);
}

static void test_prewarm_reserve(void **st) {
    (void)st;
    tp_bufpool *bp = mk(true, 0);
    assert_int_equal(tp_bufpool_prewarm(bp, 3000, 3, true), 0);
    assert_int_equal(retained(bp), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tp_bufpool_tick(bp), 0);
    assert_int_equal(retained(bp), 3);
    tp_buf *b[5];
    for (int i = 0; i < 5; i++)
        b[i] = tp_buf_get(bp, 4096);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.total.hits, 3); /* the reserve served the first gets */
    for (int i = 0; i < 5; i++)
        tp_buf_put(bp, b[i]);
    assert_int_equal(retained(bp), 5);
    tp_bufpool_tick(bp);
    tp_bufpool_tick(bp);
    tp_bufpool_tick(bp);
    assert_int_equal(retained(bp), 3); /* aged down to the reserve, not below */
    /* Prewarm over the cap reserves nothing. */
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_retained = 10000;
    tp_bufpool *small = NULL;
    assert_int_equal(tp_bufpool_create(&small, &o), 0);
    assert_int_equal(tp_bufpool_prewarm(small, 4096, 3, false), -ENOSPC);
    assert_int_equal(retained(small), 0);
    assert_int_equal(tp_bufpool_prewarm(small, 4096, 2, false), 0);
    assert_int_equal(retained(small), 2);
    assert_int_equal(tp_bufpool_prewarm(small, 1 << 20, 1, true), -ENOSPC);
    tp_bufpool_destroy(small);
    tp_bufpool_destroy(bp);
}

/* Prewarm with populate: the pages are resident before the first get. */
static void test_prewarm_populate(void **st) {
    (void)st;
    tp_bufpool *bp = mk(true, 0);
    assert_int_equal(tp_bufpool_prewarm(bp, 256 * 1024, 2, true), 0);
    tp_buf *b = tp_buf_get(bp, 256 * 1024);
    assert_non_null(b);
    size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = b->cap / page;
    unsigned char *vec = malloc(pages);
    assert_non_null(vec);
    assert_int_equal(mincore(b->data, b->cap, vec), 0);
    size_t resident = 0;
    for (size_t i = 0; i < pages; i++)
        resident += vec[i] & 1;
    assert_int_equal(resident, pages);
    free(vec);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.total.hits, 1);
    tp_buf_put(bp, b);
    tp_bufpool_destroy(bp);
}

static void test_op_count_ticks(void **st) {
    (void)st;
    tp_bufpool *bp = mk(false, 8);
    for (int i = 0; i < 100; i++)
        tp_buf_put(bp, tp_buf_get(bp, 512));
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    assert_true(s.ticks >= 20); /* 200 depot operations / 8 */
    assert_true(s.total.retained <= 1);
    tp_bufpool_destroy(bp);
}

struct other {
    tp_bufpool *bp;
    int phase; /* guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void wait_phase(struct other *o, int ph) {
    pthread_mutex_lock(&o->mu);
    while (o->phase < ph)
        pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
}

static void set_phase(struct other *o, int ph) {
    pthread_mutex_lock(&o->mu);
    o->phase = ph;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static void *other_thread(void *arg) {
    struct other *o = arg;
    tp_buf *b[6];
    for (int i = 0; i < 6; i++)
        b[i] = tp_buf_get(o->bp, 8192);
    for (int i = 0; i < 6; i++)
        tp_buf_put(o->bp, b[i]); /* into this thread's cache */
    set_phase(o, 1);
    wait_phase(o, 2);
    tp_buf_put(o->bp, tp_buf_get(o->bp, 64)); /* sees the tick: flushes its cache */
    set_phase(o, 3);
    wait_phase(o, 4);
    return NULL;
}

static void test_other_thread_cache_aged(void **st) {
    (void)st;
    struct other o = {.bp = mk(true, 0), .phase = 0};
    pthread_mutex_init(&o.mu, NULL);
    pthread_cond_init(&o.cv, NULL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, &o), 0);
    wait_phase(&o, 1);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(o.bp, &s);
    assert_int_equal(s.cls[7].retained, 6);
    assert_int_equal(tp_bufpool_tick(o.bp), 0);
    set_phase(&o, 2);
    wait_phase(&o, 3);                          /* the thread is alive and has aged its cache */
    assert_int_equal(tp_bufpool_tick(o.bp), 0); /* flushed buffers become victims */
    assert_int_equal(tp_bufpool_tick(o.bp), 6);
    tp_bufpool_stats(o.bp, &s);
    assert_int_equal(s.cls[7].retained, 0);
    set_phase(&o, 4);
    pthread_join(t, NULL);
    tp_bufpool_destroy(o.bp);
    pthread_mutex_destroy(&o.mu);
    pthread_cond_destroy(&o.cv);
}

/* Ticks from the timer service free idle buffers with no caller help. */
static void test_timer_ticks(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.tick_interval_ns = 5 * TP_NSEC_PER_MSEC;
    o.thread_cache = false; /* this thread's cache would wait for its next call */
    tp_bufpool *bp = NULL;
    assert_int_equal(tp_bufpool_create(&bp, &o), 0);
    tp_buf *b[3];
    for (int i = 0; i < 3; i++)
        b[i] = tp_buf_get(bp, 4096);
    for (int i = 0; i < 3; i++)
        tp_buf_put(bp, b[i]);
    TP_TEST_WAIT_FOR(retained(bp) == 0, 20000);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.total.retained, 0);
    assert_int_equal(s.aged, 3);
    assert_true(s.ticks >= 2);
    tp_bufpool_destroy(bp); /* cancels the pending tick */
    /* Destroy right after create, many times: no tick runs on a freed pool. */
    o.tick_interval_ns = 1000;
    for (int i = 0; i < 50; i++) {
        assert_int_equal(tp_bufpool_create(&bp, &o), 0);
        if (i % 2) tp_test_sleep_ms(1);
        tp_bufpool_destroy(bp);
    }
}

static void test_outlier_rule(void **st) {
    (void)st;
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.calibrate_gets = 100;
    o.tick_ops = 0;
    tp_bufpool *bp = NULL;
    assert_int_equal(tp_bufpool_create(&bp, &o), 0);
    for (int i = 0; i < 200; i++)
        tp_buf_put(bp, tp_buf_get(bp, 4096));
    tp_buf *big = tp_buf_get(bp, 1 << 20), *mid = tp_buf_get(bp, 16384);
    tp_bufpool_tick(bp); /* calibrates: 95% of gets are 4 KiB */
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.outlier_limit, 16384);
    tp_buf_put(bp, big);
    tp_buf_put(bp, mid);
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.cls[14].dropped, 1); /* 1 MiB: far above typical, not kept */
    assert_int_equal(s.cls[14].retained, 0);
    assert_int_equal(s.cls[8].retained, 1); /* 16 KiB: within 4x, kept */
    /* Off by option: everything is kept. */
    o.outlier_rule = false;
    tp_bufpool *bp2 = NULL;
    assert_int_equal(tp_bufpool_create(&bp2, &o), 0);
    for (int i = 0; i < 200; i++)
        tp_buf_put(bp2, tp_buf_get(bp2, 4096));
    big = tp_buf_get(bp2, 1 << 20);
    tp_bufpool_tick(bp2);
    tp_buf_put(bp2, big);
    tp_bufpool_stats(bp2, &s);
    assert_int_equal(s.cls[14].retained, 1);
    tp_bufpool_destroy(bp2);
    tp_bufpool_destroy(bp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_ticks),       cmocka_unit_test(test_rescue),
        cmocka_unit_test(test_prewarm_reserve), cmocka_unit_test(test_prewarm_populate),
        cmocka_unit_test(test_op_count_ticks),  cmocka_unit_test(test_other_thread_cache_aged),
        cmocka_unit_test(test_timer_ticks),     cmocka_unit_test(test_outlier_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
