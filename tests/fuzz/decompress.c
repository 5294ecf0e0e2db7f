/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: `tripool decompress` of one hostile .zst file, through the
 * engine (tp_engine_run, TP_OP_DECOMPRESS): its seek-table planning,
 * parallel frame decoding with in-place writes, and the stream fallback.
 * The input is the file. A reference decode with libzstd's streaming API
 * (what `zstd -d` does) runs first; inputs that decode to more than
 * REF_CAP bytes are skipped. Invariants:
 *  - the engine terminates (libFuzzer's -timeout catches a hang);
 *  - when it reports success, the output equals the reference output;
 *  - when it fails, nothing is left under the output name and no temporary
 *    file remains in the directory;
 *  - a file without a seek table that the engine accepts (decoded as a
 *    stream) is decoded exactly when the reference decodes it.
 *
 * TP_TEST_TIMEOUT: 30
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "engine/engine_internal.h"
#include "fuzz.h"
#include "tripool.h"

#define REF_CAP ((size_t)4 << 20)

static tp_engine *eng;
static char dir[64], in_path[96], out_path[96];

static void setup(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/tp_fuzz_dec.XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(in_path, sizeof in_path, "%s/in.zst", dir);
    snprintf(out_path, sizeof out_path, "%s/in", dir);
    tp_engine_opts o;
    tp_engine_opts_init(&o);
    o.workers = 2;
    o.chunk_size = 64 << 10;
    o.max_mem = 1 << 20;
    o.max_open = 4;
    FUZZ_CHECK(tp_engine_create(&eng, &o) == 0, "engine");
}

static void teardown(void) {
    tp_engine_destroy(eng);
    unlink(in_path);
    unlink(out_path);
    rmdir(dir);
}

/* Decode like `zstd -d`: 1 = ok, 0 = corrupt or truncated, -1 = too big. */
static int ref_decode(const uint8_t *data, size_t size, unsigned char *out, size_t *olen) {
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d) return -1;
    ZSTD_inBuffer ib = {data, size, 0};
    size_t last = 1;
    *olen = 0;
    int rc = 1;
    while (ib.pos < ib.size) {
        ZSTD_outBuffer ob = {out + *olen, REF_CAP - *olen, 0};
        last = ZSTD_decompressStream(d, &ob, &ib);
        *olen += ob.pos;
        if (ZSTD_isError(last)) {
            rc = 0;
            break;
        }
        if (*olen == REF_CAP) {
            rc = -1;
            break;
        }
        if (ob.pos == 0 && ib.pos == ib.size) break;
    }
    ZSTD_freeDCtx(d);
    if (rc == 1 && (size == 0 || last != 0)) rc = 0;
    return rc;
}

/* Sum of the decompressed sizes if the engine would take the seek table, else -1. */
static long long table_total(const uint8_t *data, size_t size) {
    if (size < TP__SEEK_FOOTER_SIZE + 8) return -1;
    int sums;
    uint64_t tstart;
    size_t tlen;
    long n = tp__seek_table_locate(data + size - TP__SEEK_FOOTER_SIZE, size, &sums, &tstart, &tlen);
    if (n <= 0 || tstart > size || tlen > size - tstart) return -1;
    uint64_t *p = malloc((size_t)n * 16);
    if (!p) return -1;
    long long total = -1;
    if (tp__seek_table_parse(data + tstart, n, sums, tstart, p) == 0) {
        total = 0;
        for (long i = 0; i < n; i++)
            total += (long long)p[2 * i + 1];
    }
    free(p);
    return total;
}

struct res {
    int err, calls;
};

static void on_result(void *arg, const tp_file_result *r) {
    struct res *s = arg;
    s->err = r->err;
    s->calls++;
}

static int others_in_dir(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "in.zst")) n++;
    if (d) closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static unsigned char *ref, *got;
    if (!eng) {
        setup();
        atexit(teardown);
        ref = malloc(REF_CAP);
        got = malloc(REF_CAP + 1);
        FUZZ_CHECK(ref && got, "out of memory");
    }
    size_t rlen = 0;
    int rok = ref_decode(data, size, ref, &rlen);
    long long tt = table_total(data, size);
    if (rok < 0 || tt > (long long)REF_CAP) return 0; /* too big to compare */

    int fd = open(in_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0, "open %s: %s", in_path, strerror(errno));
    FUZZ_CHECK(write(fd, data, size) == (ssize_t)size, "write");
    close(fd);
    unlink(out_path);

    struct res s = {0, 0};
    tp_job j = {.op = TP_OP_DECOMPRESS,
                .out_path = out_path,
                .no_fsync = true,
                .force = true,
                .on_result = on_result,
                .arg = &s};
    const char *paths[] = {in_path};
    int rc = tp_engine_run(eng, &j, paths, 1);
    FUZZ_CHECK(rc == 0 || rc == 1, "tp_engine_run = %d", rc);
    FUZZ_CHECK(s.calls == 1, "%d results for one file", s.calls);
    FUZZ_CHECK((rc == 0) == (s.err == 0), "run %d but file err %d", rc, s.err);
    if (rc == 0) {
        FUZZ_CHECK(rok == 1, "accepted a file zstd rejects (seek table total %lld)", tt);
        fd = open(out_path, O_RDONLY | O_CLOEXEC);
        FUZZ_CHECK(fd >= 0, "no output after success");
        size_t glen = 0;
        ssize_t k;
        while (glen <= REF_CAP && (k = read(fd, got + glen, REF_CAP + 1 - glen)) > 0)
            glen += (size_t)k;
        close(fd);
        FUZZ_CHECK(glen == rlen && memcmp(got, ref, rlen) == 0,
                   "output of %zu bytes differs from zstd's %zu", glen, rlen);
        unlink(out_path);
    } else {
        FUZZ_CHECK(access(out_path, F_OK) != 0, "output left after error %d", s.err);
        if (tt < 0) FUZZ_CHECK(rok != 1, "a stream zstd decodes was rejected: %d", s.err);
    }
    FUZZ_CHECK(others_in_dir() == 0, "temporary files left in %s", dir);
    unlink(in_path); /* a killed run leaves at most the empty directory */
    return 0;
}
