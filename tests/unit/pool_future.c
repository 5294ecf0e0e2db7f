/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * Futures, task groups and the context wiring of the task pool. */
#include "tp_test.h"

#include <pthread.h>
#include <stdatomic.h>

#include "tp_gate.h"

static int ret_arg(void *arg) {
    return (int)(intptr_t)arg;
}

static atomic_int ran;
static int count_task(void *arg) {
    (void)arg;
    atomic_fetch_add(&ran, 1);
    return 0;
}

static tp_pool *make(unsigned max, size_t cap) {
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = max;
    o.queue_cap = cap;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    return p;
}

static void test_future_result(void **state) {
    (void)state;
    tp_pool *p = make(2, 16);
    tp_future *f[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(tp_submit_future(p, NULL, ret_arg, (void *)(intptr_t)(i * 3 - 5), &f[i]),
                         0);
    for (int i = 0; i < 8; i++) {
        int r = 12345;
        assert_int_equal(tp_future_wait(f[i], 10 * TP_NSEC_PER_SEC, &r), 0);
        assert_int_equal(r, i * 3 - 5);
        assert_true(tp_future_done(f[i]));
        tp_future_release(f[i]);
    }
    struct tp_pool_stats s;
    assert_int_equal(tp_pool_wait_idle(p, 10 * TP_NSEC_PER_SEC), 0);
    tp_pool_stats(p, &s);
    assert_int_equal(s.failed, 2); /* -5 and -2 */
    tp_future *bad = (tp_future *)0x1;
    assert_int_equal(tp_submit_future(p, NULL, NULL, NULL, &bad), -EINVAL);
    assert_null(bad);
    assert_int_equal(tp_submit_future(p, NULL, ret_arg, NULL, NULL), -EINVAL);
    assert_int_equal(tp_future_wait(NULL, 0, NULL), -EINVAL);
    tp_pool_destroy(p);
}

static void test_future_timeout_and_release_early(void **state) {
    (void)state;
    reset();
    tp_pool *p = make(1, 16);
    tp_future *f = NULL, *g = NULL;
    assert_int_equal(tp_submit_future(p, NULL, gate_task, NULL, &f), 0);
    assert_int_equal(tp_submit_future(p, NULL, ret_arg, (void *)7, &g), 0);
    assert_false(tp_future_done(f));
    int r = -1;
    assert_int_equal(tp_future_wait(f, 10 * TP_NSEC_PER_MSEC, &r), -ETIMEDOUT);
    assert_int_equal(tp_future_wait(f, 0, &r), -ETIMEDOUT);
    tp_future_release(g); /* dropped while queued: the task still runs */
    atomic_store(&gate_open, 1);
    assert_int_equal(tp_future_wait(f, TP_FOREVER, &r), 0);
    assert_int_equal(r, 0);
    tp_future_release(f);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.completed, 2);
    tp_pool_destroy(p);
}

/* A task whose context is done before it starts is not run; its future
 * sees the context's error; stats count it as canceled. */
static void test_ctx_cancel_before_start(void **state) {
    (void)state;
    reset();
    atomic_store(&ran, 0);
    tp_pool *p = make(1, 16);
    tp_ctx *c = NULL;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    assert_int_equal(tp_submit(p, gate_task, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 1, 10000);
    tp_future *f = NULL;
    assert_int_equal(tp_submit_future(p, c, count_task, NULL, &f), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tp_submit_ctx(p, c, count_task, NULL), 0);
    tp_ctx_cancel(c);
    /* Submitting with a done context is refused. */
    assert_int_equal(tp_submit_ctx(p, c, count_task, NULL), -ECANCELED);
    tp_ctx_release(c); /* queued tasks keep their own references */
    atomic_store(&gate_open, 1);
    int r = 99;
    assert_int_equal(tp_future_wait(f, 10 * TP_NSEC_PER_SEC, &r), -ECANCELED);
    assert_int_equal(r, 99);
    tp_future_release(f);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    assert_int_equal(atomic_load(&ran), 0);
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.canceled, 4);
    assert_int_equal(s.completed, 1);
    assert_int_equal(s.rejected, 1);
    tp_pool_destroy(p);
}

/* A running task reads its context; outside tasks it is the background. */
static tp_ctx *seen_ctx;
static int read_ctx_task(void *arg) {
    (void)arg;
    seen_ctx = tp_task_ctx();
    return tp_ctx_err(seen_ctx);
}

static void test_task_ctx(void **state) {
    (void)state;
    assert_ptr_equal(tp_task_ctx(), tp_ctx_background());
    tp_pool *p = make(1, 4);
    tp_ctx *c = NULL;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    tp_future *f = NULL;
    assert_int_equal(tp_submit_future(p, c, read_ctx_task, NULL, &f), 0);
    int r = 1;
    assert_int_equal(tp_future_wait(f, TP_FOREVER, &r), 0);
    assert_int_equal(r, 0);
    assert_ptr_equal(seen_ctx, c);
    tp_future_release(f);
    assert_int_equal(tp_submit_future(p, NULL, read_ctx_task, NULL, &f), 0);
    assert_int_equal(tp_future_wait(f, TP_FOREVER, &r), 0);
    assert_ptr_equal(seen_ctx, tp_ctx_background());
    tp_future_release(f);
    tp_ctx_release(c);
    tp_pool_destroy(p);
}

/* Blocking submit and future wait give up when their context is done. */
static tp_ctx *cancel_me;
static void *canceller(void *arg) {
    (void)arg;
    tp_test_sleep_ms(30);
    tp_ctx_cancel(cancel_me);
    return NULL;
}

static void test_ctx_waits(void **state) {
    (void)state;
    reset();
    tp_pool *p = make(1, 1);
    tp_future *f = NULL;
    assert_int_equal(tp_submit_future(p, NULL, gate_task, NULL, &f), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 1, 10000);
    assert_int_equal(tp_submit(p, count_task, NULL), 0); /* queue full now */

    assert_int_equal(tp_ctx_with_cancel(NULL, &cancel_me), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, canceller, NULL), 0);
    assert_int_equal(tp_submit_ctx(p, cancel_me, count_task, NULL), -ECANCELED);
    pthread_join(th, NULL);
    tp_ctx_release(cancel_me);

    assert_int_equal(tp_ctx_with_cancel(NULL, &cancel_me), 0);
    assert_int_equal(pthread_create(&th, NULL, canceller, NULL), 0);
    int r = 5;
    assert_int_equal(tp_future_wait_ctx(f, cancel_me, &r), -ECANCELED);
    assert_int_equal(r, 5);
    pthread_join(th, NULL);
    tp_ctx_release(cancel_me);

    /* A deadline context bounds the wait too. */
    tp_ctx *d = NULL;
    assert_int_equal(tp_ctx_with_timeout(NULL, 20 * TP_NSEC_PER_MSEC, &d), 0);
    assert_int_equal(tp_future_wait_ctx(f, d, &r), -ETIMEDOUT);
    tp_ctx_release(d);

    atomic_store(&gate_open, 1);
    tp_ctx *bg = tp_ctx_background();
    assert_int_equal(tp_future_wait_ctx(f, bg, &r), 0);
    assert_int_equal(r, 0);
    tp_future_release(f);
    struct tp_pool_stats s;
    assert_int_equal(tp_pool_wait_idle(p, 10 * TP_NSEC_PER_SEC), 0);
    tp_pool_stats(p, &s);
    assert_int_equal(s.completed, 2);
    assert_int_equal(s.rejected, 1);
    tp_pool_destroy(p);
}

/* Groups: wait for all, first error, context cancelled on first failure. */
static int fail_first(void *arg) {
    (void)arg;
    return -EIO;
}
static void test_group(void **state) {
    (void)state;
    atomic_store(&ran, 0);
    tp_pool *p = make(2, 64);
    tp_group *g = NULL;
    assert_int_equal(tp_group_create(p, NULL, 0, &g), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(tp_group_submit(g, count_task, NULL), 0);
    assert_int_equal(tp_group_wait(g, 10 * TP_NSEC_PER_SEC), 0);
    assert_int_equal(atomic_load(&ran), 20);
    assert_false(tp_ctx_done(tp_group_ctx(g)));
    tp_group_destroy(g);

    /* First failure cancels the group's context; later tasks are skipped
     * or see it done; wait reports the failure, not -ECANCELED. */
    reset();
    tp_pool *one = make(1, 64);
    assert_int_equal(tp_group_create(one, NULL, 0, &g), 0);
    assert_int_equal(tp_group_submit(g, gate_task, NULL), 0);
    assert_int_equal(tp_group_submit(g, fail_first, NULL), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(tp_group_submit(g, count_task, NULL), 0);
    atomic_store(&ran, 0);
    atomic_store(&gate_open, 1);
    assert_int_equal(tp_group_wait(g, 10 * TP_NSEC_PER_SEC), -EIO);
    assert_true(tp_ctx_done(tp_group_ctx(g)));
    assert_int_equal(tp_ctx_err(tp_group_ctx(g)), -ECANCELED);
    assert_int_equal(atomic_load(&ran), 0); /* all skipped: one worker, FIFO */
    tp_group_destroy(g);
    struct tp_pool_stats s;
    assert_int_equal(tp_pool_wait_idle(one, 10 * TP_NSEC_PER_SEC), 0);
    tp_pool_stats(one, &s);
    assert_int_equal(s.canceled, 5);
    assert_int_equal(s.failed, 1);

    /* Parent cancelled: the group's tasks are skipped, wait reports it. */
    tp_ctx *parent = NULL;
    assert_int_equal(tp_ctx_with_cancel(NULL, &parent), 0);
    reset();
    assert_int_equal(tp_submit(one, gate_task, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 1, 10000);
    assert_int_equal(tp_group_create(one, parent, 0, &g), 0);
    assert_int_equal(tp_group_submit(g, count_task, NULL), 0);
    assert_int_equal(tp_group_wait(g, 10 * TP_NSEC_PER_MSEC), -ETIMEDOUT);
    tp_ctx_cancel(parent);
    atomic_store(&gate_open, 1);
    assert_int_equal(tp_group_wait(g, 10 * TP_NSEC_PER_SEC), -ECANCELED);
    tp_group_destroy(g);
    tp_ctx_release(parent);
    tp_pool_destroy(one);

    assert_int_equal(tp_group_create(NULL, NULL, 0, &g), -EINVAL);
    assert_int_equal(tp_group_submit(NULL, count_task, NULL), -EINVAL);
    tp_group_destroy(NULL);
    tp_pool_destroy(p);
}

/* limit caps the group's tasks in flight. */
static atomic_int inflight, max_inflight;
static int limited_task(void *arg) {
    (void)arg;
    int n = atomic_fetch_add(&inflight, 1) + 1;
    int m = atomic_load(&max_inflight);
    while (n > m && !atomic_compare_exchange_weak(&max_inflight, &m, n)) {
    }
    tp_test_sleep_ms(2);
    atomic_fetch_sub(&inflight, 1);
    return 0;
}

static void test_group_limit(void **state) {
    (void)state;
    atomic_store(&inflight, 0);
    atomic_store(&max_inflight, 0);
    tp_pool *p = make(8, 64);
    tp_group *g = NULL;
    assert_int_equal(tp_group_create(p, NULL, 2, &g), 0);
    for (int i = 0; i < 30; i++)
        assert_int_equal(tp_group_submit(g, limited_task, NULL), 0);
    assert_int_equal(tp_group_wait(g, 30 * TP_NSEC_PER_SEC), 0);
    assert_true(atomic_load(&max_inflight) >= 1);
    assert_true(atomic_load(&max_inflight) <= 2);
    tp_group_destroy(g);
    tp_pool_destroy(p);
}

/* Once a group wait or a future wait returns, the pool's stats already count
 * the tasks as completed (no window where the waiter is ahead of stats). */
static int noop_task(void *arg) {
    (void)arg;
    return 0;
}
static void test_stats_after_wait(void **state) {
    (void)state;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, NULL), 0);
    uint64_t expect = 0;
    for (int round = 0; round < 200; round++) {
        tp_group *g = NULL;
        assert_int_equal(tp_group_create(p, NULL, 0, &g), 0);
        for (int i = 0; i < 3; i++)
            assert_int_equal(tp_group_submit(g, noop_task, NULL), 0);
        assert_int_equal(tp_group_wait(g, TP_FOREVER), 0);
        expect += 3;
        struct tp_pool_stats s;
        tp_pool_stats(p, &s);
        assert_int_equal(s.completed, expect);
        tp_group_destroy(g);

        tp_future *f = NULL;
        int r = -1;
        assert_int_equal(tp_submit_future(p, NULL, noop_task, NULL, &f), 0);
        assert_int_equal(tp_future_wait(f, TP_FOREVER, &r), 0);
        expect += 1;
        tp_pool_stats(p, &s);
        assert_int_equal(s.completed, expect);
        tp_future_release(f);
    }
    tp_pool_destroy(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_after_wait),
        cmocka_unit_test(test_future_result),
        cmocka_unit_test(test_future_timeout_and_release_early),
        cmocka_unit_test(test_ctx_cancel_before_start),
        cmocka_unit_test(test_task_ctx),
        cmocka_unit_test(test_ctx_waits),
        cmocka_unit_test(test_group),
        cmocka_unit_test(test_group_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
