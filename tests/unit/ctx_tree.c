/* SPDX-License-Identifier: MIT */
/* Context tree: cancel, deadlines, wait, values, budgets, detach on release.
 * TP_TEST_TIMEOUT: 60 */
#include "tp_test.h"

static void test_background(void **state) {
    (void)state;
    tp_ctx *bg = tp_ctx_background();
    assert_non_null(bg);
    assert_ptr_equal(tp_ctx_retain(bg), bg);
    tp_ctx_release(bg); /* no-op */
    tp_ctx_cancel(bg);  /* no-op: never done */
    assert_false(tp_ctx_done(bg));
    assert_int_equal(tp_ctx_err(bg), 0);
    assert_true(tp_ctx_deadline(bg) == TP_FOREVER);
    assert_int_equal(tp_ctx_wait(bg, 0), -EAGAIN);
    assert_int_equal(tp_ctx_wait(bg, TP_NSEC_PER_MSEC), -EAGAIN);
}

static void test_bad_input(void **state) {
    (void)state;
    assert_int_equal(tp_ctx_with_cancel(NULL, NULL), -EINVAL);
    assert_int_equal(tp_ctx_with_timeout(NULL, 1, NULL), -EINVAL);
    tp_ctx *c = (tp_ctx *)1;
    assert_int_equal(tp_ctx_with_value(NULL, NULL, NULL, &c), -EINVAL);
    assert_null(c);
    assert_int_equal(tp_ctx_on_done(NULL, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(tp_ctx_with_budget_fraction(NULL, 0.0, &c), -EINVAL);
    assert_int_equal(tp_ctx_with_budget_fraction(NULL, 1.5, &c), -EINVAL);
    assert_false(tp_ctx_cb_stop(NULL));
    tp_ctx_release(NULL);
    tp_ctx_cancel(NULL);
    assert_null(tp_ctx_retain(NULL));
    assert_int_equal(tp_ctx_err(NULL), 0);
    assert_null(tp_ctx_value(NULL, &c));
}

static void test_cancel_reaches_descendants(void **state) {
    (void)state;
    tp_ctx *root, *a, *b, *a1, *a2, *b1;
    assert_int_equal(tp_ctx_with_cancel(NULL, &root), 0); /* NULL = background */
    assert_int_equal(tp_ctx_with_cancel(root, &a), 0);
    assert_int_equal(tp_ctx_with_timeout(root, 60 * TP_NSEC_PER_SEC, &b), 0);
    assert_int_equal(tp_ctx_with_cancel(a, &a1), 0);
    assert_int_equal(tp_ctx_with_value(a, &a2, NULL, &a2), 0);
    assert_int_equal(tp_ctx_with_cancel(b, &b1), 0);
    assert_int_equal(tp_ctx_child_count(root), 2);
    assert_int_equal(tp_ctx_child_count(a), 2);

    tp_ctx_cancel(a); /* cancels a's subtree only */
    assert_int_equal(tp_ctx_err(a), -ECANCELED);
    assert_int_equal(tp_ctx_err(a1), -ECANCELED);
    assert_int_equal(tp_ctx_err(a2), -ECANCELED);
    assert_false(tp_ctx_done(root));
    assert_false(tp_ctx_done(b1));

    tp_ctx_cancel(root);
    tp_ctx *all[] = {root, a, b, a1, a2, b1};
    for (size_t i = 0; i < 6; i++) {
        assert_true(tp_ctx_done(all[i]));
        assert_int_equal(tp_ctx_err(all[i]), -ECANCELED);
        assert_int_equal(tp_ctx_wait(all[i], TP_FOREVER), -ECANCELED);
    }
    tp_ctx_cancel(root); /* idempotent */

    /* A child of a done parent is born done with the parent's reason. */
    tp_ctx *late;
    assert_int_equal(tp_ctx_with_cancel(a, &late), 0);
    assert_int_equal(tp_ctx_err(late), -ECANCELED);
    tp_ctx_release(late);

    /* Release in any order: parents stay alive while children hold them. */
    tp_ctx_release(root);
    tp_ctx_release(a);
    tp_ctx_release(b1);
    tp_ctx_release(a1);
    tp_ctx_release(b);
    tp_ctx_release(a2);
}

static void test_deadline_min_and_timeout(void **state) {
    (void)state;
    uint64_t now = tp_now_ns();
    tp_ctx *p, *early, *late, *nodl;
    assert_int_equal(tp_ctx_with_deadline(NULL, now + 60 * TP_NSEC_PER_SEC, &p), 0);
    assert_true(tp_ctx_deadline(p) == now + 60 * TP_NSEC_PER_SEC);
    assert_int_equal(tp_ctx_with_deadline(p, now + 30 * TP_NSEC_PER_SEC, &early), 0);
    assert_int_equal(tp_ctx_with_deadline(p, now + 90 * TP_NSEC_PER_SEC, &late), 0);
    assert_int_equal(tp_ctx_with_cancel(p, &nodl), 0);
    assert_true(tp_ctx_deadline(early) == now + 30 * TP_NSEC_PER_SEC);
    assert_true(tp_ctx_deadline(late) == now + 60 * TP_NSEC_PER_SEC);
    assert_true(tp_ctx_deadline(nodl) == now + 60 * TP_NSEC_PER_SEC);
    tp_ctx_release(early);
    tp_ctx_release(late);
    tp_ctx_release(nodl);
    tp_ctx_release(p);

    /* A real timeout fires with -ETIMEDOUT and reaches the child. */
    tp_ctx *t, *tc;
    uint64_t t0 = tp_now_ns();
    assert_int_equal(tp_ctx_with_timeout(NULL, 20 * TP_NSEC_PER_MSEC, &t), 0);
    assert_int_equal(tp_ctx_with_cancel(t, &tc), 0);
    assert_int_equal(tp_ctx_wait(tc, 30 * TP_NSEC_PER_SEC), -ETIMEDOUT);
    assert_true(tp_now_ns() - t0 >= 20 * TP_NSEC_PER_MSEC);
    assert_int_equal(tp_ctx_err(t), -ETIMEDOUT);
    tp_ctx_cancel(t); /* first reason sticks */
    assert_int_equal(tp_ctx_err(t), -ETIMEDOUT);
    assert_int_equal(tp_ctx_err(tc), -ETIMEDOUT);
    tp_ctx_release(tc);
    tp_ctx_release(t);

    /* Cancel first, then the deadline passes: still -ECANCELED. */
    size_t pending = tp_timers_pending(NULL);
    assert_int_equal(tp_ctx_with_timeout(NULL, 5 * TP_NSEC_PER_MSEC, &t), 0);
    assert_int_equal(tp_timers_pending(NULL), pending + 1);
    tp_ctx_cancel(t);
    assert_int_equal(tp_timers_pending(NULL), pending); /* slot given back at cancel */
    tp_test_sleep_ms(20);
    assert_int_equal(tp_ctx_err(t), -ECANCELED);
    tp_ctx_release(t);

    /* TP_FOREVER timeout = no deadline. */
    assert_int_equal(tp_ctx_with_timeout(NULL, TP_FOREVER, &t), 0);
    assert_true(tp_ctx_deadline(t) == TP_FOREVER);
    assert_int_equal(tp_ctx_wait(t, TP_NSEC_PER_MSEC), -EAGAIN);
    tp_ctx_release(t);
}

static void test_born_done(void **state) {
    (void)state;
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_deadline(NULL, 0, &c), 0);
    assert_int_equal(tp_ctx_err(c), -ETIMEDOUT);
    assert_int_equal(tp_ctx_wait(c, 0), -ETIMEDOUT);
    tp_ctx_cancel(c);
    assert_int_equal(tp_ctx_err(c), -ETIMEDOUT);
    tp_ctx_release(c);
    assert_int_equal(tp_ctx_with_timeout(NULL, 0, &c), 0);
    assert_int_equal(tp_ctx_err(c), -ETIMEDOUT);
    tp_ctx_release(c);
}

static void *cancel_later(void *arg) {
    tp_test_sleep_ms(10);
    tp_ctx_cancel(arg);
    return NULL;
}

static void test_wait_cancel_from_thread(void **state) {
    (void)state;
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_later, c), 0);
    assert_int_equal(tp_ctx_wait(c, 30 * TP_NSEC_PER_SEC), -ECANCELED);
    pthread_join(th, NULL);
    tp_ctx_release(c);
}

static int key_a, key_b, key_c;

static void test_values(void **state) {
    (void)state;
    tp_ctx *v1, *mid, *v2, *shadow;
    assert_int_equal(tp_ctx_with_value(NULL, &key_a, "a1", &v1), 0);
    assert_int_equal(tp_ctx_with_timeout(v1, 60 * TP_NSEC_PER_SEC, &mid), 0);
    assert_int_equal(tp_ctx_with_value(mid, &key_b, "b", &v2), 0);
    assert_int_equal(tp_ctx_with_value(v2, &key_a, "a2", &shadow), 0);
    assert_string_equal(tp_ctx_value(v2, &key_a), "a1");
    assert_string_equal(tp_ctx_value(v2, &key_b), "b");
    assert_null(tp_ctx_value(v2, &key_c));
    assert_null(tp_ctx_value(mid, &key_b));
    assert_string_equal(tp_ctx_value(shadow, &key_a), "a2"); /* nearest wins */
    assert_null(tp_ctx_value(tp_ctx_background(), &key_a));
    /* Values survive releasing ancestors: children pin them. */
    tp_ctx_release(v1);
    tp_ctx_release(mid);
    tp_ctx_release(v2);
    assert_string_equal(tp_ctx_value(shadow, &key_b), "b");
    /* A value context is cancelable like any child. */
    tp_ctx_cancel(shadow);
    assert_int_equal(tp_ctx_err(shadow), -ECANCELED);
    tp_ctx_release(shadow);
}

static void test_budget(void **state) {
    (void)state;
    tp_ctx *p, *s, *f, *none;
    uint64_t d = tp_now_ns() + 10 * TP_NSEC_PER_SEC;
    assert_int_equal(tp_ctx_with_deadline(NULL, d, &p), 0);
    assert_int_equal(tp_ctx_with_budget(p, 3 * TP_NSEC_PER_SEC, &s), 0);
    assert_true(tp_ctx_deadline(s) == d - 3 * TP_NSEC_PER_SEC);
    uint64_t before = tp_now_ns();
    assert_int_equal(tp_ctx_with_budget_fraction(p, 0.5, &f), 0);
    uint64_t fd = tp_ctx_deadline(f);
    assert_true(fd >= before + (d - before) / 2 - TP_NSEC_PER_MSEC);
    assert_true(fd <= d - 4 * TP_NSEC_PER_SEC);
    tp_ctx_release(f);
    tp_ctx_release(s);
    /* More reserve than time left: born done. */
    assert_int_equal(tp_ctx_with_budget(p, 20 * TP_NSEC_PER_SEC, &s), 0);
    assert_int_equal(tp_ctx_err(s), -ETIMEDOUT);
    assert_false(tp_ctx_done(p));
    tp_ctx_release(s);
    tp_ctx_release(p);
    /* No deadline in the parent: none in the child. */
    assert_int_equal(tp_ctx_with_budget(NULL, TP_NSEC_PER_SEC, &none), 0);
    assert_true(tp_ctx_deadline(none) == TP_FOREVER);
    assert_int_equal(tp_ctx_with_budget_fraction(none, 0.5, &s), 0);
    assert_true(tp_ctx_deadline(s) == TP_FOREVER);
    tp_ctx_release(s);
    tp_ctx_release(none);
}

/* The classic Go leak: a long-lived parent with many short-lived children. */
static void test_release_detaches(void **state) {
    (void)state;
    tp_ctx *parent;
    assert_int_equal(tp_ctx_with_cancel(NULL, &parent), 0);
    unsigned n = tp_test_scale(100000);
    for (unsigned i = 0; i < n; i++) {
        tp_ctx *c;
        if (i % 2)
            assert_int_equal(tp_ctx_with_cancel(parent, &c), 0);
        else
            assert_int_equal(tp_ctx_with_timeout(parent, 3600 * TP_NSEC_PER_SEC, &c), 0);
        assert_int_equal(tp_ctx_child_count(parent), 1);
        tp_ctx_release(c);
    }
    assert_int_equal(tp_ctx_child_count(parent), 0);
    /* The timers of released children are gone too. */
    assert_int_equal(tp_timers_pending(NULL), 0);
    tp_ctx_release(parent);
}

/* A 100k-deep chain: cancel walks it and the last release frees it without
 * recursion (ASan would catch a stack overflow). */
static void test_deep_chain(void **state) {
    (void)state;
    unsigned n = tp_test_scale(100000);
    tp_ctx **chain = malloc(n * sizeof(*chain));
    assert_non_null(chain);
    tp_ctx *parent = NULL;
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(tp_ctx_with_cancel(parent, &chain[i]), 0);
        parent = chain[i];
    }
    assert_true(tp_ctx_deadline(chain[n - 1]) == TP_FOREVER);
    tp_ctx_cancel(chain[0]);
    assert_int_equal(tp_ctx_err(chain[n - 1]), -ECANCELED);
    assert_int_equal(tp_ctx_err(chain[n / 2]), -ECANCELED);
    /* Release ancestors first: the leaf keeps the whole chain's memory;
     * releasing it frees 100k contexts in one cascade. */
    for (unsigned i = 0; i < n; i++)
        tp_ctx_release(chain[i]);
    free(chain);
}

/* Retain adds a reference that needs its own release. */
static void test_retain_release(void **state) {
    (void)state;
    tp_ctx *c, *k;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    assert_ptr_equal(tp_ctx_retain(c), c);
    tp_ctx_release(c);
    assert_false(tp_ctx_done(c)); /* still alive and usable */
    assert_int_equal(tp_ctx_with_cancel(c, &k), 0);
    tp_ctx_release(c);
    tp_ctx_cancel(k);
    assert_int_equal(tp_ctx_err(k), -ECANCELED);
    tp_ctx_release(k);
}

/* A parent whose deadline passed but whose timer has not run yet still
 * gives a child that is born done. */
static void test_born_done_by_parent_deadline(void **state) {
    (void)state;
    tp_timers_pending(NULL); /* make sure the default service runs */
    for (int i = 0; i < 50; i++) {
        tp_ctx *p, *c;
        assert_int_equal(tp_ctx_with_timeout(NULL, 1000, &p), 0); /* 1 us */
        while (tp_now_ns() < tp_ctx_deadline(p)) {
        }
        assert_int_equal(tp_ctx_with_cancel(p, &c), 0);
        assert_true(tp_ctx_done(c));
        tp_ctx_release(c);
        tp_ctx_release(p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_background),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_cancel_reaches_descendants),
        cmocka_unit_test(test_deadline_min_and_timeout),
        cmocka_unit_test(test_born_done),
        cmocka_unit_test(test_wait_cancel_from_thread),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_release_detaches),
        cmocka_unit_test(test_deep_chain),
        cmocka_unit_test(test_retain_release),
        cmocka_unit_test(test_born_done_by_parent_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
