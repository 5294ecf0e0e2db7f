/* SPDX-License-Identifier: MIT */
/* Contract tests: the promises of include/tripool/obs.h.
 * TP_TEST_TIMEOUT: 60
 *
 * Index: header sentence -> test (here unless a file is named).
 *  "Collectors register series with a `pool` label"  obs_collect.c test_pool_series,
 *      test_bufpool_series, test_fdpool_series; obs_engine.c test_engine_series
 *  "Stats-backed series read the pool's stats call at scrape time"
 *      obs_collect.c test_pool_series; obs_engine.c test_engine_series
 *  "Lifetime rule ... destroy it (which removes its series)"
 *      obs_collect.c test_pool_series (no tripool_pool left); test_destroy_removes_only_own
 *  tp_obs_pool_prepare "any observer already in opts is kept and called after
 *   ours"                                      test_chained_observer_after_ours;
 *      obs_collect.c test_pool_series (kept)
 *  "reg may be NULL: then nothing is exported but the collector still
 *   measures"                                  obs_collect.c test_pool_no_registry
 *  "Returns 0, -EINVAL, -EEXIST (a pool of that name is registered) or
 *   -ENOMEM"                                   obs_collect.c test_pool_series
 *  tp_obs_register_pool "-EINVAL (NULL, or already registered)"
 *      obs_collect.c test_pool_series
 *  tp_obs_pool_destroy "o may be NULL"        obs_collect.c test_pool_series
 *  tp_obs_pool_totals "With tp_pool_opts.observer_sample > 1 only the sampled
 *   tasks count here"                          test_totals_sampled
 *  buffer pool / fd pool "-EINVAL, -EEXIST"    obs_collect.c test_bufpool_series;
 *                                              test_fdpool_errors
 *  engine collector "-EINVAL (NULL argument, bad name), -EEXIST"
 *      obs_engine.c test_engine_series
 *  autoscale "-EINVAL (NULL p, min 0, min > max, tick < 1 ms, bad
 *   utilisation bounds)"                       obs_autoscale.c test_bad_options
 *  "-EEXIST (o already has a controller)"     obs_autoscale.c test_user_policy
 *  "The pool keeps its size until the first decision (clamped into
 *   [min, max] at the first tick)"             test_autoscale_size_kept_until_first_tick
 *  "A user policy ... is always filtered by up_ticks/down_ticks"
 *      obs_autoscale.c test_user_policy_waits_up_ticks
 *  built-in policy sentences                  obs_autoscale.c test_builtin_grows_and_shrinks,
 *                                              test_builtin_urgent_growth
 *  tp_autoscale_stop "Stop and join the controller ... The pool keeps its
 *   last size. a may be NULL."                 obs_autoscale.c test_user_policy, test_bad_options
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>

#include "tp_test.h"
#include "tripool/obs.h"

static int nop(void *arg) {
    (void)arg;
    return 0;
}

struct chain {
    tp_obs_pool *op;
    _Atomic unsigned calls;
    _Atomic unsigned before_ours; /* calls that saw our totals not yet counting them */
};

static struct chain g_chain;

static void chained(void *arg, const char *label, uint64_t wait_ns, uint64_t run_ns, int result) {
    (void)label, (void)wait_ns, (void)run_ns, (void)result;
    struct chain *c = arg;
    unsigned mine = atomic_fetch_add(&c->calls, 1) + 1;
    struct tp_obs_pool_totals t;
    tp_obs_pool_totals(c->op, &t);
    /* ours ran first for this task (one worker: tasks are observed in turn) */
    if (t.tasks < mine) atomic_fetch_add(&c->before_ours, 1);
}

/* "install its observer in opts (any observer already in opts is kept and
 * called after ours)" */
static void test_chained_observer_after_ours(void **state) {
    (void)state;
    tp_pool_opts po;
    tp_pool_opts_init(&po);
    po.max_workers = 1;
    po.observer = chained;
    po.observer_arg = &g_chain;
    assert_int_equal(tp_obs_pool_prepare(NULL, "chain", &po, &g_chain.op), 0);
    tp_pool *p;
    assert_int_equal(tp_pool_create(&p, &po), 0);
    for (int i = 0; i < 200; i++)
        assert_int_equal(tp_submit(p, nop, NULL), 0);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    assert_int_equal(atomic_load(&g_chain.calls), 200);
    assert_int_equal(atomic_load(&g_chain.before_ours), 0);
    tp_obs_pool_destroy(g_chain.op);
    tp_pool_destroy(p);
}

/* "With tp_pool_opts.observer_sample > 1 only the sampled tasks count here"
 * (pool.h: 1 in observer_sample rounded up to a power of two, every Nth of
 * each submitter's own submits). */
static void test_totals_sampled(void **state) {
    (void)state;
    tp_pool_opts po;
    tp_pool_opts_init(&po);
    po.max_workers = 2;
    po.observer_sample = 3; /* -> 4 */
    tp_obs_pool *op;
    assert_int_equal(tp_obs_pool_prepare(NULL, "sampled", &po, &op), 0);
    tp_pool *p;
    assert_int_equal(tp_pool_create(&p, &po), 0);
    for (int i = 0; i < 400; i++)
        assert_int_equal(tp_submit(p, nop, NULL), 0);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    struct tp_obs_pool_totals t;
    tp_obs_pool_totals(op, &t);
    assert_int_equal(t.tasks, 100);
    tp_obs_pool_destroy(op);
    tp_pool_destroy(p);
}

static unsigned keep_policy(void *arg, const struct tp_autoscale_sample *s) {
    atomic_fetch_add((_Atomic unsigned *)arg, 1);
    return s->current;
}

static unsigned max_workers(tp_pool *p) {
    struct tp_pool_stats st;
    tp_pool_stats(p, &st);
    return st.max_workers;
}

/* "The pool keeps its size until the first decision (clamped into
 * [min, max] at the first tick)." */
static void test_autoscale_size_kept_until_first_tick(void **state) {
    (void)state;
    tp_pool_opts po;
    tp_pool_opts_init(&po);
    po.max_workers = 16;
    tp_pool *p;
    assert_int_equal(tp_pool_create(&p, &po), 0);
    tp_autoscale_opts o;
    tp_autoscale_opts_init(&o);
    o.min_workers = 2;
    o.max_workers = 6;
    o.tick_ns = 300 * TP_NSEC_PER_MSEC;
    o.up_ticks = o.down_ticks = 1;
    o.policy = keep_policy;
    _Atomic unsigned calls = 0;
    o.policy_arg = &calls;
    tp_autoscale *a;
    uint64_t t0 = tp_now_ns();
    assert_int_equal(tp_autoscale_start(p, NULL, &o, &a), 0);
    unsigned before = max_workers(p);
    bool first_tick_passed = tp_now_ns() - t0 >= o.tick_ns;
    if (!first_tick_passed) assert_int_equal(before, 16); /* untouched before the first tick */
    TP_TEST_WAIT_FOR(max_workers(p) == 6, 10000);
    assert_int_equal(max_workers(p), 6); /* clamped into [2, 6] */
    assert_true(tp_now_ns() - t0 >= o.tick_ns);
    tp_autoscale_stop(a);
    assert_int_equal(max_workers(p), 6); /* keeps its last size */
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    tp_pool_destroy(p);
}

/* fd pool collector: "-EINVAL, -EEXIST" */
static void test_fdpool_errors(void **state) {
    (void)state;
    tp_metrics *reg;
    assert_int_equal(tp_metrics_create(&reg), 0);
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, NULL), 0);
    tp_obs_fdpool *of, *dup;
    assert_int_equal(tp_obs_register_fdpool(reg, "fds", fp, &of), 0);
    assert_int_equal(tp_obs_register_fdpool(reg, "fds", fp, &dup), -EEXIST);
    assert_int_equal(tp_obs_register_fdpool(reg, "x", NULL, &dup), -EINVAL);
    assert_int_equal(tp_obs_register_fdpool(NULL, "x", fp, &dup), -EINVAL);
    assert_int_equal(tp_obs_register_fdpool(reg, NULL, fp, &dup), -EINVAL);
    tp_obs_fdpool_destroy(of);
    tp_obs_fdpool_destroy(NULL);
    assert_int_equal(tp_obs_register_fdpool(reg, "fds", fp, &of), 0); /* name free again */
    tp_obs_fdpool_destroy(of);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    tp_metrics_destroy(reg);
}

/* "destroy it (which removes its series)": only its own - another pool's
 * series in the same families stay. */
static void test_destroy_removes_only_own(void **state) {
    (void)state;
    tp_metrics *reg;
    assert_int_equal(tp_metrics_create(&reg), 0);
    tp_pool_opts a, b;
    tp_pool_opts_init(&a);
    tp_pool_opts_init(&b);
    tp_obs_pool *oa, *ob;
    assert_int_equal(tp_obs_pool_prepare(reg, "a", &a, &oa), 0);
    assert_int_equal(tp_obs_pool_prepare(reg, "b", &b, &ob), 0);
    tp_pool *pa, *pb;
    assert_int_equal(tp_pool_create(&pa, &a), 0);
    assert_int_equal(tp_pool_create(&pb, &b), 0);
    assert_int_equal(tp_obs_register_pool(oa, pa), 0);
    assert_int_equal(tp_obs_register_pool(ob, pb), 0);
    assert_int_equal(tp_pool_close(pa, TP_FOREVER), 0);
    tp_obs_pool_destroy(oa);
    char *text;
    assert_int_equal(tp_metrics_render_text(reg, &text, NULL), 0);
    assert_null(strstr(text, "{pool=\"a\"}"));
    assert_non_null(strstr(text, "tripool_pool_tasks_submitted_total{pool=\"b\"} 0\n"));
    assert_non_null(strstr(text, "tripool_pool_task_run_seconds_count{pool=\"b\"} 0\n"));
    assert_int_equal(tp_test_promtool_check(text), 0);
    free(text);
    assert_int_equal(tp_pool_close(pb, TP_FOREVER), 0);
    tp_obs_pool_destroy(ob);
    tp_pool_destroy(pa);
    tp_pool_destroy(pb);
    tp_metrics_destroy(reg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chained_observer_after_ours),
        cmocka_unit_test(test_totals_sampled),
        cmocka_unit_test(test_autoscale_size_kept_until_first_tick),
        cmocka_unit_test(test_fdpool_errors),
        cmocka_unit_test(test_destroy_removes_only_own),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
