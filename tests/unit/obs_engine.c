/* SPDX-License-Identifier: MIT */
/*
 * Engine collector: after a hash job (one good file, one missing) and a
 * tp_file_chunks run, the scraped series pass promtool and carry exactly
 * the values of tp_engine_stats (bytes_in = the file's size, files split
 * by result, bounds = the engine's options); bad input is -EINVAL, a
 * second engine of the same name -EEXIST, and destroy removes the series.
 * TP_TEST_TIMEOUT: 60
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>

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

#define CHUNK ((size_t)64 * 1024)
#define FILE_SIZE (3 * CHUNK + 123) /* 4 chunks, the last one short */

static _Atomic uint64_t chunk_bytes;
static _Atomic unsigned chunk_calls;

static int on_chunk(void *arg, uint64_t index, uint64_t offset, const void *data, size_t len) {
    atomic_fetch_add_explicit(&chunk_bytes, len, memory_order_relaxed);
    atomic_fetch_add_explicit(&chunk_calls, 1, memory_order_relaxed);
    return 0;
}

static unsigned results_ok, results_failed;

static void on_result(void *arg, const tp_file_result *r) {
    if (r->err == 0)
        results_ok++;
    else
        results_failed++;
}

/* Every engine series equals the matching tp_engine_stats field. */
static void check_series(tp_metrics *reg, tp_engine *e) {
    struct tp_engine_stats st;
    tp_engine_stats(e, &st); /* the counters do not move between jobs */
    char *text;
    assert_int_equal(tp_metrics_render_text(reg, &text, NULL), 0);
    assert_int_equal(tp_test_promtool_check(text), 0);
    const struct {
        const char *key;
        uint64_t want;
    } rows[] = {
        {"tripool_engine_bytes_in_total{pool=\"eng\"}", st.bytes_in},
        {"tripool_engine_bytes_out_total{pool=\"eng\"}", st.bytes_out},
        {"tripool_engine_chunks_total{pool=\"eng\"}", st.chunks},
        {"tripool_engine_files_total{pool=\"eng\",result=\"ok\"}", st.files_ok},
        {"tripool_engine_files_total{pool=\"eng\",result=\"failed\"}", st.files_failed},
        {"tripool_engine_peak_mem_bytes{pool=\"eng\"}", st.mem_peak},
        {"tripool_engine_max_mem_bytes{pool=\"eng\"}", st.mem_cap},
        {"tripool_engine_peak_open_files{pool=\"eng\"}", st.open_peak},
        {"tripool_engine_max_open_files{pool=\"eng\"}", st.open_cap},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        double v = sample(text, rows[i].key);
        if (v != (double)rows[i].want)
            fail_msg("%s: %g, stats say %llu", rows[i].key, v, (unsigned long long)rows[i].want);
    }
    /* HELP/TYPE once per family even with two files_total series */
    const char *t1 = strstr(text, "# TYPE tripool_engine_files_total counter");
    assert_non_null(t1);
    assert_null(strstr(t1 + 1, "# TYPE tripool_engine_files_total"));
    free(text);
}

static void test_engine_series(void **state) {
    char dir[] = "/tmp/tp_obs_engine_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[300], missing[300];
    snprintf(path, sizeof path, "%s/data", dir);
    snprintf(missing, sizeof missing, "%s/missing", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    unsigned char *buf = malloc(FILE_SIZE);
    assert_non_null(buf);
    for (size_t i = 0; i < FILE_SIZE; i++)
        buf[i] = (unsigned char)(i * 131 + (i >> 9));
    assert_int_equal(write(fd, buf, FILE_SIZE), (ssize_t)FILE_SIZE);
    close(fd);
    free(buf);

    tp_engine_opts eo;
    tp_engine_opts_init(&eo);
    eo.workers = 2;
    eo.chunk_size = CHUNK;
    eo.max_mem = 4 << 20;
    eo.max_open = 3;
    tp_engine *e;
    assert_int_equal(tp_engine_create(&e, &eo), 0);
    tp_metrics *reg;
    assert_int_equal(tp_metrics_create(&reg), 0);

    tp_obs_engine *oe, *dup;
    assert_int_equal(tp_obs_register_engine(NULL, "eng", e, &dup), -EINVAL);
    assert_int_equal(tp_obs_register_engine(reg, NULL, e, &dup), -EINVAL);
    assert_int_equal(tp_obs_register_engine(reg, "eng", NULL, &dup), -EINVAL);
    assert_int_equal(tp_obs_register_engine(reg, "eng", e, NULL), -EINVAL);
    assert_int_equal(tp_obs_register_engine(reg, "bad\xff", e, &dup), -EINVAL); /* not UTF-8 */
    assert_int_equal(tp_obs_register_engine(reg, "eng", e, &oe), 0);
    assert_int_equal(tp_obs_register_engine(reg, "eng", e, &dup), -EEXIST);

    /* before any job: zero counters, the bounds from the options */
    check_series(reg, e);
    char *text;
    assert_int_equal(tp_metrics_render_text(reg, &text, NULL), 0);
    assert_true(sample(text, "tripool_engine_bytes_in_total{pool=\"eng\"}") == 0);
    assert_true(sample(text, "tripool_engine_max_mem_bytes{pool=\"eng\"}") == (double)(4 << 20));
    assert_true(sample(text, "tripool_engine_max_open_files{pool=\"eng\"}") == 3);
    free(text);

    /* a hash job: one file read whole, one missing */
    tp_job job = {.op = TP_OP_HASH, .alg = TP_HASH_XXH3, .on_result = on_result};
    const char *paths[] = {path, missing};
    assert_int_equal(tp_engine_run(e, &job, paths, 2), 1); /* some failed */
    assert_int_equal(results_ok, 1);
    assert_int_equal(results_failed, 1);
    check_series(reg, e);
    assert_int_equal(tp_metrics_render_text(reg, &text, NULL), 0);
    assert_true(sample(text, "tripool_engine_bytes_in_total{pool=\"eng\"}") == (double)FILE_SIZE);
    assert_true(sample(text, "tripool_engine_files_total{pool=\"eng\",result=\"ok\"}") == 1);
    assert_true(sample(text, "tripool_engine_files_total{pool=\"eng\",result=\"failed\"}") == 1);
    assert_true(sample(text, "tripool_engine_chunks_total{pool=\"eng\"}") >= 1);
    double peak_mem = sample(text, "tripool_engine_peak_mem_bytes{pool=\"eng\"}");
    assert_true(peak_mem > 0 && peak_mem <= (double)(4 << 20));
    double peak_open = sample(text, "tripool_engine_peak_open_files{pool=\"eng\"}");
    assert_true(peak_open >= 1 && peak_open <= 3);
    free(text);

    /* the generic chunk call adds the file once more */
    assert_int_equal(tp_file_chunks(e, path, on_chunk, NULL), 0);
    assert_int_equal(atomic_load(&chunk_bytes), FILE_SIZE);
    assert_int_equal(atomic_load(&chunk_calls), 4);
    check_series(reg, e);
    struct tp_engine_stats st;
    tp_engine_stats(e, &st);
    assert_int_equal(st.bytes_in, 2 * FILE_SIZE);

    tp_obs_engine_destroy(oe);
    assert_int_equal(tp_metrics_render_text(reg, &text, NULL), 0);
    assert_null(strstr(text, "tripool_engine")); /* every series is gone */
    free(text);
    /* the name is free again */
    assert_int_equal(tp_obs_register_engine(reg, "eng", e, &oe), 0);
    tp_obs_engine_destroy(oe);
    tp_obs_engine_destroy(NULL);
    tp_metrics_destroy(reg);
    tp_engine_destroy(e);
    assert_int_equal(tp_test_rm_rf(dir), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_series),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
