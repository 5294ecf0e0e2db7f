/* SPDX-License-Identifier: MIT */
/* Contract tests: every promise of include/tripool/ctx.h and timer.h.
 * TP_TEST_TIMEOUT: 60
 *
 * Index: header sentence -> test (here unless a file is named).
 *
 * ctx.h
 *  "Cancelling a context cancels every descendant"
 *      ctx_tree.c test_cancel_reaches_descendants, test_deep_chain
 *  "tp_ctx_cancel ... When it returns, c and every descendant are done
 *   (also when another thread's cancel or deadline got to part of the tree
 *   first)"                                  test_cancel_returns_after_subtree
 *  "a child's deadline is the earlier of its own and its parent's"
 *      ctx_tree.c test_deadline_min_and_timeout
 *  "A child holds a reference on its parent"  test_child_keeps_parent
 *  "Releasing the last reference of a child detaches it from its parent"
 *      ctx_tree.c test_release_detaches; test_child_count_rules
 *  "tp_ctx_background() ... never done, never freed; retain/release on it
 *   are no-ops"                                ctx_tree.c test_background
 *  "Passing NULL as a parent means the background context"
 *      test_child_count_rules (children of NULL are not linked)
 *  "Returns 0, -EINVAL (out NULL) or -ENOMEM"  ctx_tree.c test_bad_input
 *  "A deadline in the past gives a context that is born done"
 *      ctx_tree.c test_born_done, test_born_done_by_parent_deadline
 *  "TP_FOREVER = no deadline"                  ctx_tree.c test_deadline_min_and_timeout
 *  "Idempotent; the first reason (cancel or deadline) sticks"
 *      ctx_tree.c test_deadline_min_and_timeout; test_first_reason_sticks_below
 *  "Safe from inside a cancel callback"        ctx_callbacks.c test_cancel_from_callback
 *  "0 while not done; then -ECANCELED or -ETIMEDOUT"  test_first_reason_sticks_below
 *  "Block until c is done or timeout_ns passes ... -EAGAIN when the wait
 *   itself timed out"                          test_wait_times_out_not_early,
 *                                              ctx_tree.c test_wait_cancel_from_thread
 *  "The effective absolute deadline ... or TP_FOREVER"
 *      ctx_tree.c test_deadline_min_and_timeout
 *  "Releasing more often than retained aborts with a message"
 *      ctx_callbacks.c test_double_release_aborts, test_leaf_double_release_aborts
 *  "fn(arg) runs exactly once, on the thread that makes c done (or at once on
 *   the registering thread if c is already done)"   test_callback_thread
 *  "never with a context lock held, so it may call any tp_ctx function"
 *      test_callback_thread (creates a child of c and counts c's children)
 *  "When a deadline makes c done, that thread is the timer service's"
 *      test_callback_thread; ctx_callbacks.c test_deadline_callback
 *  "Callbacks of one context run newest first" test_callbacks_newest_first
 *  "A registered callback keeps c's memory alive until it has run or been
 *   stopped"                                   test_callback_keeps_ctx_alive
 *  "(c == NULL means the background: never runs)"  test_background_callback
 *  "tp_ctx_cb_stop ... true if this stopped the call (fn will never run)"
 *      ctx_callbacks.c test_stop_prevents
 *  "false if fn already ran or is running now (in which case stop waits
 *   until it has returned, unless called from fn itself)"
 *      ctx_callbacks.c test_stop_waits_for_running, test_stop_from_callback
 *  "Number of children linked under c: created while c was not done and not
 *   yet freed (a released child whose own children still hold it counts).
 *   Children of the background are not linked (0)."  test_child_count_rules
 *  "Keys are compared by pointer ... The value of the nearest context"
 *      ctx_tree.c test_values
 *  "deadline = tp_ctx_deadline(parent) - reserve_ns (born done with
 *   -ETIMEDOUT if that is already past). A parent without a deadline gives a
 *   child without one."                        ctx_tree.c test_budget; test_budget_exact
 *  "fraction in (0, 1] ... -EINVAL (fraction out of range)"  test_budget_exact
 *  tp_retry sentences                          ctx_retry.c (every test);
 *   "a cancel or deadline ends the sleep at once"  test_retry_cancel_ends_sleep
 *
 * timer.h
 *  "sleeps ... until the earliest deadline and never polls while idle"
 *                                              test_timer_idle_no_polling
 *  "Callbacks run on the service thread with no service lock held, one at a
 *   time, in deadline order"                   test_timer_callbacks_thread_and_lock;
 *                                              ctx_timer.c test_fires_in_deadline_order
 *  "they may add and cancel timers, including their own"
 *      ctx_timer.c test_cancel_from_callback
 *  "Returns 0, -EINVAL, -ENOMEM or the error of pthread_create"
 *      test_timer_bad_input; ctx_timer.c test_realtime_service
 *  tp_timers_destroy: every sentence          ctx_timer_destroy.c (all tests)
 *  "NULL and the default service are ignored" ctx_timer.c test_bad_input
 *  tp_timers_default / _configure             ctx_timer.c test_configure_default, test_bad_input
 *  "once the absolute CLOCK_MONOTONIC time deadline_ns has passed (a deadline
 *   in the past fires at once)"                test_timer_not_early_past_at_once
 *  "an add ... earlier than what the thread sleeps for wakes it"
 *      (implied by "sleeps until the earliest deadline") test_timer_earlier_add_wakes
 *  "If out is NULL the timer is fire-and-forget and freed by the service"
 *      test_timer_fire_and_forget_freed (LSan in the ASan build)
 *  "Returns ... -EINVAL (fn NULL or deadline TP_FOREVER)"  test_timer_bad_input
 *  "-ESHUTDOWN"                                ctx_timer_destroy.c test_add_during_destroy
 *  tp_timer_cancel: true / false / waits / from fn
 *      ctx_timer.c test_cancel_semantics, test_cancel_waits_for_running,
 *      test_cancel_from_callback; stress/ctx_timers.c
 *  "Number of timers pending"                 ctx_timer.c test_many_pending
 */
#include "tp_test.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

/* ---- ctx.h ------------------------------------------------------------------ */

struct canceller {
    tp_ctx *c;
    _Atomic int started;
};

static void *cancel_main(void *arg) {
    struct canceller *k = arg;
    atomic_store(&k->started, 1);
    tp_ctx_cancel(k->c);
    return NULL;
}

/* "Cancel c and all its descendants": when tp_ctx_cancel returns, c and every
 * descendant are done, also when another thread is still walking part of the
 * subtree it cancelled first. Thread A cancels k (k has 200 children with 200
 * children each); as soon as k is done, main cancels root or, again, k
 * itself: both calls must return only after every grandchild of k is done.
 * (Before the fix main's cancel skipped the done k and returned while A was
 * still walking k's grandchildren.) */
static void test_cancel_returns_after_subtree(void **state) {
    (void)state;
    unsigned fan = strcmp(tp_test_sanitizer(), "none") == 0 ? 200 : 100;
    unsigned n = fan * fan, rounds = 4, early = 0;
    tp_ctx **mid = malloc(fan * sizeof(*mid));
    tp_ctx **kids = malloc(n * sizeof(*kids));
    assert_non_null(mid);
    assert_non_null(kids);
    for (unsigned round = 0; round < rounds; round++) {
        tp_ctx *root, *k;
        assert_int_equal(tp_ctx_with_cancel(NULL, &root), 0);
        assert_int_equal(tp_ctx_with_cancel(root, &k), 0);
        for (unsigned i = 0; i < fan; i++) {
            assert_int_equal(tp_ctx_with_cancel(k, &mid[i]), 0);
            for (unsigned j = 0; j < fan; j++)
                assert_int_equal(tp_ctx_with_cancel(mid[i], &kids[i * fan + j]), 0);
        }
        struct canceller a = {.c = k};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, cancel_main, &a), 0);
        while (!tp_ctx_done(k)) {
        }
        if (round % 2)
            tp_ctx_cancel(root);
        else
            tp_ctx_cancel(k); /* already done: must still wait for A's walk */
        unsigned not_done = 0;
        for (unsigned i = 0; i < n; i++)
            not_done += !tp_ctx_done(kids[i]);
        early += not_done != 0;
        if (not_done)
            fprintf(stderr, "round %u: %u of %u grandchildren not done after cancel returned\n",
                    round, not_done, n);
        pthread_join(th, NULL);
        for (unsigned i = 0; i < n; i++) {
            assert_int_equal(tp_ctx_err(kids[i]), -ECANCELED);
            tp_ctx_release(kids[i]);
        }
        for (unsigned i = 0; i < fan; i++)
            tp_ctx_release(mid[i]);
        tp_ctx_release(k);
        tp_ctx_release(root);
    }
    free(kids);
    free(mid);
    assert_int_equal(early, 0);
}

/* "the first reason (cancel or deadline) sticks", below the root too: a
 * child that timed out keeps -ETIMEDOUT when its parent is cancelled. */
static void test_first_reason_sticks_below(void **state) {
    (void)state;
    tp_ctx *p, *c, *g;
    assert_int_equal(tp_ctx_with_cancel(NULL, &p), 0);
    assert_int_equal(tp_ctx_err(p), 0); /* 0 while not done */
    assert_int_equal(tp_ctx_with_timeout(p, 5 * TP_NSEC_PER_MSEC, &c), 0);
    assert_int_equal(tp_ctx_with_cancel(c, &g), 0);
    /* Wait on c itself: g may be born done once c's deadline passed, before
     * c's timer has fired. */
    assert_int_equal(tp_ctx_wait(c, 10 * TP_NSEC_PER_SEC), -ETIMEDOUT);
    assert_int_equal(tp_ctx_wait(g, 10 * TP_NSEC_PER_SEC), -ETIMEDOUT);
    tp_ctx_cancel(p);
    assert_int_equal(tp_ctx_err(p), -ECANCELED);
    assert_int_equal(tp_ctx_err(c), -ETIMEDOUT);
    assert_int_equal(tp_ctx_err(g), -ETIMEDOUT);
    tp_ctx_release(g);
    tp_ctx_release(c);
    tp_ctx_release(p);
}

/* "-EAGAIN when the wait itself timed out with c still not done": not
 * before timeout_ns has passed. */
static void test_wait_times_out_not_early(void **state) {
    (void)state;
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = tp_now_ns();
        assert_int_equal(tp_ctx_wait(c, 15 * TP_NSEC_PER_MSEC), -EAGAIN);
        assert_true(tp_now_ns() - t0 >= 15 * TP_NSEC_PER_MSEC);
    }
    assert_int_equal(tp_ctx_wait(c, 0), -EAGAIN);
    tp_ctx_release(c);
}

struct who {
    pthread_t thread;
    _Atomic int runs;
    tp_ctx *c;
    int child_err;
    size_t children;
};

static void who_cb(void *arg) {
    struct who *w = arg;
    w->thread = pthread_self();
    /* Takes c's lock (link) and reads it (count): deadlocks if run under it. */
    tp_ctx *child;
    w->child_err = tp_ctx_with_cancel(w->c, &child);
    if (!w->child_err) {
        w->child_err = tp_ctx_err(child); /* born done: c is done */
        tp_ctx_release(child);
    }
    w->children = tp_ctx_child_count(w->c);
    atomic_fetch_add(&w->runs, 1);
}

static void *cancel_plain(void *arg) {
    tp_ctx_cancel(arg);
    return NULL;
}

/* "fn(arg) runs exactly once, on the thread that makes c done (or at once
 * on the registering thread if c is already done), never with a context lock
 * held"; "When a deadline makes c done, that thread is the timer service's" */
static void test_callback_thread(void **state) {
    (void)state;
    /* made done by another thread */
    struct who w = {0};
    assert_int_equal(tp_ctx_with_cancel(NULL, &w.c), 0);
    assert_int_equal(tp_ctx_on_done(w.c, who_cb, &w, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_plain, w.c), 0);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&w.runs), 1); /* ran before that cancel returned */
    assert_true(pthread_equal(w.thread, th));
    assert_int_equal(w.child_err, -ECANCELED);
    assert_int_equal(w.children, 0);
    tp_ctx_cancel(w.c);
    assert_int_equal(atomic_load(&w.runs), 1);

    /* already done: at once, on this thread, before on_done returns */
    struct who w2 = {.c = w.c};
    assert_int_equal(tp_ctx_on_done(w.c, who_cb, &w2, NULL), 0);
    assert_int_equal(atomic_load(&w2.runs), 1);
    assert_true(pthread_equal(w2.thread, pthread_self()));
    tp_ctx_release(w.c);

    /* a deadline: the timer service's thread */
    struct who w3 = {0};
    assert_int_equal(tp_ctx_with_timeout(NULL, 200 * TP_NSEC_PER_MSEC, &w3.c), 0);
    assert_int_equal(tp_ctx_on_done(w3.c, who_cb, &w3, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&w3.runs) == 1, 10000);
    assert_int_equal(atomic_load(&w3.runs), 1);
    assert_false(pthread_equal(w3.thread, pthread_self()));
    assert_int_equal(w3.child_err, -ETIMEDOUT);
    tp_ctx_release(w3.c);
}

struct order {
    int seq[4];
    _Atomic int n;
};
struct order_item {
    struct order *o;
    int id;
};

static void order_cb(void *arg) {
    struct order_item *it = arg;
    it->o->seq[atomic_fetch_add(&it->o->n, 1)] = it->id;
}

/* "Callbacks of one context run newest first" */
static void test_callbacks_newest_first(void **state) {
    (void)state;
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    struct order o;
    memset(&o, 0, sizeof o);
    struct order_item it[4];
    for (int i = 0; i < 4; i++) {
        it[i] = (struct order_item){&o, i};
        assert_int_equal(tp_ctx_on_done(c, order_cb, &it[i], NULL), 0);
    }
    tp_ctx_cancel(c);
    assert_int_equal(atomic_load(&o.n), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(o.seq[i], 3 - i);
    tp_ctx_release(c);
}

static int vkey;

struct alive {
    tp_ctx *c;
    int err;
    void *val;
    _Atomic int runs;
};

static void alive_cb(void *arg) {
    struct alive *a = arg;
    a->err = tp_ctx_err(a->c);
    a->val = tp_ctx_value(a->c, &vkey);
    atomic_fetch_add(&a->runs, 1);
}

/* "A registered callback keeps c's memory alive until it has run or been
 * stopped": the user's last reference goes before the deadline; the
 * callback still runs, with c intact (ASan would see a freed c). */
static void test_callback_keeps_ctx_alive(void **state) {
    (void)state;
    tp_ctx *v, *c;
    assert_int_equal(tp_ctx_with_value(NULL, &vkey, &vkey, &v), 0);
    assert_int_equal(tp_ctx_with_timeout(v, 5 * TP_NSEC_PER_MSEC, &c), 0);
    struct alive a = {.c = c};
    assert_int_equal(tp_ctx_on_done(c, alive_cb, &a, NULL), 0);
    tp_ctx_release(c);
    tp_ctx_release(v);
    TP_TEST_WAIT_FOR(atomic_load(&a.runs) == 1, 10000);
    assert_int_equal(atomic_load(&a.runs), 1);
    assert_int_equal(a.err, -ETIMEDOUT);
    assert_ptr_equal(a.val, &vkey);
}

static void count_cb(void *arg) {
    atomic_fetch_add((_Atomic int *)arg, 1);
}

/* "(c == NULL means the background: never runs)" */
static void test_background_callback(void **state) {
    (void)state;
    _Atomic int runs = 0;
    tp_ctx_cb *h;
    assert_int_equal(tp_ctx_on_done(NULL, count_cb, &runs, &h), 0);
    tp_ctx_cancel(tp_ctx_background());
    tp_ctx_cancel(NULL);
    assert_int_equal(atomic_load(&runs), 0);
    assert_true(tp_ctx_cb_stop(h)); /* prevented: never ran */
    assert_int_equal(atomic_load(&runs), 0);
}

/* "A child holds a reference on its parent": values of a released parent
 * are still readable through the child. */
static void test_child_keeps_parent(void **state) {
    (void)state;
    tp_ctx *p, *c;
    static int pval;
    void *pv = &pval;
    assert_int_equal(tp_ctx_with_value(NULL, &vkey, pv, &p), 0);
    assert_int_equal(tp_ctx_with_cancel(p, &c), 0);
    tp_ctx_release(p);
    assert_ptr_equal(tp_ctx_value(c, &vkey), pv);
    tp_ctx_cancel(c);
    tp_ctx_release(c);
}

/* "Number of children linked under c: created while c was not done and not
 * yet freed (a released child whose own children still hold it counts).
 * Children of the background are not linked (0)." */
static void test_child_count_rules(void **state) {
    (void)state;
    size_t bg = tp_ctx_child_count(NULL);
    tp_ctx *p, *a, *b, *g;
    assert_int_equal(tp_ctx_with_cancel(NULL, &p), 0);
    assert_int_equal(tp_ctx_child_count(NULL), 0);
    assert_int_equal(tp_ctx_child_count(tp_ctx_background()), bg);
    assert_int_equal(tp_ctx_with_cancel(p, &a), 0);
    assert_int_equal(tp_ctx_with_cancel(p, &b), 0);
    assert_int_equal(tp_ctx_with_cancel(a, &g), 0);
    assert_int_equal(tp_ctx_child_count(p), 2);
    tp_ctx_release(a); /* g still holds a: a counts */
    assert_int_equal(tp_ctx_child_count(p), 2);
    tp_ctx_release(g); /* a freed now */
    assert_int_equal(tp_ctx_child_count(p), 1);
    tp_ctx_release(b);
    assert_int_equal(tp_ctx_child_count(p), 0);
    tp_ctx_cancel(p);
    tp_ctx *late;
    assert_int_equal(tp_ctx_with_cancel(p, &late), 0); /* p done: not linked */
    assert_int_equal(tp_ctx_child_count(p), 0);
    tp_ctx_release(late);
    tp_ctx_release(p);
}

/* "deadline = tp_ctx_deadline(parent) - reserve_ns"; "now + fraction *
 * (parent's remaining time); fraction in (0, 1]" */
static void test_budget_exact(void **state) {
    (void)state;
    uint64_t d = tp_now_ns() + 10 * TP_NSEC_PER_SEC;
    tp_ctx *p, *c;
    assert_int_equal(tp_ctx_with_deadline(NULL, d, &p), 0);
    assert_int_equal(tp_ctx_with_budget(p, 3 * TP_NSEC_PER_SEC, &c), 0);
    assert_true(tp_ctx_deadline(c) == d - 3 * TP_NSEC_PER_SEC);
    tp_ctx_release(c);
    assert_int_equal(tp_ctx_with_budget(p, 11 * TP_NSEC_PER_SEC, &c), 0);
    assert_int_equal(tp_ctx_err(c), -ETIMEDOUT); /* already past */
    tp_ctx_release(c);
    uint64_t t0 = tp_now_ns();
    assert_int_equal(tp_ctx_with_budget_fraction(p, 0.5, &c), 0);
    uint64_t t1 = tp_now_ns();
    assert_true(tp_ctx_deadline(c) >= t0 + (d - t1) / 2 - 1);
    assert_true(tp_ctx_deadline(c) <= t1 + (d - t0) / 2 + 1);
    tp_ctx_release(c);
    assert_int_equal(tp_ctx_with_budget_fraction(p, 1.0, &c), 0);
    assert_true(tp_ctx_deadline(c) <= d);
    assert_true(tp_ctx_deadline(c) + TP_NSEC_PER_SEC > d);
    tp_ctx_release(c);
    c = (tp_ctx *)1;
    assert_int_equal(tp_ctx_with_budget_fraction(p, NAN, &c), -EINVAL);
    assert_null(c);
    assert_int_equal(tp_ctx_with_budget_fraction(p, -0.5, &c), -EINVAL);
    assert_int_equal(tp_ctx_with_budget_fraction(p, 1.0000001, &c), -EINVAL);
    tp_ctx_release(p);
    tp_ctx *nodl;
    assert_int_equal(tp_ctx_with_budget_fraction(NULL, 0.5, &nodl), 0);
    assert_true(tp_ctx_deadline(nodl) == TP_FOREVER);
    tp_ctx_release(nodl);
}

static int always_again(void *arg, unsigned attempt) {
    (void)attempt;
    atomic_fetch_add((_Atomic int *)arg, 1);
    return -EAGAIN;
}

static void *cancel_after_20ms(void *arg) {
    tp_test_sleep_ms(20);
    tp_ctx_cancel(arg);
    return NULL;
}

/* tp_retry: "sleeps ... by waiting on c, so a cancel or deadline ends the
 * sleep at once" (a 30 s backoff ends within a second of the cancel). */
static void test_retry_cancel_ends_sleep(void **state) {
    (void)state;
    tp_ctx *c;
    assert_int_equal(tp_ctx_with_cancel(NULL, &c), 0);
    tp_retry_opts o;
    tp_retry_opts_init(&o);
    o.max_attempts = 0;
    o.base_ns = o.cap_ns = 30 * TP_NSEC_PER_SEC;
    o.seed = 1;
    _Atomic int calls = 0;
    pthread_t th;
    uint64_t t0 = tp_now_ns();
    assert_int_equal(pthread_create(&th, NULL, cancel_after_20ms, c), 0);
    int r = tp_retry(c, &o, always_again, &calls);
    uint64_t took = tp_now_ns() - t0;
    pthread_join(th, NULL);
    /* a sleep drawn shorter than 20 ms ends by itself: then fn runs again */
    assert_int_equal(r, -ECANCELED);
    assert_true(atomic_load(&calls) >= 1);
    assert_true(took < 5 * TP_NSEC_PER_SEC);
    tp_ctx_release(c);
}

/* ---- timer.h ---------------------------------------------------------------- */

/* Voluntary context switches of every "tp-timer" thread of this process. */
static long timer_thread_switches(void) {
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    long total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        bool timer = false;
        long sw = 0;
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "Name:", 5) == 0) timer = strstr(line, "tp-timer") != NULL;
            if (strncmp(line, "voluntary_ctxt_switches:", 24) == 0) sw = atol(line + 24);
        }
        fclose(f);
        if (timer) total += sw;
    }
    closedir(d);
    return total;
}

static void never_cb(void *arg) {
    (void)arg;
    abort();
}

/* "sleeps on a CLOCK_MONOTONIC condition variable until the earliest
 * deadline and never polls while idle": over 300 ms, with nothing pending
 * and with one timer an hour away, the timer threads barely wake (a 10 ms
 * poll would show ~30 switches). */
static void test_timer_idle_no_polling(void **state) {
    (void)state;
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    (void)tp_timers_realtime(t); /* the thread has started */
    tp_test_sleep_ms(20);
    long s0 = timer_thread_switches();
    tp_test_sleep_ms(150);
    tp_timer *h;
    assert_int_equal(tp_timer_add_after(t, 3600 * TP_NSEC_PER_SEC, never_cb, NULL, &h), 0);
    tp_test_sleep_ms(150);
    long s1 = timer_thread_switches();
    fprintf(stderr, "# timer threads: %ld voluntary switches in 300 ms idle\n", s1 - s0);
    assert_true(s1 - s0 <= 5);
    assert_true(tp_timer_cancel(h));
    tp_timers_destroy(t);
}

struct fire_rec {
    tp_timers *t;
    uint64_t deadline, at;
    pthread_t thread;
    size_t pending_seen;
    _Atomic int *in_cb;
    _Atomic int overlap;
    _Atomic int runs;
};

static void fire_cb(void *arg) {
    struct fire_rec *r = arg;
    r->at = tp_now_ns();
    r->thread = pthread_self();
    if (r->in_cb && atomic_fetch_add(r->in_cb, 1) != 0) atomic_store(&r->overlap, 1);
    if (r->t) r->pending_seen = tp_timers_pending(r->t); /* takes the service lock */
    if (r->in_cb) {
        tp_test_sleep_ms(1);
        atomic_fetch_sub(r->in_cb, 1);
    }
    atomic_fetch_add(&r->runs, 1);
}

/* "Call fn(arg) on the service thread once the absolute CLOCK_MONOTONIC
 * time deadline_ns has passed (a deadline in the past fires at once)" */
static void test_timer_not_early_past_at_once(void **state) {
    (void)state;
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    struct fire_rec r[3] = {{0}};
    uint64_t now = tp_now_ns();
    r[0].deadline = now + 30 * TP_NSEC_PER_MSEC;
    r[1].deadline = now + 10 * TP_NSEC_PER_MSEC;
    r[2].deadline = 1; /* long past */
    for (int i = 0; i < 3; i++)
        assert_int_equal(tp_timer_add(t, r[i].deadline, fire_cb, &r[i], NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&r[0].runs) == 1, 10000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&r[i].runs), 1);
        assert_true(r[i].at >= r[i].deadline);
    }
    assert_true(r[2].at < now + TP_NSEC_PER_SEC); /* at once */
    /* relative: not before now + timeout */
    struct fire_rec ra = {0};
    uint64_t t0 = tp_now_ns();
    assert_int_equal(tp_timer_add_after(t, 15 * TP_NSEC_PER_MSEC, fire_cb, &ra, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&ra.runs) == 1, 10000);
    assert_int_equal(atomic_load(&ra.runs), 1);
    assert_true(ra.at >= t0 + 15 * TP_NSEC_PER_MSEC);
    tp_timers_destroy(t);
}

/* "sleeps ... until the earliest deadline": a thread asleep for a timer an
 * hour away is woken by an add with a near deadline (a lost wake-up would
 * leave the near timer waiting for the far one). */
static void test_timer_earlier_add_wakes(void **state) {
    (void)state;
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    tp_timer *far;
    assert_int_equal(tp_timer_add_after(t, 3600 * TP_NSEC_PER_SEC, never_cb, NULL, &far), 0);
    for (int i = 0; i < 20; i++) {
        tp_test_sleep_ms(2); /* let the thread go to sleep for the far one */
        struct fire_rec r = {0};
        uint64_t t0 = tp_now_ns();
        assert_int_equal(tp_timer_add_after(t, TP_NSEC_PER_MSEC, fire_cb, &r, NULL), 0);
        TP_TEST_WAIT_FOR(atomic_load(&r.runs) == 1, 2000);
        assert_int_equal(atomic_load(&r.runs), 1);
        assert_true(r.at - t0 < TP_NSEC_PER_SEC);
    }
    assert_true(tp_timer_cancel(far));
    tp_timers_destroy(t);
}

/* "Callbacks run on the service thread with no service lock held, one at a
 * time": many due at once from several adders; each calls
 * tp_timers_pending (which takes the lock), none overlaps, all on one thread
 * that is not the adder's. */
static void *adder_main(void *arg) {
    struct fire_rec *r = arg;
    for (int i = 0; i < 8; i++)
        if (tp_timer_add(r[i].t, tp_now_ns(), fire_cb, &r[i], NULL)) abort();
    return NULL;
}

static void test_timer_callbacks_thread_and_lock(void **state) {
    (void)state;
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    _Atomic int in_cb = 0;
    struct fire_rec r[4][8];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++) {
            r[i][k].t = t;
            r[i][k].in_cb = &in_cb;
        }
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, adder_main, r[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++) {
            TP_TEST_WAIT_FOR(atomic_load(&r[i][k].runs) == 1, 10000);
            assert_int_equal(atomic_load(&r[i][k].runs), 1);
            assert_int_equal(atomic_load(&r[i][k].overlap), 0);
            assert_true(pthread_equal(r[i][k].thread, r[0][0].thread));
            assert_false(pthread_equal(r[i][k].thread, th[i]));
            assert_false(pthread_equal(r[i][k].thread, pthread_self()));
        }
    tp_timers_destroy(t);
}

/* "If out is NULL the timer is fire-and-forget and freed by the service
 * after the call" (the ASan build's leak check sees a node not freed). */
static void test_timer_fire_and_forget_freed(void **state) {
    (void)state;
    tp_timers *t;
    assert_int_equal(tp_timers_create(&t, NULL), 0);
    _Atomic int runs = 0;
    for (int i = 0; i < 100; i++)
        assert_int_equal(tp_timer_add_after(t, 0, count_cb, &runs, NULL), 0);
    TP_TEST_WAIT_FOR(atomic_load(&runs) == 100, 10000);
    assert_int_equal(atomic_load(&runs), 100);
    assert_int_equal(tp_timers_pending(t), 0);
    tp_timers_destroy(t);
}

/* "Returns 0, -EINVAL (fn NULL or deadline TP_FOREVER)"; create "-EINVAL" */
static void test_timer_bad_input(void **state) {
    (void)state;
    tp_timer *h = (tp_timer *)1;
    assert_int_equal(tp_timer_add(NULL, TP_FOREVER, count_cb, NULL, &h), -EINVAL);
    assert_null(h);
    h = (tp_timer *)1;
    assert_int_equal(tp_timer_add_after(NULL, 0, NULL, NULL, &h), -EINVAL);
    assert_null(h);
    tp_timers_opts o;
    tp_timers_opts_init(&o);
    assert_true(o.initial_capacity == 1024 && o.rt_priority == 0);
    o.initial_capacity = (size_t)UINT32_MAX;
    tp_timers *t = (tp_timers *)1;
    assert_int_equal(tp_timers_create(&t, &o), -EINVAL);
    assert_null(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel_returns_after_subtree),
        cmocka_unit_test(test_first_reason_sticks_below),
        cmocka_unit_test(test_wait_times_out_not_early),
        cmocka_unit_test(test_callback_thread),
        cmocka_unit_test(test_callbacks_newest_first),
        cmocka_unit_test(test_callback_keeps_ctx_alive),
        cmocka_unit_test(test_background_callback),
        cmocka_unit_test(test_child_keeps_parent),
        cmocka_unit_test(test_child_count_rules),
        cmocka_unit_test(test_budget_exact),
        cmocka_unit_test(test_retry_cancel_ends_sleep),
        cmocka_unit_test(test_timer_idle_no_polling),
        cmocka_unit_test(test_timer_not_early_past_at_once),
        cmocka_unit_test(test_timer_earlier_add_wakes),
        cmocka_unit_test(test_timer_callbacks_thread_and_lock),
        cmocka_unit_test(test_timer_fire_and_forget_freed),
        cmocka_unit_test(test_timer_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
