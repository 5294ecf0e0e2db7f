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
 *
 * Files. engine.c (this file): options, create/destroy, statistics and
 * the job driver (run_job: plan every input, drain the window, publish).
 * plan.c: inputs, tree walk, output names, each file's chunk plan; seek.c:
 * the seek table and the frame plan of a multi-frame .zst; window.c: the
 * reorder window (buffers in flight, backpressure, ordered consumption);
 * work.c: the chunk and batch tasks; the kernels hash.c, zstd.c, copy.c,
 * scan.c (count), crc32c.c; output.c: temp files, applying results,
 * writeback, batch sync, publish and rename (tmpfile.c names the temps).
 * Shared structures: engine_internal.h. docs/design.md follows a chunk.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zstd.h>

#include "engine/engine_internal.h"
#include "internal/atomic.h"
#include "internal/os.h"
#include "tripool/buf.h"
#include "tripool/fd.h"

/* ---- options, create, destroy ------------------------------------------ */

void tp_engine_opts_init(tp_engine_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof(*o));
    o->workers = tp_usable_cpus();
    o->chunk_size = (size_t)4 << 20;
    o->max_mem = (size_t)256 << 20;
    o->max_open = 64;
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
    int err = tp__plan_inputs(&r, &in, paths, npaths);
    if (!err && op_writes(op)) tp__sweep_stale_tmps(&r, &in);
    for (size_t i = 0; i < in.n && !err; i++) {
        if (tp_ctx_done(e->ctx)) break;
        err = tp__plan_file(&r, &in.v[i]);
    }
    tp__batch_submit(&r);
    while (r.n)
        tp__consume_head(&r);
    tp__flush_pending(&r);
    tp__inputs_free(&in);
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
