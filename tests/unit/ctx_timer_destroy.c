/* SPDX-License-Identifier: MIT */
/* timer.h, tp_timers_destroy(): "handles still held must be given back with
 * tp_timer_cancel() afterwards (it then returns false)". Giving a handle back
 * after its service is gone must not touch the service's freed memory, for
 * every state the handle can be in: pending at destroy, fired before
 * destroy, running while destroy waits, and cancelled concurrently with
 * destroy. The same for embedded nodes (tp__timer_stop, ctx.c's deadlines).
 *
 * How a plain build sees a use after free (valgrind memcheck sees it anyway:
 * `valgrind --error-exitcode=99 ./build/unit_ctx_timer_destroy`): right after
 * destroy the test asks malloc for blocks of every small size class until it
 * gets back the service's own address (glibc hands out the chunk freed last
 * first). If it does, the service was freed while a handle still points at
 * it; the test then puts an error-checking mutex, locked by this thread, where
 * the service's lock was (`lock` is the first field of struct tp_timers). A
 * cancel that locks and unlocks the freed service unlocks that mutex (POSIX:
 * relocking an error-checking mutex returns EDEADLK, unlocking it as its owner
 * succeeds), which the test sees as EPERM on its own unlock. Under ASan/TSan
 * (quarantined frees) or with a service that stays allocated while handles
 * are out, the address does not come back and this check has nothing to
 * look at; the other asserts still run.
 * TP_TEST_TIMEOUT: 60 */
#include "tp_test.h"

#include <pthread.h>
#include <stdatomic.h>

#include "ctx/timer_internal.h"

/* ---- reclaiming the freed service ----------------------------------------- */

#define RECLAIM_MAX 128 /* size classes 16..2048 */

struct reclaim {
    void *blk[RECLAIM_MAX];
    int n;
    pthread_mutex_t *trap; /* the block at the service's address, or NULL */
};

/* Allocate small blocks until one lands on addr; arm a trap mutex there. */
static void reclaim_arm(struct reclaim *r, uintptr_t addr) {
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < RECLAIM_MAX; i++) {
        size_t sz = (size_t)(i + 1) * 16;
        if (sz < sizeof(pthread_mutex_t)) sz = sizeof(pthread_mutex_t);
        void *p = malloc(sz);
        assert_non_null(p);
        r->blk[r->n++] = p;
        if ((uintptr_t)p == addr) {
            pthread_mutexattr_t a;
            pthread_mutexattr_init(&a);
            pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
            r->trap = p;
            assert_int_equal(pthread_mutex_init(r->trap, &a), 0);
            pthread_mutexattr_destroy(&a);
            assert_int_equal(pthread_mutex_lock(r->trap), 0);
            return;
        }
    }
}

/* Fail if anything locked/unlocked the trap since reclaim_arm. */
static void reclaim_check(struct reclaim *r, const char *what) {
    if (r->trap) {
        int err = pthread_mutex_unlock(r->trap);
        if (err != 0)
            fail_msg("%s: the freed service's memory was used (its lock was taken and released)",
                     what);
        pthread_mutex_destroy(r->trap);
        fprintf(stderr, "# %s: service memory reused by malloc; trap untouched\n", what);
    }
    for (int i = 0; i < r->n; i++)
        free(r->blk[i]);
    r->n = 0;
    r->trap = NULL;
}

/* ---- helpers ---------------------------------------------------------------- */

static _Atomic int calls;

static void count_cb(void *arg) {
    (void)arg;
    atomic_fetch_add(&calls, 1);
}

static void flag_cb(void *arg) {
    atomic_store((_Atomic int *)arg, 1);
}

/* Wait until every timer due by now on t has fired and returned: a
 * fire-and-forget marker due a little later runs after them (one at a time,
 * in deadline order), and once its fn runs they are FIRED. */
static void drain(tp_timers *t) {
    static _Atomic int marker;
    atomic_store(&marker, 0);
    assert_int_equal(tp_timer_add(t, tp_now_ns() + TP_NSEC_PER_MSEC, flag_cb, &marker, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&marker), 10000);
    assert_true(atomic_load(&marker));
}

/* ---- tests ------------------------------------------------------------------ */

/* "handles still held must be given back with tp_timer_cancel() afterwards
 * (it then returns false)": a handle whose timer fired before destroy. */
static void test_cancel_fired_handle_after_destroy(void **state) {
    (void)state;
    atomic_store(&calls, 0);
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    tp_timer *h;
    assert_int_equal(tp_timer_add(t, tp_now_ns(), count_cb, NULL, &h), 0);
    drain(t);
    assert_int_equal(atomic_load(&calls), 1);
    uintptr_t addr = (uintptr_t)t;
    tp_timers_destroy(t);
    struct reclaim r;
    reclaim_arm(&r, addr);
    assert_false(tp_timer_cancel(h)); /* fn already ran */
    reclaim_check(&r, "cancel of a fired handle after destroy");
    assert_int_equal(atomic_load(&calls), 1);
}

/* The same with several handles given back one by one after destroy, in
 * every state: fired, pending (dropped by destroy: never called), and the
 * last one given back frees the service. */
static void test_cancel_mixed_handles_after_destroy(void **state) {
    (void)state;
    atomic_store(&calls, 0);
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    enum { N = 16 };
    tp_timer *h[N];
    for (int i = 0; i < N; i++) {
        uint64_t d = i % 2 ? tp_now_ns() : tp_now_ns() + 3600 * TP_NSEC_PER_SEC;
        assert_int_equal(tp_timer_add(t, d, count_cb, NULL, &h[i]), 0);
    }
    drain(t);
    assert_int_equal(atomic_load(&calls), N / 2);
    uintptr_t addr = (uintptr_t)t;
    tp_timers_destroy(t);
    struct reclaim r;
    reclaim_arm(&r, addr);
    for (int i = 0; i < N; i++)
        assert_false(tp_timer_cancel(h[i]));
    reclaim_check(&r, "cancel of fired and dropped handles after destroy");
    assert_int_equal(atomic_load(&calls), N / 2); /* dropped ones never ran */
}

/* "Stop the thread (waiting for a running callback)": a handle whose callback
 * was running while destroy was called; destroy returns only after fn has
 * returned, and the handle is still given back afterwards. */
struct slow {
    _Atomic int started, finished;
    unsigned ms; /* how long fn runs */
};

static void slow_cb(void *arg) {
    struct slow *s = arg;
    atomic_store(&s->started, 1);
    tp_test_sleep_ms(s->ms);
    atomic_store(&s->finished, 1);
}

static void test_cancel_after_destroy_during_callback(void **state) {
    (void)state;
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    struct slow s = {.ms = 100};
    tp_timer *h;
    assert_int_equal(tp_timer_add(t, tp_now_ns(), slow_cb, &s, &h), 0);
    TP_TEST_WAIT_FOR(atomic_load(&s.started), 10000);
    assert_true(atomic_load(&s.started));
    uintptr_t addr = (uintptr_t)t;
    tp_timers_destroy(t);
    assert_true(atomic_load(&s.finished)); /* destroy waited for fn */
    struct reclaim r;
    reclaim_arm(&r, addr);
    assert_false(tp_timer_cancel(h));
    reclaim_check(&r, "cancel of a handle whose fn ran during destroy");
}

/* Cancel from another thread while destroy runs: a canceller blocked on a
 * running fn (cancel "waits until fn has returned") while destroy joins the
 * thread, plus cancellers of pending and fired handles racing destroy. Every
 * cancel returns, pending timers never run, a cancel of a fired timer
 * returns false. (TSan: no race on the node; ASan/memcheck: no use after
 * free.) */
struct racer {
    tp_timer **h;
    int n;
    bool *ret;
    _Atomic int *go;
};

static void *racer_main(void *arg) {
    struct racer *r = arg;
    while (!atomic_load(r->go)) {
    }
    for (int i = 0; i < r->n; i++)
        r->ret[i] = tp_timer_cancel(r->h[i]);
    return NULL;
}

static void *cancel_main(void *arg) {
    tp_timer *h = arg;
    return (void *)(uintptr_t)tp_timer_cancel(h);
}

/* A cancel that waits on a freed service never returns: fail instead of
 * hanging until the test's timeout. */
static void join_or_fail(pthread_t th, void **ret) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    int err = pthread_timedjoin_np(th, ret, &ts);
    if (err) fail_msg("a tp_timer_cancel racing tp_timers_destroy did not return (%d)", err);
}

static void test_cancel_concurrent_with_destroy(void **state) {
    (void)state;
    unsigned rounds = tp_test_scale(40);
    for (unsigned round = 0; round < rounds; round++) {
        atomic_store(&calls, 0);
        tp_timers *t;
        assert_int_equal(tp_timers_create(&t, NULL), 0);
        enum { N = 64 };
        tp_timer *h[N];
        bool ret[N];
        for (int i = 0; i < N; i++) {
            uint64_t d = i % 4 == 0 ? tp_now_ns() : tp_now_ns() + 3600 * TP_NSEC_PER_SEC;
            assert_int_equal(tp_timer_add(t, d, count_cb, NULL, &h[i]), 0);
        }
        drain(t);
        assert_int_equal(atomic_load(&calls), N / 4);

        /* One slow callback running while destroy starts, with a canceller
         * waiting on it. */
        struct slow s = {.ms = 10};
        tp_timer *hs;
        assert_int_equal(tp_timer_add(t, tp_now_ns(), slow_cb, &s, &hs), 0);
        TP_TEST_WAIT_FOR(atomic_load(&s.started), 10000);
        pthread_t waiter;
        assert_int_equal(pthread_create(&waiter, NULL, cancel_main, hs), 0);

        _Atomic int go = 0;
        struct racer rc[2] = {{h, N / 2, ret, &go}, {h + N / 2, N / 2, ret + N / 2, &go}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&th[i], NULL, racer_main, &rc[i]), 0);
        atomic_store(&go, 1);
        if (round % 2) tp_test_sleep_ms(0);
        tp_timers_destroy(t);
        assert_true(atomic_load(&s.finished));
        for (int i = 0; i < 2; i++)
            join_or_fail(th[i], NULL);
        void *wret;
        join_or_fail(waiter, &wret);
        assert_false((bool)(uintptr_t)wret); /* fn was running: not prevented */
        for (int i = 0; i < N; i++)
            if (i % 4 == 0) assert_false(ret[i]);     /* fired before */
        assert_int_equal(atomic_load(&calls), N / 4); /* pending ones never ran */
    }
}

/* tp_timer_add on a service being destroyed: "-ESHUTDOWN (service
 * destroyed)", from a callback that runs while destroy waits for it. */
struct add_late {
    tp_timers *t;
    _Atomic int started;
    int err;
};

static void add_late_cb(void *arg) {
    struct add_late *a = arg;
    atomic_store(&a->started, 1);
    tp_test_sleep_ms(50); /* destroy sets stop meanwhile */
    tp_timer *h = NULL;
    a->err = tp_timer_add(a->t, tp_now_ns(), count_cb, NULL, &h);
    if (!a->err) (void)tp_timer_cancel(h);
}

static void test_add_during_destroy(void **state) {
    (void)state;
    struct add_late a = {0};
    assert_int_equal(tp_timers_create(&a.t, NULL), 0);
    assert_int_equal(tp_timer_add(a.t, tp_now_ns(), add_late_cb, &a, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&a.started), 10000);
    tp_timers_destroy(a.t);
    assert_int_equal(a.err, -ESHUTDOWN);
}

/* Embedded nodes (timer_internal.h): tp__timer_stop after the service is
 * destroyed, for a node that fired and one that was pending. */
static void test_stop_embedded_after_destroy(void **state) {
    (void)state;
    atomic_store(&calls, 0);
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    struct tp_timer fired_node, pending_node;
    tp__timer_init(&fired_node, count_cb, NULL);
    tp__timer_init(&pending_node, count_cb, NULL);
    assert_int_equal(tp__timer_start(t, &fired_node, tp_now_ns()), 0);
    assert_int_equal(tp__timer_start(t, &pending_node, tp_now_ns() + 3600 * TP_NSEC_PER_SEC), 0);
    drain(t);
    assert_int_equal(atomic_load(&calls), 1);
    uintptr_t addr = (uintptr_t)t;
    tp_timers_destroy(t);
    struct reclaim r;
    reclaim_arm(&r, addr);
    assert_false(tp__timer_stop(&fired_node));
    assert_false(tp__timer_stop(&pending_node));
    assert_false(tp__timer_stop(&fired_node)); /* a second stop is harmless */
    reclaim_check(&r, "stop of embedded nodes after destroy");
    assert_int_equal(atomic_load(&calls), 1);
}

/* Embedded node: stopped before destroy, then started again on a new
 * service; stop before destroy prevents the call. */
static void test_embedded_restart(void **state) {
    (void)state;
    atomic_store(&calls, 0);
    struct tp_timer node;
    tp__timer_init(&node, count_cb, NULL);
    for (int i = 0; i < 3; i++) {
        tp_timers *t;
        assert_int_equal(tp_timers_create(&t, NULL), 0);
        assert_int_equal(tp__timer_start(t, &node, tp_now_ns() + 3600 * TP_NSEC_PER_SEC), 0);
        assert_int_equal(tp_timers_pending(t), 1);
        assert_true(tp__timer_stop(&node));
        assert_int_equal(tp_timers_pending(t), 0);
        assert_int_equal(tp__timer_start(t, &node, tp_now_ns()), 0);
        drain(t);
        assert_false(tp__timer_stop(&node));
        tp_timers_destroy(t);
    }
    assert_int_equal(atomic_load(&calls), 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel_fired_handle_after_destroy),
        cmocka_unit_test(test_cancel_mixed_handles_after_destroy),
        cmocka_unit_test(test_cancel_after_destroy_during_callback),
        cmocka_unit_test(test_cancel_concurrent_with_destroy),
        cmocka_unit_test(test_add_during_destroy),
        cmocka_unit_test(test_stop_embedded_after_destroy),
        cmocka_unit_test(test_embedded_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
