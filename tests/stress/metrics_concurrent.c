/* SPDX-License-Identifier: MIT */
/*
 * Stress: THREADS updaters hammer one counter, gauge and histogram while a
 * renderer checks every exposition (counter never goes back, buckets
 * ascending, +Inf == _count) and a registrar adds and removes series.
 * Invariants at the end: no lost update (exact totals).
 * Usage: stress_metrics_concurrent [THREADS] [SCALE] [ITER]
 * TP_TEST_TIMEOUT: 120
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal/atomic.h"
#include "tripool/metrics.h"

static unsigned g_threads = 4, g_scale = 1, g_iter = 2;
static uint64_t g_ops;

static uint64_t scaled(uint64_t n) {
    const char *s = getenv("TP_TEST_SANITIZER");
    if (s && strcmp(s, "thread") == 0) return n / 8 ? n / 8 : 1;
    if (s && strcmp(s, "address") == 0) return n / 4 ? n / 4 : 1;
    return n;
}

struct shared {
    tp_metrics *r;
    tp_counter *c;
    tp_gauge *g;
    tp_histogram *h;
    _Atomic int stop;
    uint64_t renders;
};

static void *updater(void *arg) {
    struct shared *s = arg;
    for (uint64_t i = 0; i < g_ops; i++) {
        tp_counter_inc(s->c);
        tp_gauge_add(s->g, 1);
        tp_histogram_observe(s->h, (double)(i % 8)); /* bounds 1,2,4: every bucket */
    }
    return NULL;
}

/* Parse one exposition and check its invariants; returns the counter. */
static uint64_t check_text(const char *text) {
    uint64_t counter = 0, prev_bucket = 0, inf = UINT64_MAX, count = UINT64_MAX;
    int buckets = 0;
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        unsigned long long v;
        if (sscanf(line, "ops_total %llu", &v) == 1)
            counter = v;
        else if (strncmp(line, "lat_seconds_bucket{le=\"+Inf\"} ", 30) == 0)
            inf = strtoull(line + 30, NULL, 10);
        else if (sscanf(line, "lat_seconds_bucket{le=\"%*[0-9.]\"} %llu", &v) == 1) {
            assert_true(v >= prev_bucket); /* ascending */
            prev_bucket = v;
            buckets++;
        } else if (sscanf(line, "lat_seconds_count %llu", &v) == 1)
            count = v;
        line = nl + 1;
    }
    assert_int_equal(buckets, 3);
    assert_true(inf >= prev_bucket);
    assert_int_equal(inf, count);
    return counter;
}

static void *renderer(void *arg) {
    struct shared *s = arg;
    uint64_t last = 0;
    while (!tp__load_relaxed(&s->stop)) {
        char *text;
        assert_int_equal(tp_metrics_render_text(s->r, &text, NULL), 0);
        uint64_t c = check_text(text);
        assert_true(c >= last);
        last = c;
        free(text);
        assert_int_equal(tp_metrics_render_json(s->r, &text, NULL), 0);
        free(text);
        s->renders++;
    }
    return NULL;
}

static void *registrar(void *arg) {
    struct shared *s = arg;
    char value[32];
    unsigned i = 0;
    while (!tp__load_relaxed(&s->stop)) {
        snprintf(value, sizeof value, "p%u", i++ % 50);
        tp_label l = {"pool", value};
        tp_gauge *g;
        int err = tp_metrics_gauge(s->r, "churn", "Churn.", &l, 1, &g);
        assert_int_equal(err, 0);
        tp_gauge_set(g, i);
        assert_int_equal(tp_metrics_unregister(s->r, g), 0);
    }
    return NULL;
}

static void run_round(void) {
    {
        struct shared s = {0};
        assert_int_equal(tp_metrics_create(&s.r), 0);
        assert_int_equal(tp_metrics_counter(s.r, "ops_total", "Ops.", NULL, 0, &s.c), 0);
        assert_int_equal(tp_metrics_gauge(s.r, "level", "Level.", NULL, 0, &s.g), 0);
        double b[3] = {1, 2, 4};
        assert_int_equal(tp_metrics_histogram(s.r, "lat_seconds", "Lat.", NULL, 0, b, 3, &s.h), 0);
        pthread_t up[64], rd, rg;
        assert_int_equal(pthread_create(&rd, NULL, renderer, &s), 0);
        assert_int_equal(pthread_create(&rg, NULL, registrar, &s), 0);
        for (unsigned t = 0; t < g_threads; t++)
            assert_int_equal(pthread_create(&up[t], NULL, updater, &s), 0);
        for (unsigned t = 0; t < g_threads; t++)
            pthread_join(up[t], NULL);
        tp__store_relaxed(&s.stop, 1);
        pthread_join(rd, NULL);
        pthread_join(rg, NULL);

        uint64_t total = g_ops * g_threads;
        assert_int_equal(tp_counter_value(s.c), total);
        assert_true(tp_gauge_value(s.g) == (double)total);
        assert_int_equal(tp_histogram_count(s.h), total);
        /* each thread observed 0..7 g_ops/8 times each (plus a remainder) */
        double sum = 0;
        for (uint64_t i = 0; i < g_ops; i++)
            sum += (double)(i % 8);
        assert_true(tp_histogram_sum(s.h) == sum * g_threads);
        char *text;
        assert_int_equal(tp_metrics_render_text(s.r, &text, NULL), 0);
        assert_int_equal(check_text(text), total);
        free(text);
        assert_true(s.renders > 0);
        tp_metrics_destroy(s.r);
    }
}

static void test_concurrent(void **state) {
    /* new threads each iteration: slots are handed over from exited ones */
    for (unsigned it = 0; it < g_iter; it++)
        run_round();
}

/* More threads than owned slots: the rest share the atomic slot. */
static void test_more_threads_than_slots(void **state) {
    unsigned threads = g_threads, ops = (unsigned)g_ops;
    g_threads = 24;
    g_ops = ops / 8 ? ops / 8 : 1;
    run_round();
    g_threads = threads;
    g_ops = ops;
}

int main(int argc, char **argv) {
    if (argc > 1) g_threads = (unsigned)atoi(argv[1]);
    if (argc > 2) g_scale = (unsigned)atoi(argv[2]);
    if (argc > 3) g_iter = (unsigned)atoi(argv[3]);
    if (g_threads < 1 || g_threads > 64 || g_scale < 1 || g_iter < 1) {
        fprintf(stderr, "usage: %s [THREADS 1-64] [SCALE >=1] [ITER >=1]\n", argv[0]);
        return 2;
    }
    g_ops = scaled(1000000) * g_scale;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_concurrent),
                                       cmocka_unit_test(test_more_threads_than_slots)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
