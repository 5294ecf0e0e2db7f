/* SPDX-License-Identifier: MIT */
/* Cancel callbacks (tp_ctx_on_done / tp_ctx_cb_stop) and release misuse.
 * TP_TEST_TIMEOUT: 60 */
#include "tp_test.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/wait.h>

static _Atomic int calls;

static void count_cb(void *arg) {
    (void)arg;
    atomic_fetch_add(&calls, 1);
}

static void test_runs_once(void **state) {
    (void)state;
    atomic_store(&calls, 0);
    tp_ctx *c, *k;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    assert_int_equal(tp_ctx_with_cancel(c, &k), 0);
    assert_int_equal(tp_ctx_on_done(c, count_cb, NULL, NULL), 0);
    assert_int_equal(tp_ctx_on_done(k, count_cb, NULL, NULL), 0);
    tp_ctx_cb *h;
    assert_int_equal(tp_ctx_on_done(k, count_cb, NULL, &h), 0);
    assert_int_equal(atomic_load(&calls), 0);
    tp_ctx_cancel(c);
    assert_int_equal(atomic_load(&calls), 3);
    tp_ctx_cancel(c);
    tp_ctx_cancel(k);
    assert_int_equal(atomic_load(&calls), 3);
    assert_false(tp_ctx_cb_stop(h)); /* it already ran */
    /* Registering on a done context runs at once on this thread. */
    assert_int_equal(tp_ctx_on_done(k, count_cb, NULL, &h), 0);
    assert_int_equal(atomic_load(&calls), 4);
    assert_false(tp_ctx_cb_stop(h));
    tp_ctx_release(k);
    tp_ctx_release(c);
}

static void test_stop_prevents(void **state) {
    (void)state;
    atomic_store(&calls, 0);
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    tp_ctx_cb *h1, *h2;
    assert_int_equal(tp_ctx_on_done(c, count_cb, NULL, &h1), 0);
    assert_int_equal(tp_ctx_on_done(c, count_cb, NULL, &h2), 0);
    assert_true(tp_ctx_cb_stop(h1));
    tp_ctx_cancel(c);
    assert_int_equal(atomic_load(&calls), 1);
    assert_false(tp_ctx_cb_stop(h2));
    /* Stop keeps working after the context is released: the handle pins it. */
    tp_ctx *d;
    assert_int_equal(tp_ctx_with_cancel(NULL, &d), 0);
    assert_int_equal(tp_ctx_on_done(d, count_cb, NULL, &h1), 0);
    tp_ctx_release(d);
    assert_true(tp_ctx_cb_stop(h1));
    tp_ctx_release(c);
    assert_int_equal(atomic_load(&calls), 1);
}

/* A callback that cancels another context and inspects its own: no lock is
 * held while it runs, so this must not deadlock. */
struct reenter {
    tp_ctx *self;
    tp_ctx *other;
    int seen_err;
};

static void reenter_cb(void *arg) {
    struct reenter *r = arg;
    r->seen_err = tp_ctx_err(r->self);
    tp_ctx_cancel(r->self); /* already done: no-op */
    tp_ctx_cancel(r->other);
    tp_ctx *child;
    if (tp_ctx_with_cancel(r->self, &child) == 0) { /* born done */
        if (tp_ctx_err(child) != r->seen_err) r->seen_err = 0;
        tp_ctx_release(child);
    }
}

static void test_cancel_from_callback(void **state) {
    (void)state;
    atomic_store(&calls, 0);
    struct reenter r = {0};
    assert_int_equal(tp_ctx_with_cancel(NULL, &r.self), 0);
    assert_int_equal(tp_ctx_with_cancel(NULL, &r.other), 0);
    assert_int_equal(tp_ctx_on_done(r.other, count_cb, NULL, NULL), 0);
    assert_int_equal(tp_ctx_on_done(r.self, reenter_cb, &r, NULL), 0);
    tp_ctx_cancel(r.self);
    assert_int_equal(r.seen_err, -ECANCELED);
    assert_int_equal(tp_ctx_err(r.other), -ECANCELED);
    assert_int_equal(atomic_load(&calls), 1);
    tp_ctx_release(r.self);
    tp_ctx_release(r.other);
}

/* A callback stopping a sibling callback of the same cancel that has not run
 * yet prevents it (true); stopping its own handle returns false. */
struct stopper {
    tp_ctx_cb *victim;
    tp_ctx_cb *own;
    bool victim_stopped;
    bool own_stopped;
    bool ran;
};

static void stopper_cb(void *arg) {
    struct stopper *s = arg;
    s->ran = true;
    s->own_stopped = tp_ctx_cb_stop(s->own);
    s->victim_stopped = tp_ctx_cb_stop(s->victim);
}

static void test_stop_from_callback(void **state) {
    (void)state;
    atomic_store(&calls, 0);
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    struct stopper s = {0};
    /* Callbacks run newest first, so register the victim before the stopper. */
    assert_int_equal(tp_ctx_on_done(c, count_cb, NULL, &s.victim), 0);
    assert_int_equal(tp_ctx_on_done(c, stopper_cb, &s, &s.own), 0);
    tp_ctx_cancel(c);
    assert_true(s.ran);
    assert_false(s.own_stopped);
    assert_true(s.victim_stopped);
    assert_int_equal(atomic_load(&calls), 0);
    tp_ctx_release(c);
}

/* Stop from another thread while the callback runs waits for it to return. */
struct slow {
    _Atomic int started;
    _Atomic int finished;
};

static void slow_cb(void *arg) {
    struct slow *s = arg;
    atomic_store(&s->started, 1);
    tp_test_sleep_ms(50);
    atomic_store(&s->finished, 1);
}

static void *cancel_thread(void *arg) {
    tp_ctx_cancel(arg);
    return NULL;
}

static void test_stop_waits_for_running(void **state) {
    (void)state;
    tp_ctx *c;
    struct slow s = {0};
    tp_ctx_cb *h;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    assert_int_equal(tp_ctx_on_done(c, slow_cb, &s, &h), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_thread, c), 0);
    TP_TEST_WAIT_FOR(atomic_load(&s.started), 10000);
    assert_int_equal(atomic_load(&s.started), 1);
    assert_false(tp_ctx_cb_stop(h));
    assert_int_equal(atomic_load(&s.finished), 1);
    pthread_join(th, NULL);
    tp_ctx_release(c);
}

/* A callback queued behind a running one (same cancel, other thread) is
 * stopped at once: stop returns true without waiting for the runner. */
struct gate {
    _Atomic int started;
    _Atomic int open;
};

static void gated_cb(void *arg) {
    struct gate *g = arg;
    atomic_store(&g->started, 1);
    TP_TEST_WAIT_FOR(atomic_load(&g->open), 10000);
}

static void test_stop_queued_from_other_thread(void **state) {
    (void)state;
    atomic_store(&calls, 0);
    tp_ctx *c;
    struct gate g = {0};
    tp_ctx_cb *victim;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    /* Newest first: gated_cb runs first and holds the runner. */
    assert_int_equal(tp_ctx_on_done(c, count_cb, NULL, &victim), 0);
    assert_int_equal(tp_ctx_on_done(c, gated_cb, &g, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_thread, c), 0);
    TP_TEST_WAIT_FOR(atomic_load(&g.started), 10000);
    assert_int_equal(atomic_load(&g.started), 1);
    assert_true(tp_ctx_cb_stop(victim)); /* returns while gated_cb still runs */
    atomic_store(&g.open, 1);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&calls), 0);
    tp_ctx_release(c);
}

/* Deadline callbacks run on the timer thread, exactly once. */
static void test_deadline_callback(void **state) {
    (void)state;
    atomic_store(&calls, 0);
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_timeout(NULL, 5 * TP_NSEC_PER_MSEC, &c), 0);
    assert_int_equal(tp_ctx_on_done(c, count_cb, NULL, NULL), 0);
    assert_int_equal(tp_ctx_wait(c, 30 * TP_NSEC_PER_SEC), -ETIMEDOUT);
    TP_TEST_WAIT_FOR(atomic_load(&calls) == 1, 10000);
    tp_ctx_cancel(c);
    tp_test_sleep_ms(5);
    assert_int_equal(atomic_load(&calls), 1);
    tp_ctx_release(c);
}

/* The callback releases the last reference of its own context, on the timer
 * thread (the context frees itself from inside its timer callback). */
static void release_cb(void *arg) {
    tp_ctx_release(arg);
    atomic_fetch_add(&calls, 1);
}

static void test_release_from_timer_callback(void **state) {
    (void)state;
    atomic_store(&calls, 0);
    for (int i = 0; i < 20; i++) {
        tp_ctx *c;
        assert_int_equal(tp_ctx_with_timeout(NULL, TP_NSEC_PER_MSEC, &c), 0);
        assert_int_equal(tp_ctx_on_done(c, release_cb, c, NULL), 0);
    }
    TP_TEST_WAIT_FOR(atomic_load(&calls) == 20, 10000);
    assert_int_equal(atomic_load(&calls), 20);
}

/* Releasing twice aborts with a clear message (checked in a child process). */
static void test_double_release_aborts(void **state) {
    (void)state;
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        tp_ctx *c, *k;
        if (tp_ctx_with_cancel(NULL, &c) || tp_ctx_with_cancel(c, &k)) _exit(3);
        tp_ctx_release(c); /* fine: k keeps c's memory alive */
        tp_ctx_release(c); /* one release too many */
        _exit(0);
    }
    close(pipefd[1]);
    char buf[512] = {0};
    size_t got = 0;
    ssize_t r;
    while (got < sizeof(buf) - 1 && (r = read(pipefd[0], buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)r;
    close(pipefd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(buf, "tp_ctx_release"));
    assert_non_null(strstr(buf, "released more times than retained"));
}

/* A leaf released twice: its memory is already freed at the second release,
 * so this is best effort by nature (undefined behaviour in C). Accepted
 * outcomes: our abort naming tp_ctx_release, or ASan's use-after-free
 * report (ASan builds); both end in SIGABRT. */
static void test_leaf_double_release_aborts(void **state) {
    (void)state;
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        tp_ctx *c;
        if (tp_ctx_with_cancel(NULL, &c)) _exit(3);
        tp_ctx_release(c);
        tp_ctx_release(c); /* use after free */
        _exit(0);
    }
    close(pipefd[1]);
    char buf[4096] = {0};
    size_t got = 0;
    ssize_t r;
    while (got < sizeof(buf) - 1 && (r = read(pipefd[0], buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)r;
    char drain[4096];
    while (read(pipefd[0], drain, sizeof(drain)) > 0) {
    }
    close(pipefd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_true(strstr(buf, "tp_ctx_release") || strstr(buf, "heap-use-after-free"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_once),
        cmocka_unit_test(test_stop_prevents),
        cmocka_unit_test(test_cancel_from_callback),
        cmocka_unit_test(test_stop_from_callback),
        cmocka_unit_test(test_stop_waits_for_running),
        cmocka_unit_test(test_stop_queued_from_other_thread),
        cmocka_unit_test(test_deadline_callback),
        cmocka_unit_test(test_release_from_timer_callback),
        cmocka_unit_test(test_double_release_aborts),
        cmocka_unit_test(test_leaf_double_release_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
