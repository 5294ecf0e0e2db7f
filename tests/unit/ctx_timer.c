/* SPDX-License-Identifier: MIT */
/* The timer service: ordering, cancel semantics, many pending, one thread.
 * TP_TEST_TIMEOUT: 60 */
#include "tp_test.h"

#include <stdatomic.h>

static void count_cb_n(void *arg) {
    atomic_fetch_add((_Atomic int *)arg, 1);
}

static void test_configure_default(void **state) {
    (void)state;
    tp_timers_opts o;
    tp_timers_opts_init(&o);
    assert_int_equal(tp_timers_default_configure(NULL), -EINVAL);
    o.rt_priority = 100;
    assert_int_equal(tp_timers_default_configure(&o), -EINVAL);
    o.rt_priority = 0;
    o.initial_capacity = 64;
    assert_int_equal(tp_timers_default_configure(&o), 0); /* not started yet */
    assert_false(tp_timers_realtime(NULL));               /* starts it */
    assert_int_equal(tp_timers_default_configure(&o), -EBUSY);
}

/* A real-time service works whether or not the policy is granted (it falls
 * back to a normal thread when not permitted). */
static void test_realtime_service(void **state) {
    (void)state;
    tp_timers_opts o;
    tp_timers_opts_init(&o);
    o.rt_priority = 100;
    tp_timers *t = NULL;
    assert_int_equal(tp_timers_create(&t, &o), -EINVAL);
    o.rt_priority = 5;
    assert_int_equal(tp_timers_create(&t, &o), 0);
    (void)tp_timers_realtime(t);
    _Atomic int n = 0;
    assert_int_equal(tp_timer_add_after(t, TP_NSEC_PER_MSEC, count_cb_n, &n, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&n) == 1, 10000);
    assert_int_equal(atomic_load(&n), 1);
    tp_timers_destroy(t);
}

static void test_bad_input(void **state) {
    (void)state;
    tp_timer *h = (tp_timer *)1;
    assert_int_equal(tp_timers_create(NULL, NULL), -EINVAL);
    assert_int_equal(tp_timer_add(NULL, 0, NULL, NULL, &h), -EINVAL);
    assert_null(h);
    assert_int_equal(tp_timer_add_after(NULL, TP_FOREVER, (tp_timer_fn)free, NULL, &h), -EINVAL);
    assert_false(tp_timer_cancel(NULL));
    tp_timers_destroy(NULL);
    tp_timers_destroy(tp_timers_default()); /* ignored */
    assert_non_null(tp_timers_default());
    assert_ptr_equal(tp_timers_default(), tp_timers_default());
}

struct order {
    _Atomic int n;    /* slots taken */
    _Atomic int done; /* slots written (seq_cst: publishes seq[]) */
    int seq[8];
};

struct order_item {
    struct order *o;
    int id;
};

static void order_cb(void *arg) {
    struct order_item *it = arg;
    int i = atomic_fetch_add(&it->o->n, 1);
    if (i < 8) it->o->seq[i] = it->id;
    atomic_fetch_add(&it->o->done, 1);
}

static void test_fires_in_deadline_order(void **state) {
    (void)state;
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    struct order o = {0};
    struct order_item items[5];
    uint64_t base = tp_now_ns() + 20 * TP_NSEC_PER_MSEC;
    int ids[5] = {3, 1, 4, 0, 2}; /* added out of order */
    for (int i = 0; i < 5; i++) {
        items[i] = (struct order_item){&o, ids[i]};
        assert_int_equal(tp_timer_add(t, base + (uint64_t)ids[i] * 5 * TP_NSEC_PER_MSEC, order_cb,
                                      &items[i], NULL),
                         0);
    }
    assert_int_equal(tp_timers_pending(t), 5);
    TP_TEST_WAIT_FOR(atomic_load(&o.done) == 5, 10000);
    assert_int_equal(atomic_load(&o.done), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(o.seq[i], i);
    assert_true(tp_now_ns() >= base + 20 * TP_NSEC_PER_MSEC);
    assert_int_equal(tp_timers_pending(t), 0);
    tp_timers_destroy(t);
}

static _Atomic int fired;

static void count_cb(void *arg) {
    (void)arg;
    atomic_fetch_add(&fired, 1);
}

static void test_cancel_semantics(void **state) {
    (void)state;
    atomic_store(&fired, 0);
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    tp_timer *a, *b;
    assert_int_equal(tp_timer_add_after(t, 3600 * TP_NSEC_PER_SEC, count_cb, NULL, &a), 0);
    assert_int_equal(tp_timer_add_after(t, 0, count_cb, NULL, &b), 0);
    assert_true(tp_timer_cancel(a)); /* prevented */
    TP_TEST_WAIT_FOR(atomic_load(&fired) == 1, 10000);
    assert_false(tp_timer_cancel(b)); /* already ran */
    assert_int_equal(atomic_load(&fired), 1);
    assert_int_equal(tp_timers_pending(t), 0);
    tp_timers_destroy(t);
}

/* Cancel from another thread while fn runs waits until fn has returned. */
struct slow {
    _Atomic int started, finished;
};

static void slow_cb(void *arg) {
    struct slow *s = arg;
    atomic_store(&s->started, 1);
    tp_test_sleep_ms(50);
    atomic_store(&s->finished, 1);
}

static void test_cancel_waits_for_running(void **state) {
    (void)state;
    struct slow s = {0};
    tp_timer *h;
    assert_int_equal(tp_timer_add_after(NULL, 0, slow_cb, &s, &h), 0);
    TP_TEST_WAIT_FOR(atomic_load(&s.started), 10000);
    assert_false(tp_timer_cancel(h));
    assert_int_equal(atomic_load(&s.finished), 1);
}

/* Cancel from inside fn: returns false without waiting (no deadlock); a
 * callback can also add and cancel other timers. */
struct self {
    tp_timer *me;
    tp_timers *t;
    bool cancel_ret;
    bool other_cancelled;
    _Atomic int done;
};

static void self_cb(void *arg) {
    struct self *s = arg;
    s->cancel_ret = tp_timer_cancel(s->me);
    tp_timer *other;
    if (tp_timer_add_after(s->t, 3600 * TP_NSEC_PER_SEC, count_cb, NULL, &other) == 0)
        s->other_cancelled = tp_timer_cancel(other);
    atomic_store(&s->done, 1);
}

static void test_cancel_from_callback(void **state) {
    (void)state;
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    struct self s = {.t = t, .cancel_ret = true};
    assert_int_equal(tp_timer_add_after(t, TP_NSEC_PER_MSEC, self_cb, &s, &s.me), 0);
    TP_TEST_WAIT_FOR(atomic_load(&s.done), 10000);
    assert_int_equal(atomic_load(&s.done), 1);
    assert_false(s.cancel_ret);
    assert_true(s.other_cancelled);
    tp_timers_destroy(t);
}

/* Many pending timers, cancelled in a scattered order: the heap stays
 * consistent (no fire of a cancelled timer, every kept timer fires once), all
 * on one service thread. */
static void test_many_pending(void **state) {
    (void)state;
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    unsigned n = tp_test_scale(200000);
    tp_timer **h = malloc(n * sizeof(*h));
    bool *stopped = calloc(n, sizeof(*stopped));
    assert_non_null(h);
    assert_non_null(stopped);
    int threads_before = tp__thread_count();

    /* Far deadlines: exact pending counts through a scattered cancel. */
    uint64_t far = tp_now_ns() + 3600 * TP_NSEC_PER_SEC;
    uint64_t x = 12345;
    for (unsigned i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        assert_int_equal(tp_timer_add(t, far + (x >> 40) % TP_NSEC_PER_SEC, count_cb, NULL, &h[i]),
                         0);
    }
    assert_int_equal(tp__thread_count(), threads_before); /* no thread per timer */
    assert_int_equal(tp_timers_pending(t), n);
    for (unsigned i = 0, k = 0; i < n; i++, k = (k + 7919) % n)
        assert_true(tp_timer_cancel(h[k]));
    assert_int_equal(tp_timers_pending(t), 0);

    /* Near deadlines racing with cancels: each timer either was stopped by
     * its cancel (true) and never fires, or fires exactly once. */
    atomic_store(&fired, 0);
    uint64_t base = tp_now_ns() + 20 * TP_NSEC_PER_MSEC;
    for (unsigned i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        assert_int_equal(
            tp_timer_add(t, base + (x >> 40) % (100 * TP_NSEC_PER_MSEC), count_cb, NULL, &h[i]), 0);
    }
    unsigned expect = 0;
    for (unsigned i = 0; i < n; i++) {
        if ((i * 7919u) % 10 < 9) {
            stopped[i] = tp_timer_cancel(h[i]);
            h[i] = NULL;
        }
        expect += !stopped[i];
    }
    TP_TEST_WAIT_FOR(atomic_load(&fired) == (int)expect, 30000);
    tp_test_sleep_ms(20); /* a wrongly fired cancelled timer would show up now */
    assert_int_equal(atomic_load(&fired), expect);
    assert_int_equal(tp_timers_pending(t), 0);
    for (unsigned i = 0; i < n; i++)
        if (h[i]) assert_false(tp_timer_cancel(h[i])); /* fired already */
    free(stopped);
    free(h);
    tp_timers_destroy(t);
}

/* Destroy drops pending timers without calling them; held handles can still
 * be given back afterwards. */
static void test_destroy_with_pending(void **state) {
    (void)state;
    atomic_store(&fired, 0);
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    tp_timer *h;
    assert_int_equal(tp_timer_add_after(t, 3600 * TP_NSEC_PER_SEC, count_cb, NULL, &h), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(tp_timer_add_after(t, 3600 * TP_NSEC_PER_SEC, count_cb, NULL, NULL), 0);
    tp_timers_destroy(t);
    assert_false(tp_timer_cancel(h));
    assert_int_equal(atomic_load(&fired), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configure_default),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_realtime_service),
        cmocka_unit_test(test_fires_in_deadline_order),
        cmocka_unit_test(test_cancel_semantics),
        cmocka_unit_test(test_cancel_waits_for_running),
        cmocka_unit_test(test_cancel_from_callback),
        cmocka_unit_test(test_many_pending),
        cmocka_unit_test(test_destroy_with_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
