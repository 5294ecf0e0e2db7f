/* SPDX-License-Identifier: MIT */
/*
 * The file-handle pool (after nginx's ngx_open_file_cache.c).
 *
 * DESIGN
 * Objects. An entry owns one open descriptor for one key (path + persistent
 * open flags) and counts its leases (refs). A lease (tp_fd) is a small
 * per-acquire record pointing at its entry; leases are recycled through a
 * free list and only freed with the pool, so a double release reads a dead
 * lease (magic) instead of freed memory.
 *
 * States of an entry, all under fp->mu:
 *   cached+leased  in the hash table, refs > 0, not on the LRU list
 *   cached+idle    in the hash table, refs == 0, on the LRU list (head =
 *                  most recently released, tail = eviction/expiry victim)
 *   detached       out of the table (replaced after rotation, or the pool
 *                  was destroyed), refs > 0, on the detached list; the
 *                  release that drops refs to 0 closes and frees it.
 * fp->nopen counts every descriptor the pool holds plus slots reserved by
 * acquires that are opening outside the lock; it never exceeds max_open.
 *
 * Locking. One mutex, fp->mu, protects every field of the pool, of its
 * entries and of its leases, except lease->fd (written before the lease is
 * handed out, read-only while it is out), which tp_fd_get/pread/pwrite read
 * without the lock. Syscalls that can be slow run without the lock: open()
 * of a miss runs on a reserved slot (fp->nopen counted first, so the bound
 * holds), and when the slot is taken over from an evicted idle entry, that
 * victim is unlinked under the lock and closed after it is dropped; after
 * open() the table is looked up again because another thread may have
 * cached the same key meanwhile (then its entry is used and ours closed).
 * The identity (st_dev, st_ino) is fetched lazily, by fstat at the first
 * re-validation, so a miss costs exactly one open(). stat() (re-validation)
 * and the close of detached/expired entries run under the lock: they are
 * rare. No other lock is ever taken while fp->mu is held (no lock order).
 * Ages (inactive_ns, valid_ns) use CLOCK_MONOTONIC_COARSE: cheap, with the
 * kernel tick as resolution; waits use the precise clock.
 *
 * Waiting. Acquires that find every descriptor leased wait on fp->cv; it is
 * broadcast whenever a descriptor becomes idle or is closed, a reserved
 * slot is returned, or the pool is destroyed. fp->calls counts threads
 * inside acquire; destroy waits on fp->calls_cv until they have left.
 *
 * Teardown. Destroy marks the pool dead (new acquires fail, waiters leave),
 * waits until no thread is inside acquire, closes idle entries and detaches
 * leased ones. Without leases it frees the pool; with leases it marks the
 * pool orphaned and returns, and the release that drops fp->leased to 0
 * frees it. A release racing with a running destroy never frees (orphaned
 * is set last, under fp->mu).
 *
 * Contexts. tp_fd_acquire_ctx registers a tp_ctx_on_done callback (without
 * holding fp->mu) that takes fp->mu and broadcasts fp->cv; it is stopped
 * before the acquire decrements fp->calls, so it never runs on a freed pool.
 * tp_ctx_err() is called with fp->mu held: lock order fp->mu -> ctx
 * internals; ctx runs callbacks without its locks, so no cycle.
 */
#include "fd/fd_internal.h"
#include "internal/chaos.h"
#include "internal/check.h"
#include "internal/os.h"
#include "internal/probes.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LEASE_LIVE 0x7446644cu /* "tFdL" */
#define LEASE_DEAD 0xdeadf11eu

/* Flags that stay with an open file description and so belong to the key. */
#define KEY_FLAGS                                                                                  \
    (O_ACCMODE | O_APPEND | O_NONBLOCK | O_DIRECT | O_SYNC | O_DSYNC | O_NOATIME | O_NOFOLLOW |    \
     O_DIRECTORY | O_PATH)

/* Idle entries closed by expiry per acquire/release (bounded work per call). */
#define EXPIRE_BATCH 8

void tp_fdpool_opts_init(tp_fdpool_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->max_open = 0;
    o->inactive_ns = 60 * TP_NSEC_PER_SEC;
    o->valid_ns = TP_NSEC_PER_SEC;
    o->wait_ns = TP_FOREVER;
    o->min_uses = 1;
}

static uint32_t key_hash(const char *path, int kflags) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        h = (h ^ *p) * 16777619u;
    h = (h ^ (uint32_t)kflags) * 16777619u;
    return h ^ (h >> 15);
}

/* ---- lists (all under fp->mu) ------------------------------------------ */

static void lru_push_head(tp_fdpool *fp, struct tp__fd_entry *e) {
    e->prev = NULL;
    e->next = fp->lru_head;
    if (fp->lru_head)
        fp->lru_head->prev = e;
    else
        fp->lru_tail = e;
    fp->lru_head = e;
    fp->nidle++;
}

static void lru_unlink(tp_fdpool *fp, struct tp__fd_entry *e) {
    if (e->prev)
        e->prev->next = e->next;
    else
        fp->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        fp->lru_tail = e->prev;
    e->prev = e->next = NULL;
    fp->nidle--;
}

/* The detached list reuses prev/next (a detached entry is never idle). */
static void detached_push(tp_fdpool *fp, struct tp__fd_entry *e) {
    e->prev = NULL;
    e->next = fp->detached;
    if (fp->detached) fp->detached->prev = e;
    fp->detached = e;
}

static void detached_unlink(tp_fdpool *fp, struct tp__fd_entry *e) {
    if (e->prev)
        e->prev->next = e->next;
    else
        fp->detached = e->next;
    if (e->next) e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

static struct tp__fd_entry *table_find(tp_fdpool *fp, const char *path, int kflags, uint32_t h) {
    for (struct tp__fd_entry *e = fp->buckets[h & fp->mask]; e; e = e->hnext) {
        if (e->hash == h && e->kflags == kflags && strcmp(e->path, path) == 0) return e;
    }
    return NULL;
}

static void table_insert(tp_fdpool *fp, struct tp__fd_entry *e) {
    struct tp__fd_entry **b = &fp->buckets[e->hash & fp->mask];
    e->hnext = *b;
    *b = e;
    e->in_table = true;
}

static void table_remove(tp_fdpool *fp, struct tp__fd_entry *e) {
    struct tp__fd_entry **pp = &fp->buckets[e->hash & fp->mask];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    e->hnext = NULL;
    e->in_table = false;
}

/* ---- entry lifetime (under fp->mu) ------------------------------------- */

static void wake_waiters(tp_fdpool *fp) {
    if (fp->nwaiting) pthread_cond_broadcast(&fp->cv);
}

/* Close and free an entry that is in no list and has no lease. */
static void entry_close(tp_fdpool *fp, struct tp__fd_entry *e) {
    tp__fd_unwatch(fp, e);
    close(e->fd);
    fp->nopen--;
    free(e);
    wake_waiters(fp);
}

/* Close an idle cached entry (eviction / expiry / teardown). */
static void idle_close(tp_fdpool *fp, struct tp__fd_entry *e) {
    lru_unlink(fp, e);
    table_remove(fp, e);
    entry_close(fp, e);
}

/* Take a cached entry out of the table: closed now if idle, else on the
 * detached list until its last lease is released. */
static void entry_detach(tp_fdpool *fp, struct tp__fd_entry *e) {
    if (e->refs == 0) {
        idle_close(fp, e);
        return;
    }
    table_remove(fp, e);
    detached_push(fp, e);
}

static unsigned expire_idle(tp_fdpool *fp, uint64_t now, unsigned batch) {
    unsigned n = 0;
    if (fp->inactive_ns == TP_FOREVER) return 0;
    while (n < batch && fp->lru_tail && now - fp->lru_tail->last_used >= fp->inactive_ns) {
        idle_close(fp, fp->lru_tail);
        fp->st_expired++;
        n++;
    }
    return n;
}

static bool evict_one(tp_fdpool *fp) {
    if (!fp->lru_tail) return false;
    TP_PROBE(fd_evict, fp, fp->lru_tail->fd);
    idle_close(fp, fp->lru_tail);
    fp->st_evictions++;
    return true;
}

/* Evict the LRU idle entry but hand its slot to the caller instead of
 * freeing it: fp->nopen stays, so the bound holds while the caller closes
 * the victim's descriptor outside the lock. Returns the victim (unlinked,
 * to be passed to victim_close) or NULL when nothing is idle. */
static struct tp__fd_entry *evict_for_slot(tp_fdpool *fp) {
    struct tp__fd_entry *e = fp->lru_tail;
    if (!e) return NULL;
    TP_PROBE(fd_evict, fp, e->fd);
    lru_unlink(fp, e);
    table_remove(fp, e);
    tp__fd_unwatch(fp, e);
    fp->st_evictions++;
    return e;
}

/* Outside the lock: close an evicted victim (its slot now belongs to the
 * caller's reservation). */
static void victim_close(struct tp__fd_entry *e) {
    if (!e) return;
    close(e->fd);
    free(e);
}

/* A coarse monotonic clock (a few ms resolution, much cheaper than
 * tp__now_ns in VMs) for idle expiry and re-validation ages. */
static inline uint64_t coarse_now(void) {
    return tp__os_coarse_now_ns();
}

/* Does the cached entry still name what path names? Under fp->mu. */
static bool entry_still_valid(tp_fdpool *fp, struct tp__fd_entry *e, uint64_t now) {
    if (!e->recheck && (fp->valid_ns == TP_FOREVER || now - e->checked_at < fp->valid_ns))
        return true;
    struct stat st;
    if (!e->have_id) { /* identity is taken lazily: no fstat on the open path */
        if (fstat(e->fd, &st) != 0) return false;
        e->dev = st.st_dev;
        e->ino = st.st_ino;
        e->have_id = true;
    }
    int rc = (e->kflags & O_NOFOLLOW) ? lstat(e->path, &st) : stat(e->path, &st);
    if (rc == 0 && st.st_dev == e->dev && st.st_ino == e->ino) {
        e->checked_at = now;
        e->recheck = false;
        return true;
    }
    return false;
}

/* ---- create / destroy --------------------------------------------------- */

static unsigned default_max_open(void) {
    uint64_t soft;
    if (tp__os_nofile_limit(&soft) != 0 || soft == UINT64_MAX) return 1024;
    uint64_t m = soft / 2;
    if (m > TP__FD_MAX_OPEN_LIMIT) m = TP__FD_MAX_OPEN_LIMIT;
    return m ? (unsigned)m : 1;
}

int tp_fdpool_create(tp_fdpool **out, const tp_fdpool_opts *opts) {
    if (!out) return -EINVAL;
    *out = NULL;
    tp_fdpool_opts o;
    if (opts)
        o = *opts;
    else
        tp_fdpool_opts_init(&o);
    if (o.max_open > TP__FD_MAX_OPEN_LIMIT) return -EINVAL;
    if (o.raise_nofile) {
        int rc = tp__os_nofile_raise();
        if (rc) return rc;
    }
    unsigned max_open = o.max_open ? o.max_open : default_max_open();

    tp_fdpool *fp = calloc(1, sizeof *fp);
    if (!fp) return -ENOMEM;
    size_t nb = 16;
    while (nb < (size_t)max_open && nb < ((size_t)1 << 18))
        nb <<= 1;
    fp->buckets = calloc(nb, sizeof *fp->buckets);
    if (!fp->buckets) goto err_free_pool;
    fp->mask = nb - 1;
    fp->max_open = max_open;
    fp->inactive_ns = o.inactive_ns;
    fp->valid_ns = o.valid_ns;
    fp->wait_ns = o.wait_ns;
    fp->on_leak = o.on_leak;
    fp->on_leak_arg = o.on_leak_arg;
    fp->inotify_fd = -1;
    if (o.min_uses > 1) {
        size_t ng = 16;
        while (ng < 2 * (size_t)max_open && ng < ((size_t)1 << 18))
            ng <<= 1;
        fp->ghosts = calloc(ng, sizeof *fp->ghosts);
        if (!fp->ghosts) goto err_free_buckets;
        fp->ghost_mask = ng - 1;
        fp->min_uses = o.min_uses;
    }
    /* Adaptive: critical sections are a few hundred ns, so a contending
     * thread spins briefly instead of paying futex sleep + wake syscalls. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    int mrc = pthread_mutex_init(&fp->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    if (mrc != 0) goto err_free_buckets;
    if (tp__cond_init_monotonic(&fp->cv) != 0) goto err_destroy_mutex;
    if (pthread_cond_init(&fp->calls_cv, NULL) != 0) goto err_destroy_cv;
    if (o.use_inotify && max_open > 1 && tp__fd_inotify_init(fp) == 0)
        fp->max_open = max_open - 1; /* the inotify descriptor counts against the bound */
    *out = fp;
    return 0;

err_destroy_cv:
    pthread_cond_destroy(&fp->cv);
err_destroy_mutex:
    pthread_mutex_destroy(&fp->mu);
err_free_buckets:
    free(fp->ghosts);
    free(fp->buckets);
err_free_pool:
    free(fp);
    return -ENOMEM;
}

/* Free the pool itself. Every entry is gone; no thread uses fp. */
static void pool_free(tp_fdpool *fp) {
    tp_fd *l = fp->free_leases;
    while (l) {
        tp_fd *n = l->next_free;
        free(l);
        l = n;
    }
    tp__fd_inotify_fini(fp);
    pthread_cond_destroy(&fp->calls_cv);
    pthread_cond_destroy(&fp->cv);
    pthread_mutex_destroy(&fp->mu);
    free(fp->ghosts);
    free(fp->buckets);
    free(fp);
}

int tp_fdpool_destroy(tp_fdpool *fp) {
    if (!fp) return 0;
    pthread_mutex_lock(&fp->mu);
    if (fp->dead) { /* destroyed twice: report, do nothing */
        pthread_mutex_unlock(&fp->mu);
        return -EINVAL;
    }
    fp->dead = true;
    pthread_cond_broadcast(&fp->cv);
    TP_CHAOS_POINT("fd.destroy_dead"); /* under mu: waiters woken, not yet left */
    while (fp->calls > 0)
        pthread_cond_wait(&fp->calls_cv, &fp->mu);
    while (fp->lru_tail)
        idle_close(fp, fp->lru_tail);
    for (size_t i = 0; i <= fp->mask; i++) {
        while (fp->buckets[i]) {
            struct tp__fd_entry *e = fp->buckets[i];
            table_remove(fp, e); /* leased (idle ones are closed above) */
            detached_push(fp, e);
        }
    }
    if (fp->leased == 0) {
        pthread_mutex_unlock(&fp->mu);
        pool_free(fp);
        return 0;
    }
    if (fp->on_leak) {
        for (struct tp__fd_entry *e = fp->detached; e; e = e->next)
            fp->on_leak(e->path, e->refs, fp->on_leak_arg);
    }
    fp->orphaned = true; /* from now on the last release frees the pool */
    pthread_mutex_unlock(&fp->mu);
    TP_CHAOS_POINT("fd.destroy_orphaned"); /* a release may free fp any moment now */
    return -EBUSY;
}

/* ---- acquire / release -------------------------------------------------- */

static tp_fd *lease_new(tp_fdpool *fp, struct tp__fd_entry *e) {
    tp_fd *l = fp->free_leases;
    if (l)
        fp->free_leases = l->next_free;
    else if (!(l = malloc(sizeof *l)))
        return NULL;
    l->pool = fp;
    l->entry = e;
    l->fd = e->fd;
    l->magic = LEASE_LIVE;
    l->next_free = NULL;
    e->refs++;
    fp->leased++;
    return l;
}

/* Open outside the lock. Returns the descriptor or -errno. */
static int open_path(const char *path, int flags, mode_t mode) {
    int fd;
    do {
        fd = open(path, flags | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    TP_PROBE(fd_open, path, fd);
    return fd < 0 ? -errno : fd;
}

/* A context waiting in acquire became done: wake the waiters so that one
 * sees it. Runs on the cancelling thread, never with fp->mu held. */
static void ctx_wake(void *arg) {
    tp_fdpool *fp = arg;
    TP_CHAOS_POINT("fd.ctx_wake");
    pthread_mutex_lock(&fp->mu);
    pthread_cond_broadcast(&fp->cv);
    pthread_mutex_unlock(&fp->mu);
}

/* Wait for a descriptor to become available. Under fp->mu. Returns 0 to
 * retry, or -EMFILE (not waiting), -ETIMEDOUT, -ESHUTDOWN, the context's
 * error. With a context, the first call registers the wake-up callback
 * (dropping the lock meanwhile) and returns 0 so the caller looks again. */
/* The wait of one acquire: the absolute deadline is computed on the first
 * wait only (a precise clock read costs more than a whole cache hit). */
struct acq_wait {
    uint64_t timeout_ns; /* 0 = never wait */
    uint64_t deadline;   /* valid when have_deadline */
    bool have_deadline;
    bool counted; /* counted in st_waits */
    tp_ctx *c;    /* may be NULL */
    tp_ctx_cb *cb;
};

static int wait_for_slot(tp_fdpool *fp, struct acq_wait *w) {
    if (w->timeout_ns == 0) return -EMFILE;
    if (!w->have_deadline) {
        w->deadline = tp__deadline_after(w->timeout_ns);
        if (w->c) {
            uint64_t cd = tp_ctx_deadline(w->c);
            if (cd < w->deadline) w->deadline = cd;
        }
        w->have_deadline = true;
    }
    tp_ctx *c = w->c;
    tp_ctx_cb **cb = &w->cb;
    bool *counted = &w->counted;
    uint64_t deadline = w->deadline;
    if (c) {
        int ce = tp_ctx_err(c);
        if (ce) return ce;
        if (!*cb) {
            pthread_mutex_unlock(&fp->mu);
            TP_CHAOS_POINT("fd.ctx_register"); /* the context may end right now */
            int rc = tp_ctx_on_done(c, ctx_wake, fp, cb);
            pthread_mutex_lock(&fp->mu);
            if (rc) {
                *cb = NULL;
                return rc;
            }
            return fp->dead ? -ESHUTDOWN : 0;
        }
    }
    if (!*counted) {
        fp->st_waits++;
        *counted = true;
    }
    fp->nwaiting++;
    int rc = tp__cond_wait_until(&fp->cv, &fp->mu, deadline);
    fp->nwaiting--;
    TP_CHAOS_POINT("fd.woken"); /* under mu: woken, not yet looked again */
    if (fp->dead) return -ESHUTDOWN;
    if (c && tp_ctx_err(c)) return tp_ctx_err(c);
    return rc;
}

/* min_uses (nginx's open_file_cache_min_uses): cache a key only from its
 * min_uses-th open within inactive_ns. Uses are counted in a direct-mapped
 * table of key hashes (a collision or an overwritten slot only delays or
 * hastens caching; it is a heuristic). Under fp->mu. */
static bool worth_caching(tp_fdpool *fp, uint32_t h, bool fresh, uint64_t now) {
    if (fp->min_uses <= 1 || fresh) return true;
    struct tp__fd_ghost *g = &fp->ghosts[h & fp->ghost_mask];
    if (g->hash != h || (fp->inactive_ns != TP_FOREVER && now - g->seen >= fp->inactive_ns)) {
        g->hash = h;
        g->uses = 0;
    }
    g->seen = now;
    if (++g->uses < fp->min_uses) return false;
    g->uses = 0;
    return true;
}

/* Give back a reserved slot that did not become an entry. Under fp->mu. */
static void slot_return(tp_fdpool *fp) {
    fp->nopen--;
    wake_waiters(fp);
}

/* One acquire's key and open arguments. */
struct acq_req {
    const char *path;
    size_t plen; /* strlen(path) */
    int flags;   /* as given to open() */
    mode_t mode;
    int kflags; /* the flags that are part of the key */
    bool fresh; /* O_TRUNC/O_EXCL: never served from the cache */
    uint32_t h; /* key_hash(path, kflags) */
};

/* The steps of acquire, each under fp->mu. Besides 0 and -errno they return
 * ACQ_MISS (hit: no usable cached entry) or ACQ_RETRY (look again from the
 * top: a wait ended, idle descriptors were closed, or another thread cached
 * the key meanwhile). */
enum { ACQ_MISS = 1, ACQ_RETRY = 2 };

/* Hit: lease the cached, still valid entry of the key (*out). 0, ACQ_MISS,
 * or -ENOMEM. A stale entry (the path now names another file) is detached. */
static int acq_hit(tp_fdpool *fp, const struct acq_req *r, uint64_t now, tp_fd **out) {
    struct tp__fd_entry *e = r->fresh ? NULL : table_find(fp, r->path, r->kflags, r->h);
    if (e && !entry_still_valid(fp, e, now)) {
        fp->st_reopened++;
        entry_detach(fp, e);
        e = NULL;
    }
    if (!e) return ACQ_MISS;
    if (e->refs == 0) lru_unlink(fp, e);
    tp_fd *l = lease_new(fp, e);
    if (!l) goto err_relink;
    fp->st_hits++;
    *out = l;
    return 0;

err_relink: /* idle again: back on the LRU list */
    if (e->refs == 0) lru_push_head(fp, e);
    return -ENOMEM;
}

/* Reserve: count a slot for the descriptor to open in fp->nopen, taking
 * over an idle victim's (*victim, closed by acq_open) when the pool is
 * full, or wait for one. 0 (reserved), ACQ_RETRY (waited), or the wait's
 * error. */
static int acq_reserve(tp_fdpool *fp, struct acq_wait *w, struct tp__fd_entry **victim) {
    *victim = NULL;
    if (fp->nopen < fp->max_open) {
        fp->nopen++;
        return 0;
    }
    *victim = evict_for_slot(fp);
    if (*victim) return 0;
    int err = wait_for_slot(fp, w);
    return err ? err : ACQ_RETRY;
}

/* Open: on the reserved slot, outside the lock, close the victim and open
 * the path into a new entry (*nep, *fdp; not initialised yet). Re-takes the
 * lock and the time (*now). 0, ACQ_RETRY (the process was out of
 * descriptors and idle ones were closed or a lease came back), or -errno;
 * on anything but 0 the slot is given back. */
static int acq_open(tp_fdpool *fp, const struct acq_req *r, struct acq_wait *w,
                    struct tp__fd_entry *victim, struct tp__fd_entry **nep, int *fdp,
                    uint64_t *now) {
    int err;
    pthread_mutex_unlock(&fp->mu);
    TP_CHAOS_POINT("fd.open_slot"); /* a slot reserved, nothing opened yet */

    victim_close(victim);
    struct tp__fd_entry *ne = malloc(sizeof *ne + r->plen + 1);
    int fd = ne ? open_path(r->path, r->flags, r->mode) : -ENOMEM;
    if (fd < 0) free(ne);
    TP_CHAOS_POINT("fd.opened"); /* opened; another thread may cache the key first */

    pthread_mutex_lock(&fp->mu);
    *now = coarse_now();
    if (fd == -EMFILE || fd == -ENFILE) {
        /* The process (not the pool) is out of descriptors: close idle
         * ones and retry; with none idle, wait for a lease to return. */
        slot_return(fp);
        fp->st_emfile_retries++;
        if (evict_one(fp)) return ACQ_RETRY;
        if (fp->leased > 0 && w->timeout_ns != 0) {
            err = wait_for_slot(fp, w);
            if (err == -ETIMEDOUT) err = fd;
            return err ? err : ACQ_RETRY;
        }
        return fd;
    }
    if (fd < 0) {
        err = fd;
        goto err_return_slot;
    }
    if (fp->dead) {
        err = -ESHUTDOWN;
        goto err_close;
    }
    *nep = ne;
    *fdp = fd;
    return 0;

err_close: /* the descriptor and its entry */
    close(fd);
    free(ne);
err_return_slot: /* the slot acq_reserve counted */
    slot_return(fp);
    return err;
}

/* Insert: make the opened descriptor an entry and lease it (*out): cached
 * in the table (replacing an old entry of the key for O_TRUNC/O_EXCL), or
 * detached when min_uses says not yet. 0, ACQ_RETRY (another thread cached
 * the key while we opened: use its descriptor), or -ENOMEM; on anything but
 * 0 the descriptor is closed and the slot given back. */
static int acq_insert(tp_fdpool *fp, const struct acq_req *r, struct tp__fd_entry *ne, int fd,
                      uint64_t now, tp_fd **out) {
    int err;
    /* Both opened the path just now, so the other's descriptor is as good. */
    struct tp__fd_entry *old = table_find(fp, r->path, r->kflags, r->h);
    if (old && !r->fresh) {
        err = ACQ_RETRY;
        goto err_close;
    }
    memset(ne, 0, sizeof *ne);
    memcpy(ne->path, r->path, r->plen + 1);
    ne->fd = fd;
    ne->kflags = r->kflags;
    ne->hash = r->h;
    ne->file_wd = ne->dir_wd = -1;
    ne->checked_at = ne->last_used = now;
    tp_fd *l = lease_new(fp, ne);
    if (!l) {
        err = -ENOMEM;
        goto err_close;
    }
    if (old) entry_detach(fp, old); /* O_TRUNC/O_EXCL: the new one replaces it */
    if (worth_caching(fp, r->h, r->fresh, now)) {
        table_insert(fp, ne);
        tp__fd_watch(fp, ne);
    } else {
        detached_push(fp, ne); /* closed by its release */
        fp->st_uncached++;
    }
    if (fp->nopen > fp->peak_open) fp->peak_open = fp->nopen;
    fp->st_misses++;
    *out = l;
    return 0;

err_close: /* the descriptor, its entry, and the slot acq_reserve counted */
    close(fd);
    free(ne);
    slot_return(fp);
    return err;
}

/* Every acquire: a hit, or a miss that reserves a slot, opens outside the
 * lock and inserts; each step may send it back to the top (ACQ_RETRY). */
static int acquire(tp_fdpool *fp, tp_ctx *c, const char *path, int flags, mode_t mode,
                   uint64_t timeout_ns, tp_fd **out) {
    if (!out) return -EINVAL;
    *out = NULL;
    if (!fp || !path || !path[0]) return -EINVAL;
    if ((flags & O_TMPFILE) == O_TMPFILE) return -EINVAL;
    size_t plen = strnlen(path, PATH_MAX);
    if (plen >= PATH_MAX) return -ENAMETOOLONG;
    int kflags = flags & KEY_FLAGS;
    struct acq_req r = {.path = path,
                        .plen = plen,
                        .flags = flags,
                        .mode = mode,
                        .kflags = kflags,
                        .fresh = (flags & (O_TRUNC | O_EXCL)) != 0,
                        .h = key_hash(path, kflags)};
    struct acq_wait w = {.timeout_ns = timeout_ns, .c = c};
    int err = 0;
    tp_fd *l = NULL;

    TP_CHAOS_POINT("fd.acquire");
    pthread_mutex_lock(&fp->mu);
    if (fp->dead) {
        fp->st_failures++;
        pthread_mutex_unlock(&fp->mu);
        return -ESHUTDOWN;
    }
    fp->calls++;
    /* A context done already fails at once, even for a cached file; it is
     * checked under mu so that it counts in st_failures like any refusal. */
    if (c && (err = tp_ctx_err(c)) != 0) goto out;
    uint64_t now = coarse_now();
    expire_idle(fp, now, EXPIRE_BATCH);
    tp__fd_inotify_drain(fp, now);
    for (;;) {
        if (fp->dead) {
            err = -ESHUTDOWN;
            break;
        }
        err = acq_hit(fp, &r, now, &l);
        if (err != ACQ_MISS) break;
        struct tp__fd_entry *victim, *ne = NULL;
        err = acq_reserve(fp, &w, &victim);
        if (err == ACQ_RETRY) {
            now = coarse_now();
            continue;
        }
        if (err) break;
        int fd = -1;
        err = acq_open(fp, &r, &w, victim, &ne, &fd, &now);
        if (err == ACQ_RETRY) continue;
        if (err) break;
        err = acq_insert(fp, &r, ne, fd, now, &l);
        if (err != ACQ_RETRY) break;
    }
out:
    if (err) fp->st_failures++;
    if (w.cb) { /* stop it before fp may go away (calls keeps fp alive) */
        pthread_mutex_unlock(&fp->mu);
        TP_CHAOS_POINT("fd.ctx_stop");
        tp_ctx_cb_stop(w.cb);
        pthread_mutex_lock(&fp->mu);
    }
    if (--fp->calls == 0 && fp->dead) pthread_cond_broadcast(&fp->calls_cv);
    pthread_mutex_unlock(&fp->mu);
    *out = l;
    return err;
}

int tp_fd_acquire(tp_fdpool *fp, const char *path, int flags, mode_t mode, tp_fd **out) {
    return acquire(fp, NULL, path, flags, mode, fp ? fp->wait_ns : 0, out);
}

int tp_fd_acquire_timeout(tp_fdpool *fp, const char *path, int flags, mode_t mode,
                          uint64_t timeout_ns, tp_fd **out) {
    return acquire(fp, NULL, path, flags, mode, timeout_ns, out);
}

int tp_fd_acquire_ctx(tp_fdpool *fp, tp_ctx *c, const char *path, int flags, mode_t mode,
                      tp_fd **out) {
    return acquire(fp, c, path, flags, mode, fp ? fp->wait_ns : 0, out);
}

/* fn: the public name, for the abort message. */
static void release(tp_fdpool *fp, tp_fd *h, bool uncache, const char *fn) {
    if (!h) return;
    TP__CHECK(fp, "%s: NULL pool", fn);
    TP_CHAOS_POINT("fd.release");
    pthread_mutex_lock(&fp->mu);
    if (h->magic != LEASE_LIVE) {
        pthread_mutex_unlock(&fp->mu);
        TP__FAIL("%s: handle released twice (or not a lease)", fn);
    }
    if (h->pool != fp) {
        pthread_mutex_unlock(&fp->mu);
        TP__FAIL("%s: handle belongs to another pool", fn);
    }
    struct tp__fd_entry *e = h->entry;
    h->magic = LEASE_DEAD;
    h->entry = NULL;
    h->next_free = fp->free_leases;
    fp->free_leases = h;
    fp->leased--;
    uint64_t now = coarse_now();
    if (uncache && e->in_table) { /* later acquires open afresh */
        table_remove(fp, e);
        detached_push(fp, e);
    }
    if (--e->refs == 0) {
        if (e->in_table) {
            e->last_used = now;
            lru_push_head(fp, e);
            wake_waiters(fp);
        } else {
            detached_unlink(fp, e);
            entry_close(fp, e);
        }
    }
    if (fp->dead) {
        /* Only once destroy has finished (orphaned); while it still runs it
         * frees the pool itself if this was the last lease. */
        bool last = fp->orphaned && fp->leased == 0;
        pthread_mutex_unlock(&fp->mu);
        TP_CHAOS_POINT("fd.release_dead");
        if (last) pool_free(fp);
        return;
    }
    expire_idle(fp, now, EXPIRE_BATCH);
    pthread_mutex_unlock(&fp->mu);
}

void tp_fd_release(tp_fdpool *fp, tp_fd *h) {
    release(fp, h, false, "tp_fd_release");
}

void tp_fd_close(tp_fdpool *fp, tp_fd *h) {
    release(fp, h, true, "tp_fd_close");
}

int tp_fd_get(const tp_fd *h) {
    return h ? h->fd : -EINVAL;
}

bool tp_fd_is_sequential(const tp_fd *h) {
    /* Asked of the kernel (one lseek that does not move the offset) rather
     * than cached: keeps fstat off the open path. */
    return h && lseek(h->fd, 0, SEEK_CUR) < 0 && errno == ESPIPE;
}

ssize_t tp_fd_pread(const tp_fd *h, void *buf, size_t len, uint64_t off) {
    if (!h || (!buf && len)) return -EINVAL;
    if (off > (uint64_t)INT64_MAX || len > (size_t)SSIZE_MAX) return -EINVAL;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(h->fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return done ? (ssize_t)done : -errno;
        }
        if (n == 0) break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

ssize_t tp_fd_pwrite(const tp_fd *h, const void *buf, size_t len, uint64_t off) {
    if (!h || (!buf && len)) return -EINVAL;
    if (off > (uint64_t)INT64_MAX || len > (size_t)SSIZE_MAX) return -EINVAL;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(h->fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        done += (size_t)n;
    }
    return (ssize_t)done;
}

ssize_t tp_fd_read(const tp_fd *h, void *buf, size_t len) {
    if (!h || (!buf && len)) return -EINVAL;
    for (;;) {
        ssize_t n = read(h->fd, buf, len);
        if (n >= 0) return n;
        if (errno != EINTR) return -errno;
    }
}

ssize_t tp_fd_write(const tp_fd *h, const void *buf, size_t len) {
    if (!h || (!buf && len)) return -EINVAL;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(h->fd, (const char *)buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return done ? (ssize_t)done : -errno;
        }
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int tp_fdpool_invalidate(tp_fdpool *fp, const char *path) {
    if (!fp || !path) return -EINVAL;
    int n = 0;
    pthread_mutex_lock(&fp->mu);
    for (size_t i = 0; i <= fp->mask; i++) {
        for (struct tp__fd_entry *e = fp->buckets[i]; e; e = e->hnext) {
            if (strcmp(e->path, path) == 0) {
                e->recheck = true;
                n++;
            }
        }
    }
    pthread_mutex_unlock(&fp->mu);
    return n;
}

/* Mark entries matching an inotify event (see inotify.c). Under fp->mu. */
void tp__fd_mark_recheck(tp_fdpool *fp, int wd, const char *name) {
    for (size_t i = 0; i <= fp->mask; i++) {
        for (struct tp__fd_entry *e = fp->buckets[i]; e; e = e->hnext) {
            if (wd < 0) {
                e->recheck = true; /* queue overflow: trust nothing */
            } else if (e->file_wd == wd && !name) {
                e->recheck = true;
            } else if (e->dir_wd == wd && name) {
                const char *base = strrchr(e->path, '/');
                base = base ? base + 1 : e->path;
                if (strcmp(base, name) == 0) e->recheck = true;
            }
        }
    }
}

unsigned tp_fdpool_expire(tp_fdpool *fp) {
    if (!fp) return 0;
    pthread_mutex_lock(&fp->mu);
    unsigned n = expire_idle(fp, coarse_now(), UINT_MAX);
    pthread_mutex_unlock(&fp->mu);
    return n;
}

void tp_fdpool_stats(tp_fdpool *fp, struct tp_fdpool_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!fp) return;
    pthread_mutex_lock(&fp->mu);
    out->hits = fp->st_hits;
    out->misses = fp->st_misses;
    out->evictions = fp->st_evictions;
    out->expired = fp->st_expired;
    out->reopened = fp->st_reopened;
    out->waits = fp->st_waits;
    out->emfile_retries = fp->st_emfile_retries;
    out->failures = fp->st_failures;
    out->uncached = fp->st_uncached;
    out->open = fp->nopen;
    out->peak_open = fp->peak_open;
    out->leased = fp->leased;
    out->max_open = fp->max_open;
    out->inotify = fp->inotify_fd >= 0;
    pthread_mutex_unlock(&fp->mu);
}
