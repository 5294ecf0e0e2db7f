/* SPDX-License-Identifier: MIT */
/* Internal structures of the file-handle pool; see the DESIGN block in fdpool.c. */
#ifndef TP_FD_INTERNAL_H
#define TP_FD_INTERNAL_H

#include <pthread.h>
#include <sys/types.h>

#include "internal/os.h"
#include "tripool/fd.h"

/* Largest max_open accepted (also caps the default). */
#define TP__FD_MAX_OPEN_LIMIT (1u << 20)

/* One cached descriptor. Every field is protected by the pool's mu. */
struct tp__fd_entry {
    struct tp__fd_entry *hnext;       /* hash chain (while in_table) */
    struct tp__fd_entry *prev, *next; /* LRU list when idle, detached list when detached */
    int fd;
    int kflags; /* key part of the open flags */
    uint32_t hash;
    unsigned refs; /* leases on this entry */
    dev_t dev;     /* identity at open time */
    ino_t ino;
    uint64_t last_used;  /* release time (for LRU expiry) */
    uint64_t checked_at; /* last time (dev, ino) was confirmed by stat */
    int file_wd, dir_wd; /* inotify watches, -1 when none */
    bool in_table;
    bool have_id; /* dev/ino filled (lazily, by fstat at first re-validation) */
    bool recheck; /* re-validate with stat at next acquire (inotify, invalidate) */
    char path[];
};

/* A lease. fd is written before the lease is handed out and is read-only
 * while it is out, so tp_fd_get/pread/pwrite read it unlocked. */
struct tp_fd {
    int fd;
    uint32_t magic;             /* LEASE_LIVE while out; under pool mu */
    tp_fdpool *pool;            /* under pool mu */
    struct tp__fd_entry *entry; /* under pool mu */
    tp_fd *next_free;           /* free list link; under pool mu */
};

/* A use counter for min_uses (see worth_caching in fdpool.c). */
struct tp__fd_ghost {
    uint32_t hash;
    uint32_t uses;
    uint64_t seen;
};

struct tp__fd_watch {
    int wd;
    unsigned refs;
};

struct tp_fdpool {
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* a descriptor became idle/closed, or the pool died */
    pthread_cond_t calls_cv; /* calls dropped to 0 while dead */
    /* Everything below is protected by mu. */
    struct tp__fd_entry **buckets;
    size_t mask;
    struct tp__fd_entry *lru_head, *lru_tail; /* idle cached entries, MRU first */
    struct tp__fd_entry *detached;            /* leased entries out of the table */
    tp_fd *free_leases;
    unsigned max_open;
    unsigned nopen; /* descriptors held + slots reserved by opening acquires */
    unsigned nidle;
    unsigned leased;
    unsigned peak_open;
    unsigned nwaiting; /* threads waiting on cv */
    unsigned calls;    /* threads inside acquire */
    bool dead;         /* destroy was called */
    bool orphaned;     /* destroy returned -EBUSY: the last release frees */
    uint64_t inactive_ns, valid_ns, wait_ns;
    tp_fd_leak_fn on_leak;
    void *on_leak_arg;
    unsigned min_uses;
    struct tp__fd_ghost *ghosts; /* NULL unless min_uses > 1 */
    size_t ghost_mask;
    uint64_t st_uncached;
    uint64_t st_hits, st_misses, st_evictions, st_expired, st_reopened, st_waits, st_emfile_retries,
        st_failures;
    /* inotify (inotify.c), under mu */
    int inotify_fd;
    uint64_t drained_at; /* last drain (coarse clock) */
    struct tp__fd_watch *watches;
    size_t nwatches, cap_watches;
};

/* inotify.c; all called with mu held (init/fini from create/free). */
int tp__fd_inotify_init(tp_fdpool *fp);
void tp__fd_inotify_fini(tp_fdpool *fp);
/* Read pending events, at most once per TP__FD_DRAIN_NS of (coarse) now. */
void tp__fd_inotify_drain(tp_fdpool *fp, uint64_t now);
#define TP__FD_DRAIN_NS (2 * TP_NSEC_PER_MSEC)
void tp__fd_watch(tp_fdpool *fp, struct tp__fd_entry *e);
void tp__fd_unwatch(tp_fdpool *fp, struct tp__fd_entry *e);

/* fdpool.c: mark entries for re-validation. wd < 0 marks all; name NULL
 * means an event on the file itself, else a name in a watched directory. */
void tp__fd_mark_recheck(tp_fdpool *fp, int wd, const char *name);

#endif
