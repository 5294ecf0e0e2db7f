/* SPDX-License-Identifier: MIT */
/*
 * Adaptive scaling: bad options are refused; a user policy's wish is
 * clamped and applied; the built-in policy grows a pool whose tasks block
 * while work is queued and shrinks it when the work is gone, never leaving
 * [min, max]; stop joins the controller thread. When the workers mostly
 * block, the built-in policy grows in one big step without waiting for
 * up_ticks, while a user policy's wish always waits for up_ticks. Asserts
 * directions, counts and bounds only, never speed.
 * TP_TEST_TIMEOUT: 90
 */
#include <stdatomic.h>
#include <stdio.h>

#include "tp_test.h"
#include "tripool/obs.h"

static void test_bad_options(void **state) {
    tp_pool *p;
    assert_int_equal(tp_pool_create(&p, NULL), 0);
    tp_autoscale *a;
    tp_autoscale_opts o;
    assert_int_equal(tp_autoscale_start(NULL, NULL, NULL, &a), -EINVAL);
    assert_int_equal(tp_autoscale_start(p, NULL, NULL, NULL), -EINVAL);
    tp_autoscale_opts_init(&o);
    o.min_workers = 0;
    assert_int_equal(tp_autoscale_start(p, NULL, &o, &a), -EINVAL);
    tp_autoscale_opts_init(&o);
    o.min_workers = 5;
    o.max_workers = 4;
    assert_int_equal(tp_autoscale_start(p, NULL, &o, &a), -EINVAL);
    tp_autoscale_opts_init(&o);
    o.tick_ns = 1000;
    assert_int_equal(tp_autoscale_start(p, NULL, &o, &a), -EINVAL);
    tp_autoscale_opts_init(&o);
    o.util_high = o.util_low;
    assert_int_equal(tp_autoscale_start(p, NULL, &o, &a), -EINVAL);
    tp_autoscale_opts_init(&o);
    assert_true(o.max_workers >= o.min_workers && o.tick_ns >= TP_NSEC_PER_MSEC);
    tp_autoscale_stop(NULL);
    struct tp_autoscale_stats st;
    tp_autoscale_stats(NULL, &st);
    assert_int_equal(st.ticks, 0);
    tp_pool_destroy(p);
}

struct policy_log {
    _Atomic unsigned calls;
    _Atomic unsigned bad;  /* samples that broke an invariant */
    _Atomic unsigned wish; /* written by the test while the controller reads it */
};

static unsigned fixed_policy(void *arg, const struct tp_autoscale_sample *s) {
    struct policy_log *l = arg;
    if (s->cpus < 1 || s->interval_ns == 0 || s->min != 2 || s->max != 6 || s->tick == 0 ||
        s->cpu_util < 0 || s->throughput < 0)
        atomic_fetch_add(&l->bad, 1);
    atomic_fetch_add(&l->calls, 1);
    return atomic_load(&l->wish);
}

static unsigned max_workers(tp_pool *p) {
    struct tp_pool_stats st;
    tp_pool_stats(p, &st);
    return st.max_workers;
}

static void test_user_policy(void **state) {
    tp_pool_opts po;
    tp_pool_opts_init(&po);
    po.max_workers = 16;
    tp_obs_pool *op;
    tp_metrics *reg;
    assert_int_equal(tp_metrics_create(&reg), 0);
    assert_int_equal(tp_obs_pool_prepare(reg, "pol", &po, &op), 0);
    tp_pool *p;
    assert_int_equal(tp_pool_create(&p, &po), 0);
    assert_int_equal(tp_obs_register_pool(op, p), 0);

    struct policy_log log = {0};
    atomic_store(&log.wish, 3);
    tp_autoscale_opts o;
    tp_autoscale_opts_init(&o);
    o.min_workers = 2;
    o.max_workers = 6;
    o.tick_ns = 5 * TP_NSEC_PER_MSEC;
    o.up_ticks = 1;
    o.down_ticks = 1;
    o.policy = fixed_policy;
    o.policy_arg = &log;
    tp_autoscale *a, *a2;
    assert_int_equal(tp_autoscale_start(p, op, &o, &a), 0);
    assert_int_equal(tp_autoscale_start(p, op, &o, &a2), -EEXIST); /* one per collector */
    int threads_running = tp__thread_count(); /* after start: TSan adds a thread of its own */

    /* 16 is above max: fixed at once to 6, then the wish 3 in quarter steps */
    TP_TEST_WAIT_FOR(max_workers(p) == 3, 20000);
    assert_int_equal(max_workers(p), 3);
    atomic_store(&log.wish, 1000); /* clamped to max */
    TP_TEST_WAIT_FOR(max_workers(p) == 6, 20000);
    assert_int_equal(max_workers(p), 6);
    atomic_store(&log.wish, 0); /* clamped to min */
    TP_TEST_WAIT_FOR(max_workers(p) == 2, 20000);
    assert_int_equal(max_workers(p), 2);
    assert_int_equal(atomic_load(&log.bad), 0);
    assert_true(atomic_load(&log.calls) >= 3);

    struct tp_autoscale_stats st;
    tp_autoscale_stats(a, &st);
    assert_int_equal(st.target, 2);
    assert_true(st.ups >= 1 && st.downs >= 3 && st.changes == st.ups + st.downs);
    assert_true(st.ticks >= atomic_load(&log.calls) - 1);

    /* exported with the pool label */
    char *text;
    assert_int_equal(tp_metrics_render_text(reg, &text, NULL), 0);
    assert_non_null(strstr(text, "tripool_pool_autoscale_target{pool=\"pol\"} 2\n"));
    assert_non_null(strstr(text, "tripool_pool_autoscale_changes_total{pool=\"pol\"} "));
    free(text);

    tp_autoscale_stop(a);
    assert_int_equal(tp__thread_count(), threads_running - 1); /* joined */
    assert_int_equal(max_workers(p), 2);                       /* the pool keeps its size */
    /* the collector is free for a new controller */
    assert_int_equal(tp_autoscale_start(p, op, &o, &a), 0);
    tp_autoscale_stop(a);
    assert_int_equal(tp_metrics_render_text(reg, &text, NULL), 0);
    assert_null(strstr(text, "autoscale"));
    free(text);

    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    tp_obs_pool_destroy(op);
    tp_pool_destroy(p);
    tp_metrics_destroy(reg);
}

static _Atomic unsigned g_done;

static int sleepy(void *arg) {
    tp_test_sleep_ms(4);
    atomic_fetch_add(&g_done, 1);
    return 0;
}

struct watch {
    tp_pool *p;
    _Atomic int stop;
    _Atomic unsigned peak;
    _Atomic unsigned out_of_bounds;
};

static void *watcher(void *arg) {
    struct watch *w = arg;
    while (!atomic_load(&w->stop)) {
        struct tp_pool_stats st;
        tp_pool_stats(w->p, &st);
        if (st.max_workers > 24 || st.max_workers < 1) atomic_fetch_add(&w->out_of_bounds, 1);
        if (st.workers_running > atomic_load(&w->peak)) atomic_store(&w->peak, st.workers_running);
        tp_test_sleep_ms(2);
    }
    return NULL;
}

static void test_builtin_grows_and_shrinks(void **state) {
    tp_pool_opts po;
    tp_pool_opts_init(&po);
    po.max_workers = 2;
    po.idle_timeout_ns = 50 * TP_NSEC_PER_MSEC;
    tp_obs_pool *op;
    assert_int_equal(tp_obs_pool_prepare(NULL, "auto", &po, &op), 0);
    tp_pool *p;
    assert_int_equal(tp_pool_create(&p, &po), 0);
    assert_int_equal(tp_obs_register_pool(op, p), 0);
    tp_autoscale_opts o;
    tp_autoscale_opts_init(&o);
    o.min_workers = 1;
    o.max_workers = 24;
    o.tick_ns = 20 * TP_NSEC_PER_MSEC;
    tp_autoscale *a;
    assert_int_equal(tp_autoscale_start(p, op, &o, &a), 0);
    struct watch w = {.p = p};
    pthread_t wt;
    assert_int_equal(pthread_create(&wt, NULL, watcher, &w), 0);

    /* blocking tasks, a deep backlog: the CPUs stay mostly idle */
    unsigned n = 3000;
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(tp_submit(p, sleepy, NULL), 0);
    unsigned cpus = tp_usable_cpus();
    unsigned want = cpus * 2 < 24 ? cpus * 2 : 24;
    TP_TEST_WAIT_FOR(max_workers(p) >= want, 30000);
    assert_true(max_workers(p) >= want);
    assert_int_equal(tp_pool_wait_idle(p, 120 * TP_NSEC_PER_SEC), 0);
    assert_int_equal(atomic_load(&g_done), n);

    /* nothing to do: it comes down, slowly but surely */
    unsigned high = max_workers(p);
    TP_TEST_WAIT_FOR(max_workers(p) <= 2, 30000);
    assert_true(max_workers(p) <= 2 && max_workers(p) < high);

    atomic_store(&w.stop, 1);
    pthread_join(wt, NULL);
    struct tp_autoscale_stats st;
    tp_autoscale_stats(a, &st);
    assert_true(st.ups >= 1 && st.downs >= 1);
    assert_int_equal(atomic_load(&w.out_of_bounds), 0);
    assert_true(atomic_load(&w.peak) <= 24);
    tp_autoscale_stop(a);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    tp_obs_pool_destroy(op);
    tp_pool_destroy(p);
}

/* A user policy is always filtered by up_ticks: a huge up_ticks means no
 * growth however often it asks (the urgent path is the built-in's only). */
static unsigned double_policy(void *arg, const struct tp_autoscale_sample *s) {
    atomic_fetch_add((_Atomic unsigned *)arg, 1);
    return s->current * 2;
}

static void test_user_policy_waits_up_ticks(void **state) {
    tp_pool_opts po;
    tp_pool_opts_init(&po);
    po.max_workers = 2;
    tp_pool *p;
    assert_int_equal(tp_pool_create(&p, &po), 0);
    _Atomic unsigned calls = 0;
    tp_autoscale_opts o;
    tp_autoscale_opts_init(&o);
    o.max_workers = 64;
    o.tick_ns = 2 * TP_NSEC_PER_MSEC;
    o.up_ticks = 1000;
    o.policy = double_policy;
    o.policy_arg = &calls;
    tp_autoscale *a;
    assert_int_equal(tp_autoscale_start(p, NULL, &o, &a), 0);
    TP_TEST_WAIT_FOR(atomic_load(&calls) >= 30, 30000);
    tp_autoscale_stop(a); /* joined: no tick runs after this */
    assert_true(atomic_load(&calls) >= 30);
    assert_int_equal(max_workers(p), 2);
    tp_pool_destroy(p);
}

/* Blocking tasks: with up_ticks and down_ticks out of reach, only the
 * built-in's urgent path can move the pool, and it goes from 2 to the
 * start of the probed range (8 workers per CPU, or max) in at most two
 * steps where doubling would take three or more. */
static void test_builtin_urgent_growth(void **state) {
    tp_pool_opts po;
    tp_pool_opts_init(&po);
    po.max_workers = 2;
    tp_obs_pool *op;
    assert_int_equal(tp_obs_pool_prepare(NULL, "urgent", &po, &op), 0);
    tp_pool *p;
    assert_int_equal(tp_pool_create(&p, &po), 0);
    assert_int_equal(tp_obs_register_pool(op, p), 0);
    unsigned cpus = tp_usable_cpus();
    unsigned want = 8 * cpus < 24 ? 8 * cpus : 24;
    tp_autoscale_opts o;
    tp_autoscale_opts_init(&o);
    o.max_workers = want; /* so no step after reaching it */
    o.tick_ns = 20 * TP_NSEC_PER_MSEC;
    o.up_ticks = 1000;
    o.down_ticks = 1000;
    tp_autoscale *a;
    assert_int_equal(tp_autoscale_start(p, op, &o, &a), 0);

    atomic_store(&g_done, 0);
    unsigned n = 3000;
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(tp_submit(p, sleepy, NULL), 0);
    /* the controller resizes the pool, then counts: wait on its stats */
    struct tp_autoscale_stats st;
    TP_TEST_WAIT_FOR(
        (tp_autoscale_stats(a, &st), st.target == want && st.changes == st.ups + st.downs), 30000);
    tp_autoscale_stats(a, &st);
    assert_true(st.target == want && max_workers(p) == want);
    if (!(st.ups >= 1 && st.ups <= 2))
        fail_msg("%llu growth steps to reach %u", (unsigned long long)st.ups, st.target);
    assert_int_equal(st.downs, 0);
    tp_autoscale_stop(a);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    assert_int_equal(atomic_load(&g_done), n);
    tp_obs_pool_destroy(op);
    tp_pool_destroy(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_user_policy),
        cmocka_unit_test(test_builtin_grows_and_shrinks),
        cmocka_unit_test(test_user_policy_waits_up_ticks),
        cmocka_unit_test(test_builtin_urgent_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
