/* SPDX-License-Identifier: MIT */
/* Contract tests: the promises of include/tripool/metrics.h.
 * TP_TEST_TIMEOUT: 60
 *
 * Index: header sentence -> test (here unless a file is named).
 *  "Updates are lock-free and touch only per-shard cells ... or one atomic
 *   word (gauges), so they are safe ... from any thread"
 *      test_updates_from_threads_exact; stress/metrics_concurrent.c
 *  "Reads (render, value getters) add the shards up"  test_updates_from_threads_exact
 *  "Names are checked at registration (-EINVAL): metric names match ...,
 *   label names match ... and do not start with "__"; counters end in
 *   "_total"; histograms may not use the label "le""
 *      metrics_registry.c test_names_validated
 *  "Label values and help text are valid UTF-8 (-EINVAL otherwise) and may
 *   hold any character but NUL; they are escaped on output"
 *      metrics_registry.c test_names_validated, test_escaping, test_json
 *  "different type, help, label names or bucket layout is -EINVAL;
 *   registering the same series twice is -EEXIST"
 *      metrics_registry.c test_family_consistency
 *  "Prometheus text exposition format 0.0.4"  metrics_registry.c test_values (promtool)
 *  "A series handle stays valid until tp_metrics_unregister() or
 *   tp_metrics_destroy()"                      test_unregister_contract (ASan)
 *  "Both are copied at registration"          test_labels_copied
 *  "Reads a value at scrape time (callback series)"  test_callback_read_per_scrape
 *  "Create an empty registry"                 metrics_registry.c test_empty
 *  "tp_metrics_destroy ... r may be NULL"     test_null_tolerance
 *  "labels may be NULL when nlabels is 0. help may be NULL (empty help)."
 *                                              test_null_tolerance
 *  "out (may be NULL) receives a handle for tp_metrics_unregister()"
 *      metrics_registry.c test_escaping (counter_fn with NULL out)
 *  "1 <= nbounds <= TP_METRICS_MAX_BUCKETS ... strictly ascending, finite"
 *      test_bucket_limits; metrics_registry.c test_names_validated
 *  "tp_metrics_buckets_exp ... -EINVAL (start <= 0, factor <= 1, n == 0 or
 *   > TP_METRICS_MAX_BUCKETS)"                 test_bucket_limits;
 *      metrics_registry.c test_values
 *  "After it returns the series is gone from output, its callback is never
 *   called again and the handle is freed. Returns 0 or -ENOENT."
 *      test_unregister_contract, test_unregister_while_scraping
 *  "NULL handles are ignored"                 metrics_registry.c test_values; test_null_tolerance
 *  "Observe a duration given in ns, recorded in seconds"  metrics_registry.c test_values
 *  "Families appear in registration order, series in registration order"
 *                                              test_render_order
 *  "len (may be NULL) receives the length without the NUL"  test_null_tolerance
 *  "Returns 0, -EINVAL or -ENOMEM" (render)   metrics_registry.c test_json
 *  tp_metrics_serve: addresses, errors, PORT 0, 404, shutdown 503
 *      metrics_server.c test_address_errors, test_curl_scrape_while_working,
 *      test_scrape_during_shutdown
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "tripool/metrics.h"

static char *render(tp_metrics *r) {
    char *out = NULL;
    assert_int_equal(tp_metrics_render_text(r, &out, NULL), 0); /* len may be NULL */
    assert_non_null(out);
    return out;
}

/* ---- updates from many threads add up exactly ------------------------------- */

enum { THREADS = 4, PER = 50000 };

struct upd {
    tp_counter *c;
    tp_gauge *g;
    tp_histogram *h;
};

static void *updater(void *arg) {
    struct upd *u = arg;
    for (int i = 0; i < PER; i++) {
        tp_counter_inc(u->c);
        tp_gauge_add(u->g, 1.0); /* a lost CAS would lose one */
        tp_histogram_observe(u->h, (i % 2) ? 0.5 : 2.0);
    }
    return NULL;
}

/* "Updates ... safe and cheap from any thread"; "Reads ... add the shards
 * up": nothing is lost, whatever thread updated. */
static void test_updates_from_threads_exact(void **state) {
    (void)state;
    tp_metrics *r;
    assert_int_equal(tp_metrics_create(&r), 0);
    struct upd u;
    double b[1] = {1.0};
    assert_int_equal(tp_metrics_counter(r, "n_total", "n", NULL, 0, &u.c), 0);
    assert_int_equal(tp_metrics_gauge(r, "g", "g", NULL, 0, &u.g), 0);
    assert_int_equal(tp_metrics_histogram(r, "h", "h", NULL, 0, b, 1, &u.h), 0);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, updater, &u), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    const uint64_t total = (uint64_t)THREADS * PER;
    assert_int_equal(tp_counter_value(u.c), total);
    assert_true(tp_gauge_value(u.g) == (double)total);
    assert_int_equal(tp_histogram_count(u.h), total);
    assert_true(tp_histogram_sum(u.h) == (double)total / 2 * 2.5);
    char *text = render(r);
    char want[128];
    snprintf(want, sizeof want, "\nn_total %llu\n", (unsigned long long)total);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want, "h_bucket{le=\"1\"} %llu\n", (unsigned long long)total / 2);
    assert_non_null(strstr(text, want));
    free(text);
    tp_metrics_destroy(r);
}

/* "Families appear in registration order, series in registration order":
 * a series added to an older family later still renders with that family,
 * after its older series. */
static void test_render_order(void **state) {
    (void)state;
    tp_metrics *r;
    assert_int_equal(tp_metrics_create(&r), 0);
    tp_gauge *g;
    tp_label a1 = {"k", "z"}, a2 = {"k", "a"}, b1 = {"k", "m"};
    assert_int_equal(tp_metrics_gauge(r, "zeta", "z", &a1, 1, &g), 0);
    assert_int_equal(tp_metrics_gauge(r, "alpha", "a", &b1, 1, &g), 0);
    assert_int_equal(tp_metrics_gauge(r, "zeta", "z", &a2, 1, &g), 0);
    char *text = render(r);
    const char *want = "# HELP zeta z\n"
                       "# TYPE zeta gauge\n"
                       "zeta{k=\"z\"} 0\n"
                       "zeta{k=\"a\"} 0\n"
                       "# HELP alpha a\n"
                       "# TYPE alpha gauge\n"
                       "alpha{k=\"m\"} 0\n";
    assert_string_equal(text, want);
    free(text);
    tp_metrics_destroy(r);
}

/* "One label: name and value. Both are copied at registration." */
static void test_labels_copied(void **state) {
    (void)state;
    tp_metrics *r;
    assert_int_equal(tp_metrics_create(&r), 0);
    char name[8] = "pool", value[8] = "io", help[8] = "Help";
    tp_label l = {name, value};
    tp_gauge *g;
    assert_int_equal(tp_metrics_gauge(r, "q", help, &l, 1, &g), 0);
    strcpy(name, "XXXX");
    strcpy(value, "YY");
    strcpy(help, "ZZZZ");
    char *text = render(r);
    assert_non_null(strstr(text, "q{pool=\"io\"} 0\n"));
    assert_non_null(strstr(text, "# HELP q Help\n"));
    free(text);
    tp_metrics_destroy(r);
}

struct cbv {
    _Atomic int calls;
    _Atomic int in_cb;
    double v;
};

static double cb_read(void *arg) {
    struct cbv *c = arg;
    atomic_fetch_add(&c->in_cb, 1);
    atomic_fetch_add(&c->calls, 1);
    usleep(200); /* keep the scrape inside the callback for a while */
    atomic_fetch_sub(&c->in_cb, 1);
    return c->v;
}

/* "Reads a value at scrape time": the value of each render is the one the
 * callback returns then, not a cached one. */
static void test_callback_read_per_scrape(void **state) {
    (void)state;
    tp_metrics *r;
    assert_int_equal(tp_metrics_create(&r), 0);
    struct cbv c = {.v = 1};
    assert_int_equal(tp_metrics_gauge_fn(r, "cb", "c", NULL, 0, cb_read, &c, NULL), 0);
    char *t = render(r);
    assert_non_null(strstr(t, "\ncb 1\n"));
    free(t);
    c.v = 7;
    t = render(r);
    assert_non_null(strstr(t, "\ncb 7\n"));
    free(t);
    assert_int_equal(atomic_load(&c.calls), 2);
    tp_metrics_destroy(r);
}

/* tp_metrics_unregister: "After it returns the series is gone from output,
 * its callback is never called again and the handle is freed. Returns 0 or
 * -ENOENT." */
static void test_unregister_contract(void **state) {
    (void)state;
    tp_metrics *r;
    assert_int_equal(tp_metrics_create(&r), 0);
    struct cbv c = {.v = 3};
    void *h;
    tp_counter *k;
    tp_label l = {"a", "b"};
    assert_int_equal(tp_metrics_counter_fn(r, "cbc_total", "c", &l, 1, cb_read, &c, &h), 0);
    assert_int_equal(tp_metrics_counter(r, "k_total", "k", NULL, 0, &k), 0);
    free(render(r));
    int calls = atomic_load(&c.calls);
    assert_int_equal(tp_metrics_unregister(r, h), 0);
    assert_int_equal(tp_metrics_unregister(r, k), 0);
    char *t = render(r);
    assert_null(strstr(t, "cbc_total"));
    assert_null(strstr(t, "k_total"));
    free(t);
    assert_int_equal(atomic_load(&c.calls), calls);
    assert_int_equal(tp_metrics_unregister(r, h), -ENOENT);
    int not_a_series;
    assert_int_equal(tp_metrics_unregister(r, &not_a_series), -ENOENT);
    tp_metrics_destroy(r);
}

struct scraper {
    tp_metrics *r;
    _Atomic int stop;
    _Atomic int renders;
};

static void *scrape_main(void *arg) {
    struct scraper *s = arg;
    while (!atomic_load(&s->stop)) {
        char *t = NULL;
        if (tp_metrics_render_text(s->r, &t, NULL) == 0) free(t);
        atomic_fetch_add(&s->renders, 1);
    }
    return NULL;
}

/* The same while another thread scrapes: an unregister that returns while a
 * scrape is still inside the callback (or about to call it) breaks "never
 * called again". */
static void test_unregister_while_scraping(void **state) {
    (void)state;
    tp_metrics *r;
    assert_int_equal(tp_metrics_create(&r), 0);
    struct scraper s = {.r = r};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, scrape_main, &s), 0);
    for (int round = 0; round < 50; round++) {
        struct cbv c = {.v = round};
        void *h;
        assert_int_equal(tp_metrics_gauge_fn(r, "live", "l", NULL, 0, cb_read, &c, &h), 0);
        while (atomic_load(&c.calls) == 0) {
        }
        assert_int_equal(tp_metrics_unregister(r, h), 0);
        int calls = atomic_load(&c.calls);
        assert_int_equal(atomic_load(&c.in_cb), 0);
        usleep(500);
        assert_int_equal(atomic_load(&c.calls), calls); /* c goes out of scope next */
    }
    atomic_store(&s.stop, 1);
    pthread_join(th, NULL);
    assert_true(atomic_load(&s.renders) > 0);
    tp_metrics_destroy(r);
}

/* "1 <= nbounds <= TP_METRICS_MAX_BUCKETS"; buckets_exp "n == 0 or >
 * TP_METRICS_MAX_BUCKETS" is -EINVAL; a bound list of exactly the maximum is
 * fine. */
static void test_bucket_limits(void **state) {
    (void)state;
    double b[TP_METRICS_MAX_BUCKETS + 1];
    assert_int_equal(tp_metrics_buckets_exp(1e-6, 1.5, TP_METRICS_MAX_BUCKETS + 1, b), -EINVAL);
    assert_int_equal(tp_metrics_buckets_exp(-1, 2, 3, b), -EINVAL);
    assert_int_equal(tp_metrics_buckets_exp(1, 0.5, 3, b), -EINVAL);
    assert_int_equal(tp_metrics_buckets_exp(1e-6, 1.5, TP_METRICS_MAX_BUCKETS, b), 0);
    for (int i = 1; i < TP_METRICS_MAX_BUCKETS; i++)
        assert_true(b[i] > b[i - 1]);
    tp_metrics *r;
    assert_int_equal(tp_metrics_create(&r), 0);
    tp_histogram *h, *big;
    b[TP_METRICS_MAX_BUCKETS] = b[TP_METRICS_MAX_BUCKETS - 1] * 2;
    assert_int_equal(
        tp_metrics_histogram(r, "big", "b", NULL, 0, b, TP_METRICS_MAX_BUCKETS + 1, &h), -EINVAL);
    assert_int_equal(tp_metrics_histogram(r, "big", "b", NULL, 0, b, TP_METRICS_MAX_BUCKETS, &big),
                     0);
    double dup[2] = {1, 1}, nan2[2] = {NAN, 1};
    assert_int_equal(tp_metrics_histogram(r, "d", "d", NULL, 0, dup, 2, &h), -EINVAL);
    assert_int_equal(tp_metrics_histogram(r, "d", "d", NULL, 0, nan2, 2, &h), -EINVAL);
    tp_histogram_observe(big, 1e9); /* the +Inf bucket */
    assert_int_equal(tp_histogram_count(big), 1);
    char *t = render(r);
    assert_non_null(strstr(t, "big_bucket{le=\"+Inf\"} 1\n"));
    free(t);
    tp_metrics_destroy(r);
}

/* "r may be NULL"; "help may be NULL (empty help)"; "labels may be NULL when
 * nlabels is 0"; "NULL handles are ignored"; "len (may be NULL)". */
static void test_null_tolerance(void **state) {
    (void)state;
    tp_metrics_destroy(NULL);
    tp_metrics_server_stop(NULL);
    tp_metrics *r;
    assert_int_equal(tp_metrics_create(&r), 0);
    tp_gauge *g;
    assert_int_equal(tp_metrics_gauge(r, "nohelp", NULL, NULL, 0, &g), 0);
    char *t = render(r);
    assert_non_null(strstr(t, "# TYPE nohelp gauge\nnohelp 0\n"));
    free(t);
    tp_counter_inc(NULL);
    tp_gauge_add(NULL, 1);
    tp_histogram_observe_ns(NULL, 1);
    assert_true(tp_gauge_value(NULL) == 0);
    assert_int_equal(tp_histogram_count(NULL), 0);
    tp_metrics_destroy(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_updates_from_threads_exact),
        cmocka_unit_test(test_render_order),
        cmocka_unit_test(test_labels_copied),
        cmocka_unit_test(test_callback_read_per_scrape),
        cmocka_unit_test(test_unregister_contract),
        cmocka_unit_test(test_unregister_while_scraping),
        cmocka_unit_test(test_bucket_limits),
        cmocka_unit_test(test_null_tolerance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
