/* SPDX-License-Identifier: MIT */
/*
 * Work: the tasks the workers run. tp__chunk_task runs one chunk: it opens
 * the source through the fd pool (tp__src_acquire: still the file that
 * was planned), picks the kernel for the operation and the chunk's mode
 * (hash.c, scan.c, copy.c, zstd.c, or the user's callback) and leaves the
 * result in the chunk. tp__batch_task runs a small-file batch, the chunks
 * one after another with the leader's buffers.
 *
 * Runs on a worker. A task touches only its chunk (and, for the fast
 * path, the chunk's file, whose only chunk it is), reads the run's
 * read-only fields (e, job, pat, patlen, user_*) and takes an fd lease it
 * releases before returning (one at a time: the fd pool's wait cannot
 * deadlock). It takes no buffers and never waits on the coordinator. Its
 * writes reach the coordinator through the future's completion.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <zstd.h>

#include "engine/engine_internal.h"

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

/* Read the chunk's input range into c->in. */
static int chunk_read(struct echunk *c, tp_fd *h) {
    ssize_t n = tp_fd_pread(h, c->in->data, c->len, c->off);
    if (n < 0) return chunk_fail(c, (int)n, "read");
    if ((size_t)n != c->len) return chunk_fail(c, -EIO, "file shrank while reading");
    c->in->len = c->len;
    return 0;
}

/* Open f's source; it must still be the file that was planned (same device
 * and inode): a tree that changes while it is walked never makes us read a
 * file put in its place, nor (O_NOFOLLOW for what a walk found) a symlink's
 * target. A file replaced gives -ESTALE. */
int tp__src_acquire(tp_engine *e, const struct efile *f, tp_fd **h) {
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

int tp__chunk_task(void *arg) {
    struct echunk *c = arg;
    struct run *r = c->r;
    tp_engine *e = r->e;
    c->ran = true;
    int err = tp_ctx_err(e->ctx);
    if (err) return chunk_fail(c, err, "canceled");
    if (r->op == TP_OP_HASH && c->f->nchunks == 1 && c->len == 0) {
        tp__digest_of_chunk(c, c->f->alg, c->digest); /* empty file: nothing to read */
        return 0;
    }
    tp_fd *h = NULL;
    err = tp__src_acquire(e, c->f, &h);
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
        err = tp__chunk_stream_decompress(c, h, z);
        goto out;
    }
    if (piecewise(r)) {
        err = tp__chunk_pieces(c, h);
        goto out;
    }
    if (r->op == TP_OP_COPY && c->pw_fd >= 0) {
        err = tp__chunk_copy_in_place(c, h);
        goto out;
    }
    if (c->zpieces) {
        err = tp__chunk_compress_pieces(c, h, z);
        if (!err && c->fast) err = tp__fast_output(c);
        goto out;
    }
    if (c->len && (err = chunk_read(c, h)) < 0) goto out;
    switch (r->op) {
    case TP_OP_HASH: /* piecewise */
        break;
    case TP_OP_COUNT:
        if (c->len) err = tp__chunk_count_matches(c, h);
        break;
    case TP_OP_COPY:
        tp__chunk_copy_scan(c);
        break;
    case TP_OP_COMPRESS:
        err = tp__chunk_compress(c, z);
        if (!err && c->fast) err = tp__fast_output(c);
        break;
    case TP_OP_DECOMPRESS:
        err = tp__chunk_decompress(c, z);
        break;
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
int tp__batch_task(void *arg) {
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
        (void)tp__chunk_task(c);
        if (lend) c->in = c->out = NULL;
    }
    return 0;
}
