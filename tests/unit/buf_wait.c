/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * Waiting on the in-use cap with a context: a put wakes the waiter, a
 * cancel wakes it with -ECANCELED, a deadline with -ETIMEDOUT, a context
 * already done fails at once; many waiters are all served by puts. */
#include <pthread.h>

#include "tp_test.h"
#include "tripool/buf.h"

static tp_bufpool *mk(size_t max_inuse) {
    tp_bufpool_opts o;
    tp_bufpool_opts_init(&o);
    o.max_inuse = max_inuse;
    tp_bufpool *bp = NULL;
    assert_int_equal(tp_bufpool_create(&bp, &o), 0);
    return bp;
}

struct later {
    tp_bufpool *bp;
    tp_buf *b;
    tp_ctx *ctx;
};

static void *cancel_later(void *arg) {
    struct later *l = arg;
    tp_test_sleep_ms(30);
    tp_ctx_cancel(l->ctx);
    return NULL;
}

static void *put_later(void *arg) {
    struct later *l = arg;
    tp_test_sleep_ms(30);
    tp_buf_put(l->bp, l->b);
    return NULL;
}

static void test_ctx_put_wakes(void **st) {
    (void)st;
    tp_bufpool *bp = mk(4096);
    struct later l = {bp, tp_buf_get(bp, 4096), NULL};
    assert_non_null(l.b);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, put_later, &l), 0);
    tp_buf *b = NULL;
    assert_int_equal(tp_buf_get_ctx(bp, 4096, NULL, &b), 0);
    assert_non_null(b);
    pthread_join(t, NULL);
    tp_buf_put(bp, b);
    tp_bufpool_destroy(bp);
}

static void test_ctx_cancel(void **st) {
    (void)st;
    tp_bufpool *bp = mk(4096);
    tp_buf *held = tp_buf_get(bp, 4096);
    struct later l = {bp, NULL, NULL};
    assert_int_equal(tp_ctx_with_cancel(NULL, &l.ctx), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_later, &l), 0);
    tp_buf *b = (tp_buf *)1;
    assert_int_equal(tp_buf_get_ctx(bp, 100, l.ctx, &b), -ECANCELED);
    assert_null(b);
    pthread_join(t, NULL);
    /* Already done: fails at once, even with room. */
    tp_buf_put(bp, held);
    assert_int_equal(tp_buf_get_ctx(bp, 100, l.ctx, &b), -ECANCELED);
    tp_ctx_release(l.ctx);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    assert_int_equal(s.total.outstanding, 0);
    tp_bufpool_destroy(bp);
}

static void test_ctx_deadline(void **st) {
    (void)st;
    tp_bufpool *bp = mk(4096);
    tp_buf *held = tp_buf_get(bp, 4096);
    tp_ctx *c = NULL;
    assert_int_equal(tp_ctx_with_timeout(NULL, 30 * TP_NSEC_PER_MSEC, &c), 0);
    tp_buf *b = NULL;
    assert_int_equal(tp_buf_get_ctx(bp, 100, c, &b), -ETIMEDOUT);
    assert_true(tp_now_ns() >= tp_ctx_deadline(c)); /* not before the deadline */
    tp_ctx_release(c);
    /* A request over the cap itself can never fit. */
    assert_int_equal(tp_buf_get_ctx(bp, 8192, NULL, &b), -E2BIG);
    assert_int_equal(tp_buf_get_ctx(NULL, 1, NULL, &b), -EINVAL);
    tp_buf_put(bp, held);
    tp_bufpool_destroy(bp);
}

struct many {
    tp_bufpool *bp;
    int got;
    pthread_mutex_t mu;
};

static void *waiter(void *arg) {
    struct many *m = arg;
    for (int i = 0; i < 50; i++) {
        tp_buf *b = NULL;
        if (tp_buf_get_timeout(m->bp, 65536, 60 * TP_NSEC_PER_SEC, &b) != 0) return NULL;
        b->data[0] = 1;
        tp_buf_put(m->bp, b);
        pthread_mutex_lock(&m->mu);
        m->got++;
        pthread_mutex_unlock(&m->mu);
    }
    return NULL;
}

static void test_many_waiters(void **st) {
    (void)st;
    struct many m = {.bp = mk(2 * 65536)}; /* two at a time for six threads */
    pthread_mutex_init(&m.mu, NULL);
    pthread_t t[6];
    for (int i = 0; i < 6; i++)
        assert_int_equal(pthread_create(&t[i], NULL, waiter, &m), 0);
    for (int i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(m.got, 300);
    struct tp_bufpool_stats s;
    tp_bufpool_stats(m.bp, &s);
    assert_int_equal(s.total.outstanding, 0);
    assert_int_equal(s.total.inuse_bytes, 0);
    assert_true(s.cls[10].peak_bytes <= 2 * 65536 + 6 * 65536); /* in use + cached */
    tp_bufpool_destroy(m.bp);
    pthread_mutex_destroy(&m.mu);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_put_wakes),
        cmocka_unit_test(test_ctx_cancel),
        cmocka_unit_test(test_ctx_deadline),
        cmocka_unit_test(test_many_waiters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
