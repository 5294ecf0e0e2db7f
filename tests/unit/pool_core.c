/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * The task pool's core contract: bad input, exactly-once execution, full
 * queue modes, close semantics, thread accounting, errors, nested submit,
 * resize, idle expiry, wait_idle. */
#include "tp_test.h"

#include <pthread.h>
#include <stdatomic.h>

/* A gate that tasks block on until the test opens it. */
static atomic_int gate_open;
static atomic_int gate_waiting;
static atomic_int ran;

static int gate_task(void *arg) {
    (void)arg;
    atomic_fetch_add(&gate_waiting, 1);
    while (!atomic_load(&gate_open))
        tp_test_sleep_ms(1);
    atomic_fetch_add(&ran, 1);
    return 0;
}

static int count_task(void *arg) {
    atomic_int *flag = arg;
    atomic_fetch_add(flag, 1);
    atomic_fetch_add(&ran, 1);
    return 0;
}

static int noop(void *arg) {
    (void)arg;
    return 0;
}

static void reset(void) {
    atomic_store(&gate_open, 0);
    atomic_store(&gate_waiting, 0);
    atomic_store(&ran, 0);
}

static void test_bad_input(void **state) {
    (void)state;
    tp_pool_opts o;
    tp_pool *p = (tp_pool *)0x1;
    assert_int_equal(tp_pool_create(NULL, NULL), -EINVAL);

    tp_pool_opts_init(&o);
    assert_true(o.max_workers >= 1);
    assert_int_equal(o.queue_cap, 65536);
    assert_int_equal(o.idle_timeout_ns, TP_NSEC_PER_SEC);

    o.queue_cap = 0;
    assert_int_equal(tp_pool_create(&p, &o), -EINVAL);
    assert_null(p);
    tp_pool_opts_init(&o);
    o.max_workers = 0;
    assert_int_equal(tp_pool_create(&p, &o), -EINVAL);
    tp_pool_opts_init(&o);
    o.min_workers = 3;
    o.max_workers = 2;
    assert_int_equal(tp_pool_create(&p, &o), -EINVAL);
    tp_pool_opts_init(&o);
    o.max_workers = (1u << 20) + 1;
    assert_int_equal(tp_pool_create(&p, &o), -EINVAL);
    tp_pool_opts_init(&o);
    o.queue_cap = ((size_t)1 << 30) + 1;
    assert_int_equal(tp_pool_create(&p, &o), -EINVAL);

    assert_int_equal(tp_pool_create(&p, NULL), 0);
    assert_int_equal(tp_submit(p, NULL, NULL), -EINVAL);
    assert_int_equal(tp_submit(NULL, noop, NULL), -EINVAL);
    assert_int_equal(tp_submit_timeout(p, NULL, NULL, 1), -EINVAL);
    assert_int_equal(tp_submit_ex(p, NULL), -EINVAL);
    assert_int_equal(tp_pool_resize(p, 0), -EINVAL);
    assert_int_equal(tp_pool_resize(p, (1u << 20) + 1), -EINVAL);
    assert_int_equal(tp_pool_resize(NULL, 1), -EINVAL);
    assert_int_equal(tp_pool_close(NULL, 0), -EINVAL);
    tp_pool_stats(NULL, NULL);
    tp_pool_destroy(p);
    tp_pool_destroy(NULL);
}

/* Every accepted task runs exactly once; counters agree. */
static void test_exactly_once(void **state) {
    (void)state;
    reset();
    enum { N = 20000 };
    atomic_int *flags = calloc(N, sizeof *flags);
    assert_non_null(flags);
    tp_pool *p = tp_test_pool(0, 4, 64); /* small queue: exercises full/blocking */
    for (int i = 0; i < N; i++)
        assert_int_equal(tp_submit(p, count_task, &flags[i]), 0);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&flags[i]), 1);
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.submitted, N);
    assert_int_equal(s.completed, N);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.queued, 0);
    assert_int_equal(s.workers_running, 0);
    assert_true(s.peak_workers >= 1 && s.peak_workers <= 4);
    assert_true(s.peak_queued >= 1 && s.peak_queued <= 64);
    tp_pool_destroy(p);
    free(flags);
}

/* After close returns 0 the process has the threads it had before create. */
static void test_threads_joined(void **state) {
    (void)state;
    reset();
    int before = tp__thread_count();
    assert_true(before >= 1);
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = 8;
    o.prealloc = true;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    assert_int_equal(tp__thread_count(), before + 8);
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.workers_running, 8);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(tp_submit(p, noop, NULL), 0);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    assert_int_equal(tp__thread_count(), before);
    tp_pool_destroy(p);

    /* Lazy start: no thread until work arrives. */
    p = tp_test_pool(0, 4, 16);
    assert_int_equal(tp__thread_count(), before);
    assert_int_equal(tp_submit(p, noop, NULL), 0);
    assert_int_equal(tp_pool_wait_idle(p, 10 * TP_NSEC_PER_SEC), 0);
    tp_pool_stats(p, &s);
    assert_true(s.workers_running >= 1);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    assert_int_equal(tp__thread_count(), before);
    tp_pool_destroy(p);
}

static void test_full_modes(void **state) {
    (void)state;
    reset();
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = 1;
    o.queue_cap = 2;
    o.nonblocking = true;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    assert_int_equal(tp_submit(p, gate_task, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 1, 10000);
    assert_int_equal(atomic_load(&gate_waiting), 1);
    assert_int_equal(tp_submit(p, noop, NULL), 0);
    assert_int_equal(tp_submit(p, noop, NULL), 0);
    assert_int_equal(tp_submit(p, noop, NULL), -EAGAIN); /* nonblocking */
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.queued, 2);
    assert_int_equal(s.rejected, 1);
    atomic_store(&gate_open, 1);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    tp_pool_destroy(p);

    /* Blocking with timeout. */
    reset();
    p = tp_test_pool(0, 1, 1);
    assert_int_equal(tp_submit(p, gate_task, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 1, 10000);
    assert_int_equal(tp_submit(p, noop, NULL), 0);
    uint64_t t0 = tp_now_ns();
    assert_int_equal(tp_submit_timeout(p, noop, NULL, 30 * TP_NSEC_PER_MSEC), -ETIMEDOUT);
    assert_true(tp_now_ns() - t0 >= 30 * TP_NSEC_PER_MSEC);
    assert_int_equal(tp_submit_timeout(p, noop, NULL, 0), -EAGAIN);
    atomic_store(&gate_open, 1);
    /* Room comes back: a blocking submit succeeds. */
    assert_int_equal(tp_submit_timeout(p, noop, NULL, 10 * TP_NSEC_PER_SEC), 0);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    tp_pool_stats(p, &s);
    assert_int_equal(s.rejected, 2);
    assert_int_equal(s.completed, 3);
    tp_pool_destroy(p);
}

/* max_blocked: excess blocked submitters get -EAGAIN at once. */
static tp_pool *g_pool;
static atomic_int blocked_rc_ok;

static void *blocked_submitter(void *arg) {
    (void)arg;
    int rc;
    rc = tp_submit(g_pool, noop, NULL);
    if (rc == 0) atomic_fetch_add(&blocked_rc_ok, 1);
    return NULL;
}

static void test_max_blocked(void **state) {
    (void)state;
    reset();
    atomic_store(&blocked_rc_ok, 0);
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = 1;
    o.queue_cap = 1;
    o.max_blocked = 2;
    assert_int_equal(tp_pool_create(&g_pool, &o), 0);
    assert_int_equal(tp_submit(g_pool, gate_task, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 1, 10000);
    assert_int_equal(tp_submit(g_pool, noop, NULL), 0); /* fills the queue */
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, blocked_submitter, NULL), 0);
    /* Wait until both are blocked ("blocked" in the stats): a third is
     * refused at once, whatever its timeout. */
    struct tp_pool_stats s;
    TP_TEST_WAIT_FOR((tp_pool_stats(g_pool, &s), s.blocked == 2), 20000);
    assert_int_equal(s.blocked, 2);
    uint64_t t0 = tp_now_ns();
    assert_int_equal(tp_submit_timeout(g_pool, noop, NULL, 5 * TP_NSEC_PER_SEC), -EAGAIN);
    assert_true(tp_now_ns() - t0 < 2 * TP_NSEC_PER_SEC); /* at once, not after the timeout */
    atomic_store(&gate_open, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&blocked_rc_ok), 2);
    assert_int_equal(tp_pool_close(g_pool, TP_FOREVER), 0);
    tp_pool_stats(g_pool, &s);
    assert_int_equal(s.blocked, 0);
    assert_int_equal(s.completed, 4);
    assert_true(s.rejected >= 1);
    tp_pool_destroy(g_pool);
}

static void test_close_semantics(void **state) {
    (void)state;
    reset();
    tp_pool *p = tp_test_pool(0, 1, 16);
    assert_int_equal(tp_submit(p, gate_task, NULL), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(tp_submit(p, noop, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 1, 10000);
    /* Close times out while the task blocks; the pool stays closed. */
    assert_int_equal(tp_pool_close(p, 20 * TP_NSEC_PER_MSEC), -ETIMEDOUT);
    assert_int_equal(tp_submit(p, noop, NULL), -ESHUTDOWN);
    atomic_store(&gate_open, 1);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    assert_int_equal(tp_pool_close(p, 0), 0); /* closed and drained: 0 again */
    assert_int_equal(tp_submit(p, noop, NULL), -ESHUTDOWN);
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.completed, 6); /* accepted tasks all ran */
    assert_int_equal(s.rejected, 2);
    tp_pool_destroy(p);
}

static atomic_int close_rc;
static tp_pool *self_pool;
static int close_self_task(void *arg) {
    (void)arg;
    atomic_store(&close_rc, tp_pool_close(self_pool, 0));
    return 0;
}

static void test_close_from_task(void **state) {
    (void)state;
    self_pool = tp_test_pool(0, 1, 4);
    atomic_store(&close_rc, 1);
    assert_int_equal(tp_submit(self_pool, close_self_task, NULL), 0);
    assert_int_equal(tp_pool_wait_idle(self_pool, 10 * TP_NSEC_PER_SEC), 0);
    assert_int_equal(atomic_load(&close_rc), -EDEADLK);
    tp_pool_destroy(self_pool);
}

static atomic_int err_seen;
static _Atomic(void *) err_hook_arg_seen;
static int fail_task(void *arg) {
    (void)arg;
    return -EIO;
}
static void on_err(int err, tp_task_fn fn, void *targ, void *hook) {
    assert_true(fn == fail_task);
    assert_true(targ == (void *)0x42);
    atomic_store(&err_hook_arg_seen, hook);
    if (err == -EIO) atomic_fetch_add(&err_seen, 1);
}

static void test_on_error(void **state) {
    (void)state;
    atomic_store(&err_seen, 0);
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.max_workers = 2;
    o.on_error = on_err;
    o.on_error_arg = (void *)0x7;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(tp_submit(p, fail_task, (void *)0x42), 0);
        assert_int_equal(tp_submit(p, noop, NULL), 0);
    }
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    assert_int_equal(atomic_load(&err_seen), 10);
    assert_ptr_equal(atomic_load(&err_hook_arg_seen), (void *)0x7);
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.failed, 10);
    assert_int_equal(s.completed, 20);
    tp_pool_destroy(p);
}

/* A task submitting to its own full queue runs the new task inline. */
static atomic_int nested_ran;
static pthread_t nested_thread;
static atomic_int nested_same_thread;
static int nested_child(void *arg) {
    (void)arg;
    if (pthread_equal(pthread_self(), nested_thread)) atomic_fetch_add(&nested_same_thread, 1);
    atomic_fetch_add(&nested_ran, 1);
    return 0;
}
static int nested_parent(void *arg) {
    tp_pool *p = arg;
    nested_thread = pthread_self();
    for (int i = 0; i < 10; i++)
        if (tp_submit(p, nested_child, NULL) != 0) return -1;
    return 0;
}

static void test_nested_full(void **state) {
    (void)state;
    atomic_store(&nested_ran, 0);
    atomic_store(&nested_same_thread, 0);
    tp_pool *p = tp_test_pool(0, 1, 2); /* one worker: it is busy running the parent */
    assert_int_equal(tp_submit(p, nested_parent, p), 0);
    assert_int_equal(tp_pool_wait_idle(p, 10 * TP_NSEC_PER_SEC), 0);
    assert_int_equal(atomic_load(&nested_ran), 10);
    /* queue_cap 2: at least 8 of the 10 ran inline on the parent's thread */
    assert_true(atomic_load(&nested_same_thread) >= 8);
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.submitted, 11);
    assert_int_equal(s.completed, 11);
    tp_pool_destroy(p);
}

static void test_resize(void **state) {
    (void)state;
    reset();
    tp_pool *p = tp_test_pool(0, 1, 64);
    for (int i = 0; i < 4; i++)
        assert_int_equal(tp_submit(p, gate_task, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 1, 10000);
    tp_test_sleep_ms(20);
    assert_int_equal(atomic_load(&gate_waiting), 1); /* max 1 worker */
    assert_int_equal(tp_pool_resize(p, 4), 0);       /* grow: starts workers for queued work */
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 4, 10000);
    assert_int_equal(atomic_load(&gate_waiting), 4);
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.max_workers, 4);
    assert_int_equal(s.workers_running, 4);
    /* shrink: surplus workers leave after their current task */
    assert_int_equal(tp_pool_resize(p, 2), 0);
    atomic_store(&gate_open, 1);
    TP_TEST_WAIT_FOR((tp_pool_stats(p, &s), s.workers_running <= 2), 10000);
    assert_true(s.workers_running <= 2);
    assert_int_equal(s.max_workers, 2);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tp_submit(p, noop, NULL), 0);
    assert_int_equal(tp_pool_wait_idle(p, 10 * TP_NSEC_PER_SEC), 0);
    tp_pool_stats(p, &s);
    assert_true(s.workers_running <= 2);
    assert_int_equal(s.completed, 104);
    tp_pool_destroy(p);
}

static void test_idle_expiry(void **state) {
    (void)state;
    reset();
    int before = tp__thread_count();
    tp_pool_opts o;
    tp_pool_opts_init(&o);
    o.min_workers = 1;
    o.max_workers = 4;
    o.idle_timeout_ns = 50 * TP_NSEC_PER_MSEC;
    tp_pool *p = NULL;
    assert_int_equal(tp_pool_create(&p, &o), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(tp_submit(p, gate_task, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&gate_waiting) == 4, 10000);
    struct tp_pool_stats s;
    tp_pool_stats(p, &s);
    assert_int_equal(s.workers_running, 4);
    atomic_store(&gate_open, 1);
    /* Drops to min after about idle_timeout (generous bound). */
    TP_TEST_WAIT_FOR((tp_pool_stats(p, &s), s.workers_running == 1), 10000);
    assert_int_equal(s.workers_running, 1);
    tp_test_sleep_ms(150); /* min workers never expire */
    tp_pool_stats(p, &s);
    assert_int_equal(s.workers_running, 1);
    assert_int_equal(s.peak_workers, 4);
    /* Still serves work after shrinking. */
    assert_int_equal(tp_submit(p, noop, NULL), 0);
    assert_int_equal(tp_pool_wait_idle(p, 10 * TP_NSEC_PER_SEC), 0);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    assert_int_equal(tp__thread_count(), before);
    tp_pool_destroy(p);
}

static void test_wait_idle(void **state) {
    (void)state;
    reset();
    tp_pool *p = tp_test_pool(0, 2, 16);
    assert_int_equal(tp_pool_wait_idle(p, 0), 0); /* nothing submitted */
    assert_int_equal(tp_submit(p, gate_task, NULL), 0);
    assert_int_equal(tp_pool_wait_idle(p, 20 * TP_NSEC_PER_MSEC), -ETIMEDOUT);
    atomic_store(&gate_open, 1);
    assert_int_equal(tp_pool_wait_idle(p, 10 * TP_NSEC_PER_SEC), 0);
    assert_int_equal(atomic_load(&ran), 1);
    tp_pool_destroy(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),       cmocka_unit_test(test_exactly_once),
        cmocka_unit_test(test_threads_joined),  cmocka_unit_test(test_full_modes),
        cmocka_unit_test(test_max_blocked),     cmocka_unit_test(test_close_semantics),
        cmocka_unit_test(test_close_from_task), cmocka_unit_test(test_on_error),
        cmocka_unit_test(test_nested_full),     cmocka_unit_test(test_resize),
        cmocka_unit_test(test_idle_expiry),     cmocka_unit_test(test_wait_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
