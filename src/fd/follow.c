/* SPDX-License-Identifier: MIT */
/*
 * The follower: tail -F on top of the file-handle pool.
 *
 * DESIGN
 * A follower is used by one thread at a time and has no lock of its own;
 * the pool it leases from is thread-safe. It keeps a queue of files, each
 * with its own lease and read offset: q[0] is the file being read, q[nq-1]
 * the file the path named when last checked. A rotation (the path names
 * another (dev, ino)) appends the new file; q[0] is dropped only when it is
 * at its end AND grace_ns have passed since its successor appeared, because
 * a writer that has not reopened yet still appends to it. No byte of a
 * later file is returned before the earlier one is finished, so bytes come
 * out in file order. Holding a lease on every queued file means files that
 * rotate away while an older one is still in its grace period are not lost
 * (up to FOLLOW_MAX_FILES queued; beyond that, rotation checks pause until
 * the queue drains).
 *
 * Checks happen only at end of data (a read returned 0): with one file
 * queued, fstat(q[0]) for truncation (size < off: restart at 0, as after
 * copytruncate); then stat(path) against q[nq-1] for rotation (the pool
 * entry is invalidated and the new file acquired). A missing path
 * (renamed, not yet recreated) keeps the queue until a file appears.
 */
#include "fd/fd_internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define FOLLOW_MAX_FILES 8

struct follow_file {
    tp_fd *h;
    bool seq; /* pipe/FIFO/socket: read, never pread */
    uint64_t off;
    dev_t dev;
    ino_t ino;
    uint64_t succeeded_at; /* when its successor appeared (valid if not last) */
};

struct tp_follower {
    tp_fdpool *fp;
    tp_follow_opts o;
    struct follow_file q[FOLLOW_MAX_FILES];
    unsigned nq;
    bool opened_once; /* the first file starts at its end unless from_start */
    struct tp_follow_stats st;
    char path[];
};

void tp_follow_opts_init(tp_follow_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->poll_ns = 10 * TP_NSEC_PER_MSEC;
    o->grace_ns = 500 * TP_NSEC_PER_MSEC;
}

/* Acquire the file the path names now and queue it. Returns 0 (queued, or
 * nothing when the path does not exist) or -errno. */
static int follow_attach(tp_follower *f, uint64_t timeout_ns) {
    tp_fd *h;
    int rc = tp_fd_acquire_timeout(f->fp, f->path, O_RDONLY, 0, timeout_ns, &h);
    if (rc == -ENOENT) return 0;
    if (rc) return rc;
    struct stat st;
    if (fstat(tp_fd_get(h), &st) != 0) {
        rc = -errno;
        tp_fd_release(f->fp, h);
        return rc;
    }
    if (f->nq > 0 && st.st_dev == f->q[f->nq - 1].dev && st.st_ino == f->q[f->nq - 1].ino) {
        tp_fd_release(f->fp, h); /* raced back to the file we already have */
        return 0;
    }
    struct follow_file *nf = &f->q[f->nq];
    nf->h = h;
    nf->seq = tp_fd_is_sequential(h);
    nf->dev = st.st_dev;
    nf->ino = st.st_ino;
    nf->off = 0;
    if (!f->opened_once && !f->o.from_start && !nf->seq) nf->off = (uint64_t)st.st_size;
    f->opened_once = true;
    if (f->nq > 0) {
        f->q[f->nq - 1].succeeded_at = tp__now_ns();
        f->st.rotations++;
    }
    f->nq++;
    return 0;
}

int tp_follow_open(tp_follower **out, tp_fdpool *fp, const char *path, const tp_follow_opts *opts) {
    if (!out) return -EINVAL;
    *out = NULL;
    if (!fp || !path || !path[0]) return -EINVAL;
    size_t n = strnlen(path, PATH_MAX);
    if (n >= PATH_MAX) return -ENAMETOOLONG;
    tp_follower *f = calloc(1, sizeof *f + n + 1);
    if (!f) return -ENOMEM;
    memcpy(f->path, path, n + 1);
    f->fp = fp;
    if (opts)
        f->o = *opts;
    else
        tp_follow_opts_init(&f->o);
    if (f->o.poll_ns == 0) f->o.poll_ns = TP_NSEC_PER_MSEC;
    int rc = follow_attach(f, fp->wait_ns);
    if (rc) {
        free(f);
        return rc;
    }
    if (f->nq == 0) f->opened_once = true; /* a file created later is read from its start */
    *out = f;
    return 0;
}

static ssize_t read_at(tp_fd *h, bool seq, void *buf, size_t len, uint64_t *off) {
    ssize_t n = seq ? tp_fd_read(h, buf, len) : tp_fd_pread(h, buf, len, *off);
    if (n > 0) *off += (uint64_t)n;
    return n;
}

static void follow_pop(tp_follower *f) {
    tp_fd_release(f->fp, f->q[0].h);
    memmove(&f->q[0], &f->q[1], (f->nq - 1) * sizeof f->q[0]);
    f->nq--;
}

/* One non-blocking step: > 0 bytes, 0 nothing now, < 0 error. */
static ssize_t follow_step(tp_follower *f, void *buf, size_t len, uint64_t timeout_ns) {
    for (;;) {
        if (f->nq == 0) {
            int rc = follow_attach(f, timeout_ns);
            if (rc) return rc == -ETIMEDOUT ? 0 : rc;
            if (f->nq == 0) return 0;
        }
        struct follow_file *cur = &f->q[0];
        ssize_t n = read_at(cur->h, cur->seq, buf, len, &cur->off);
        if (n != 0) return n;
        if (f->nq > 1) {
            /* A successor exists: finish this file after its grace period. */
            if (tp__now_ns() - cur->succeeded_at >= f->o.grace_ns) {
                follow_pop(f);
                continue;
            }
        } else if (!cur->seq) {
            /* The only file, at its end: truncated? */
            struct stat st;
            if (fstat(tp_fd_get(cur->h), &st) != 0) return -errno;
            if ((uint64_t)st.st_size < cur->off) {
                cur->off = 0;
                f->st.truncations++;
                n = read_at(cur->h, cur->seq, buf, len, &cur->off);
                if (n != 0) return n;
            }
        }
        /* Rotated since the newest queued file? */
        struct follow_file *last = &f->q[f->nq - 1];
        if (last->seq || f->nq == FOLLOW_MAX_FILES) return 0;
        struct stat st;
        if (stat(f->path, &st) != 0) return errno == ENOENT ? 0 : -errno;
        if (st.st_dev == last->dev && st.st_ino == last->ino) return 0;
        /* The pool's cached entry is the old file: make the acquire look. */
        tp_fdpool_invalidate(f->fp, f->path);
        unsigned before = f->nq;
        int rc = follow_attach(f, timeout_ns);
        if (rc && rc != -ETIMEDOUT) return rc;
        if (f->nq == before) return 0;
        /* Loop: the head may be finished already (grace 0) or have new bytes. */
    }
}

ssize_t tp_follow_read(tp_follower *f, void *buf, size_t len, uint64_t timeout_ns) {
    if (!f || !buf || len == 0) return -EINVAL;
    if (len > (size_t)SSIZE_MAX) len = (size_t)SSIZE_MAX;
    uint64_t deadline = tp__deadline_after(timeout_ns);
    for (;;) {
        uint64_t now = tp__now_ns();
        ssize_t n = follow_step(f, buf, len, deadline > now ? deadline - now : 0);
        if (n > 0) f->st.bytes += (uint64_t)n;
        if (n != 0) return n;
        now = tp__now_ns();
        if (now >= deadline) return 0;
        uint64_t nap = deadline - now < f->o.poll_ns ? deadline - now : f->o.poll_ns;
        struct timespec ts = {(time_t)(nap / TP_NSEC_PER_SEC), (long)(nap % TP_NSEC_PER_SEC)};
        nanosleep(&ts, NULL);
    }
}

void tp_follow_stats(tp_follower *f, struct tp_follow_stats *out) {
    if (!out) return;
    if (!f) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = f->st;
}

void tp_follow_close(tp_follower *f) {
    if (!f) return;
    while (f->nq > 0)
        follow_pop(f);
    free(f);
}
