/* SPDX-License-Identifier: MIT */
/* Contract tests: the library promises of include/tripool/engine.h (the
 * engine's failure paths under injected faults are tested elsewhere).
 * TP_TEST_TIMEOUT: 60
 *
 * Index: header sentence -> test (here unless a file is named).
 *  "buffer memory never exceeds max_mem ... input descriptors never exceed
 *   max_open"                                  engine_core.c test_file_chunks;
 * test_bounds_many_files "Output files are written to a temporary name ..., fsynced and renamed
 *   only when complete"                        engine_core.c test_cancel (no temp, no output);
 *                                              tests/cli/robust.sh
 *  "Existing outputs are never replaced unless tp_job.force is set"; "such an
 *   input fails with -EEXIST (err_op "output exists"), nothing is written"
 *                                              test_existing_output_kept; tests/cli/overwrite.sh
 *  "A file that grows is processed up to its planned size ... a file that
 *   shrinks below it fails with -EIO"          engine_core.c test_file_changes_during_run
 *  "tp_engine_cancel() (or cancelling the parent context) stops a running job
 *   ... temporary files are removed and the job returns -ECANCELED"
 *                                              engine_core.c test_cancel
 *  "Cancel the running and every later job"   engine_core.c test_errors_and_order
 *  "chunk_size ... 4 KiB .. 1 GiB"; "max_open ... >= 1"; "workers 1..4096"
 *                                              test_option_ranges
 *  "max_mem ... 3/4 of it must hold 2 chunks" engine_core.c test_errors_and_order;
 * test_option_ranges "pool_setup: Called once by tp_engine_create, on its thread, with the options
 * of the engine's task pool ... (max_workers is already `workers`). A nonzero return ... makes
 * tp_engine_create fail with it." test_pool_setup "tp_engine_destroy ... e may be NULL"
 * test_option_ranges "tp_engine_pool / bufpool / fdpool ... valid until tp_engine_destroy"
 *                                              test_bounds_many_files
 *  "Progress ... bytes consumed so far and bytes planned"  test_bounds_many_files
 *  tp_chunk_fn "in no particular order and possibly in parallel";
 *   tp_file_chunks "Returns 0, the first error of fn or of a read (-ENOENT,
 *   -EISDIR, ...) ... An empty file calls fn once with len 0"
 *                                              engine_core.c test_file_chunks; test_chunks_fn_error
 *  tp_result_fn "Called on the thread running tp_engine_run, in input order,
 *   once per file"                             test_results_thread_and_order;
 *                                              engine_core.c test_errors_and_order
 *  "digest: canonical (big-endian) bytes; digest_len 4, 8 or 16"
 *                                              engine_core.c test_jobs_match_direct;
 * test_digest_lengths "remove_src: delete the input after the output is fsynced and verified"
 *                                              test_remove_src
 *  tp_engine_run "Returns 0 when every input succeeded, 1 when some failed,
 *   -ECANCELED ..., or -EINVAL (bad job: out_path with several inputs,
 *   unknown op)"                               engine_core.c test_errors_and_order; test_unknown_op
 *  tp_crc32c / _combine / tp_count_newlines   engine_core.c test_crc32c, test_scans
 */
#include "tp_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>

#include "tripool/engine.h"

static char tmpdir[256];

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tp_engine_contract_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return tp_test_rm_rf(tmpdir);
}

static char *path_of(const char *name) {
    char *p = malloc(strlen(tmpdir) + strlen(name) + 2);
    assert_non_null(p);
    sprintf(p, "%s/%s", tmpdir, name);
    return p;
}

static char *write_file(const char *name, const void *data, size_t n) {
    char *p = path_of(name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
    return p;
}

static size_t read_file(const char *p, char *buf, size_t cap) {
    int fd = open(p, O_RDONLY);
    if (fd < 0) return (size_t)-1;
    ssize_t n = read(fd, buf, cap);
    close(fd);
    return n < 0 ? (size_t)-1 : (size_t)n;
}

struct results {
    size_t n;
    int err[16];
    char err_op[16][32];
    size_t index[16], digest_len[16];
    pthread_t thread[16];
};

static void collect(void *arg, const tp_file_result *r) {
    struct results *s = arg;
    if (s->n < 16) {
        s->err[s->n] = r->err;
        snprintf(s->err_op[s->n], sizeof s->err_op[0], "%s", r->err ? r->err_op : "");
        s->index[s->n] = r->index;
        s->digest_len[s->n] = r->digest_len;
        s->thread[s->n] = pthread_self();
    }
    s->n++;
}

static tp_engine *small_engine(void) {
    tp_engine_opts o;
    tp_engine_opts_init(&o);
    o.workers = 2;
    o.chunk_size = 4096;
    o.max_mem = 1 << 20;
    tp_engine *e;
    assert_int_equal(tp_engine_create(&e, &o), 0);
    return e;
}

/* "Existing outputs are never replaced unless tp_job.force is set. Default:
 * such an input fails with -EEXIST (err_op "output exists"), nothing is
 * written" - for compress, decompress and copy. */
static void test_existing_output_kept(void **state) {
    (void)state;
    tp_engine *e = small_engine();
    char data[10000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)('a' + i % 23);
    char *src = write_file("src", data, sizeof data);
    char *zst = write_file("src.zst", "OLD", 3);
    char *cp = write_file("copy", "OLD", 3);
    const char *paths[] = {src};
    struct results res = {0};
    tp_job j = {.op = TP_OP_COMPRESS, .level = 3, .on_result = collect, .arg = &res};
    assert_int_equal(tp_engine_run(e, &j, paths, 1), 1);
    assert_int_equal(res.n, 1);
    assert_int_equal(res.err[0], -EEXIST);
    assert_string_equal(res.err_op[0], "output exists");
    char buf[20000];
    assert_int_equal(read_file(zst, buf, sizeof buf), 3);
    assert_memory_equal(buf, "OLD", 3);

    tp_job jc = {.op = TP_OP_COPY, .out_path = cp, .on_result = collect, .arg = &res};
    res.n = 0;
    assert_int_equal(tp_engine_run(e, &jc, paths, 1), 1);
    assert_int_equal(res.err[0], -EEXIST);
    assert_int_equal(read_file(cp, buf, sizeof buf), 3);

    /* force: replaced, complete */
    j.force = jc.force = true;
    res.n = 0;
    assert_int_equal(tp_engine_run(e, &j, paths, 1), 0);
    assert_int_equal(res.err[0], 0);
    res.n = 0;
    assert_int_equal(tp_engine_run(e, &jc, paths, 1), 0);
    assert_int_equal(read_file(cp, buf, sizeof buf), sizeof data);
    assert_memory_equal(buf, data, sizeof data);

    /* decompress onto an existing file: kept */
    const char *zpaths[] = {zst};
    char *back = write_file("back", "OLD", 3);
    tp_job jd = {.op = TP_OP_DECOMPRESS, .out_path = back, .on_result = collect, .arg = &res};
    res.n = 0;
    assert_int_equal(tp_engine_run(e, &jd, zpaths, 1), 1);
    assert_int_equal(res.err[0], -EEXIST);
    assert_int_equal(read_file(back, buf, sizeof buf), 3);
    jd.force = true;
    res.n = 0;
    assert_int_equal(tp_engine_run(e, &jd, zpaths, 1), 0);
    assert_int_equal(read_file(back, buf, sizeof buf), sizeof data);
    assert_memory_equal(buf, data, sizeof data);
    tp_engine_destroy(e);
    free(src);
    free(zst);
    free(cp);
    free(back);
}

/* "chunk_size ... 4 KiB .. 1 GiB", "max_open ... >= 1", "workers" 1..4096,
 * "3/4 of it [max_mem] must hold 2 chunks"; "e may be NULL". */
static void test_option_ranges(void **state) {
    (void)state;
    tp_engine_opts o;
    tp_engine *e = (tp_engine *)1;
    tp_engine_opts_init(&o);
    o.chunk_size = 4096 - 1;
    assert_int_equal(tp_engine_create(&e, &o), -EINVAL);
    assert_null(e);
    o.chunk_size = (size_t)1 << 30;
    o.max_mem = (size_t)3 << 30;
    o.workers = 1;
    assert_int_equal(tp_engine_create(&e, &o), 0); /* the largest chunk is accepted */
    tp_engine_destroy(e);
    o.chunk_size = ((size_t)1 << 30) + 1;
    assert_int_equal(tp_engine_create(&e, &o), -EINVAL);
    tp_engine_opts_init(&o);
    o.max_open = 0;
    assert_int_equal(tp_engine_create(&e, &o), -EINVAL);
    o.max_open = 1;
    o.workers = 4097;
    assert_int_equal(tp_engine_create(&e, &o), -EINVAL);
    o.workers = 1;
    o.chunk_size = 4096;
    o.max_mem = 4 * 4096; /* 3/4 = 12 KiB: holds 2 chunks */
    assert_int_equal(tp_engine_create(&e, &o), 0);
    tp_engine_destroy(e);
    o.max_mem = 2 * 4096; /* 3/4 = 6 KiB: does not */
    assert_int_equal(tp_engine_create(&e, &o), -EINVAL);
    assert_int_equal(tp_engine_create(NULL, NULL), -EINVAL);
    tp_engine_destroy(NULL);
}

struct setup_log {
    unsigned calls;
    unsigned max_workers;
    pthread_t thread;
    int ret;
};

static int pool_setup(tp_pool_opts *po, void *arg) {
    struct setup_log *l = arg;
    l->calls++;
    l->max_workers = po->max_workers;
    l->thread = pthread_self();
    return l->ret;
}

/* pool_setup: "Called once by tp_engine_create, on its thread, with the
 * options of the engine's task pool just before the pool is created
 * (max_workers is already `workers`). A nonzero return (a negative errno)
 * makes tp_engine_create fail with it." */
static void test_pool_setup(void **state) {
    (void)state;
    int threads = tp__thread_count();
    tp_engine_opts o;
    tp_engine_opts_init(&o);
    o.workers = 3;
    struct setup_log l = {0};
    o.pool_setup = pool_setup;
    o.pool_setup_arg = &l;
    tp_engine *e;
    assert_int_equal(tp_engine_create(&e, &o), 0);
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.max_workers, 3);
    assert_true(pthread_equal(l.thread, pthread_self()));
    tp_engine_destroy(e);
    l = (struct setup_log){.ret = -ENOTSUP};
    e = (tp_engine *)1;
    assert_int_equal(tp_engine_create(&e, &o), -ENOTSUP);
    assert_null(e);
    assert_int_equal(l.calls, 1);
    assert_int_equal(tp__thread_count(), threads); /* nothing left running */
}

/* "Bounds: buffer memory never exceeds max_mem ..., input descriptors never
 * exceed max_open" over a job of many files; progress done == total at the
 * end; the engine's pools are readable. */
static void test_bounds_many_files(void **state) {
    (void)state;
    tp_engine_opts o;
    tp_engine_opts_init(&o);
    o.workers = 4;
    o.chunk_size = 4096;
    o.max_mem = 64 * 1024;
    o.max_open = 2;
    tp_engine *e;
    assert_int_equal(tp_engine_create(&e, &o), 0);
    enum { N = 12 };
    char *p[N];
    const char *paths[N];
    char data[20000];
    memset(data, 'x', sizeof data);
    uint64_t total = 0;
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "f%d", i);
        size_t n = (size_t)(i * 1700);
        p[i] = write_file(name, data, n);
        paths[i] = p[i];
        total += n;
    }
    struct results res = {0};
    tp_job j = {.op = TP_OP_HASH, .alg = TP_HASH_CRC32C, .on_result = collect, .arg = &res};
    assert_int_equal(tp_engine_run(e, &j, paths, N), 0);
    assert_int_equal(res.n, N);
    struct tp_engine_stats st;
    tp_engine_stats(e, &st);
    assert_true(st.mem_peak <= o.max_mem);
    assert_true(st.open_peak <= o.max_open);
    assert_int_equal(st.mem_cap, o.max_mem);
    assert_int_equal(st.open_cap, o.max_open);
    assert_int_equal(st.files_ok, N);
    assert_int_equal(st.bytes_in, total);
    uint64_t done, planned;
    tp_engine_progress(e, &done, &planned);
    assert_int_equal(done, planned);
    assert_int_equal(planned, total);
    assert_non_null(tp_engine_pool(e));
    assert_non_null(tp_engine_bufpool(e));
    assert_non_null(tp_engine_fdpool(e));
    tp_engine_destroy(e);
    for (int i = 0; i < N; i++)
        free(p[i]);
}

static int fail_on_5(void *arg, uint64_t index, uint64_t off, const void *d, size_t len) {
    (void)arg, (void)off, (void)d, (void)len;
    return index == 5 ? -E2BIG : 0;
}

/* tp_file_chunks "Returns 0, the first error of fn" */
static void test_chunks_fn_error(void **state) {
    (void)state;
    tp_engine *e = small_engine();
    char data[4096 * 10];
    memset(data, 'y', sizeof data);
    char *p = write_file("chunks", data, sizeof data);
    assert_int_equal(tp_file_chunks(e, p, fail_on_5, NULL), -E2BIG);
    /* the engine is still usable */
    assert_int_equal(tp_file_chunks(e, p, fail_on_5, NULL), -E2BIG);
    tp_engine_destroy(e);
    free(p);
}

/* tp_result_fn: "Called on the thread running tp_engine_run, in input
 * order, once per file." */
static void test_results_thread_and_order(void **state) {
    (void)state;
    tp_engine *e = small_engine();
    char data[30000];
    memset(data, '\n', sizeof data);
    enum { N = 10 };
    char *p[N];
    const char *paths[N];
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "o%d", i);
        /* big first, small last: the small ones finish first */
        p[i] = write_file(name, data, sizeof data - (size_t)i * 2900);
        paths[i] = p[i];
    }
    struct results res = {0};
    tp_job j = {.op = TP_OP_COUNT, .on_result = collect, .arg = &res};
    assert_int_equal(tp_engine_run(e, &j, paths, N), 0);
    assert_int_equal(res.n, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(res.index[i], i);
        assert_true(pthread_equal(res.thread[i], pthread_self()));
    }
    tp_engine_destroy(e);
    for (int i = 0; i < N; i++)
        free(p[i]);
}

/* "digest_len: 4, 8 or 16" per algorithm */
static void test_digest_lengths(void **state) {
    (void)state;
    tp_engine *e = small_engine();
    char *p = write_file("d", "hello\n", 6);
    const char *paths[] = {p};
    tp_hash_alg algs[] = {TP_HASH_XXH3, TP_HASH_XXH128, TP_HASH_XXH64, TP_HASH_XXH32,
                          TP_HASH_CRC32C};
    size_t want[] = {8, 16, 8, 4, 4};
    for (int i = 0; i < 5; i++) {
        struct results res = {0};
        tp_job j = {.op = TP_OP_HASH, .alg = algs[i], .on_result = collect, .arg = &res};
        assert_int_equal(tp_engine_run(e, &j, paths, 1), 0);
        assert_int_equal(res.digest_len[0], want[i]);
    }
    tp_engine_destroy(e);
    free(p);
}

/* "remove_src: delete the input after the output is fsynced and verified" */
static void test_remove_src(void **state) {
    (void)state;
    tp_engine *e = small_engine();
    char data[50000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 7);
    char *p = write_file("rm", data, sizeof data);
    const char *paths[] = {p};
    struct results res = {0};
    tp_job j = {
        .op = TP_OP_COMPRESS, .level = 3, .remove_src = true, .on_result = collect, .arg = &res};
    assert_int_equal(tp_engine_run(e, &j, paths, 1), 0);
    assert_int_equal(access(p, F_OK), -1); /* input gone */
    char *z = path_of("rm.zst");
    const char *zp[] = {z};
    tp_job jd = {.op = TP_OP_DECOMPRESS, .remove_src = true, .on_result = collect, .arg = &res};
    assert_int_equal(tp_engine_run(e, &jd, zp, 1), 0);
    assert_int_equal(access(z, F_OK), -1);
    char buf[60000];
    assert_int_equal(read_file(p, buf, sizeof buf), sizeof data);
    assert_memory_equal(buf, data, sizeof data);
    tp_engine_destroy(e);
    free(p);
    free(z);
}

/* tp_engine_run "-EINVAL (bad job: ... unknown op)", without a result */
static void test_unknown_op(void **state) {
    (void)state;
    tp_engine *e = small_engine();
    char *p = write_file("u", "x", 1);
    const char *paths[] = {p};
    struct results res = {0};
    tp_job j = {.op = (tp_job_op)99, .on_result = collect, .arg = &res};
    assert_int_equal(tp_engine_run(e, &j, paths, 1), -EINVAL);
    assert_int_equal(res.n, 0);
    tp_engine_destroy(e);
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_existing_output_kept),
        cmocka_unit_test(test_option_ranges),
        cmocka_unit_test(test_pool_setup),
        cmocka_unit_test(test_bounds_many_files),
        cmocka_unit_test(test_chunks_fn_error),
        cmocka_unit_test(test_results_thread_and_order),
        cmocka_unit_test(test_digest_lengths),
        cmocka_unit_test(test_remove_src),
        cmocka_unit_test(test_unknown_op),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
