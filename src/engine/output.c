/* SPDX-License-Identifier: MIT */
/*
 * Output: everything between a consumed chunk and a published file. It
 * owns the temp outputs (tp__open_tmp; tmpfile.c names them), applying a
 * chunk's result to its file in order (tp__apply: combine a hash, add a
 * count, write the bytes, record the frame), writeback of big outputs as
 * they grow (sync_file_range), finishing a file (seek table, size, mode
 * and times), the batch sync of finished outputs (one fsync, or one syncfs
 * per filesystem) and publishing in input order (--rm's verification,
 * the no-replace rename, removing the source, the report).
 *
 * Coordinator only, except tp__fast_output, which a worker runs for the
 * small-file fast path: it creates, writes and closes the temp of the
 * file whose only chunk it runs; the coordinator sees f->tmp and f->dev
 * after the future's completion. Nothing here waits on another thread;
 * the only waits are the filesystem's (open, write, fsync, syncfs, each
 * retried on EINTR).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine_internal.h"
#include "internal/os.h"

/* Create the temporary output next to f->out (tmpfile.c names it); sets
 * f->tmp and f->out_fd. It is private (0600) until finish_meta gives it
 * the source's mode. */
int tp__open_tmp(struct efile *f) {
    return tp__tmp_create(f->out, 0600, &f->tmp, &f->out_fd);
}

/* Give a finished output the source's permission bits and times, as zstd
 * does (mode & 0777 exactly, not filtered by the umask; atime and mtime).
 * A failure here loses no data: the output is kept (zstd only warns). */
void tp__finish_meta(struct efile *f, int fd) {
    (void)fchmod(fd, f->mode & 0777);
    struct timespec ts[2] = {f->atime, f->mtime};
    (void)futimens(fd, ts);
}

/* write(2) all n bytes, retried on EINTR and short writes. */
int tp__write_all(int fd, const void *p, size_t n) {
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

/* open(2) and fsync(2) retried on EINTR (a signal on a slow filesystem). */
int tp__open_retry(const char *path, int flags) {
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    return fd;
}

void tp__file_free(struct efile *f) {
    free(f->path);
    free(f->out);
    free(f->tmp);
    XXH64_freeState(f->verify);
    free(f->frames);
    free(f);
}

/* Move tmp to out. Without force an existing out is never replaced, even
 * one created after the plan-time check: RENAME_NOREPLACE, or where the
 * filesystem lacks it, link() (fails with EEXIST atomically) + unlink. */
static int publish_rename(const char *tmp, const char *out, bool force) {
    if (force) return rename(tmp, out) == 0 ? 0 : -errno;
    int err = tp__os_rename_noreplace(tmp, out);
    if (err != -EINVAL && err != -ENOSYS) return err;
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
            int err = tp__verify_zst(f->tmp, XXH64_digest(f->verify));
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
        tp__file_free(f);
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
    tp__file_free(f);
}

/* Make the pending outputs durable with one fsync (a single file) or one
 * syncfs per filesystem (a batch: one journal commit instead of one per
 * file), then publish them in order. */
void tp__flush_pending(struct run *r) {
    const tp_job *j = r->job;
    bool sync = (!j->no_fsync || j->remove_src) && !tp_ctx_done(r->e->ctx);
    size_t nout = 0;
    for (size_t i = 0; i < r->npending; i++)
        nout += r->pending[i]->tmp && !r->pending[i]->err;
    for (size_t i = 0; sync && i < r->npending; i++) {
        struct efile *f = r->pending[i];
        if (!f->tmp || f->err || f->synced) continue;
        int fd = tp__open_retry(f->tmp, O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            file_fail(f, -errno, "fsync");
            if (fd >= 0) close(fd);
            continue;
        }
        int err = tp__os_sync(fd, nout != 1);
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
                int err = tp__write_all(f->out_fd, t, n);
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
        if (!f->err) tp__finish_meta(f, f->out_fd);
        if (!f->err && fstat(f->out_fd, &st) == 0) f->dev = st.st_dev;
        if (close(f->out_fd) != 0 && !f->err) file_fail(f, -errno, "close");
        f->out_fd = -1;
    }
    r->pending[r->npending++] = f;
    r->pending_bytes += f->bytes_out;
    if (r->npending == PENDING_MAX || r->pending_bytes >= PENDING_BYTES) tp__flush_pending(r);
}

/* The first chunk of f is being consumed: open the output. */
static void file_begin(struct run *r, struct efile *f) {
    if (f->err || !op_writes(r->op) || f->stream || f->pw || f->fast) return;
    int err = tp__open_tmp(f);
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
    tp__os_writeback_start(f->out_fd, f->wb_off, end - f->wb_off); /* errors surface at fsync */
    f->wb_off = end;
}

void tp__apply(struct run *r, struct echunk *c) {
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
                err = tp__write_all(f->out_fd, c->in->data, c->len);
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
            err = tp__write_all(f->out_fd, c->out->data, c->out_len);
            if (!err) f->bytes_out += c->out_len;
            break;
        case TP_OP_DECOMPRESS:
            if (f->stream || f->pw) {
                f->bytes_out += c->out_len;
            } else {
                err = tp__write_all(f->out_fd, c->out->data, c->out_len);
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

/* Small-file fast path: the worker writes the whole output to the temp
 * file and closes it; the coordinator only publishes (syncs, renames). The
 * temp name stays in f->tmp so the coordinator removes it on any error. */
int tp__fast_output(struct echunk *c) {
    struct efile *f = c->f;
    int err = tp__open_tmp(f);
    if (err) return chunk_fail(c, err, "create output");
    err = tp__write_all(f->out_fd, c->out->data, c->out_len);
    struct stat st;
    if (!err) tp__finish_meta(f, f->out_fd);
    if (!err && fstat(f->out_fd, &st) == 0) f->dev = st.st_dev;
    if (close(f->out_fd) != 0 && !err) err = -errno;
    f->out_fd = -1;
    return err ? chunk_fail(c, err, "write") : 0;
}
