/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * tp_fd_acquire_ctx: a wait for a descriptor ends when the context is
 * cancelled or its deadline passes, a done context fails at once, and a
 * release still wakes a context waiter. */
#include "tp_test.h"

#include <fcntl.h>
#include <pthread.h>

#include "tripool/fd.h"

struct ctx_waiter {
    tp_fdpool *fp;
    tp_ctx *c;
    const char *path;
    int rc;
};

static void *waiter_main(void *arg) {
    struct ctx_waiter *w = arg;
    tp_fd *h = NULL;
    w->rc = tp_fd_acquire_ctx(w->fp, w->c, w->path, O_RDONLY, 0, &h);
    if (w->rc == 0) tp_fd_release(w->fp, h);
    return NULL;
}

static tp_fdpool *full_pool(tp_fd **held) {
    tp_fdpool_opts o;
    tp_fdpool_opts_init(&o);
    o.max_open = 1;
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, &o), 0);
    assert_int_equal(tp_fd_acquire(fp, "/dev/null", O_RDONLY, 0, held), 0);
    return fp;
}

static void test_cancel_ends_wait(void **state) {
    (void)state;
    tp_fd *held;
    tp_fdpool *fp = full_pool(&held);
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    struct ctx_waiter w = {fp, c, "/dev/zero", 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
    struct tp_fdpool_stats st;
    TP_TEST_WAIT_FOR((tp_fdpool_stats(fp, &st), st.waits == 1), 10000);
    assert_int_equal(st.waits, 1);
    tp_ctx_cancel(c);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, -ECANCELED);
    /* Done context: fails at once, even for the cached /dev/null. */
    tp_fd *h = (tp_fd *)1;
    assert_int_equal(tp_fd_acquire_ctx(fp, c, "/dev/null", O_RDONLY, 0, &h), -ECANCELED);
    assert_null(h);
    tp_ctx_release(c);
    tp_fd_release(fp, held);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

static void test_deadline_ends_wait(void **state) {
    (void)state;
    tp_fd *held;
    tp_fdpool *fp = full_pool(&held);
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_timeout(NULL, 30 * TP_NSEC_PER_MSEC, &c), 0);
    tp_fd *h;
    assert_int_equal(tp_fd_acquire_ctx(fp, c, "/dev/zero", O_RDONLY, 0, &h), -ETIMEDOUT);
    assert_true(tp_now_ns() >= tp_ctx_deadline(c)); /* not before the deadline */
    tp_ctx_release(c);
    tp_fd_release(fp, held);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

static void test_release_wakes_ctx_waiter(void **state) {
    (void)state;
    tp_fd *held;
    tp_fdpool *fp = full_pool(&held);
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    struct ctx_waiter w = {fp, c, "/dev/zero", 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
    struct tp_fdpool_stats st;
    TP_TEST_WAIT_FOR((tp_fdpool_stats(fp, &st), st.waits == 1), 10000);
    tp_fd_release(fp, held);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    /* NULL context = background. */
    tp_fd *h;
    assert_int_equal(tp_fd_acquire_ctx(fp, NULL, "/dev/null", O_RDONLY, 0, &h), 0);
    tp_fd_release(fp, h);
    tp_ctx_cancel(c);
    tp_ctx_release(c);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel_ends_wait),
        cmocka_unit_test(test_deadline_ends_wait),
        cmocka_unit_test(test_release_wakes_ctx_waiter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
