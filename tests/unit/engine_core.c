/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 60
 * The engine's building blocks (crc32c + combine, seek table, line scans)
 * and its pipeline: every chunk exactly once, results equal to a direct
 * computation around chunk boundaries, round trips, bounds, cancellation. */
#include "tp_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>

#include <xxhash.h>

#include "engine/engine_internal.h"
#include "tripool/engine.h"

static char tmpdir[256];

static void rand_fill(unsigned char *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = (unsigned char)(seed >> 56);
    }
}

/* Bitwise reference CRC-32C. */
static uint32_t crc_ref(const unsigned char *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static void test_crc32c(void **state) {
    (void)state;
    assert_int_equal(tp_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(tp_crc32c(0, "", 0), 0);
    size_t n = 100000;
    unsigned char *b = malloc(n);
    assert_non_null(b);
    rand_fill(b, n, 7);
    uint32_t whole = tp_crc32c(0, b, n);
    assert_int_equal(whole, crc_ref(b, n));
    /* Incremental and combined over many split points, also unaligned. */
    for (size_t cut = 0; cut <= n; cut += 4999) {
        uint32_t a = tp_crc32c(0, b, cut), c = tp_crc32c(0, b + cut, n - cut);
        assert_int_equal(tp_crc32c(a, b + cut, n - cut), whole);
        assert_int_equal(tp_crc32c_combine(a, c, n - cut), whole);
    }
    /* Odd lengths and offsets exercise the byte paths. */
    for (size_t off = 0; off < 9; off++)
        for (size_t len = 0; len < 40; len += 3)
            assert_int_equal(tp_crc32c(0, b + off, len), crc_ref(b + off, len));
    free(b);
}

static void test_seek_table(void **state) {
    (void)state;
    uint32_t sizes[6] = {100, 4000, 200, 4000, 7, 3};
    size_t n = tp__seek_table_size(3);
    assert_int_equal(n, 8 + 3 * 8 + 9);
    unsigned char *t = malloc(n);
    tp__seek_table_write(t, sizes, 3);
    int sums = -1;
    assert_int_equal(tp__seek_footer_parse(t + n - 9, &sums), 3);
    assert_int_equal(sums, 0);
    t[n - 1] ^= 1; /* broken magic */
    assert_int_equal(tp__seek_footer_parse(t + n - 9, &sums), -EINVAL);
    free(t);
    for (size_t c = 4096; c <= ((size_t)64 << 20); c *= 2)
        assert_true(tp__compress_input_len(c) < c && tp__compress_input_len(c) > c / 2);
}

static void test_scans(void **state) {
    (void)state;
    const char *s = "abc\nxabcx\n\nab\nabc";
    assert_int_equal(tp_count_newlines(s, strlen(s)), 4);
    assert_int_equal(tp__count_matches(s, strlen(s), "abc", 3), 3);
    assert_int_equal(tp__count_matches(s, strlen(s), "", 0), 5);
    assert_int_equal(tp__count_matches(s, strlen(s), "zz", 2), 0);
    /* Vector path against a byte loop. */
    size_t n = 5000;
    unsigned char *b = malloc(n);
    rand_fill(b, n, 3);
    for (size_t i = 0; i < n; i++)
        b[i] = b[i] < 40 ? '\n' : b[i];
    for (size_t off = 0; off < 70; off += 7) {
        uint64_t want = 0;
        for (size_t i = off; i < n; i++)
            want += b[i] == '\n';
        assert_int_equal(tp_count_newlines(b + off, n - off), want);
    }
    free(b);
}

static char *write_file(const char *name, const void *data, size_t n) {
    char *p = malloc(strlen(tmpdir) + strlen(name) + 2);
    sprintf(p, "%s/%s", tmpdir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
    return p;
}

struct cover {
    size_t n;
    _Atomic(unsigned) *hits; /* per chunk index */
    _Atomic(uint64_t) bytes;
    const unsigned char *expect;
};

static int cover_fn(void *arg, uint64_t index, uint64_t off, const void *data, size_t len) {
    struct cover *c = arg;
    if (index >= c->n) return -ERANGE;
    atomic_fetch_add(&c->hits[index], 1);
    atomic_fetch_add(&c->bytes, len);
    if (len && memcmp(c->expect + off, data, len) != 0) return -EBADMSG;
    return 0;
}

static void test_file_chunks(void **state) {
    (void)state;
    tp_engine_opts o;
    tp_engine_opts_init(&o);
    o.workers = 3;
    o.chunk_size = 4096;
    o.max_mem = 3 * 8192; /* tiny: the window must recycle buffers */
    o.max_open = 2;
    tp_engine *e;
    assert_int_equal(tp_engine_create(&e, &o), 0);
    size_t sizes[] = {0, 1, 4095, 4096, 4097, 8192, 100000};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        unsigned char *b = malloc(n + 1);
        rand_fill(b, n, s + 11);
        char *p = write_file("chunks", b, n);
        struct cover c = {.n = n / 4096 + 2, .expect = b};
        c.hits = calloc(c.n, sizeof(*c.hits));
        assert_int_equal(tp_file_chunks(e, p, cover_fn, &c), 0);
        size_t want_chunks = n ? (n + 4095) / 4096 : 1;
        for (size_t i = 0; i < c.n; i++)
            assert_int_equal(atomic_load(&c.hits[i]), i < want_chunks ? 1 : 0);
        assert_int_equal(atomic_load(&c.bytes), n);
        free(c.hits);
        unlink(p);
        free(p);
        free(b);
    }
    struct tp_engine_stats st;
    tp_engine_stats(e, &st);
    assert_true(st.mem_peak <= o.max_mem);
    assert_true(st.open_peak <= o.max_open);
    assert_int_equal(tp_file_chunks(e, "/nonexistent/x", cover_fn, NULL), -ENOENT);
    assert_int_equal(tp_file_chunks(e, tmpdir, cover_fn, NULL), -EISDIR);
    tp_engine_destroy(e);
}

struct results {
    size_t n;
    tp_file_result r[16];
    char paths[16][256];
};

static void collect(void *arg, const tp_file_result *r) {
    struct results *s = arg;
    if (s->n < 16) {
        s->r[s->n] = *r;
        snprintf(s->paths[s->n], sizeof(s->paths[0]), "%s", r->path);
        s->r[s->n].path = s->paths[s->n];
        s->r[s->n].out_path = NULL;
    }
    s->n++;
}

static void test_jobs_match_direct(void **state) {
    (void)state;
    tp_engine_opts o;
    tp_engine_opts_init(&o);
    o.workers = 2;
    o.chunk_size = 4096;
    o.max_mem = 1 << 20;
    tp_engine *e;
    assert_int_equal(tp_engine_create(&e, &o), 0);
    size_t sizes[] = {0, 1, 240, 4095, 4096, 4097, 12288, 50001, 300001};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        unsigned char *b = malloc(n + 1);
        rand_fill(b, n, s + 100);
        for (size_t i = 0; i < n; i++) /* lines of random length, some with "ab" */
            b[i] = b[i] < 8 ? '\n' : (b[i] < 30 ? 'a' + (b[i] & 1) : 'z');
        char *p = write_file("job", b, n);
        const char *paths[] = {p};
        struct results res = {0};
        tp_job j = {.op = TP_OP_HASH, .alg = TP_HASH_XXH64, .on_result = collect, .arg = &res};
        assert_int_equal(tp_engine_run(e, &j, paths, 1), 0);
        assert_int_equal(res.n, 1);
        XXH64_canonical_t cn;
        XXH64_canonicalFromHash(&cn, XXH64(b, n, 0));
        assert_memory_equal(res.r[0].digest, &cn, 8);
        /* XXH3 64/128 (AVX2 build when available) equal the library's. */
        j.alg = TP_HASH_XXH3;
        res.n = 0;
        assert_int_equal(tp_engine_run(e, &j, paths, 1), 0);
        XXH64_canonicalFromHash(&cn, XXH3_64bits(b, n));
        assert_memory_equal(res.r[0].digest, &cn, 8);
        j.alg = TP_HASH_XXH128;
        res.n = 0;
        assert_int_equal(tp_engine_run(e, &j, paths, 1), 0);
        XXH128_canonical_t c128;
        XXH128_canonicalFromHash(&c128, XXH3_128bits(b, n));
        assert_memory_equal(res.r[0].digest, &c128, 16);
        j.alg = TP_HASH_CRC32C;
        res.n = 0;
        assert_int_equal(tp_engine_run(e, &j, paths, 1), 0);
        uint32_t crc = tp_crc32c(0, b, n);
        unsigned char be[4] = {crc >> 24, crc >> 16, crc >> 8, crc};
        assert_memory_equal(res.r[0].digest, be, 4);
        /* count lines containing "ab" against a direct scan */
        uint64_t want = 0;
        size_t ls = 0;
        for (size_t i = 0; i <= n; i++) {
            if (i == n || b[i] == '\n') {
                if (i > ls || i < n) want += memmem(b + ls, i - ls, "ab", 2) != NULL;
                ls = i + 1;
            }
        }
        tp_job jc = {.op = TP_OP_COUNT, .pattern = "ab", .on_result = collect, .arg = &res};
        res.n = 0;
        assert_int_equal(tp_engine_run(e, &jc, paths, 1), 0);
        assert_int_equal(res.r[0].count, want);
        /* compress, then decompress to another name: byte identical */
        char *z = malloc(strlen(p) + 8), *back = malloc(strlen(p) + 8);
        sprintf(z, "%s.zst", p);
        sprintf(back, "%s.back", p);
        tp_job jz = {
            .op = TP_OP_COMPRESS, .level = 3, .no_fsync = true, .on_result = collect, .arg = &res};
        res.n = 0;
        assert_int_equal(tp_engine_run(e, &jz, paths, 1), 0);
        const char *zp[] = {z};
        tp_job jd = {.op = TP_OP_DECOMPRESS,
                     .out_path = back,
                     .no_fsync = true,
                     .on_result = collect,
                     .arg = &res};
        res.n = 0;
        assert_int_equal(tp_engine_run(e, &jd, zp, 1), 0);
        assert_int_equal(res.r[0].bytes_out, n);
        int fd = open(back, O_RDONLY);
        unsigned char *rb = malloc(n + 1);
        assert_int_equal(read(fd, rb, n + 1), (ssize_t)n);
        close(fd);
        assert_memory_equal(rb, b, n);
        unlink(z);
        unlink(back);
        unlink(p);
        free(rb);
        free(z);
        free(back);
        free(p);
        free(b);
    }
    tp_engine_destroy(e);
}

static void test_errors_and_order(void **state) {
    (void)state;
    tp_engine *e;
    tp_engine_opts o;
    tp_engine_opts_init(&o);
    o.chunk_size = 1 << 20;
    o.max_mem = 1 << 20; /* less than two chunks */
    assert_int_equal(tp_engine_create(&e, &o), -EINVAL);
    o.max_mem = 8 << 20;
    o.workers = 0;
    assert_int_equal(tp_engine_create(&e, &o), -EINVAL);
    assert_int_equal(tp_engine_create(&e, NULL), 0);
    char *a = write_file("a", "x\n", 2);
    const char *paths[] = {a, "/nonexistent/y", tmpdir, a};
    struct results res = {0};
    tp_job j = {.op = TP_OP_COUNT, .on_result = collect, .arg = &res};
    assert_int_equal(tp_engine_run(e, &j, paths, 4), 1); /* some failed */
    assert_int_equal(res.n, 4);
    assert_int_equal(res.r[0].err, 0);
    assert_int_equal(res.r[0].count, 1);
    assert_int_equal(res.r[1].err, -ENOENT);
    assert_int_equal(res.r[2].err, -EISDIR);
    assert_int_equal(res.r[3].index, 3);
    tp_job bad = {.op = TP_OP_COMPRESS, .level = 3, .out_path = "x"};
    assert_int_equal(tp_engine_run(e, &bad, paths, 2), -EINVAL);
    bad.level = 99;
    assert_int_equal(tp_engine_run(e, &bad, paths, 1), -EINVAL);
    tp_engine_cancel(e);
    assert_int_equal(tp_engine_run(e, &j, paths, 1), -ECANCELED);
    unlink(a);
    free(a);
    tp_engine_destroy(e);
}

struct cancel_arg {
    tp_engine *e;
    _Atomic(unsigned) seen;
};

static int cancel_fn(void *arg, uint64_t index, uint64_t off, const void *d, size_t len) {
    struct cancel_arg *c = arg;
    if (atomic_fetch_add(&c->seen, 1) == 3) tp_engine_cancel(c->e);
    return 0;
}

static void count_tmp(const char *dir, int *n) {
    DIR *d = opendir(dir);
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tp.")) (*n)++;
    closedir(d);
}

static void test_cancel(void **state) {
    (void)state;
    tp_engine_opts o;
    tp_engine_opts_init(&o);
    o.workers = 2;
    o.chunk_size = 4096;
    o.max_mem = 64 * 1024;
    tp_engine *e;
    assert_int_equal(tp_engine_create(&e, &o), 0);
    size_t n = 4096 * 200;
    unsigned char *b = malloc(n);
    rand_fill(b, n, 5);
    char *p = write_file("c", b, n);
    struct cancel_arg ca = {.e = e};
    assert_int_equal(tp_file_chunks(e, p, cancel_fn, &ca), -ECANCELED);
    assert_true(atomic_load(&ca.seen) < 200);
    tp_engine_destroy(e);

    /* A compress cancelled through the parent context leaves no temp file
     * and no output. */
    tp_ctx *parent;
    assert_int_equal(tp_ctx_with_cancel(NULL, &parent), 0);
    o.ctx = parent;
    assert_int_equal(tp_engine_create(&e, &o), 0);
    tp_ctx_cancel(parent);
    const char *paths[] = {p};
    tp_job j = {.op = TP_OP_COMPRESS, .level = 3};
    assert_int_equal(tp_engine_run(e, &j, paths, 1), -ECANCELED);
    int tmps = 0;
    count_tmp(tmpdir, &tmps);
    assert_int_equal(tmps, 0);
    char z[512];
    snprintf(z, sizeof(z), "%s.zst", p);
    assert_int_equal(access(z, F_OK), -1);
    tp_engine_destroy(e);
    tp_ctx_release(parent);
    unlink(p);
    free(p);
    free(b);
}

struct change_arg {
    const char *path;
    bool shrink;
    _Atomic(uint64_t) bytes;
};

/* On the first chunk, shrink the file to one chunk or grow it by 1 MiB. */
static int change_fn(void *arg, uint64_t index, uint64_t off, const void *d, size_t len) {
    struct change_arg *c = arg;
    (void)off;
    (void)d;
    atomic_fetch_add(&c->bytes, len);
    if (index == 0) {
        if (c->shrink) {
            if (truncate(c->path, 4096) != 0) return -errno;
        } else {
            int fd = open(c->path, O_WRONLY | O_APPEND);
            static char more[1 << 20];
            if (fd < 0 || write(fd, more, sizeof(more)) != (ssize_t)sizeof(more)) return -EIO;
            close(fd);
        }
    }
    return 0;
}

static void test_file_changes_during_run(void **state) {
    (void)state;
    tp_engine_opts o;
    tp_engine_opts_init(&o);
    o.workers = 1; /* chunks run in order: chunk 0 changes the file before the rest are read */
    o.chunk_size = 4096;
    o.max_mem = 3 * 8192;
    tp_engine *e;
    assert_int_equal(tp_engine_create(&e, &o), 0);
    size_t n = 4096 * 64;
    unsigned char *b = calloc(1, n);
    char *p = write_file("grow", b, n);
    /* Growing: the run covers the size seen at the start, exactly once. */
    struct change_arg g = {.path = p, .shrink = false};
    assert_int_equal(tp_file_chunks(e, p, change_fn, &g), 0);
    assert_int_equal(atomic_load(&g.bytes), n);
    /* Shrinking: reads past the new end fail the file with -EIO. */
    assert_int_equal(truncate(p, (off_t)n), 0);
    struct change_arg s = {.path = p, .shrink = true};
    assert_int_equal(tp_file_chunks(e, p, change_fn, &s), -EIO);
    assert_true(atomic_load(&s.bytes) < n);
    unlink(p);
    free(p);
    free(b);
    tp_engine_destroy(e);
}

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/tp_engine_test.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_seek_table),
        cmocka_unit_test(test_scans),
        cmocka_unit_test(test_file_chunks),
        cmocka_unit_test(test_jobs_match_direct),
        cmocka_unit_test(test_errors_and_order),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_file_changes_during_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
