/* SPDX-License-Identifier: MIT */
/*
 * DESIGN - the chunked file engine.
 *
 * Threads. A job runs on the thread that calls tp_engine_run (the
 * "coordinator"); the work runs on the engine's task pool (the "workers").
 * The coordinator plans files into chunks, submits one task per chunk and
 * consumes the results in sequence order; it is the only thread that
 * touches a file's state (struct efile), writes output and reports.
 *
 * Queue and ordering. Chunks of all files of a job form one sequence. The
 * coordinator keeps them in a ring (the reorder window) in submission order;
 * each holds a tp_future. Consuming = waiting on the head's future, then
 * applying its result (write compressed bytes, update a hash, add counts).
 * The ring's length is capped (win_cap) and so is its memory: before a
 * chunk is submitted its buffers are taken with a zero timeout from the
 * buffer pool (whose max_inuse is max_mem); when the pool has no room the
 * coordinator consumes the head first, which gives buffers back. The
 * coordinator therefore never blocks on memory while holding results that
 * would free it, and workers never take buffers (no deadlock by design).
 *
 * Ownership. A chunk and its buffers belong to the coordinator, move to the
 * worker with tp_submit_future, and come back when the future is done (the
 * future's completion is the hand-off: the pool publishes the task's writes
 * before the wait returns). A chunk whose task was not run (context done)
 * comes back with the context's error. Input descriptors are leases of the
 * fd pool taken and released inside one task (never two at once, so the
 * pool's wait cannot deadlock); output files are opened by the coordinator
 * (one at a time, written in order by it) or, for workers, by the
 * coordinator at plan time: foreign .zst files decoded as a stream, and
 * tripool's multi-frame .zst files whose frames the workers decode in
 * cache-sized pieces and pwrite at their offsets (order does not matter),
 * and cp's output, into which each task copies its chunk at its offset
 * (copy_file_range). Those share MAX_STREAMS slots, so outputs open at once stay bounded.
 *
 * Small files. A whole file of at most a chunk and BATCH_BYTES (hash,
 * count, compress) joins the open "batch": up to BATCH_FILES such chunks
 * (and BATCH_TASK_BYTES of input) run one after another in one task, so
 * 5,000 files of 200 KiB cost ~300 hand-offs and coordinator wake-ups
 * instead of 5,000. The batch's first
 * chunk (the leader) holds the future and the buffers, which the others
 * borrow in turn inside the task; they hold neither. The window stays in
 * order: the leader is consumed first (waiting on the future), the others
 * after it, whose results the same task produced (the future's completion
 * publishes them); a chunk with `ran` unset was cancelled. The open batch is
 * submitted when full, before any other submit, and before the coordinator
 * waits (consume_head), so it never waits on an unsubmitted task. The window
 * caps tasks (task_cap; a batch counts once) and chunks (win_cap). For
 * compress, the worker also creates, writes and closes the small file's
 * temp output (the "fast" path; at most one per worker, and only with
 * <= FAST_MAX_WORKERS workers, so outputs open at once stay bounded); the
 * coordinator publishes it as any other.
 *
 * Publishing. A finished output is closed and queued (r->pending, input
 * order); a batch of up to PENDING_MAX files is made durable with one fsync
 * (one file) or one syncfs per filesystem (many: one journal commit rather
 * than one per file), then renamed into place, --rm applied and reported,
 * in order. No output appears under its final name before it is complete
 * and synced.
 *
 * Hash and newline count stream each chunk through a small buffer (PIECE)
 * that stays in cache; XXH* of one file is sequential, so one task streams
 * the whole file and files hash in parallel; crc32c chunks are combined.
 *
 * Cancellation. The engine's context (child of opts.ctx) is passed to every
 * submit; cancel makes pending tasks skip, running tasks stop at their next
 * check, and the coordinator stop planning, drain the window and unlink
 * every temporary file.
 *
 * Shared fields. Statistics and progress counters in struct tp_engine are
 * atomics, written by the coordinator, read by any thread (relaxed: they
 * are counters with no ordering role). Everything else in a job is
 * coordinator-only, or chunk-only while its task runs.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "engine/engine_internal.h"
#include "internal/atomic.h"
#include "internal/os.h"
#include "tripool/buf.h"
#include "tripool/fd.h"

#define MAX_STREAMS 4
#define BATCH_FILES 16                    /* small files per batch task */
#define BATCH_BYTES ((uint64_t)1 << 20)   /* largest file a batch takes */
#define BATCH_TASK_BYTES ((uint64_t)4 << 20) /* input bytes per batch task */
#define FAST_MAX_WORKERS 8                /* small-file outputs are opened by workers (one each) */
#define PENDING_MAX 512                   /* outputs per batch sync */
#define PENDING_BYTES ((uint64_t)1 << 30) /* output bytes per batch sync */
#define MIN_CHUNK ((size_t)4096)
#define MAX_CHUNK ((size_t)1 << 30)

struct tp_engine {
    tp_engine_opts o;
    tp_ctx *ctx; /* child of opts.ctx, cancelled by tp_engine_cancel */
    tp_pool *pool;
    tp_bufpool *bp;
    tp_fdpool *fp;
    pthread_key_t zkey; /* per worker thread zstd contexts (struct zctx) */
    _Atomic(uint64_t) bytes_in, bytes_out, files_ok, files_failed, chunks;
    _Atomic(uint64_t) mem_now, mem_peak;
    _Atomic(uint64_t) prog_done, prog_total;
};

struct zctx {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
};

enum { OP_USER = 100 };

/* One input file of a job. Coordinator-only. */
struct efile {
    char *path;
    size_t index;
    uint64_t size;
    mode_t mode;
    int err;
    const char *err_op;
    tp_hash_alg alg;
    char *out;  /* final output path */
    char *tmp;  /* temporary output path while writing */
    int out_fd; /* -1 when none */
    uint64_t nchunks, consumed;
    uint64_t bytes_out, count;
    XXH64_state_t *verify; /* compress --rm: hash of the input, checked on re-read */
    uint32_t crc;
    uint32_t *frames; /* compress: (compressed, decompressed) size pairs */
    size_t nframes, frames_cap;
    bool stream; /* decompress: one task decodes the whole file as a stream */
    unsigned char digest[16];
    size_t digest_len;
    bool pw;         /* output opened at plan time, written by tasks with pwrite */
    bool fast;       /* small file: one chunk in a batch task, output written by the worker */
    uint64_t wb_off; /* output bytes whose writeback was started (sync_file_range) */
    dev_t dev;       /* filesystem of the output */
    struct timespec atime, mtime; /* the source's, given to the output */
    dev_t src_dev;                /* the source as planned: every open must find it */
    ino_t src_ino;
    bool nofollow; /* found by a walk: opened with O_NOFOLLOW */
    const char *skip; /* not processed, not an error: why (a walk's symlink, device) */
    bool synced;     /* output made durable by a batch sync */
};

/* One unit of work. Coordinator-owned except while its task runs. */
struct echunk {
    struct run *r;
    struct efile *f;
    uint64_t index, off; /* off: input offset */
    size_t len;          /* input bytes */
    size_t dsize;        /* decompress: expected output bytes */
    tp_buf *in, *out;
    size_t mem; /* bytes of in + out, for the window's accounting */
    size_t out_len;
    int err;
    const char *err_op;
    uint32_t crc;
    uint64_t count;
    bool zero;                /* copy: all bytes zero (written as a hole) */
    unsigned char digest[16]; /* hash of a one-chunk file */
    tp_future *fut;
    struct echunk *batch_next; /* small files: the next chunk of this chunk's batch task */
    bool batched;              /* runs inside a batch task (the leader holds the future) */
    bool task;                 /* counts against the window's task cap (a leader or a lone chunk) */
    bool fast;                 /* a whole small file whose output the worker writes itself */
    bool ran;                  /* set by the worker once the chunk was processed (batches) */
    bool zpieces;              /* compress: read in PIECE-sized reads fed to one zstd frame */
    int stream_fd;             /* stream decompress: the output, owned by the file */
    int pw_fd;                 /* framed decompress of a multi-frame file: the output, owned by
                                  the file; the task pwrites at dst_off (order does not matter) */
    uint64_t dst_off;
};

/* A job being run. Coordinator-only, except the read-only fields
 * (e, job, pat, patlen, user_*) that tasks read. */
struct run {
    tp_engine *e;
    const tp_job *job;
    int op;
    const char *pat;
    size_t patlen;
    tp_chunk_fn user_fn;
    void *user_arg;
    struct echunk **win;
    size_t win_cap, head, n;
    size_t task_cap, ntasks;          /* tasks in the window (a batch counts once) */
    struct echunk *batch, *batch_end; /* the batch being filled, not yet submitted */
    size_t batch_files;
    uint64_t batch_bytes;
    unsigned streams;
    int failed;
    struct efile *pending[PENDING_MAX]; /* finished outputs waiting for a batch sync */
    size_t npending;
    uint64_t pending_bytes;
};

/* ---- options, create, destroy ------------------------------------------ */

void tp_engine_opts_init(tp_engine_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof(*o));
    o->workers = tp_usable_cpus();
    o->chunk_size = (size_t)4 << 20;
    o->max_mem = (size_t)256 << 20;
    o->max_open = 64;
}

static size_t class_of(size_t n) {
    size_t c = TP_BUF_MIN_SIZE;
    while (c < n && c < TP_BUF_MAX_SIZE)
        c <<= 1;
    if (n > TP_BUF_MAX_SIZE) /* huge buffers are page-rounded */
        c = (n + 4095) & ~(size_t)4095;
    return c;
}

static void zctx_free(void *p) {
    struct zctx *z = p;
    if (!z) return;
    ZSTD_freeCCtx(z->c);
    ZSTD_freeDCtx(z->d);
    free(z);
}

int tp_engine_create(tp_engine **out, const tp_engine_opts *opts) {
    if (!out) return -EINVAL;
    *out = NULL;
    tp_engine_opts o;
    if (opts)
        o = *opts;
    else
        tp_engine_opts_init(&o);
    if (o.workers == 0 || o.workers > 4096 || o.chunk_size < MIN_CHUNK ||
        o.chunk_size > MAX_CHUNK || o.max_open == 0 || o.max_open > 1000000)
        return -EINVAL;
    /* Buffers in use plus buffers kept for reuse stay within max_mem: a
     * quarter is for reuse, the rest for the window, which needs at least an
     * input and an output buffer of the chunk's class. */
    size_t keep = o.max_mem / 4, inuse = o.max_mem - keep;
    if (inuse < 2 * class_of(o.chunk_size)) return -EINVAL;
    tp_engine *e = calloc(1, sizeof(*e));
    if (!e) return -ENOMEM;
    e->o = o;
    int err = tp_ctx_with_cancel(o.ctx, &e->ctx);
    if (err) goto err_free;
    if (pthread_key_create(&e->zkey, zctx_free) != 0) {
        err = -EAGAIN;
        goto err_ctx;
    }
    tp_pool_opts po;
    tp_pool_opts_init(&po);
    po.max_workers = o.workers;
    po.name = "engine";
    if (o.pool_setup && (err = o.pool_setup(&po, o.pool_setup_arg)) != 0) {
        if (err > 0) err = -EINVAL;
        goto err_key;
    }
    err = tp_pool_create(&e->pool, &po);
    if (err) goto err_key;
    tp_bufpool_opts bo;
    tp_bufpool_opts_init(&bo);
    bo.max_inuse = inuse;
    bo.max_retained = keep;
    bo.name = "engine";
    err = tp_bufpool_create(&e->bp, &bo);
    if (err) goto err_pool;
    tp_fdpool_opts fo;
    tp_fdpool_opts_init(&fo);
    fo.max_open = o.max_open;
    err = tp_fdpool_create(&e->fp, &fo);
    if (err) goto err_bp;
    *out = e;
    return 0;

err_bp:
    tp_bufpool_destroy(e->bp);
err_pool:
    tp_pool_destroy(e->pool);
err_key:
    pthread_key_delete(e->zkey);
err_ctx:
    tp_ctx_release(e->ctx);
err_free:
    free(e);
    return err;
}

void tp_engine_cancel(tp_engine *e) {
    if (e) tp_ctx_cancel(e->ctx);
}

void tp_engine_destroy(tp_engine *e) {
    if (!e) return;
    tp_pool_destroy(e->pool); /* joins workers: their zstd contexts are freed */
    (void)tp_fdpool_destroy(e->fp);
    tp_bufpool_destroy(e->bp);
    pthread_key_delete(e->zkey);
    tp_ctx_release(e->ctx);
    free(e);
}

tp_pool *tp_engine_pool(tp_engine *e) {
    return e ? e->pool : NULL;
}

tp_bufpool *tp_engine_bufpool(tp_engine *e) {
    return e ? e->bp : NULL;
}

tp_fdpool *tp_engine_fdpool(tp_engine *e) {
    return e ? e->fp : NULL;
}

void tp_engine_stats(tp_engine *e, struct tp_engine_stats *s) {
    if (!e || !s) return;
    memset(s, 0, sizeof(*s));
    s->bytes_in = tp__load_relaxed(&e->bytes_in);
    s->bytes_out = tp__load_relaxed(&e->bytes_out);
    s->files_ok = tp__load_relaxed(&e->files_ok);
    s->files_failed = tp__load_relaxed(&e->files_failed);
    s->chunks = tp__load_relaxed(&e->chunks);
    s->mem_cap = e->o.max_mem;
    s->open_cap = e->o.max_open;
    struct tp_bufpool_stats bs;
    tp_bufpool_stats(e->bp, &bs);
    s->mem_peak = bs.total.peak_bytes;
    s->buf_gets = bs.total.gets;
    s->buf_hits = bs.total.hits;
    struct tp_fdpool_stats fs;
    tp_fdpool_stats(e->fp, &fs);
    s->open_peak = fs.peak_open;
    s->fd_hits = fs.hits;
    s->fd_misses = fs.misses;
    tp_pool_stats(e->pool, &s->pool);
}

void tp_engine_progress(tp_engine *e, uint64_t *done, uint64_t *total) {
    if (!e) return;
    if (done) *done = tp__load_relaxed(&e->prog_done);
    if (total) *total = tp__load_relaxed(&e->prog_total);
}

/* ---- worker side ---------------------------------------------------------- */

static struct zctx *zctx_get(tp_engine *e) {
    struct zctx *z = pthread_getspecific(e->zkey);
    if (!z) {
        z = calloc(1, sizeof(*z));
        if (!z) return NULL;
        if (pthread_setspecific(e->zkey, z) != 0) {
            free(z);
            return NULL;
        }
    }
    return z;
}

/* A zstd error as an errno: running out of memory is not corrupt data. */
static int zstd_err(size_t code, int otherwise) {
    return ZSTD_getErrorCode(code) == ZSTD_error_memory_allocation ? -ENOMEM : otherwise;
}

static int chunk_fail(struct echunk *c, int err, const char *op) {
    c->err = err;
    c->err_op = op;
    return err;
}

/* Read the chunk's input range into c->in. */
static int chunk_read(struct echunk *c, tp_fd *h) {
    ssize_t n = tp_fd_pread(h, c->in->data, c->len, c->off);
    if (n < 0) return chunk_fail(c, (int)n, "read");
    if ((size_t)n != c->len) return chunk_fail(c, -EIO, "file shrank while reading");
    c->in->len = c->len;
    return 0;
}

/* Lines containing the pattern that start in this chunk; a line that runs
 * past the chunk's end is completed by reading on from the file. */
static int chunk_count_matches(struct echunk *c, tp_fd *h) {
    struct run *r = c->r;
    const char *d = (const char *)c->in->data;
    size_t start = 0, len = c->len;
    if (c->off > 0) {
        char prev;
        ssize_t n = tp_fd_pread(h, &prev, 1, c->off - 1);
        if (n != 1) return chunk_fail(c, n < 0 ? (int)n : -EIO, "read");
        if (prev != '\n') { /* our first bytes end a line owned by the previous chunk */
            const char *nl = memchr(d, '\n', len);
            start = nl ? (size_t)(nl - d) + 1 : len;
        }
    }
    const char *reg = d + start;
    size_t rlen = len - start;
    const char *last = rlen ? memrchr(reg, '\n', rlen) : NULL;
    size_t full = last ? (size_t)(last - reg) + 1 : 0;
    c->count = tp__count_matches(reg, full, r->pat, r->patlen);
    size_t tail = rlen - full;
    if (tail == 0) return 0;
    if (c->off + len >= c->f->size) { /* last line of the file, unterminated */
        c->count += tp__count_matches(reg + full, tail, r->pat, r->patlen) ? 1 : 0;
        return 0;
    }
    /* Complete the line: copy what we have, read on until '\n' or EOF. */
    size_t cap = tail + 65536, have = tail;
    char *line = malloc(cap);
    if (!line) return chunk_fail(c, -ENOMEM, "count");
    memcpy(line, reg + full, tail);
    uint64_t pos = c->off + len;
    for (;;) {
        if (cap - have < 65536) {
            char *nl = realloc(line, cap * 2);
            if (!nl) {
                free(line);
                return chunk_fail(c, -ENOMEM, "count");
            }
            line = nl;
            cap *= 2;
        }
        ssize_t n = tp_fd_pread(h, line + have, 65536, pos);
        if (n < 0) {
            free(line);
            return chunk_fail(c, (int)n, "read");
        }
        char *nl = n ? memchr(line + have, '\n', (size_t)n) : NULL;
        if (nl) {
            have = (size_t)(nl - line);
            break;
        }
        have += (size_t)n;
        pos += (uint64_t)n;
        if (n == 0) break;
    }
    c->count += tp__count_matches(line, have, r->pat, r->patlen) ? 1 : 0;
    free(line);
    return 0;
}

static bool all_zero(const unsigned char *p, size_t n) {
    if (n == 0) return false;
    return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

static void digest_of_chunk(struct echunk *c, tp_hash_alg alg, unsigned char *out) {
    const void *d = c->in ? (const void *)c->in->data : (const void *)"";
    switch (alg) {
    case TP_HASH_XXH3: {
        XXH64_canonical_t cn;
        XXH64_canonicalFromHash(&cn, XXH3_64bits(d, c->len));
        memcpy(out, &cn, 8);
        break;
    }
    case TP_HASH_XXH128: {
        XXH128_canonical_t cn;
        XXH128_canonicalFromHash(&cn, XXH3_128bits(d, c->len));
        memcpy(out, &cn, 16);
        break;
    }
    case TP_HASH_XXH64: {
        XXH64_canonical_t cn;
        XXH64_canonicalFromHash(&cn, XXH64(d, c->len, 0));
        memcpy(out, &cn, 8);
        break;
    }
    case TP_HASH_XXH32: {
        XXH32_canonical_t cn;
        XXH32_canonicalFromHash(&cn, XXH32(d, c->len, 0));
        memcpy(out, &cn, 4);
        break;
    }
    case TP_HASH_CRC32C:
        break;
    }
}

/* Decode a whole .zst file as a stream into c->stream_fd. */
static int chunk_stream_decompress(struct echunk *c, tp_fd *h, struct zctx *z) {
    tp_ctx *ctx = c->r->e->ctx;
    if (!z->d && !(z->d = ZSTD_createDCtx())) return chunk_fail(c, -ENOMEM, "decompress");
    ZSTD_DCtx_reset(z->d, ZSTD_reset_session_only);
    uint64_t pos = 0;
    size_t last = 0;
    bool any = false;
    for (;;) {
        if (tp_ctx_done(ctx)) return chunk_fail(c, tp_ctx_err(ctx), "canceled");
        ssize_t n = tp_fd_pread(h, c->in->data, c->in->cap, pos);
        if (n < 0) return chunk_fail(c, (int)n, "read");
        if (n == 0) break;
        any = true;
        pos += (uint64_t)n;
        ZSTD_inBuffer ib = {c->in->data, (size_t)n, 0};
        while (ib.pos < ib.size) {
            ZSTD_outBuffer ob = {c->out->data, c->out->cap, 0};
            last = ZSTD_decompressStream(z->d, &ob, &ib);
            if (ZSTD_isError(last))
                return chunk_fail(c, zstd_err(last, -EBADMSG), "not zstd data or corrupt");
            size_t w = 0;
            while (w < ob.pos) {
                ssize_t k = write(c->stream_fd, (char *)ob.dst + w, ob.pos - w);
                if (k < 0) {
                    if (errno == EINTR) continue;
                    return chunk_fail(c, -errno, "write");
                }
                w += (size_t)k;
            }
            c->out_len += ob.pos;
        }
    }
    if (!any || last != 0) return chunk_fail(c, -EBADMSG, "truncated zstd data");
    return 0;
}

/* Hash and newline count stream the chunk through a small buffer
 * (PIECE bytes, stays in cache) instead of holding the whole chunk. */
#define PIECE ((size_t)256 << 10)

static bool piecewise(const struct run *r) {
    return r->op == TP_OP_HASH || (r->op == TP_OP_COUNT && !r->pat);
}

static int chunk_pieces(struct echunk *c, tp_fd *h) {
    struct efile *f = c->f;
    tp_ctx *ctx = c->r->e->ctx;
    XXH3_state_t *x3 = NULL;
    XXH64_state_t *x64 = NULL;
    XXH32_state_t *x32 = NULL;
    bool hash = c->r->op == TP_OP_HASH;
    bool wide = f->alg == TP_HASH_XXH128;
    void *xa = NULL; /* AVX2 build of XXH3, when the CPU has it */
    int err = 0;
    if (hash && (f->alg == TP_HASH_XXH3 || wide) && tp__xxh3_avx2_usable()) {
        if (!(xa = tp__xxh3_avx2_new(wide))) return chunk_fail(c, -ENOMEM, "hash state");
    } else if (hash && (f->alg == TP_HASH_XXH3 || f->alg == TP_HASH_XXH128)) {
        if (!(x3 = XXH3_createState())) return chunk_fail(c, -ENOMEM, "hash state");
        if (f->alg == TP_HASH_XXH3)
            XXH3_64bits_reset(x3);
        else
            XXH3_128bits_reset(x3);
    } else if (hash && f->alg == TP_HASH_XXH64) {
        if (!(x64 = XXH64_createState())) return chunk_fail(c, -ENOMEM, "hash state");
        XXH64_reset(x64, 0);
    } else if (hash && f->alg == TP_HASH_XXH32) {
        if (!(x32 = XXH32_createState())) return chunk_fail(c, -ENOMEM, "hash state");
        XXH32_reset(x32, 0);
    }
    uint64_t pos = c->off, end = c->off + c->len;
    while (pos < end) {
        if ((err = tp_ctx_err(ctx)) != 0) {
            chunk_fail(c, err, "canceled");
            break;
        }
        size_t n = end - pos < c->in->cap ? (size_t)(end - pos) : c->in->cap;
        ssize_t k = tp_fd_pread(h, c->in->data, n, pos);
        if (k < 0 || (size_t)k != n) {
            err =
                chunk_fail(c, k < 0 ? (int)k : -EIO, k < 0 ? "read" : "file shrank while reading");
            break;
        }
        const unsigned char *d = c->in->data;
        if (!hash)
            c->count += tp_count_newlines(d, n);
        else if (f->alg == TP_HASH_CRC32C)
            c->crc = tp_crc32c(c->crc, d, n);
        else if (xa)
            tp__xxh3_avx2_update(xa, wide, d, n);
        else if (f->alg == TP_HASH_XXH3)
            XXH3_64bits_update(x3, d, n);
        else if (f->alg == TP_HASH_XXH128)
            XXH3_128bits_update(x3, d, n);
        else if (x64)
            XXH64_update(x64, d, n);
        else
            XXH32_update(x32, d, n);
        pos += n;
    }
    if (!err && hash) {
        if (xa) {
            tp__xxh3_avx2_digest(xa, wide, c->digest);
        } else if (f->alg == TP_HASH_XXH3) {
            XXH64_canonical_t cn;
            XXH64_canonicalFromHash(&cn, XXH3_64bits_digest(x3));
            memcpy(c->digest, &cn, 8);
        } else if (f->alg == TP_HASH_XXH128) {
            XXH128_canonical_t cn;
            XXH128_canonicalFromHash(&cn, XXH3_128bits_digest(x3));
            memcpy(c->digest, &cn, 16);
        } else if (x64) {
            XXH64_canonical_t cn;
            XXH64_canonicalFromHash(&cn, XXH64_digest(x64));
            memcpy(c->digest, &cn, 8);
        } else if (x32) {
            XXH32_canonical_t cn;
            XXH32_canonicalFromHash(&cn, XXH32_digest(x32));
            memcpy(c->digest, &cn, 4);
        }
    }
    XXH3_freeState(x3);
    tp__xxh3_avx2_free(xa);
    XXH64_freeState(x64);
    XXH32_freeState(x32);
    return err;
}

static int open_tmp(struct efile *f);
static void finish_meta(struct efile *f, int fd);
static int write_all(int fd, const void *p, size_t n);

/* cp: copy the chunk's range to the same offset of the output inside the
 * kernel (copy_file_range: no copy through user memory, several chunks at
 * once). A range that is a hole in the input (SEEK_DATA) is skipped and
 * stays a hole (the output is sized at the end). Where the kernel refuses
 * (another filesystem type, old kernel) it falls back to pread + pwrite
 * through the chunk's small buffer. */
static int chunk_copy_in_place(struct echunk *c, tp_fd *h) {
    int in = tp_fd_get(h);
    uint64_t pos = c->off, end = c->off + c->len;
    off_t d = lseek(in, (off_t)pos, SEEK_DATA);
    if ((d < 0 && errno == ENXIO) || (d >= 0 && (uint64_t)d >= end)) {
        c->zero = true; /* all hole */
        return 0;
    }
    bool kernel = true;
    while (pos < end) {
        int err = tp_ctx_err(c->r->e->ctx);
        if (err) return chunk_fail(c, err, "canceled");
        size_t want = end - pos > ((size_t)1 << 30) ? (size_t)1 << 30 : (size_t)(end - pos);
        ssize_t n;
        if (kernel) {
            off_t ip = (off_t)pos, op = (off_t)pos;
            n = copy_file_range(in, &ip, c->pw_fd, &op, want, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP ||
                          errno == ENOSYS || errno == EBADF)) {
                kernel = false;
                continue;
            }
            if (n < 0) return chunk_fail(c, -errno, errno == EIO ? "read" : "write");
        } else {
            if (want > c->in->cap) want = c->in->cap;
            n = tp_fd_pread(h, c->in->data, want, pos);
            if (n < 0) return chunk_fail(c, (int)n, "read");
            for (ssize_t w = 0; w < n;) {
                ssize_t k = pwrite(c->pw_fd, (char *)c->in->data + w, (size_t)(n - w),
                                   (off_t)(pos + (uint64_t)w));
                if (k < 0 && errno == EINTR) continue;
                if (k < 0) return chunk_fail(c, -errno, "write");
                w += k;
            }
        }
        if (n == 0) return chunk_fail(c, -EIO, "file shrank while reading");
        pos += (uint64_t)n;
    }
    return 0;
}

/* Compress a chunk as one zstd frame, reading it in pieces of the input
 * buffer's size: the read copies into a buffer that stays in cache (a
 * chunk-sized one does not, and the copy out of the page cache into cold
 * memory was a fifth of compress's CPU), and zstd takes each piece into its
 * own window. The frame equals what one ZSTD_compress2 call would make of
 * the chunk's bytes, up to block boundaries. */
static int chunk_compress_pieces(struct echunk *c, tp_fd *h, struct zctx *z) {
    tp_ctx *ctx = c->r->e->ctx;
    if (!z->c && !(z->c = ZSTD_createCCtx())) return chunk_fail(c, -ENOMEM, "zstd context");
    ZSTD_CCtx_reset(z->c, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(z->c, ZSTD_c_compressionLevel, c->r->job->level);
    ZSTD_CCtx_setParameter(z->c, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setPledgedSrcSize(z->c, c->len);
    ZSTD_outBuffer ob = {c->out->data, c->out->cap, 0};
    uint64_t pos = c->off, end = c->off + c->len;
    while (pos < end) {
        int err = tp_ctx_err(ctx);
        if (err) return chunk_fail(c, err, "canceled");
        size_t n = end - pos < c->in->cap ? (size_t)(end - pos) : c->in->cap;
        ssize_t k = tp_fd_pread(h, c->in->data, n, pos);
        if (k < 0) return chunk_fail(c, (int)k, "read");
        if ((size_t)k != n) return chunk_fail(c, -EIO, "file shrank while reading");
        pos += n;
        ZSTD_EndDirective mode = pos == end ? ZSTD_e_end : ZSTD_e_continue;
        ZSTD_inBuffer ib = {c->in->data, n, 0};
        size_t ret;
        do {
            ret = ZSTD_compressStream2(z->c, &ob, &ib, mode);
            if (ZSTD_isError(ret) || (ob.pos == ob.size && ret != 0 && mode == ZSTD_e_end))
                return chunk_fail(c, ZSTD_isError(ret) ? zstd_err(ret, -EIO) : -EIO, "compress");
        } while (mode == ZSTD_e_end ? ret != 0 : ib.pos < ib.size);
    }
    c->out_len = ob.pos;
    return 0;
}

/* Small-file fast path: the worker writes the whole output to the temp
 * file and closes it; the coordinator only publishes (syncs, renames). The
 * temp name stays in f->tmp so the coordinator removes it on any error. */
static int fast_output(struct echunk *c) {
    struct efile *f = c->f;
    int err = open_tmp(f);
    if (err) return chunk_fail(c, err, "create output");
    err = write_all(f->out_fd, c->out->data, c->out_len);
    struct stat st;
    if (!err) finish_meta(f, f->out_fd);
    if (!err && fstat(f->out_fd, &st) == 0) f->dev = st.st_dev;
    if (close(f->out_fd) != 0 && !err) err = -errno;
    f->out_fd = -1;
    return err ? chunk_fail(c, err, "write") : 0;
}

/* Open f's source; it must still be the file that was planned (same device
 * and inode): a tree that changes while it is walked never makes us read a
 * file put in its place, nor (O_NOFOLLOW for what a walk found) a symlink's
 * target. A file replaced gives -ESTALE. */
static int src_acquire(tp_engine *e, const struct efile *f, tp_fd **h) {
    int err = tp_fd_acquire(e->fp, f->path, O_RDONLY | (f->nofollow ? O_NOFOLLOW : 0), 0, h);
    if (err) return err;
    struct stat st;
    if (fstat(tp_fd_get(*h), &st) != 0) {
        err = -errno;
    } else if (st.st_dev != f->src_dev || st.st_ino != f->src_ino) {
        err = -ESTALE;
    } else {
        return 0;
    }
    tp_fd_release(e->fp, *h);
    *h = NULL;
    (void)tp_fdpool_invalidate(e->fp, f->path);
    return err;
}

static int chunk_task(void *arg) {
    struct echunk *c = arg;
    struct run *r = c->r;
    tp_engine *e = r->e;
    c->ran = true;
    int err = tp_ctx_err(e->ctx);
    if (err) return chunk_fail(c, err, "canceled");
    if (r->op == TP_OP_HASH && c->f->nchunks == 1 && c->len == 0) {
        digest_of_chunk(c, c->f->alg, c->digest); /* empty file: nothing to read */
        return 0;
    }
    tp_fd *h = NULL;
    err = src_acquire(e, c->f, &h);
    if (err) return chunk_fail(c, err, err == -ESTALE ? "replaced during the run" : "open");
    struct zctx *z = NULL;
    if (r->op == TP_OP_COMPRESS || r->op == TP_OP_DECOMPRESS) {
        z = zctx_get(e);
        if (!z) {
            err = chunk_fail(c, -ENOMEM, "zstd context");
            goto out;
        }
    }
    if (r->op == TP_OP_DECOMPRESS && c->f->stream) {
        err = chunk_stream_decompress(c, h, z);
        goto out;
    }
    if (piecewise(r)) {
        err = chunk_pieces(c, h);
        goto out;
    }
    if (r->op == TP_OP_COPY && c->pw_fd >= 0) {
        err = chunk_copy_in_place(c, h);
        goto out;
    }
    if (c->zpieces) {
        err = chunk_compress_pieces(c, h, z);
        if (!err && c->fast) err = fast_output(c);
        goto out;
    }
    if (c->len && (err = chunk_read(c, h)) < 0) goto out;
    switch (r->op) {
    case TP_OP_HASH: /* piecewise */
        break;
    case TP_OP_COUNT:
        if (c->len) err = chunk_count_matches(c, h);
        break;
    case TP_OP_COPY:
        c->zero = all_zero(c->in->data, c->len);
        break;
    case TP_OP_COMPRESS: {
        if (!z->c && !(z->c = ZSTD_createCCtx())) {
            err = chunk_fail(c, -ENOMEM, "zstd context");
            break;
        }
        ZSTD_CCtx_reset(z->c, ZSTD_reset_session_and_parameters);
        ZSTD_CCtx_setParameter(z->c, ZSTD_c_compressionLevel, r->job->level);
        ZSTD_CCtx_setParameter(z->c, ZSTD_c_checksumFlag, 1);
        size_t n = ZSTD_compress2(z->c, c->out->data, c->out->cap, c->in->data, c->len);
        if (ZSTD_isError(n))
            err = chunk_fail(c, zstd_err(n, -EIO), "compress");
        else
            c->out_len = n;
        if (!err && c->fast && c->f->verify) /* --rm: the input's hash, checked at publish */
            XXH64_update(c->f->verify, c->in->data, c->len);
        if (!err && c->fast) err = fast_output(c);
        break;
    }
    case TP_OP_DECOMPRESS: {
        if (!z->d && !(z->d = ZSTD_createDCtx())) {
            err = chunk_fail(c, -ENOMEM, "zstd context");
            break;
        }
        if (c->pw_fd < 0) {
            size_t n = ZSTD_decompressDCtx(z->d, c->out->data, c->dsize, c->in->data, c->len);
            if (ZSTD_isError(n) || n != c->dsize)
                err = chunk_fail(c, ZSTD_isError(n) ? zstd_err(n, -EBADMSG) : -EBADMSG,
                                 "corrupt zstd frame");
            else
                c->out_len = n;
            break;
        }
        /* Decode in cache-sized pieces written in place: no big cold buffer. */
        ZSTD_DCtx_reset(z->d, ZSTD_reset_session_only);
        ZSTD_inBuffer ib = {c->in->data, c->len, 0};
        size_t ret = 1;
        /* Until the whole entry is decoded: stopping at the end of its first
         * frame dropped any frame or bytes after it that zstd -d decodes or
         * rejects. */
        while (!err && (ret != 0 || ib.pos < ib.size)) {
            ZSTD_outBuffer ob = {c->out->data, c->out->cap, 0};
            ret = ZSTD_decompressStream(z->d, &ob, &ib);
            if (ZSTD_isError(ret) || c->out_len + ob.pos > c->dsize ||
                (ob.pos == 0 && ib.pos == ib.size && ret != 0)) {
                err = chunk_fail(c, ZSTD_isError(ret) ? zstd_err(ret, -EBADMSG) : -EBADMSG,
                                 "corrupt zstd frame");
                break;
            }
            size_t w = 0;
            while (w < ob.pos) {
                ssize_t k = pwrite(c->pw_fd, (char *)ob.dst + w, ob.pos - w,
                                   (off_t)(c->dst_off + c->out_len + w));
                if (k < 0 && errno == EINTR) continue;
                if (k < 0) {
                    err = chunk_fail(c, -errno, "write");
                    break;
                }
                w += (size_t)k;
            }
            c->out_len += ob.pos;
        }
        if (!err && c->out_len != c->dsize) err = chunk_fail(c, -EBADMSG, "corrupt zstd frame");
        break;
    }
    case OP_USER:
        err = r->user_fn(r->user_arg, c->index, c->off, c->in->data, c->len);
        if (err < 0) chunk_fail(c, err, "callback");
        break;
    }
out:
    tp_fd_release(e->fp, h);
    return err < 0 ? err : 0;
}

/* A batch: the leader and the chunks chained after it, one after another on
 * one worker. Each chunk keeps its own result and error; the task's result
 * is 0 (the leader's future only says the batch is done). */
static int batch_task(void *arg) {
    struct echunk *lead = arg;
    for (struct echunk *c = lead, *next; c; c = next) {
        next = c->batch_next; /* read before the chunk's result is final */
        /* The leader's buffers serve every file of the batch in turn; a
         * follower only borrows them while its part runs. */
        bool lend = c != lead;
        if (lend) {
            c->in = lead->in;
            c->out = lead->out;
        }
        (void)chunk_task(c);
        if (lend) c->in = c->out = NULL;
    }
    return 0;
}

/* ---- coordinator side ------------------------------------------------------ */

static void mem_add(tp_engine *e, size_t n) {
    uint64_t now = tp__add_relaxed(&e->mem_now, n) + n;
    tp__max_relaxed(&e->mem_peak, now);
}

static void chunk_free(struct run *r, struct echunk *c) {
    tp_engine *e = r->e;
    if (c->in) tp_buf_put(e->bp, c->in);
    if (c->out) tp_buf_put(e->bp, c->out);
    tp__sub_relaxed(&e->mem_now, c->mem);
    free(c);
}

/* Take a buffer of n bytes without waiting; consume the window's head while
 * the buffer pool is at its cap. */
static void consume_head(struct run *r);

static int get_buf(struct run *r, size_t n, tp_buf **out) {
    for (;;) {
        int err = tp_buf_get_timeout(r->e->bp, n, 0, out);
        if (err != -EAGAIN) return err;
        if (r->n == 0) /* nothing of ours to give back: someone else holds the memory */
            return tp_buf_get_timeout(r->e->bp, n, 10 * TP_NSEC_PER_SEC, out);
        consume_head(r);
    }
}

static char *str_cat(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

/* Create the temporary output next to f->out (tmpfile.c names it); sets
 * f->tmp and f->out_fd. It is private (0600) until finish_meta gives it
 * the source's mode. */
static int open_tmp(struct efile *f) {
    return tp__tmp_create(f->out, 0600, &f->tmp, &f->out_fd);
}

/* Give a finished output the source's permission bits and times, as zstd
 * does (mode & 0777 exactly, not filtered by the umask; atime and mtime).
 * A failure here loses no data: the output is kept (zstd only warns). */
static void finish_meta(struct efile *f, int fd) {
    (void)fchmod(fd, f->mode & 0777);
    struct timespec ts[2] = {f->atime, f->mtime};
    (void)futimens(fd, ts);
}

static int write_all(int fd, const void *p, size_t n) {
    const char *s = p;
    while (n) {
        ssize_t k = write(fd, s, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

static void file_fail(struct efile *f, int err, const char *op) {
    if (!f->err) {
        f->err = err;
        f->err_op = op;
    }
}

/* open(2) and fsync(2) retried on EINTR (a signal on a slow filesystem). */
static int open_retry(const char *path, int flags) {
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    return fd;
}

static int sync_retry(int fd, bool whole_fs) {
    int rc;
    do
        rc = whole_fs ? syncfs(fd) : fsync(fd);
    while (rc != 0 && errno == EINTR);
    return rc;
}

/* Decode the .zst at path and compare the XXH64 of its content. */
static int verify_zst(const char *path, XXH64_hash_t want) {
    int fd = open_retry(path, O_RDONLY);
    if (fd < 0) return -errno;
    int err = 0;
    ZSTD_DCtx *d = ZSTD_createDCtx();
    XXH64_state_t *x = XXH64_createState();
    size_t isz = ZSTD_DStreamInSize(), osz = ZSTD_DStreamOutSize();
    char *ib = malloc(isz), *ob = malloc(osz);
    if (!d || !x || !ib || !ob) {
        err = -ENOMEM;
        goto out;
    }
    XXH64_reset(x, 0);
    size_t last = 1;
    for (;;) {
        ssize_t n = read(fd, ib, isz);
        if (n < 0) {
            if (errno == EINTR) continue;
            err = -errno;
            goto out;
        }
        if (n == 0) break;
        ZSTD_inBuffer in = {ib, (size_t)n, 0};
        while (in.pos < in.size) {
            ZSTD_outBuffer o = {ob, osz, 0};
            last = ZSTD_decompressStream(d, &o, &in);
            if (ZSTD_isError(last)) {
                err = zstd_err(last, -EBADMSG);
                goto out;
            }
            XXH64_update(x, ob, o.pos);
        }
    }
    if (last != 0 || XXH64_digest(x) != want) err = -EBADMSG;
out:
    free(ib);
    free(ob);
    XXH64_freeState(x);
    ZSTD_freeDCtx(d);
    close(fd);
    return err;
}

static void file_free(struct efile *f) {
    free(f->path);
    free(f->out);
    free(f->tmp);
    XXH64_freeState(f->verify);
    free(f->frames);
    free(f);
}

static bool op_writes(int op) {
    return op == TP_OP_COMPRESS || op == TP_OP_DECOMPRESS || op == TP_OP_COPY;
}

/* Move tmp to out. Without force an existing out is never replaced, even
 * one created after the plan-time check: RENAME_NOREPLACE, or where the
 * filesystem lacks it, link() (fails with EEXIST atomically) + unlink. */
static int publish_rename(const char *tmp, const char *out, bool force) {
    if (force) return rename(tmp, out) == 0 ? 0 : -errno;
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -errno;
    if (link(tmp, out) != 0) return -errno;
    (void)unlink(tmp);
    return 0;
}

/* --rm: the path still names the source as it was planned and read (same
 * inode, size and mtime): a file changed or put in its place meanwhile is
 * not ours to remove. (A change between this check and the unlink is not
 * seen: there is no unlink-if-inode call.) */
static int src_unchanged(const struct efile *f) {
    struct stat st;
    if (lstat(f->path, &st) != 0) return -errno;
    if (st.st_dev != f->src_dev || st.st_ino != f->src_ino || (uint64_t)st.st_size != f->size ||
        st.st_mtim.tv_sec != f->mtime.tv_sec || st.st_mtim.tv_nsec != f->mtime.tv_nsec)
        return -ESTALE;
    return 0;
}

/* Rename f's output into place (it is durable unless no_fsync), apply
 * --rm, report f and free it. */
static void file_publish(struct run *r, struct efile *f) {
    tp_engine *e = r->e;
    const tp_job *j = r->job;
    bool canceled = tp_ctx_done(e->ctx);
    if (f->tmp) {
        if (!f->err && canceled) file_fail(f, tp_ctx_err(e->ctx), "canceled");
        /* --rm: the output is decoded again before it gets its final name,
         * so a name never holds an output that failed its verification. */
        if (!f->err && j->remove_src && r->op == TP_OP_COMPRESS) {
            int err = verify_zst(f->tmp, XXH64_digest(f->verify));
            if (err) file_fail(f, err, "verify (source kept)");
        }
        if (!f->err) {
            int err = publish_rename(f->tmp, f->out, j->force);
            if (err) file_fail(f, err, err == -EEXIST ? "output exists" : "rename");
        }
        if (f->err) {
            (void)unlink(f->tmp);
        } else if (j->remove_src) {
            int err;
            if ((err = src_unchanged(f)) != 0)
                file_fail(f, err, "source changed during the run (kept)");
            else if (unlink(f->path) != 0)
                file_fail(f, -errno, "remove source");
            else
                (void)tp_fdpool_invalidate(e->fp, f->path);
        }
    }
    if (!f->err && r->op == TP_OP_HASH && f->alg == TP_HASH_CRC32C) {
        uint32_t v = f->crc;
        unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                              (unsigned char)(v >> 8), (unsigned char)v};
        memcpy(f->digest, b, 4);
    }
    bool silent = canceled && f->err == tp_ctx_err(e->ctx);
    if (f->skip) {
        if (j->on_result && !canceled) {
            tp_file_result res = {.path = f->path, .index = f->index, .skipped = f->skip};
            j->on_result(j->arg, &res);
        }
        file_free(f);
        return;
    }
    if (f->err)
        tp__add_relaxed(&e->files_failed, 1);
    else
        tp__add_relaxed(&e->files_ok, 1);
    if (f->err && !silent) r->failed = 1;
    if (j->on_result && !silent) {
        tp_file_result res = {
            .path = f->path,
            .index = f->index,
            .out_path = op_writes(r->op) ? f->out : NULL,
            .err = f->err,
            .err_op = f->err_op,
            .bytes_in = f->size,
            .bytes_out = f->bytes_out,
            .count = f->count,
            .digest_len = f->digest_len,
        };
        memcpy(res.digest, f->digest, sizeof(res.digest));
        j->on_result(j->arg, &res);
    }
    file_free(f);
}

/* Make the pending outputs durable with one fsync (a single file) or one
 * syncfs per filesystem (a batch: one journal commit instead of one per
 * file), then publish them in order. */
static void flush_pending(struct run *r) {
    const tp_job *j = r->job;
    bool sync = (!j->no_fsync || j->remove_src) && !tp_ctx_done(r->e->ctx);
    size_t nout = 0;
    for (size_t i = 0; i < r->npending; i++)
        nout += r->pending[i]->tmp && !r->pending[i]->err;
    for (size_t i = 0; sync && i < r->npending; i++) {
        struct efile *f = r->pending[i];
        if (!f->tmp || f->err || f->synced) continue;
        int fd = open_retry(f->tmp, O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            file_fail(f, -errno, "fsync");
            if (fd >= 0) close(fd);
            continue;
        }
        int err = sync_retry(fd, nout != 1) != 0 ? -errno : 0;
        close(fd);
        /* Every pending output on this filesystem is now durable (or not). */
        for (size_t k = i; k < r->npending; k++) {
            struct efile *g = r->pending[k];
            if (g->tmp && !g->err && g->dev == st.st_dev) {
                if (err) file_fail(g, err, "fsync");
                g->synced = true;
            }
        }
    }
    for (size_t i = 0; i < r->npending; i++)
        file_publish(r, r->pending[i]);
    r->npending = 0;
    r->pending_bytes = 0;
}

/* The last chunk of f was consumed: finish the output (seek table, size),
 * close it, and queue f for publishing. Files without output publish at
 * once. Publishing keeps input order. */
static void file_end(struct run *r, struct efile *f) {
    if (!op_writes(r->op)) {
        file_publish(r, f);
        return;
    }
    if (f->pw) r->streams--; /* the in-place output slot taken in plan_file */
    if (f->out_fd >= 0) {
        if (!f->err && r->op == TP_OP_COMPRESS && f->nframes > 1) {
            size_t n = tp__seek_table_size(f->nframes);
            unsigned char *t = malloc(n);
            if (!t) {
                file_fail(f, -ENOMEM, "seek table");
            } else {
                tp__seek_table_write(t, f->frames, f->nframes);
                int err = write_all(f->out_fd, t, n);
                if (err)
                    file_fail(f, err, "write");
                else
                    f->bytes_out += n;
                free(t);
            }
        }
        if (!f->err && r->op == TP_OP_COPY && ftruncate(f->out_fd, (off_t)f->size) != 0)
            file_fail(f, -errno, "truncate");
        struct stat st;
        if (!f->err) finish_meta(f, f->out_fd);
        if (!f->err && fstat(f->out_fd, &st) == 0) f->dev = st.st_dev;
        if (close(f->out_fd) != 0 && !f->err) file_fail(f, -errno, "close");
        f->out_fd = -1;
    }
    r->pending[r->npending++] = f;
    r->pending_bytes += f->bytes_out;
    if (r->npending == PENDING_MAX || r->pending_bytes >= PENDING_BYTES) flush_pending(r);
}

/* The first chunk of f is being consumed: open the output. */
static void file_begin(struct run *r, struct efile *f) {
    if (f->err || !op_writes(r->op) || f->stream || f->pw || f->fast) return;
    int err = open_tmp(f);
    if (err) file_fail(f, err, "create output");
}

/* Start the writeback of every WRITEBACK_STEP bytes of a big output as it
 * is written (no wait), so the fsync before the rename finds little left to
 * do instead of the whole file: the disk works while the CPUs compress. */
#define WRITEBACK_STEP ((uint64_t)32 << 20)
static void writeback(struct efile *f) {
    off_t pos = lseek(f->out_fd, 0, SEEK_CUR);
    if (pos < 0 || (uint64_t)pos < f->wb_off + WRITEBACK_STEP) return;
    uint64_t end = (uint64_t)pos;
    (void)sync_file_range(f->out_fd, (off_t)f->wb_off, (off_t)(end - f->wb_off),
                          SYNC_FILE_RANGE_WRITE); /* a hint: errors surface at fsync */
    f->wb_off = end;
}

static void apply(struct run *r, struct echunk *c) {
    tp_engine *e = r->e;
    struct efile *f = c->f;
    if (c->err) file_fail(f, c->err, c->err_op ? c->err_op : "task");
    if (c->index == 0) file_begin(r, f); /* (after: a failed file creates no temp) */
    if (!f->err) {
        int err = 0;
        switch (r->op) {
        case TP_OP_HASH:
            if (f->alg != TP_HASH_CRC32C) /* one chunk per file: see plan_file */
                memcpy(f->digest, c->digest, sizeof(f->digest));
            else
                f->crc = c->index == 0 ? c->crc : tp_crc32c_combine(f->crc, c->crc, c->len);
            break;
        case TP_OP_COUNT:
            f->count += c->count;
            break;
        case TP_OP_COPY:
            if (f->pw) { /* the task copied in place */
                f->bytes_out += c->len;
                break;
            }
            if (c->zero) {
                if (lseek(f->out_fd, (off_t)c->len, SEEK_CUR) < 0) err = -errno;
            } else {
                err = write_all(f->out_fd, c->in->data, c->len);
            }
            if (!err) f->bytes_out += c->len;
            break;
        case TP_OP_COMPRESS:
            if (f->fast) { /* the worker wrote the one frame */
                f->bytes_out += c->out_len;
                break;
            }
            if (f->nframes == f->frames_cap) {
                size_t nc = f->frames_cap ? f->frames_cap * 2 : 16;
                uint32_t *nf = realloc(f->frames, nc * 2 * sizeof(uint32_t));
                if (!nf) {
                    err = -ENOMEM;
                    break;
                }
                f->frames = nf;
                f->frames_cap = nc;
            }
            f->frames[2 * f->nframes] = (uint32_t)c->out_len;
            f->frames[2 * f->nframes + 1] = (uint32_t)c->len;
            f->nframes++;
            if (f->verify) XXH64_update(f->verify, c->in->data, c->len);
            err = write_all(f->out_fd, c->out->data, c->out_len);
            if (!err) f->bytes_out += c->out_len;
            break;
        case TP_OP_DECOMPRESS:
            if (f->stream || f->pw) {
                f->bytes_out += c->out_len;
            } else {
                err = write_all(f->out_fd, c->out->data, c->out_len);
                if (!err) f->bytes_out += c->out_len;
            }
            break;
        }
        if (err) file_fail(f, err, "write");
        if (!err && f->out_fd >= 0 && !r->job->no_fsync) writeback(f);
    }
    if (c->stream_fd >= 0) r->streams--; /* the stream decode slot taken in plan_file */
    tp__add_relaxed(&e->chunks, 1);
    tp__add_relaxed(&e->bytes_in, c->len);
    tp__add_relaxed(&e->prog_done, f->stream ? f->size : c->len);
    if (c->out_len && op_writes(r->op))
        tp__add_relaxed(&e->bytes_out, r->op == TP_OP_COPY ? c->len : c->out_len);
    else if (r->op == TP_OP_COPY && !c->err)
        tp__add_relaxed(&e->bytes_out, c->len);
    if (++f->consumed == f->nchunks) file_end(r, f);
}

/* Submit the batch being filled (the coordinator is about to wait, or the
 * batch is full). */
static void batch_submit(struct run *r) {
    struct echunk *lead = r->batch;
    if (!lead) return;
    r->batch = r->batch_end = NULL;
    r->batch_files = 0;
    r->batch_bytes = 0;
    int err = tp_submit_future(r->e->pool, r->e->ctx, batch_task, lead, &lead->fut);
    if (err) {
        lead->fut = NULL;
        for (struct echunk *c = lead; c; c = c->batch_next)
            chunk_fail(c, err, "submit");
    }
}

static void consume_head(struct run *r) {
    batch_submit(r); /* the head may be in it; never wait on an unsubmitted task */
    struct echunk *c = r->win[r->head];
    r->head = (r->head + 1) % r->win_cap;
    r->n--;
    if (c->task) r->ntasks--;
    if (c->batched && !c->fut && !c->ran && !c->err) {
        /* Its batch's leader was consumed before it (window order), so the
         * batch is over; a chunk it did not reach was cancelled. */
        int err = tp_ctx_err(r->e->ctx);
        chunk_fail(c, err ? err : -ECANCELED, "canceled");
    }
    if (c->fut) {
        int res = 0;
        int w = tp_future_wait(c->fut, TP_FOREVER, &res);
        tp_future_release(c->fut);
        c->fut = NULL;
        if (w < 0 && !c->err)
            chunk_fail(c, w, "canceled");
        else if (res < 0 && !c->err)
            chunk_fail(c, res, "task");
    }
    apply(r, c);
    chunk_free(r, c);
}

/* Append c to the window (making room first) and submit its task unless it
 * already carries an error. */
static void push_chunk(struct run *r, struct echunk *c) {
    bool join = c->batched && !c->err && r->batch;
    if (!join) c->task = !c->err;
    while (r->n == r->win_cap || (c->task && r->ntasks >= r->task_cap)) {
        consume_head(r); /* submits the open batch first: c cannot join it now */
        if (join && !r->batch) {
            join = false;
            c->task = true;
        }
    }
    if (c->batched && !c->err && !join) {
        /* A new batch: its leader takes buffers big enough for any file of
         * it (at most a chunk and BATCH_BYTES); this may consume the head,
         * which only makes room. */
        size_t big = r->e->o.chunk_size < BATCH_BYTES ? r->e->o.chunk_size : (size_t)BATCH_BYTES;
        size_t in_sz = piecewise(r) ? (big < PIECE ? big : PIECE) : big;
        int err = get_buf(r, in_sz, &c->in);
        if (!err && r->op == TP_OP_COMPRESS) err = get_buf(r, ZSTD_compressBound(big), &c->out);
        if (err) {
            chunk_fail(c, err, "buffer");
            c->task = false;
        } else {
            c->mem = c->in->cap + (c->out ? c->out->cap : 0);
            mem_add(r->e, c->mem);
        }
    }
    if (c->batched && !c->err) {
        if (join) {
            r->batch_end->batch_next = c;
        } else {
            batch_submit(r);
            r->batch = c;
        }
        r->batch_end = c;
        r->batch_files++;
        r->batch_bytes += c->len;
    } else if (!c->err) {
        batch_submit(r); /* keep submission in window order */
        int err = tp_submit_future(r->e->pool, r->e->ctx, chunk_task, c, &c->fut);
        if (err) {
            c->fut = NULL;
            chunk_fail(c, err, "submit");
        }
    }
    if (c->task) r->ntasks++;
    r->win[(r->head + r->n) % r->win_cap] = c;
    r->n++;
    if (r->batch && (r->batch_files >= BATCH_FILES || r->batch_bytes >= BATCH_TASK_BYTES))
        batch_submit(r);
}

static struct echunk *chunk_new(struct run *r, struct efile *f, uint64_t index) {
    struct echunk *c = calloc(1, sizeof(*c));
    if (c) {
        c->r = r;
        c->f = f;
        c->index = index;
        c->stream_fd = -1;
        c->pw_fd = -1;
    }
    return c;
}

/* Plan decompression of f from its seek table; false = decode as a stream. */
static bool plan_frames(struct run *r, struct efile *f, uint64_t **pairs, size_t *nframes) {
    tp_fd *h = NULL;
    *pairs = NULL;
    *nframes = 0;
    if (f->size < TP__SEEK_FOOTER_SIZE + 8) return false;
    if (src_acquire(r->e, f, &h) != 0) return false; /* the stream path reports it */
    bool ok = false;
    unsigned char foot[TP__SEEK_FOOTER_SIZE];
    int sums = 0;
    long n = -1;
    uint64_t tstart = 0;
    size_t tlen = 0;
    if (tp_fd_pread(h, foot, sizeof(foot), f->size - sizeof(foot)) == (ssize_t)sizeof(foot))
        n = tp__seek_table_locate(foot, f->size, &sums, &tstart, &tlen);
    if (n <= 0) goto out;
    unsigned char *t = malloc(tlen);
    uint64_t *p = malloc((size_t)n * 2 * sizeof(uint64_t));
    if (!t || !p) {
        free(t);
        free(p);
        goto out;
    }
    size_t maxpair = (r->e->o.max_mem / 2);
    if (tp_fd_pread(h, t, tlen, tstart) == (ssize_t)tlen) {
        ok = tp__seek_table_parse(t, n, sums, tstart, p) == 0;
        for (long i = 0; ok && i < n; i++)
            if (class_of(p[2 * i]) + class_of(p[2 * i + 1]) > maxpair)
                ok = false; /* too big for the memory bound: decode as a stream */
    }
    free(t);
    if (ok) {
        *pairs = p;
        *nframes = (size_t)n;
    } else {
        free(p);
    }
out:
    tp_fd_release(r->e->fp, h);
    return ok;
}

/* An input: the path, its argument index and the result of stat. */
struct input {
    char *path;
    size_t index;
    int err;
    struct stat st;
    bool walked;        /* found by a walk (lstat; opened with O_NOFOLLOW) */
    const char *err_op; /* with err: what failed (default "open") */
    const char *skip; /* not processed: why */
};

struct inputs {
    struct input *v;
    size_t n, cap;
};

static int inputs_add(struct inputs *in, const char *path, size_t index, int err,
                      const struct stat *st) {
    if (in->n == in->cap) {
        size_t nc = in->cap ? in->cap * 2 : 64;
        struct input *nv = realloc(in->v, nc * sizeof(*nv));
        if (!nv) return -ENOMEM;
        in->v = nv;
        in->cap = nc;
    }
    struct input *x = &in->v[in->n];
    memset(x, 0, sizeof(*x));
    x->path = strdup(path);
    if (!x->path) return -ENOMEM;
    x->index = index;
    x->err = err;
    if (st) x->st = *st;
    in->n++;
    return 0;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Our own temporary files (tmpfile.c) are never inputs. */
static bool is_tmp_name(const char *name) {
    return tp__tmp_parse(name, NULL, NULL);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entry names of directory fd (closed), sorted; *n of them. */
static int read_names(int fd, char ***out, size_t *n) {
    *out = NULL;
    *n = 0;
    DIR *d = fdopendir(fd);
    if (!d) {
        int err = -errno;
        close(fd);
        return err;
    }
    char **v = NULL;
    size_t cap = 0;
    int err = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            err = errno ? -errno : 0;
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || is_tmp_name(de->d_name))
            continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nv = realloc(v, nc * sizeof(*nv));
            if (!nv) {
                err = -ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        if (!(v[*n] = strdup(de->d_name))) {
            err = -ENOMEM;
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(v, *n, sizeof(*v), cmp_name);
    *out = v;
    return err;
}

/* Walk dir, which was stat'ed as *dst. Never follows a symlink found in
 * the tree (a symlinked file or directory is reported as skipped), and a
 * directory replaced (by a symlink or another directory) between its stat
 * and its open fails with -ESTALE instead of being walked. Entries that
 * vanish or change later fail per file (see src_acquire). */
static int walk(struct run *r, struct inputs *in, const char *dir, const struct stat *dst,
                size_t index, unsigned depth) {
    int fd = open_retry(dir, O_RDONLY | O_DIRECTORY | (depth ? O_NOFOLLOW : 0));
    struct stat dst2;
    if (fd < 0) return inputs_add(in, dir, index, -errno, NULL);
    if (fstat(fd, &dst2) != 0 || dst2.st_dev != dst->st_dev || dst2.st_ino != dst->st_ino) {
        close(fd);
        int err = inputs_add(in, dir, index, -ESTALE, NULL);
        if (!err) in->v[in->n - 1].err_op = "directory replaced during the walk";
        return err;
    }
    char **names;
    size_t n;
    int rerr = read_names(fd, &names, &n);
    int err = rerr ? inputs_add(in, dir, index, rerr, NULL) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = names[i];
        size_t dl = strlen(dir);
        char *p = err ? NULL : malloc(dl + strlen(name) + 2);
        if (!err && !p) err = -ENOMEM;
        if (p) {
            sprintf(p, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", name);
            bool zst = ends_with(name, ".zst");
            bool want = !(r->op == TP_OP_COMPRESS && zst) && !(r->op == TP_OP_DECOMPRESS && !zst);
            struct stat st;
            if (lstat(p, &st) != 0) {
                if (errno != ENOENT || want) err = inputs_add(in, p, index, -errno, NULL);
            } else if (S_ISDIR(st.st_mode)) {
                err = depth > 64 ? inputs_add(in, p, index, -ELOOP, NULL)
                                 : walk(r, in, p, &st, index, depth + 1);
            } else if (want) {
                err = inputs_add(in, p, index, 0, &st);
                if (!err) {
                    struct input *x = &in->v[in->n - 1];
                    x->walked = true;
                    if (S_ISLNK(st.st_mode))
                        x->skip = "symbolic link not followed";
                    else if (!S_ISREG(st.st_mode))
                        x->skip = "not a regular file";
                    else
                        tp__add_relaxed(&r->e->prog_total, (uint64_t)st.st_size);
                }
            }
            free(p);
        }
        free(names[i]);
    }
    free(names);
    return err;
}

/* Output path for an input, or NULL with *err set. */
static char *out_name(struct run *r, const char *path, int *err) {
    const tp_job *j = r->job;
    if (r->op == TP_OP_COPY) {
        struct stat st;
        if (stat(j->out_path, &st) == 0 && S_ISDIR(st.st_mode)) {
            const char *b = strrchr(path, '/');
            b = b ? b + 1 : path;
            char *s = malloc(strlen(j->out_path) + strlen(b) + 2);
            if (s)
                sprintf(s, "%s/%s", j->out_path, b);
            else
                *err = -ENOMEM;
            return s;
        }
        char *s = strdup(j->out_path);
        if (!s) *err = -ENOMEM;
        return s;
    }
    if (j->out_path) {
        char *s = strdup(j->out_path);
        if (!s) *err = -ENOMEM;
        return s;
    }
    if (r->op == TP_OP_COMPRESS) {
        char *s = str_cat(path, ".zst");
        if (!s) *err = -ENOMEM;
        return s;
    }
    if (!ends_with(path, ".zst") || strlen(path) == 4) {
        *err = -EINVAL;
        return NULL;
    }
    char *s = strndup(path, strlen(path) - 4);
    if (!s) *err = -ENOMEM;
    return s;
}

static size_t digest_len_of(tp_hash_alg a) {
    switch (a) {
    case TP_HASH_XXH128:
        return 16;
    case TP_HASH_XXH32:
    case TP_HASH_CRC32C:
        return 4;
    default:
        return 8;
    }
}

/* Take one of the MAX_STREAMS output slots (finishing the oldest files until
 * one is free) and open f's temp output in it. On failure c records the
 * error; the slot is not taken. Returns 0 or -errno. */
static int open_output_slot(struct run *r, struct efile *f, struct echunk *c) {
    while (r->streams >= MAX_STREAMS)
        consume_head(r);
    int err = open_tmp(f);
    if (err) {
        chunk_fail(c, err, "create output");
        return err;
    }
    r->streams++;
    return 0;
}

/* Small whole files run several to a task (fewer hand-offs and wake-ups);
 * compressed ones are also written by the worker (which then also hashes
 * the input for --rm's verification), unless more workers than
 * FAST_MAX_WORKERS could hold outputs open at once. */
static bool batchable(const struct run *r, const struct efile *f) {
    if (f->err || f->size > BATCH_BYTES || f->size > r->e->o.chunk_size) return false;
    if (r->op == TP_OP_HASH || r->op == TP_OP_COUNT) return true;
    return r->op == TP_OP_COMPRESS && r->e->o.workers <= FAST_MAX_WORKERS;
}

/* Plan one input into chunks and push them (consuming as the bounds say). */
static int plan_file(struct run *r, const struct input *x) {
    tp_engine *e = r->e;
    const tp_job *j = r->job;
    size_t chunk = e->o.chunk_size;
    struct efile *f = calloc(1, sizeof(*f));
    if (!f) return -ENOMEM;
    f->out_fd = -1;
    f->index = x->index;
    f->path = strdup(x->path);
    if (!f->path) {
        free(f);
        return -ENOMEM;
    }
    f->alg = j->algs ? j->algs[x->index] : j->alg;
    f->digest_len = digest_len_of(f->alg);
    f->size = (uint64_t)x->st.st_size;
    f->mode = x->st.st_mode;
    f->atime = x->st.st_atim;
    f->mtime = x->st.st_mtim;
    f->nchunks = 1;
    f->src_dev = x->st.st_dev;
    f->src_ino = x->st.st_ino;
    f->nofollow = x->walked;
    /* A cached descriptor may name an older file at this path (rewritten
     * since an earlier job): have the fd pool re-check it on next acquire. */
    if (!x->err) (void)tp_fdpool_invalidate(e->fp, f->path);
    if (x->skip) {
        f->skip = x->skip;
        file_fail(f, -ECANCELED, "skipped"); /* (never reported: f->skip is) */
    } else if (x->err) {
        file_fail(f, x->err, x->err_op ? x->err_op : "open");
    } else if (S_ISDIR(x->st.st_mode)) {
        file_fail(f, -EISDIR, "open");
    } else if (!S_ISREG(x->st.st_mode)) {
        file_fail(f, -EINVAL, "not a regular file");
    } else if (op_writes(r->op)) {
        int err = 0;
        f->out = out_name(r, f->path, &err);
        if (!f->out)
            file_fail(f, err, err == -EINVAL ? "unknown suffix (want .zst)" : "output name");
        struct stat ost;
        if (f->out && stat(f->out, &ost) == 0 && ost.st_dev == x->st.st_dev &&
            ost.st_ino == x->st.st_ino)
            file_fail(f, -EINVAL, "input and output are the same file");
        else if (f->out && lstat(f->out, &ost) == 0 && S_ISDIR(ost.st_mode))
            file_fail(f, -EISDIR, "output is a directory"); /* even with force */
        else if (f->out && !j->force && lstat(f->out, &ost) == 0)
            file_fail(f, -EEXIST, "output exists"); /* checked again at the rename */
    }
    if (f->err) {
        struct echunk *c = chunk_new(r, f, 0);
        if (!c) {
            file_free(f);
            return -ENOMEM;
        }
        c->err = f->err;
        c->err_op = f->err_op;
        push_chunk(r, c);
        return 0;
    }

    uint64_t *frames = NULL; /* decompress: (compressed, decompressed) pairs */
    size_t step = r->op == TP_OP_COMPRESS ? tp__compress_input_len(chunk) : chunk;
    if (r->op == TP_OP_DECOMPRESS) {
        size_t nf = 0;
        if (plan_frames(r, f, &frames, &nf))
            f->nchunks = nf;
        else
            f->stream = true;
    } else if (r->op == TP_OP_HASH && f->alg != TP_HASH_CRC32C) {
        step = f->size > 0 ? f->size : 1; /* XXH* is sequential: one task streams the file */
    } else if (f->size > step) {
        f->nchunks = (f->size + step - 1) / step;
    }
    if (r->op == TP_OP_COMPRESS && j->remove_src) {
        if (!(f->verify = XXH64_createState()))
            file_fail(f, -ENOMEM, "hash state");
        else
            XXH64_reset(f->verify, 0);
    }

    uint64_t off = 0, dst_off = 0;
    for (uint64_t k = 0; k < f->nchunks; k++) {
        struct echunk *c = chunk_new(r, f, k);
        if (!c) {
            /* Cannot even describe the rest: shorten the file to what was
             * pushed (at least one chunk carries the error). */
            if (k == 0) {
                free(frames);
                file_free(f);
                return -ENOMEM;
            }
            f->nchunks = k;
            file_fail(f, -ENOMEM, "plan");
            break;
        }
        int err = f->err ? f->err : tp_ctx_err(e->ctx);
        if (err) {
            c->err = err;
            c->err_op = f->err ? f->err_op : "canceled";
            f->nchunks = k + 1; /* the rest is not planned */
            push_chunk(r, c);
            break;
        }
        size_t in_sz = 0, out_sz = 0;
        if (r->op == TP_OP_DECOMPRESS && f->stream) {
            c->off = 0;
            c->len = 0;
            /* zstd streams through buffers of any size: no bigger than the
             * file or a chunk, so a small max_mem still holds them. */
            in_sz = ZSTD_DStreamInSize();
            out_sz = ZSTD_DStreamOutSize();
            if (in_sz > f->size) in_sz = f->size ? (size_t)f->size : 1;
            if (in_sz > chunk) in_sz = chunk;
            if (out_sz > chunk) out_sz = chunk;
            err = open_output_slot(r, f, c);
            if (!err) c->stream_fd = f->out_fd;
        } else if (r->op == TP_OP_DECOMPRESS) {
            c->off = off;
            c->len = (size_t)frames[2 * k];
            c->dsize = (size_t)frames[2 * k + 1];
            c->dst_off = dst_off;
            dst_off += c->dsize;
            in_sz = c->len;
            out_sz = c->dsize ? c->dsize : 1; /* an empty frame still decodes into a buffer */
            if (k == 0 && f->nchunks > 1) { /* several frames: tasks pwrite in place */
                err = open_output_slot(r, f, c);
                if (!err) f->pw = true;
            }
            if (f->pw) {
                c->pw_fd = f->out_fd;
                out_sz = PIECE < chunk ? PIECE : chunk;
            }
        } else {
            c->off = off;
            c->len = (size_t)(f->size - off < step ? f->size - off : step);
            in_sz = c->len;
            if (piecewise(r)) in_sz = c->len < PIECE ? c->len : PIECE;
            if (r->op == TP_OP_COMPRESS) out_sz = ZSTD_compressBound(c->len);
            if (r->op == TP_OP_COMPRESS && c->len > PIECE && !j->remove_src) {
                c->zpieces = true; /* --rm hashes the whole chunk at apply: keep it */
                in_sz = PIECE;
            }
            if (r->op == TP_OP_COPY && k == 0 && c->len > 0) { /* tasks copy in place */
                err = open_output_slot(r, f, c);
                if (!err) f->pw = true;
            }
            if (r->op == TP_OP_COPY && f->pw) {
                c->pw_fd = f->out_fd;
                in_sz = c->len < PIECE ? c->len : PIECE; /* only if the kernel copy is refused */
            }
        }
        off += c->len;
        if (f->nchunks == 1 && batchable(r, f)) {
            c->batched = true;
            c->fast = f->fast = r->op == TP_OP_COMPRESS;
        }
        if (!c->err && !c->batched && (in_sz || (r->op != TP_OP_HASH && r->op != TP_OP_COUNT))) {
            err = get_buf(r, in_sz, &c->in);
            if (!err && out_sz) err = get_buf(r, out_sz, &c->out);
            if (err) {
                chunk_fail(c, err, "buffer");
            } else {
                c->mem = c->in->cap + (c->out ? c->out->cap : 0);
                mem_add(e, c->mem);
            }
        }
        push_chunk(r, c);
    }
    free(frames);
    return 0;
}

/* Before writing anything: remove the temps that killed earlier runs left
 * for this job's outputs (tmpfile.c says which: never another's). */
static void sweep_stale_tmps(struct run *r, const struct inputs *in) {
    char **outs = calloc(in->n ? in->n : 1, sizeof(*outs));
    if (!outs) return; /* only housekeeping */
    for (size_t i = 0; i < in->n; i++) {
        int err = 0;
        if (!in->v[i].err && S_ISREG(in->v[i].st.st_mode))
            outs[i] = out_name(r, in->v[i].path, &err);
    }
    (void)tp__tmp_sweep((const char *const *)outs, in->n);
    for (size_t i = 0; i < in->n; i++)
        free(outs[i]);
    free(outs);
}

static int run_job(tp_engine *e, const tp_job *job, int op, const char *const *paths, size_t npaths,
                   tp_chunk_fn user_fn, void *user_arg) {
    if (!e || !job || (!paths && npaths)) return -EINVAL;
    if (op != OP_USER && (op < TP_OP_HASH || op > TP_OP_COUNT)) return -EINVAL;
    if (op == TP_OP_COPY && !job->out_path) return -EINVAL;
    if (job->out_path && (npaths != 1 || job->recursive) && !(op == TP_OP_COPY && !job->recursive))
        return -EINVAL;
    if (op == TP_OP_COMPRESS && (job->level < ZSTD_minCLevel() || job->level > ZSTD_maxCLevel()))
        return -EINVAL;
    if (op == TP_OP_COUNT && job->pattern && strchr(job->pattern, '\n')) return -EINVAL;
    if (tp_ctx_done(e->ctx)) return tp_ctx_err(e->ctx);

    struct run r = {.e = e, .job = job, .op = op, .user_fn = user_fn, .user_arg = user_arg};
    if (op == TP_OP_COUNT && job->pattern) {
        r.pat = job->pattern;
        r.patlen = strlen(job->pattern);
    }
    /* Enough chunks in flight to keep every worker busy while the head is
     * consumed; more only costs memory (and first-touch page faults). */
    r.task_cap = 4 * (size_t)e->o.workers + 4;
    if (r.task_cap > 4096) r.task_cap = 4096;
    r.win_cap = r.task_cap;
    if (op == TP_OP_HASH || op == TP_OP_COUNT || op == TP_OP_COMPRESS)
        r.win_cap *= BATCH_FILES; /* room for full batches of small files */
    r.win = calloc(r.win_cap, sizeof(*r.win));
    if (!r.win) return -ENOMEM;
    tp__store_relaxed(&e->prog_done, 0);
    tp__store_relaxed(&e->prog_total, 0);

    struct inputs in = {0};
    int err = 0;
    for (size_t i = 0; i < npaths && !err; i++) {
        struct stat st;
        if (!paths[i] || !paths[i][0]) {
            err = inputs_add(&in, paths[i] ? paths[i] : "", i, -ENOENT, NULL);
        } else if (stat(paths[i], &st) != 0) {
            err = inputs_add(&in, paths[i], i, -errno, NULL);
        } else if (S_ISDIR(st.st_mode) && job->recursive) {
            err = walk(&r, &in, paths[i], &st, i, 0);
        } else {
            err = inputs_add(&in, paths[i], i, 0, &st);
            if (!err && S_ISREG(st.st_mode)) tp__add_relaxed(&e->prog_total, (uint64_t)st.st_size);
        }
    }
    if (!err && op_writes(op)) sweep_stale_tmps(&r, &in);
    for (size_t i = 0; i < in.n && !err; i++) {
        if (tp_ctx_done(e->ctx)) break;
        err = plan_file(&r, &in.v[i]);
    }
    batch_submit(&r);
    while (r.n)
        consume_head(&r);
    flush_pending(&r);
    for (size_t i = 0; i < in.n; i++)
        free(in.v[i].path);
    free(in.v);
    free(r.win);
    if (err) return err;
    if (tp_ctx_done(e->ctx)) return tp_ctx_err(e->ctx);
    return r.failed;
}

int tp_engine_run(tp_engine *e, const tp_job *job, const char *const *paths, size_t npaths) {
    if (!job) return -EINVAL;
    return run_job(e, job, (int)job->op, paths, npaths, NULL, NULL);
}

struct user_res {
    int err;
};

static void user_result(void *arg, const tp_file_result *r) {
    struct user_res *u = arg;
    if (r->err && !u->err) u->err = r->err;
}

int tp_file_chunks(tp_engine *e, const char *path, tp_chunk_fn fn, void *arg) {
    if (!e || !path || !fn) return -EINVAL;
    struct user_res u = {0};
    tp_job job = {.on_result = user_result, .arg = &u};
    int err = run_job(e, &job, OP_USER, &path, 1, fn, arg);
    if (err < 0) return err;
    return u.err;
}
