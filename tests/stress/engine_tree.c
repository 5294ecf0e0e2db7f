/* SPDX-License-Identifier: MIT */
/* TP_TEST_TIMEOUT: 120
 * Stress: the engine over a generated tree of a few hundred small files
 * whose sizes sit at and around the chunk size and the compress step
 * (0, 1, k*chunk-1, k*chunk, k*chunk+1, random). Each iteration runs, on a
 * fresh engine with THREADS workers and tight bounds, hash -r (XXH3, then
 * crc32c), count -r, compress -r (with --rm every fourth iteration), and
 * decompress -r --force --rm back over the sources; odd iterations cancel one job mid-run from
 * another thread. Invariants: every reported result equals a sequential reference computed here
 * (digests, line counts, decoded bytes); every input is reported once, in order, unless the job was
 * cancelled; a published .zst always decodes to its source (also after a cancel); no temporary file
 * is ever left; the engine's peak buffer memory <= max_mem, its peak open inputs <= max_open, and
 * the process's descriptors (sampled from /proc/self/fd) never exceed the count before the run +
 * max_open + 8. Usage: stress_engine_tree [THREADS [SCALE [ITER]]] THREADS workers (default 3),
 * SCALE x 100 files (default 3), ITER (default 4). */
#include "tp_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>

#include <xxhash.h>
#include <zstd.h>

#include "engine/engine_internal.h"
#include "tripool/engine.h"

#define CHUNK 4096
#define MAX_OPEN 6
#define MAX_MEM (96 << 10)
#define NDIRS 5

struct tfile {
    char path[256];
    unsigned char *data;
    size_t len;
    unsigned char xxh3[8], crc[4];
    uint64_t lines;
};

static char g_dir[64];
static struct tfile *g_files;
static size_t g_nfiles;
static int g_base_fds;
static atomic_bool g_sampling;
static atomic_int g_peak_fds;

static uint64_t rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = -1; /* the directory's own descriptor */
    while (readdir(d))
        n++;
    closedir(d);
    return n - 2; /* . and .. */
}

static void *fd_sampler(void *arg) {
    (void)arg;
    while (atomic_load(&g_sampling)) {
        int n = count_fds();
        int p = atomic_load(&g_peak_fds);
        while (n > p && !atomic_compare_exchange_weak(&g_peak_fds, &p, n)) {
        }
        tp_test_sleep_ms(1);
    }
    return NULL;
}

/* Sizes at and around the chunk and the compress step, and random ones. */
static size_t pick_size(uint64_t *s) {
    size_t step = tp__compress_input_len(CHUNK);
    size_t k = 1 + rnd(s) % 4;
    switch (rnd(s) % 8) {
    case 0:
        return rnd(s) % 2; /* empty or one byte */
    case 1:
        return k * CHUNK - 1 + rnd(s) % 3;
    case 2:
        return k * step - 1 + rnd(s) % 3;
    default:
        return rnd(s) % (5 * CHUNK);
    }
}

static void make_tree(unsigned nfiles, uint64_t seed) {
    g_nfiles = nfiles;
    g_files = calloc(nfiles, sizeof(*g_files));
    assert_non_null(g_files);
    for (unsigned d = 0; d < NDIRS; d++) {
        char p[128];
        snprintf(p, sizeof p, "%s/d%u", g_dir, d);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    for (unsigned i = 0; i < nfiles; i++) {
        struct tfile *f = &g_files[i];
        /* alphasort order of the walk = index order: zero-padded names */
        snprintf(f->path, sizeof f->path, "%s/d%u/f%05u", g_dir, i * NDIRS / nfiles, i);
        f->len = pick_size(&seed);
        f->data = malloc(f->len + 1);
        assert_non_null(f->data);
        unsigned mode = rnd(&seed) % 3; /* text lines, random bytes, zeros */
        for (size_t b = 0; b < f->len; b++) {
            uint64_t r = rnd(&seed);
            f->data[b] = mode == 0   ? (r % 23 == 0 ? '\n' : (unsigned char)('a' + r % 26))
                         : mode == 1 ? (unsigned char)r
                                     : 0;
        }
        int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, f->data, f->len), (ssize_t)f->len);
        close(fd);
        XXH64_canonical_t cn;
        XXH64_canonicalFromHash(&cn, XXH3_64bits(f->data, f->len));
        memcpy(f->xxh3, &cn, 8);
        uint32_t c = tp_crc32c(0, f->data, f->len);
        unsigned char be[4] = {(unsigned char)(c >> 24), (unsigned char)(c >> 16),
                               (unsigned char)(c >> 8), (unsigned char)c};
        memcpy(f->crc, be, 4);
        for (size_t b = 0; b < f->len; b++)
            f->lines += f->data[b] == '\n';
    }
}

static struct tfile *file_of(const char *path) {
    const char *s = strrchr(path, '/');
    assert_non_null(s);
    assert_true(s[1] == 'f');
    unsigned long i = strtoul(s + 2, NULL, 10);
    assert_true(i < g_nfiles);
    assert_int_equal(strncmp(g_files[i].path, path, strlen(g_files[i].path)), 0);
    return &g_files[i];
}

/* Read a whole file; NULL if it does not exist. */
static unsigned char *slurp(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    unsigned char *b = malloc((size_t)st.st_size + 1);
    assert_non_null(b);
    assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

/* A .zst must decode (all its frames, skipping the seek table) to f. */
static void check_zst(const char *zpath, const struct tfile *f) {
    size_t zlen;
    unsigned char *z = slurp(zpath, &zlen);
    assert_non_null(z);
    ZSTD_DCtx *d = ZSTD_createDCtx();
    unsigned char *out = malloc(f->len + 1);
    ZSTD_inBuffer in = {z, zlen, 0};
    ZSTD_outBuffer ob = {out, f->len + 1, 0};
    size_t ret = 1;
    while (in.pos < in.size) {
        ret = ZSTD_decompressStream(d, &ob, &in);
        assert_false(ZSTD_isError(ret));
    }
    assert_int_equal(ret, 0);
    assert_int_equal(ob.pos, f->len);
    assert_memory_equal(out, f->data, f->len);
    free(out);
    ZSTD_freeDCtx(d);
    free(z);
}

/* Walk the tree: count temp files; check every .zst (or remove it). */
static void scan_tree(int *tmps, size_t *zsts, bool check, bool remove) {
    *tmps = 0;
    *zsts = 0;
    for (unsigned dd = 0; dd < NDIRS; dd++) {
        char dp[128];
        snprintf(dp, sizeof dp, "%s/d%u", g_dir, dd);
        DIR *d = opendir(dp);
        assert_non_null(d);
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strstr(de->d_name, ".tp.")) (*tmps)++;
            size_t n = strlen(de->d_name);
            if (n > 4 && strcmp(de->d_name + n - 4, ".zst") == 0) {
                char zp[400];
                snprintf(zp, sizeof zp, "%s/%s", dp, de->d_name);
                (*zsts)++;
                if (check) check_zst(zp, file_of(zp));
                if (remove) assert_int_equal(unlink(zp), 0);
            }
        }
        closedir(d);
    }
}

struct collect {
    tp_job_op op;
    tp_hash_alg alg;
    size_t n, errors, last;
};

static void on_result(void *arg, const tp_file_result *r) {
    struct collect *c = arg;
    if (r->err) printf("%s: %s: %d\n", r->path, r->err_op, r->err);
    assert_int_equal(r->err, 0); /* cancelled files are not reported */
    struct tfile *f = file_of(r->path);
    size_t idx = (size_t)(f - g_files);
    if (c->n) assert_true(idx > c->last); /* input order, each once */
    c->last = idx;
    c->n++;
    if (c->op != TP_OP_DECOMPRESS) assert_int_equal(r->bytes_in, f->len);
    switch (c->op) {
    case TP_OP_HASH:
        if (c->alg == TP_HASH_XXH3) {
            assert_int_equal(r->digest_len, 8);
            assert_memory_equal(r->digest, f->xxh3, 8);
        } else {
            assert_int_equal(r->digest_len, 4);
            assert_memory_equal(r->digest, f->crc, 4);
        }
        break;
    case TP_OP_COUNT:
        assert_int_equal(r->count, f->lines);
        break;
    case TP_OP_COMPRESS:
        check_zst(r->out_path, f);
        break;
    case TP_OP_DECOMPRESS: {
        size_t len;
        unsigned char *b = slurp(r->out_path, &len);
        assert_non_null(b);
        assert_int_equal(len, f->len);
        assert_memory_equal(b, f->data, len);
        free(b);
        break;
    }
    default:
        fail();
    }
}

struct canceller {
    tp_engine *e;
    uint64_t after; /* bytes done before cancelling */
    atomic_bool stop;
};

static void *cancel_thread(void *arg) {
    struct canceller *c = arg;
    while (!atomic_load(&c->stop)) {
        uint64_t done = 0;
        tp_engine_progress(c->e, &done, NULL);
        if (done >= c->after) {
            tp_engine_cancel(c->e);
            return NULL;
        }
        tp_test_sleep_ms(1);
    }
    return NULL;
}

/* Run one job over the tree on a fresh engine; cancel it after `cancel_at`
 * bytes if nonzero. Returns the job's result. */
static int run_one(unsigned workers, tp_job *j, uint64_t cancel_at, struct collect *c) {
    tp_engine_opts o;
    tp_engine_opts_init(&o);
    o.workers = workers;
    o.chunk_size = CHUNK;
    o.max_mem = MAX_MEM;
    o.max_open = MAX_OPEN;
    tp_engine *e;
    assert_int_equal(tp_engine_create(&e, &o), 0);
    j->on_result = on_result;
    j->arg = c;
    j->recursive = true;
    const char *paths[] = {g_dir};
    struct canceller cn = {.e = e, .after = cancel_at};
    pthread_t th;
    if (cancel_at) assert_int_equal(pthread_create(&th, NULL, cancel_thread, &cn), 0);
    int rc = tp_engine_run(e, j, paths, 1);
    if (cancel_at) {
        atomic_store(&cn.stop, true);
        pthread_join(th, NULL);
    }
    struct tp_engine_stats s;
    tp_engine_stats(e, &s);
    assert_true(s.mem_peak <= MAX_MEM);
    assert_true(s.open_peak <= MAX_OPEN);
    if (rc == 0) assert_int_equal(s.files_ok, g_nfiles);
    tp_engine_destroy(e);
    if (cancel_at)
        assert_true(rc == 0 || rc == -ECANCELED);
    else
        assert_int_equal(rc, 0);
    if (rc == 0) assert_int_equal(c->n, g_nfiles);
    return rc;
}

static unsigned g_threads = 3, g_scale = 3, g_iter = 4;

static void test_tree(void **state) {
    (void)state;
    unsigned nfiles = tp_test_scale(100 * g_scale);
    if (nfiles < 60) nfiles = 60;
    make_tree(nfiles, 12345);
    uint64_t total = 0;
    for (size_t i = 0; i < g_nfiles; i++)
        total += g_files[i].len;
    g_base_fds = count_fds();
    atomic_store(&g_sampling, true);
    atomic_store(&g_peak_fds, g_base_fds);
    pthread_t sampler;
    assert_int_equal(pthread_create(&sampler, NULL, fd_sampler, NULL), 0);

    uint64_t seed = 777;
    unsigned cancelled = 0;
    for (unsigned it = 0; it < g_iter; it++) {
        /* In odd iterations one of the five jobs is cancelled part-way. */
        int victim = it % 2 ? (int)(rnd(&seed) % 5) : -1;
        uint64_t at = total / 4 + rnd(&seed) % (total / 2);
        unsigned w = 1 + (it + g_threads - 1) % g_threads; /* vary 1..THREADS */
        struct collect c;
        int tmps;
        size_t zsts;

        tp_job jh = {.op = TP_OP_HASH, .alg = TP_HASH_XXH3};
        c = (struct collect){.op = TP_OP_HASH, .alg = TP_HASH_XXH3};
        cancelled += run_one(w, &jh, victim == 0 ? at : 0, &c) != 0;

        tp_job jc = {.op = TP_OP_HASH, .alg = TP_HASH_CRC32C};
        c = (struct collect){.op = TP_OP_HASH, .alg = TP_HASH_CRC32C};
        cancelled += run_one(w, &jc, victim == 1 ? at : 0, &c) != 0;

        tp_job jn = {.op = TP_OP_COUNT};
        c = (struct collect){.op = TP_OP_COUNT};
        cancelled += run_one(w, &jn, victim == 2 ? at : 0, &c) != 0;

        /* --rm (sources removed after a verified output) only in iterations
         * without a cancel, so the decode below always finds every source. */
        bool rm = it % 4 == 2;
        tp_job jz = {
            .op = TP_OP_COMPRESS, .level = 1 + (int)(it % 3), .no_fsync = it % 2, .remove_src = rm};
        c = (struct collect){.op = TP_OP_COMPRESS};
        int rc = run_one(w, &jz, victim == 3 ? at : 0, &c);
        cancelled += rc != 0;
        scan_tree(&tmps, &zsts, true, rc != 0); /* published outputs decode to their source */
        assert_int_equal(tmps, 0);
        if (rc != 0) { /* cancelled: outputs removed above; make them all again */
            tp_job again = {.op = TP_OP_COMPRESS, .level = 1, .no_fsync = true};
            c = (struct collect){.op = TP_OP_COMPRESS};
            assert_int_equal(run_one(w, &again, 0, &c), 0);
        } else {
            assert_int_equal(zsts, g_nfiles);
            for (size_t i = 0; rm && i < g_nfiles; i++)
                assert_int_equal(access(g_files[i].path, F_OK), -1); /* removed by --rm */
        }

        /* Decode back over the sources (--force), removing the .zst files. */
        tp_job jd = {.op = TP_OP_DECOMPRESS, .force = true, .remove_src = true, .no_fsync = true};
        c = (struct collect){.op = TP_OP_DECOMPRESS};
        rc = run_one(w, &jd, victim == 4 ? at : 0, &c);
        cancelled += rc != 0;
        scan_tree(&tmps, &zsts, true, true);
        assert_int_equal(tmps, 0);
        if (rc == 0) assert_int_equal(zsts, 0);
        /* Sources are intact whatever happened (rewritten identically or kept). */
        for (size_t i = 0; i < g_nfiles; i++) {
            size_t len;
            unsigned char *b = slurp(g_files[i].path, &len);
            assert_non_null(b);
            assert_int_equal(len, g_files[i].len);
            assert_memory_equal(b, g_files[i].data, len);
            free(b);
        }
    }
    atomic_store(&g_sampling, false);
    pthread_join(sampler, NULL);
    int peak = atomic_load(&g_peak_fds);
    printf("engine_tree: %zu files, %u iterations, %u jobs cancelled, fds %d -> peak %d "
           "(max_open %d)\n",
           g_nfiles, g_iter, cancelled, g_base_fds, peak, MAX_OPEN);
    assert_true(peak <= g_base_fds + MAX_OPEN + 8);
    for (size_t i = 0; i < g_nfiles; i++)
        free(g_files[i].data);
    free(g_files);
}

int main(int argc, char **argv) {
    if (argc > 1) g_threads = (unsigned)atoi(argv[1]);
    if (argc > 2) g_scale = (unsigned)atoi(argv[2]);
    if (argc > 3) g_iter = (unsigned)atoi(argv[3]);
    if (g_threads == 0) g_threads = 1;
    if (g_scale == 0) g_scale = 1;
    if (g_iter == 0) g_iter = 1;
    snprintf(g_dir, sizeof g_dir, "/tmp/tp_stress_tree.XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_tree)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tp_test_rm_rf(g_dir);
    return rc;
}
