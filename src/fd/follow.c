/* SPDX-License-Identifier: MIT */
/*
 * The follower: tail -F on top of the file-handle pool.
 *
 * DESIGN
 * A follower is used by one thread at a time and has no lock of its own;
 * the pool it leases from is thread-safe. It holds at most two leases:
 * `cur`, the file the path named when last checked, read at `off`; and
 * `old`, a file the path stopped naming (rotation), read at `old_off` until
 * its end and for grace_ns after the rotation was seen, because a writer
 * that has not reopened yet still appends to it. While `old` exists no byte
 * of `cur` is returned, so bytes come out in file order: all of the old
 * file, then the new one from offset 0.
 *
 * Checks happen only at end of data (a read returned 0): fstat(cur) for
 * truncation (size < off: restart at 0), then stat(path) for rotation
 * ((dev, ino) differ: cur becomes old, the pool entry is invalidated and
 * the new file acquired). A missing path (renamed, not yet recreated) keeps
 * following cur until a file appears.
 */
#include "fd/fd_internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct tp_follower {
    tp_fdpool *fp;
    tp_follow_opts o;
    tp_fd *cur;
    bool cur_seq; /* cur is a pipe/FIFO/socket: read, never pread */
    uint64_t off;
    dev_t dev;
    ino_t ino;
    tp_fd *old;
    bool old_seq;
    uint64_t old_off;
    uint64_t rotated_at;
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

/* Acquire the file the path names now. Returns 0 (cur set, or still NULL
 * when the path does not exist) or -errno. */
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
    f->cur = h;
    f->cur_seq = tp_fd_is_sequential(h);
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->off = 0;
    if (!f->opened_once && !f->o.from_start && !f->cur_seq) f->off = (uint64_t)st.st_size;
    f->opened_once = true;
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
    if (!f->cur) f->opened_once = true; /* a file created later is read from its start */
    *out = f;
    return 0;
}

static ssize_t read_at(tp_fd *h, bool seq, void *buf, size_t len, uint64_t *off) {
    ssize_t n = seq ? tp_fd_read(h, buf, len) : tp_fd_pread(h, buf, len, *off);
    if (n > 0) *off += (uint64_t)n;
    return n;
}

/* One non-blocking step: > 0 bytes, 0 nothing now, < 0 error. */
static ssize_t follow_step(tp_follower *f, void *buf, size_t len, uint64_t timeout_ns) {
    if (f->old) {
        ssize_t n = read_at(f->old, f->old_seq, buf, len, &f->old_off);
        if (n != 0) return n;
        if (tp__now_ns() - f->rotated_at < f->o.grace_ns)
            return 0; /* a writer may still append to the old file */
        tp_fd_release(f->fp, f->old);
        f->old = NULL;
    }
    if (!f->cur) {
        int rc = follow_attach(f, timeout_ns);
        if (rc) return rc == -ETIMEDOUT ? 0 : rc;
        if (!f->cur) return 0;
    }
    ssize_t n = read_at(f->cur, f->cur_seq, buf, len, &f->off);
    if (n != 0 || f->cur_seq) return n;

    /* End of data: truncated? */
    struct stat st;
    if (fstat(tp_fd_get(f->cur), &st) != 0) return -errno;
    if ((uint64_t)st.st_size < f->off) {
        f->off = 0;
        f->st.truncations++;
        n = read_at(f->cur, f->cur_seq, buf, len, &f->off);
        if (n != 0) return n;
    }
    /* Rotated? */
    if (stat(f->path, &st) != 0) return errno == ENOENT ? 0 : -errno;
    if (st.st_dev == f->dev && st.st_ino == f->ino) return 0;
    f->old = f->cur;
    f->old_seq = f->cur_seq;
    f->old_off = f->off;
    f->rotated_at = tp__now_ns();
    f->cur = NULL;
    f->st.rotations++;
    /* The pool's cached entry is the old file: make the next acquire look. */
    tp_fdpool_invalidate(f->fp, f->path);
    int rc = follow_attach(f, timeout_ns);
    if (rc && rc != -ETIMEDOUT) return rc;
    return follow_step(f, buf, len, timeout_ns); /* drain the old file first */
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
    if (f->old) tp_fd_release(f->fp, f->old);
    if (f->cur) tp_fd_release(f->fp, f->cur);
    free(f);
}
