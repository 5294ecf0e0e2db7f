/* SPDX-License-Identifier: MIT */
/*
 * Collectors: series of a task pool (with observer histograms), a buffer
 * pool and an fd pool carry the stats' values with a pool label, pass
 * promtool, and disappear when the collector is destroyed.
 * TP_TEST_TIMEOUT: 60
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>

#include "tp_test.h"
#include "tripool/obs.h"

/* The value of the sample line starting with prefix + " ", or -1. */
static double sample(const char *text, const char *prefix) {
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, prefix, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    }
    return -1;
}

static int task(void *arg) {
    int i = (int)(intptr_t)arg;
    if (i % 10 == 0) tp_test_sleep_ms(1);
    return i % 4 == 0 ? -EIO : 0; /* a quarter fail */
}

static _Atomic unsigned chained_calls;
static void chained(void *arg, const char *label, uint64_t wait_ns, uint64_t run_ns, int result) {
    assert_ptr_equal(arg, &chained_calls);
    atomic_fetch_add_explicit(&chained_calls, 1, memory_order_relaxed);
}

static void test_pool_series(void **state) {
    tp_metrics *reg;
    assert_int_equal(tp_metrics_create(&reg), 0);
    tp_pool_opts po;
    tp_pool_opts_init(&po);
    po.max_workers = 4;
    po.observer = chained;
    po.observer_arg = &chained_calls;
    tp_obs_pool *op;
    assert_int_equal(tp_obs_pool_prepare(reg, "work\"er", &po, &op), 0);
    assert_non_null(po.observer);
    tp_obs_pool *dup;
    tp_pool_opts po2;
    tp_pool_opts_init(&po2);
    assert_int_equal(tp_obs_pool_prepare(reg, "work\"er", &po2, &dup), -EEXIST);
    assert_int_equal(tp_obs_pool_prepare(reg, NULL, &po2, &dup), -EINVAL);
    assert_int_equal(tp_obs_pool_prepare(reg, "x", NULL, &dup), -EINVAL);

    tp_pool *p;
    assert_int_equal(tp_pool_create(&p, &po), 0);
    assert_int_equal(tp_obs_register_pool(op, p), 0);
    assert_int_equal(tp_obs_register_pool(op, p), -EINVAL); /* once */
    assert_int_equal(tp_obs_register_pool(NULL, p), -EINVAL);

    unsigned n = tp_test_scale(400);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(tp_submit(p, task, (void *)(intptr_t)i), 0);
    assert_int_equal(tp_pool_wait_idle(p, 30 * TP_NSEC_PER_SEC), 0);
    /* the observer runs after the task: wait for the last one */
    TP_TEST_WAIT_FOR(atomic_load(&chained_calls) == n, 10000);
    assert_int_equal(atomic_load(&chained_calls), n);

    char *text;
    assert_int_equal(tp_metrics_render_text(reg, &text, NULL), 0);
    assert_int_equal(tp_test_promtool_check(text), 0);
    const char *L = "{pool=\"work\\\"er\"}";
    char key[128];
    snprintf(key, sizeof key, "tripool_pool_tasks_submitted_total%s", L);
    assert_true(sample(text, key) == n);
    snprintf(key, sizeof key, "tripool_pool_tasks_completed_total%s", L);
    assert_true(sample(text, key) == n);
    snprintf(key, sizeof key, "tripool_pool_tasks_failed_total%s", L);
    assert_true(sample(text, key) == (n + 3) / 4);
    snprintf(key, sizeof key, "tripool_pool_tasks_rejected_total%s", L);
    assert_true(sample(text, key) == 0);
    snprintf(key, sizeof key, "tripool_pool_queue_depth%s", L);
    assert_true(sample(text, key) == 0);
    snprintf(key, sizeof key, "tripool_pool_workers_max%s", L);
    assert_true(sample(text, key) == 4);
    snprintf(key, sizeof key, "tripool_pool_workers_running%s", L);
    assert_true(sample(text, key) >= 1 && sample(text, key) <= 4);
    snprintf(key, sizeof key, "tripool_pool_task_run_seconds_count%s", L);
    assert_true(sample(text, key) == n);
    snprintf(key, sizeof key, "tripool_pool_queue_wait_seconds_count%s", L);
    assert_true(sample(text, key) == n);
    /* n/10 tasks slept >= 1 ms: the run-time sum shows it */
    snprintf(key, sizeof key, "tripool_pool_task_run_seconds_sum%s", L);
    assert_true(sample(text, key) >= (n / 10) * 0.001);
    free(text);

    struct tp_obs_pool_totals t;
    tp_obs_pool_totals(op, &t);
    assert_int_equal(t.tasks, n);
    assert_true(t.run_ns >= (n / 10) * TP_NSEC_PER_MSEC);

    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    tp_obs_pool_destroy(op);
    assert_int_equal(tp_metrics_render_text(reg, &text, NULL), 0);
    assert_null(strstr(text, "tripool_pool")); /* every series is gone */
    free(text);
    tp_pool_destroy(p);
    tp_obs_pool_destroy(NULL);
    tp_metrics_destroy(reg);
}

/* Without a registry the collector still measures (for autoscaling). */
static void test_pool_no_registry(void **state) {
    tp_pool_opts po;
    tp_pool_opts_init(&po);
    po.max_workers = 2;
    tp_obs_pool *op;
    assert_int_equal(tp_obs_pool_prepare(NULL, "solo", &po, &op), 0);
    tp_pool *p;
    assert_int_equal(tp_pool_create(&p, &po), 0);
    assert_int_equal(tp_obs_register_pool(op, p), 0);
    for (int i = 1; i <= 20; i++)
        assert_int_equal(tp_submit(p, task, (void *)(intptr_t)i), 0);
    assert_int_equal(tp_pool_close(p, TP_FOREVER), 0);
    struct tp_obs_pool_totals t;
    tp_obs_pool_totals(op, &t);
    assert_int_equal(t.tasks, 20);
    tp_obs_pool_destroy(op);
    tp_pool_destroy(p);
}

static void test_bufpool_series(void **state) {
    tp_metrics *reg;
    assert_int_equal(tp_metrics_create(&reg), 0);
    tp_bufpool *bp;
    assert_int_equal(tp_bufpool_create(&bp, NULL), 0);
    tp_obs_bufpool *ob;
    assert_int_equal(tp_obs_register_bufpool(reg, "bufs", bp, &ob), 0);
    tp_obs_bufpool *dup;
    assert_int_equal(tp_obs_register_bufpool(reg, "bufs", bp, &dup), -EEXIST);
    assert_int_equal(tp_obs_register_bufpool(reg, "x", NULL, &dup), -EINVAL);
    for (int i = 0; i < 10; i++) {
        tp_buf *b = tp_buf_get(bp, 4000);
        assert_non_null(b);
        tp_buf_put(bp, b);
    }
    tp_buf *held = tp_buf_get(bp, 4096);
    assert_non_null(held);

    struct tp_bufpool_stats st;
    tp_bufpool_stats(bp, &st);
    char *text;
    assert_int_equal(tp_metrics_render_text(reg, &text, NULL), 0);
    assert_int_equal(tp_test_promtool_check(text), 0);
    unsigned found = 0;
    for (unsigned c = 0; c < TP_BUF_NCLASSES; c++) {
        if (st.cls[c].gets == 0) continue;
        char key[160];
        snprintf(key, sizeof key, "tripool_buf_gets_total{pool=\"bufs\",class=\"%zu\"}",
                 st.cls[c].size);
        assert_true(sample(text, key) == (double)st.cls[c].gets);
        snprintf(key, sizeof key, "tripool_buf_hits_total{pool=\"bufs\",class=\"%zu\"}",
                 st.cls[c].size);
        assert_true(sample(text, key) == (double)st.cls[c].hits);
        snprintf(key, sizeof key, "tripool_buf_inuse_bytes{pool=\"bufs\",class=\"%zu\"}",
                 st.cls[c].size);
        assert_true(sample(text, key) == (double)st.cls[c].inuse_bytes);
        assert_true(st.cls[c].inuse_bytes >= 4096);
        found++;
    }
    assert_int_equal(found, 1); /* all our gets were one class */
    assert_true(sample(text, "tripool_buf_gets_total{pool=\"bufs\",class=\"huge\"}") == 0);
    free(text);
    tp_buf_put(bp, held);
    tp_obs_bufpool_destroy(ob);
    assert_int_equal(tp_metrics_render_text(reg, &text, NULL), 0);
    assert_string_equal(text, "");
    free(text);
    tp_bufpool_destroy(bp);
    tp_metrics_destroy(reg);
}

static void test_fdpool_series(void **state) {
    tp_metrics *reg;
    assert_int_equal(tp_metrics_create(&reg), 0);
    tp_fdpool *fp;
    assert_int_equal(tp_fdpool_create(&fp, NULL), 0);
    tp_obs_fdpool *of;
    assert_int_equal(tp_obs_register_fdpool(reg, "files", fp, &of), 0);
    char path[] = "/tmp/tp_obs_fd_XXXXXX";
    int tmp = mkstemp(path);
    assert_true(tmp >= 0);
    close(tmp);
    tp_fd *h;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tp_fd_acquire(fp, path, O_RDONLY, 0, &h), 0);
        tp_fd_release(fp, h);
    }
    assert_int_equal(tp_fd_acquire(fp, path, O_RDONLY, 0, &h), 0); /* leased now */
    struct tp_fdpool_stats st;
    tp_fdpool_stats(fp, &st);
    char *text;
    assert_int_equal(tp_metrics_render_text(reg, &text, NULL), 0);
    assert_int_equal(tp_test_promtool_check(text), 0);
    assert_true(sample(text, "tripool_fd_misses_total{pool=\"files\"}") == (double)st.misses);
    assert_true(sample(text, "tripool_fd_hits_total{pool=\"files\"}") == (double)st.hits);
    assert_true(st.hits + st.misses == 4);
    assert_true(sample(text, "tripool_fd_leased{pool=\"files\"}") == 1);
    assert_true(sample(text, "tripool_fd_open{pool=\"files\"}") == (double)st.open);
    assert_true(sample(text, "tripool_fd_rotations_total{pool=\"files\"}") == 0);
    free(text);
    tp_fd_release(fp, h);
    tp_obs_fdpool_destroy(of);
    assert_int_equal(tp_fdpool_destroy(fp), 0);
    unlink(path);
    tp_metrics_destroy(reg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_series),
        cmocka_unit_test(test_pool_no_registry),
        cmocka_unit_test(test_bufpool_series),
        cmocka_unit_test(test_fdpool_series),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
