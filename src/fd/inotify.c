/* SPDX-License-Identifier: MIT */
/*
 * Optional inotify acceleration of the file-handle pool's re-validation.
 *
 * DESIGN
 * One non-blocking inotify descriptor per pool, drained by acquires (no
 * thread). Each cached entry watches its file (IN_MOVE_SELF |
 * IN_DELETE_SELF | IN_ATTRIB) and its parent directory (IN_CREATE |
 * IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM). The kernel returns one watch
 * descriptor per inode, so entries sharing a file or a directory share a
 * wd; fp->watches counts the entries using each wd and the last one removes
 * the watch. An event only sets entry->recheck: the stat in the acquire path
 * stays the source of truth. Draining costs a read() syscall, so acquires
 * drain at most once per TP__FD_DRAIN_NS (a change is noticed within a few
 * ms instead of valid_ns; cache hits in between stay syscall-free). IN_Q_OVERFLOW marks every
 * entry; a failed inotify_add_watch (limits) leaves the entry on the valid_ns re-check. Everything
 * here runs with fp->mu held.
 */
#include "fd/fd_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define FILE_MASK (IN_MOVE_SELF | IN_DELETE_SELF | IN_ATTRIB)
#define DIR_MASK (IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR)

int tp__fd_inotify_init(tp_fdpool *fp) {
    fp->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    return fp->inotify_fd >= 0 ? 0 : -errno;
}

void tp__fd_inotify_fini(tp_fdpool *fp) {
    if (fp->inotify_fd >= 0) close(fp->inotify_fd);
    fp->inotify_fd = -1;
    free(fp->watches);
    fp->watches = NULL;
    fp->nwatches = fp->cap_watches = 0;
}

static struct tp__fd_watch *watch_find(tp_fdpool *fp, int wd) {
    for (size_t i = 0; i < fp->nwatches; i++) {
        if (fp->watches[i].wd == wd) return &fp->watches[i];
    }
    return NULL;
}

static void watch_forget(tp_fdpool *fp, struct tp__fd_watch *w) {
    *w = fp->watches[--fp->nwatches];
}

/* Add a watch and count a user of it; returns the wd or -1. */
static int watch_add(tp_fdpool *fp, const char *path, uint32_t mask) {
    int wd = inotify_add_watch(fp->inotify_fd, path, mask);
    if (wd < 0) return -1; /* ENOSPC (limit), EACCES, ...: fall back to stat */
    struct tp__fd_watch *w = watch_find(fp, wd);
    if (w) {
        w->refs++;
        return wd;
    }
    if (fp->nwatches == fp->cap_watches) {
        size_t cap = fp->cap_watches ? fp->cap_watches * 2 : 16;
        struct tp__fd_watch *n = realloc(fp->watches, cap * sizeof *n);
        if (!n) {
            inotify_rm_watch(fp->inotify_fd, wd);
            return -1;
        }
        fp->watches = n;
        fp->cap_watches = cap;
    }
    fp->watches[fp->nwatches++] = (struct tp__fd_watch){wd, 1};
    return wd;
}

static void watch_put(tp_fdpool *fp, int wd) {
    if (wd < 0) return;
    struct tp__fd_watch *w = watch_find(fp, wd);
    if (!w) return; /* already gone (IN_IGNORED) */
    if (--w->refs == 0) {
        inotify_rm_watch(fp->inotify_fd, wd);
        watch_forget(fp, w);
    }
}

void tp__fd_watch(tp_fdpool *fp, struct tp__fd_entry *e) {
    if (fp->inotify_fd < 0) return;
    char dir[PATH_MAX];
    const char *slash = strrchr(e->path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == e->path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - e->path);
        memcpy(dir, e->path, n);
        dir[n] = '\0';
    }
    e->file_wd = watch_add(fp, e->path, FILE_MASK);
    e->dir_wd = watch_add(fp, dir, DIR_MASK);
}

void tp__fd_unwatch(tp_fdpool *fp, struct tp__fd_entry *e) {
    if (fp->inotify_fd < 0) return;
    watch_put(fp, e->file_wd);
    watch_put(fp, e->dir_wd);
    e->file_wd = e->dir_wd = -1;
}

void tp__fd_inotify_drain(tp_fdpool *fp, uint64_t now) {
    if (fp->inotify_fd < 0 || now - fp->drained_at < TP__FD_DRAIN_NS) return;
    fp->drained_at = now;
    _Alignas(struct inotify_event) char buf[4096];
    for (;;) {
        ssize_t n = read(fp->inotify_fd, buf, sizeof buf);
        if (n <= 0) return; /* EAGAIN: drained */
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                tp__fd_mark_recheck(fp, -1, NULL);
                continue;
            }
            if (ev->mask & IN_IGNORED) { /* watch gone (inode freed or removed) */
                tp__fd_mark_recheck(fp, ev->wd, NULL);
                struct tp__fd_watch *w = watch_find(fp, ev->wd);
                if (w) watch_forget(fp, w);
                continue;
            }
            tp__fd_mark_recheck(fp, ev->wd, ev->len ? ev->name : NULL);
        }
    }
}
