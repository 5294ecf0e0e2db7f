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

#include "internal/os.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tp__fd_inotify_init(tp_fdpool *fp) {
    int fd = tp__os_notify_open();
    fp->inotify_fd = fd >= 0 ? fd : -1;
    return fd >= 0 ? 0 : fd;
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
static int watch_add(tp_fdpool *fp, const char *path, enum tp__os_watch what) {
    int wd = tp__os_notify_add(fp->inotify_fd, path, what);
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
            (void)tp__os_notify_rm(fp->inotify_fd, wd);
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
        (void)tp__os_notify_rm(fp->inotify_fd, wd);
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
    e->file_wd = watch_add(fp, e->path, TP__OS_WATCH_FILE);
    e->dir_wd = watch_add(fp, dir, TP__OS_WATCH_DIR);
}

void tp__fd_unwatch(tp_fdpool *fp, struct tp__fd_entry *e) {
    if (fp->inotify_fd < 0) return;
    watch_put(fp, e->file_wd);
    watch_put(fp, e->dir_wd);
    e->file_wd = e->dir_wd = -1;
}

static void on_event(void *arg, enum tp__os_notify_ev ev, int wd, const char *name) {
    tp_fdpool *fp = arg;
    switch (ev) {
    case TP__OS_NOTIFY_OVERFLOW:
        tp__fd_mark_recheck(fp, -1, NULL);
        break;
    case TP__OS_NOTIFY_GONE: { /* watch gone (inode freed or removed) */
        tp__fd_mark_recheck(fp, wd, NULL);
        struct tp__fd_watch *w = watch_find(fp, wd);
        if (w) watch_forget(fp, w);
        break;
    }
    case TP__OS_NOTIFY_CHANGE:
        tp__fd_mark_recheck(fp, wd, name);
        break;
    }
}

void tp__fd_inotify_drain(tp_fdpool *fp, uint64_t now) {
    if (fp->inotify_fd < 0 || now - fp->drained_at < TP__FD_DRAIN_NS) return;
    fp->drained_at = now;
    tp__os_notify_drain(fp->inotify_fd, on_event, fp);
}
