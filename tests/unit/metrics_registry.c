/* SPDX-License-Identifier: MIT */
/*
 * Registry: validation at registration, values, exact Prometheus 0.0.4 text
 * (checked byte for byte and by promtool), escaping, JSON, unregister.
 * TP_TEST_TIMEOUT: 60
 */
#include <math.h>
#include <stdio.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* Not tp_test.h: it pulls in every module's header via tripool.h, and this
 * test needs (and links) only the metrics module. */
#include "tripool/metrics.h"
#include "tp_promtool.h"

static char *render(tp_metrics *r) {
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(tp_metrics_render_text(r, &out, &len), 0);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    return out;
}

static void test_names_validated(void **state) {
    tp_metrics *r;
    tp_counter *c;
    tp_gauge *g;
    tp_histogram *h;
    assert_int_equal(tp_metrics_create(&r), 0);
    tp_label ok = {"pool", "a"};
    /* metric names */
    assert_int_equal(tp_metrics_counter(r, "requests", "h", NULL, 0, &c), -EINVAL); /* no _total */
    assert_int_equal(tp_metrics_counter(r, "1x_total", "h", NULL, 0, &c), -EINVAL);
    assert_int_equal(tp_metrics_counter(r, "a-b_total", "h", NULL, 0, &c), -EINVAL);
    assert_int_equal(tp_metrics_counter(r, "", "h", NULL, 0, &c), -EINVAL);
    assert_int_equal(tp_metrics_counter(r, NULL, "h", NULL, 0, &c), -EINVAL);
    assert_int_equal(tp_metrics_gauge(r, "a b", "h", NULL, 0, &g), -EINVAL);
    assert_int_equal(tp_metrics_gauge(r, "caf\xc3\xa9", "h", NULL, 0, &g), -EINVAL);
    assert_int_equal(tp_metrics_gauge(r, "ns:sub_x", "h", &ok, 1, &g), 0);
    assert_int_equal(tp_metrics_counter(r, "_x:y_total", "h", NULL, 0, &c), 0);
    /* label names */
    tp_label bad[][1] = {{{"__name", "v"}}, {{"1a", "v"}}, {{"a:b", "v"}}, {{"", "v"}},
                         {{NULL, "v"}},     {{"a", NULL}}, {{"a", "\xff"}}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tp_metrics_gauge(r, "lbl", "h", bad[i], 1, &g), -EINVAL);
    tp_label dup[2] = {{"a", "1"}, {"a", "2"}};
    assert_int_equal(tp_metrics_gauge(r, "lbl", "h", dup, 2, &g), -EINVAL);
    assert_int_equal(tp_metrics_gauge(r, "lbl", "h", NULL, 1, &g), -EINVAL);
    /* histogram: le reserved, bounds ascending and finite */
    double b[3] = {1, 2, 3}, unsorted[3] = {1, 3, 2}, inf[2] = {1, INFINITY};
    tp_label le = {"le", "1"};
    assert_int_equal(tp_metrics_histogram(r, "h_seconds", "h", &le, 1, b, 3, &h), -EINVAL);
    assert_int_equal(tp_metrics_histogram(r, "h_seconds", "h", NULL, 0, unsorted, 3, &h), -EINVAL);
    assert_int_equal(tp_metrics_histogram(r, "h_seconds", "h", NULL, 0, inf, 2, &h), -EINVAL);
    assert_int_equal(tp_metrics_histogram(r, "h_seconds", "h", NULL, 0, b, 0, &h), -EINVAL);
    assert_int_equal(tp_metrics_histogram(r, "h_seconds", "h", NULL, 0, NULL, 3, &h), -EINVAL);
    /* bad help text (invalid UTF-8) */
    assert_int_equal(tp_metrics_gauge(r, "g2", "\xc3(", NULL, 0, &g), -EINVAL);
    /* NULL registry / out */
    assert_int_equal(tp_metrics_gauge(NULL, "g", "h", NULL, 0, &g), -EINVAL);
    assert_int_equal(tp_metrics_gauge(r, "g", "h", NULL, 0, NULL), -EINVAL);
    assert_int_equal(tp_metrics_gauge_fn(r, "g", "h", NULL, 0, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(tp_metrics_create(NULL), -EINVAL);
    tp_metrics_destroy(r);
}

static void test_family_consistency(void **state) {
    tp_metrics *r;
    tp_counter *c1, *c2, *c3;
    tp_gauge *g;
    tp_histogram *h;
    assert_int_equal(tp_metrics_create(&r), 0);
    tp_label a = {"pool", "a"}, b = {"pool", "b"}, other = {"name", "a"};
    assert_int_equal(tp_metrics_counter(r, "jobs_total", "Jobs.", &a, 1, &c1), 0);
    assert_int_equal(tp_metrics_counter(r, "jobs_total", "Jobs.", &b, 1, &c2), 0);
    assert_int_equal(tp_metrics_counter(r, "jobs_total", "Jobs.", &a, 1, &c3), -EEXIST);
    assert_int_equal(tp_metrics_counter(r, "jobs_total", "Other.", &b, 1, &c3), -EINVAL);
    assert_int_equal(tp_metrics_counter(r, "jobs_total", "Jobs.", &other, 1, &c3), -EINVAL);
    assert_int_equal(tp_metrics_counter(r, "jobs_total", "Jobs.", NULL, 0, &c3), -EINVAL);
    assert_int_equal(tp_metrics_gauge(r, "jobs_total", "Jobs.", &a, 1, &g), -EINVAL);
    /* sample name clashes between histogram and other families */
    double bounds[2] = {0.1, 1};
    assert_int_equal(tp_metrics_gauge(r, "lat_count", "x", NULL, 0, &g), 0);
    assert_int_equal(tp_metrics_histogram(r, "lat", "x", NULL, 0, bounds, 2, &h), -EINVAL);
    assert_int_equal(tp_metrics_histogram(r, "wait", "x", NULL, 0, bounds, 2, &h), 0);
    assert_int_equal(tp_metrics_gauge(r, "wait_sum", "x", NULL, 0, &g), -EINVAL);
    double other_bounds[2] = {0.1, 2};
    tp_label l = {"k", "v"};
    assert_int_equal(tp_metrics_histogram(r, "wait", "x", &l, 1, bounds, 2, &h), -EINVAL);
    assert_int_equal(tp_metrics_histogram(r, "wait", "x", NULL, 0, other_bounds, 2, &h), -EINVAL);
    /* unregister frees the family with its last series: the name is free again */
    assert_int_equal(tp_metrics_unregister(r, c1), 0);
    assert_int_equal(tp_metrics_unregister(r, c1), -ENOENT);
    assert_int_equal(tp_metrics_unregister(r, c2), 0);
    assert_int_equal(tp_metrics_counter(r, "jobs_total", "New help.", NULL, 0, &c3), 0);
    assert_int_equal(tp_metrics_unregister(NULL, c3), -EINVAL);
    tp_metrics_destroy(r);
}

static void test_values(void **state) {
    tp_metrics *r;
    tp_counter *c;
    tp_gauge *g;
    tp_histogram *h;
    assert_int_equal(tp_metrics_create(&r), 0);
    assert_int_equal(tp_metrics_counter(r, "c_total", "c", NULL, 0, &c), 0);
    assert_int_equal(tp_metrics_gauge(r, "g", "g", NULL, 0, &g), 0);
    double bounds[3];
    assert_int_equal(tp_metrics_buckets_exp(0.001, 10, 3, bounds), 0);
    assert_true(fabs(bounds[2] - 0.1) < 1e-12);
    assert_int_equal(tp_metrics_buckets_exp(0, 10, 3, bounds), -EINVAL);
    assert_int_equal(tp_metrics_buckets_exp(1, 1, 3, bounds), -EINVAL);
    assert_int_equal(tp_metrics_buckets_exp(1, 2, 0, bounds), -EINVAL);
    assert_int_equal(tp_metrics_histogram(r, "h_seconds", "h", NULL, 0, bounds, 3, &h), 0);

    tp_counter_inc(c);
    tp_counter_add(c, 41);
    assert_int_equal(tp_counter_value(c), 42);
    tp_gauge_set(g, 2.5);
    tp_gauge_add(g, -1);
    assert_true(tp_gauge_value(g) == 1.5);
    tp_histogram_observe(h, 0.001); /* on the bound: le is inclusive */
    tp_histogram_observe(h, 0.05);
    tp_histogram_observe(h, 5);
    tp_histogram_observe_ns(h, 2000000); /* 2 ms */
    assert_int_equal(tp_histogram_count(h), 4);
    assert_true(fabs(tp_histogram_sum(h) - 5.053) < 1e-9);
    /* NULL handles are ignored, reads of NULL are 0 */
    tp_counter_add(NULL, 1);
    tp_gauge_set(NULL, 1);
    tp_histogram_observe(NULL, 1);
    assert_int_equal(tp_counter_value(NULL), 0);

    char *text = render(r);
    const char *want = "# HELP c_total c\n"
                       "# TYPE c_total counter\n"
                       "c_total 42\n"
                       "# HELP g g\n"
                       "# TYPE g gauge\n"
                       "g 1.5\n"
                       "# HELP h_seconds h\n"
                       "# TYPE h_seconds histogram\n"
                       "h_seconds_bucket{le=\"0.001\"} 1\n"
                       "h_seconds_bucket{le=\"0.01\"} 2\n"
                       "h_seconds_bucket{le=\"0.1\"} 3\n"
                       "h_seconds_bucket{le=\"+Inf\"} 4\n"
                       "h_seconds_sum 5.053\n"
                       "h_seconds_count 4\n";
    assert_string_equal(text, want);
    assert_int_equal(tp_test_promtool_check(text), 0);
    free(text);
    tp_metrics_destroy(r);
}

static double read_fn(void *arg) {
    return *(double *)arg;
}

/* Nasty label values and help text: escaped exactly, accepted by promtool. */
static void test_escaping(void **state) {
    tp_metrics *r;
    tp_gauge *g;
    tp_counter *c;
    assert_int_equal(tp_metrics_create(&r), 0);
    tp_label l[2] = {{"path", "C:\\dir\\\"q\"\nnext"}, {"emoji", "caf\xc3\xa9 {x=\"}\",}"}};
    assert_int_equal(
        tp_metrics_gauge(r, "nasty", "Help with \\ backslash\nand \"quotes\".", l, 2, &g), 0);
    tp_gauge_set(g, -0.25);
    double v = NAN;
    void *fnh;
    tp_label l2[2] = {{"path", ""}, {"emoji", "#"}};
    assert_int_equal(tp_metrics_gauge_fn(r, "nasty", "Help with \\ backslash\nand \"quotes\".", l2,
                                         2, read_fn, &v, &fnh),
                     0);
    double big = 1e300;
    assert_int_equal(tp_metrics_counter_fn(r, "big_total", "x", NULL, 0, read_fn, &big, NULL), 0);
    tp_label empty = {"pool", ""};
    assert_int_equal(tp_metrics_counter(r, "e_total", "x", &empty, 1, &c), 0);
    char *text = render(r);
    const char *want =
        "# HELP nasty Help with \\\\ backslash\\nand \"quotes\".\n"
        "# TYPE nasty gauge\n"
        "nasty{path=\"C:\\\\dir\\\\\\\"q\\\"\\nnext\",emoji=\"caf\xc3\xa9 {x=\\\"}\\\",}\"} -0.25\n"
        "nasty{path=\"\",emoji=\"#\"} NaN\n"
        "# HELP big_total x\n"
        "# TYPE big_total counter\n"
        "big_total 1e+300\n"
        "# HELP e_total x\n"
        "# TYPE e_total counter\n"
        "e_total{pool=\"\"} 0\n";
    assert_string_equal(text, want);
    assert_int_equal(tp_test_promtool_check(text), 0);
    free(text);
    /* the callback series goes away with unregister */
    assert_int_equal(tp_metrics_unregister(r, fnh), 0);
    text = render(r);
    assert_null(strstr(text, "NaN"));
    free(text);
    tp_metrics_destroy(r);
}

static void test_json(void **state) {
    tp_metrics *r;
    tp_counter *c;
    tp_histogram *h;
    assert_int_equal(tp_metrics_create(&r), 0);
    tp_label l = {"pool", "q\"\\\n\x01"};
    assert_int_equal(tp_metrics_counter(r, "x_total", "X \"help\"", &l, 1, &c), 0);
    tp_counter_add(c, 7);
    double b[2] = {0.5, 1};
    assert_int_equal(tp_metrics_histogram(r, "d_seconds", "D", NULL, 0, b, 2, &h), 0);
    tp_histogram_observe(h, 0.75);
    tp_histogram_observe(h, 0.25);
    char *js;
    size_t len;
    assert_int_equal(tp_metrics_render_json(r, &js, &len), 0);
    const char *want =
        "{\"families\":["
        "{\"name\":\"x_total\",\"type\":\"counter\",\"help\":\"X \\\"help\\\"\",\"series\":["
        "{\"labels\":{\"pool\":\"q\\\"\\\\\\n\\u0001\"},\"value\":7}]},"
        "{\"name\":\"d_seconds\",\"type\":\"histogram\",\"help\":\"D\",\"series\":["
        "{\"labels\":{},\"buckets\":[{\"le\":0.5,\"count\":1},{\"le\":1,\"count\":2},"
        "{\"le\":\"+Inf\",\"count\":2}],\"count\":2,\"sum\":1}]}]}\n";
    assert_string_equal(js, want);
    assert_int_equal(len, strlen(want));
    free(js);
    /* python's json module agrees it is JSON (when python3 is around) */
    if (system("command -v python3 >/dev/null 2>&1") == 0) {
        assert_int_equal(tp_metrics_render_json(r, &js, &len), 0);
        char path[] = "/tmp/tp_metrics_json_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, js, len), (ssize_t)len);
        close(fd);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "python3 -c 'import json,sys; json.load(open(\"%s\"))'", path);
        assert_int_equal(system(cmd), 0);
        unlink(path);
        free(js);
    }
    assert_int_equal(tp_metrics_render_json(NULL, &js, &len), -EINVAL);
    assert_int_equal(tp_metrics_render_text(r, NULL, &len), -EINVAL);
    tp_metrics_destroy(r);
}

/* An empty registry renders to an empty (valid) exposition. */
static void test_empty(void **state) {
    tp_metrics *r;
    assert_int_equal(tp_metrics_create(&r), 0);
    char *text = render(r);
    assert_string_equal(text, "");
    free(text);
    tp_metrics_destroy(r);
    tp_metrics_destroy(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_validated),
        cmocka_unit_test(test_family_consistency),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
