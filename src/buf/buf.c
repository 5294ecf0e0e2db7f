/* SPDX-License-Identifier: MIT */
/*
 * The buffer pool (include/tripool/buf.h).
 *
 * DESIGN
 *
 * Tiers. A buffer that is not handed out lives in exactly one place:
 *   1. a thread cache (struct tcache): per (thread, pool), per class a LIFO
 *      list of at most cache_max[c] buffers, touched only by its owner thread
 *      on the hot path (no atomics but relaxed loads/stores of its counters);
 *   2. the depot: per class a mutex-protected pair of LIFO lists, "fresh"
 *      (put since the last tick) and "victim" (idle for one tick).
 * Buffers move between tiers in batches (batch[c]): a cache that runs dry
 * refills from the depot, a full cache flushes a batch into it.
 *
 * The memory cap. pool->reserved (bytes) = depot bytes + the "credit" every
 * cache holds (room it reserved for buffers it keeps); always <= max_retained.
 * A cache owns credit[c] slots with n[c] <= credit[c] <= cache_max[c]: a put
 * into a slot it already owns needs no shared write; when it needs more it
 * reserves a batch with one CAS; buffers flushed to or refilled from the
 * depot carry their credit along; a refill gives back the cache's unused
 * credit. So retained bytes <= reserved <= max_retained at every instant, and
 * unused credit is bounded by cache_max[c] per class per cache.
 *
 * The in-use cap (only when max_inuse != 0): pool->inuse is updated with a
 * CAS on every get/put; waiters sleep on wait_cv. Lost wake-ups are excluded
 * by a Dekker pair in seq_cst: a waiter increments `waiters` then re-checks
 * `inuse`; a putter decrements `inuse` then reads `waiters`.
 *
 * Aging. A tick bumps pool->epoch, ages the caller's cache, then per class
 * frees the victim list (keeping the prewarmed reserve) and turns the fresh
 * list into the victim list. A cache that sees a new epoch on its next
 * operation flushes everything into the depot's fresh list and returns its
 * credit, so caches of busy threads are aged within about three ticks; an idle
 * thread's cache (bounded, counted in the cap) waits until the thread uses the
 * pool again or exits.
 *
 * Fast paths. tp_buf_get/tp_buf_put first try, inline, a hit/put in the
 * cache of the thread's first slot when no option needs checks (no debug,
 * zeroing, hook, pass-through or in-use cap) and no tick is pending; anything
 * else goes out of line to get_impl()/put_slow(), which do the full work.
 *
 * Threads and pools. A process-wide pthread key (created once) exists only to
 * run tls_exit() when a thread that used any pool exits; the per-thread slot
 * table (__thread) maps pool ids (never reused) to caches. g_mu protects the
 * links between caches and pools (tc->pool, the pool's cache list, and the
 * thread's list when other threads could see it): a thread exit hands its
 * caches back under g_mu, and destroy detaches every cache under g_mu, so a
 * pool destroyed before a thread exits leaves only a stale slot that no pool
 * id matches again. These three globals are the one exception to "no
 * globals": thread-exit hooks are per process. A library destructor
 * (buf_unload) deletes the key when libtripool.so is unloaded, so a thread
 * that outlives a dlclose() never calls tls_exit() in unmapped code.
 *
 * Lock order: timer_mu -> tick_mu -> g_mu -> depot[c].mu. wait_mu and dbg_mu are leaves
 * (nothing is taken while holding them).
 *
 * Shared fields and what protects them:
 *   depot[c].fresh/victim/nfresh/nvictim : depot[c].mu (nret, reserve also
 *     mirrored as relaxed atomics for lock-free readers)
 *   reserved, inuse, alloc_*, peak*, counters : atomics (see each use)
 *   caches list, tcache.pool/pnext/pprev : g_mu
 *   tcache.cls[].head/credit, tcache.epoch : owner thread (g_mu at retire)
 *   tcache.cls[].n, tcache.cnt : owner writes, anyone reads (relaxed)
 *   calibration state : tick_mu
 *   debug registry : dbg_mu
 */
#include "tripool/buf.h"

#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal/atomic.h"
#include "internal/chaos.h"
#include "internal/os.h"
#include "internal/probes.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define TP_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define TP_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define TP_POISON(p, n) ((void)(p), (void)(n))
#define TP_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define NCLASS TP_BUF_NCLASSES
#define HUGE_C TP_BUF_HUGE
#define BUF_MAGIC 0x74706266u /* "tpbf" */
#define POISON_BYTE 0xDB
#define MMAP_MIN ((size_t)64 << 10) /* classes from 64 KiB are mapped */
#define CACHE_SLOTS_MAX 32
#define TLS_SLOTS 8

enum { F_MMAP = 1 };
enum { ST_OUT = 1, ST_IN = 2 };

/* Relaxed counters written by one thread only: a plain add, visible to
 * readers in other threads without a data race. */
#define OWN_INC(x) tp__store_relaxed(&(x), tp__load_relaxed(&(x)) + 1)

struct cnt {
    _Atomic uint64_t hits, misses, puts, dropped;
};

struct depot {
    TP_CACHE_ALIGNED pthread_mutex_t mu;
    tp_buf *fresh;          /* mu */
    tp_buf *victim;         /* mu */
    size_t nfresh, nvictim; /* mu */
    _Atomic size_t nret;    /* nfresh + nvictim; written under mu */
    _Atomic size_t reserve; /* prewarmed count kept by aging; written under mu */
};

struct tcache_cls {
    tp_buf *head;       /* owner */
    _Atomic uint32_t n; /* owner writes, stats read */
    uint32_t credit;    /* owner: slots reserved in pool->reserved */
};

struct tcache {
    struct tcache_cls cls[NCLASS];
    struct cnt cnt[NCLASS + 1];
    uint64_t epoch;               /* owner: last pool epoch seen */
    uint64_t pool_id;             /* constant */
    struct tp_bufpool *pool;      /* g_mu; NULL once the pool is destroyed */
    struct tcache *pnext, *pprev; /* g_mu: the pool's list */
    struct tcache *tnext;         /* owner (g_mu at exit): the thread's list */
};

struct tp_bufpool {
    tp_bufpool_opts o;
    bool fast; /* constant: no option needs the general get/put path */
    char name[32];
    uint64_t id;
    size_t page;
    uint32_t cache_max[NCLASS];
    uint32_t batch[NCLASS];
    struct depot dep[NCLASS];

    TP_CACHE_ALIGNED struct cnt cnt[NCLASS + 1]; /* paths without a cache, retired caches */
    _Atomic uint64_t alloc_bytes[NCLASS + 1];    /* live bytes allocated (out + retained) */
    _Atomic uint64_t alloc_n[NCLASS + 1];
    _Atomic uint64_t peak[NCLASS + 1];
    _Atomic uint64_t alloc_total;
    _Atomic uint64_t peak_total;

    TP_CACHE_ALIGNED _Atomic uint64_t reserved; /* see DESIGN; <= max_retained */
    _Atomic uint64_t peak_reserved;
    TP_CACHE_ALIGNED _Atomic uint64_t inuse; /* only with max_inuse */
    _Atomic unsigned waiters;
    TP_CACHE_ALIGNED _Atomic uint64_t epoch;
    _Atomic uint64_t depot_ops;
    _Atomic unsigned limit_class; /* outlier rule: largest class retained */
    _Atomic uint64_t ticks, aged, waits, cap_failures;

    pthread_mutex_t tick_mu;
    uint64_t calib_last[NCLASS + 1]; /* tick_mu */

    pthread_mutex_t wait_mu;
    pthread_cond_t wait_cv;

    struct tcache *caches; /* g_mu */

    pthread_mutex_t timer_mu;
    tp_timer *timer; /* timer_mu: the pending periodic tick, NULL when none */
    bool closing;    /* timer_mu: destroy started, do not re-arm */

    pthread_mutex_t dbg_mu;
    void *dbg_root; /* dbg_mu: tsearch tree of buffers handed out or retained */
};

/* ---- process-wide thread-exit hook (see DESIGN) ---------------------- */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
/* Set once by key_create, cleared by buf_unload; atomic because an unload at
 * exit() may overlap a thread still calling tcache_new. */
static _Atomic bool g_key_ok;
static _Atomic uint64_t g_next_id = 1;

struct tls_slot {
    uint64_t id;
    struct tcache *tc;
};
/* initial-exec: the library is built -fPIC, whose default TLS model calls
 * __tls_get_addr on every access; these ~150 bytes fit glibc's static TLS
 * surplus even when libtripool.so is dlopen()ed. */
#define TP_TLS __thread __attribute__((tls_model("initial-exec")))
static TP_TLS struct tls_slot tls_slots[TLS_SLOTS];
static TP_TLS struct tcache *tls_list;
static TP_TLS bool tls_keyed;

static void tls_exit(void *v);

static void key_create(void) {
    tp__store_relaxed(&g_key_ok, pthread_key_create(&g_key, tls_exit) == 0);
}

/* ---- helpers ---------------------------------------------------------- */
static inline unsigned class_of(size_t n) {
    if (n <= TP_BUF_MIN_SIZE) return 0;
    if (n > TP_BUF_MAX_SIZE) return HUGE_C;
    return (unsigned)(64 - __builtin_clzll((unsigned long long)(n - 1))) - TP_BUF_MIN_SHIFT;
}

static inline size_t class_size(unsigned c) {
    return (size_t)1 << (c + TP_BUF_MIN_SHIFT);
}

static void die(const char *what, const tp_bufpool *bp, const void *b) {
    fprintf(stderr, "tripool: tp_buf_put: %s (buffer %p, pool '%s')\n", what, b,
            bp ? bp->name : "?");
    abort();
}

static int ptr_cmp(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y ? -1 : x > y;
}

static void dbg_add(tp_bufpool *bp, tp_buf *b) {
    pthread_mutex_lock(&bp->dbg_mu);
    void *r = tsearch(b, &bp->dbg_root, ptr_cmp);
    pthread_mutex_unlock(&bp->dbg_mu);
    if (!r) {
        fprintf(stderr, "tripool: buffer pool debug registry out of memory\n");
        abort();
    }
}

static bool dbg_has(tp_bufpool *bp, const tp_buf *b) {
    pthread_mutex_lock(&bp->dbg_mu);
    bool found = tfind(b, &bp->dbg_root, ptr_cmp) != NULL;
    pthread_mutex_unlock(&bp->dbg_mu);
    return found;
}

static void dbg_del(tp_bufpool *bp, tp_buf *b) {
    pthread_mutex_lock(&bp->dbg_mu);
    tdelete(b, &bp->dbg_root, ptr_cmp);
    pthread_mutex_unlock(&bp->dbg_mu);
}

static void nofree(void *p) {
    (void)p;
}

/* Reserve up to want units of unit bytes under max_retained; returns how
 * many. Relaxed: reserved is a budget counter, it publishes no memory (the
 * buffers themselves move under the depot mutexes or stay thread-local). */
static size_t reserve_units(tp_bufpool *bp, size_t unit, size_t want) {
    uint64_t cur = tp__load_relaxed(&bp->reserved);
    for (;;) {
        uint64_t max = bp->o.max_retained;
        uint64_t avail = max > cur ? (max - cur) / unit : 0;
        uint64_t got = avail < want ? avail : want;
        if (!got) return 0;
        TP_CHAOS_POINT("buf.reserve"); /* read the budget, not yet claimed */
        if (atomic_compare_exchange_weak_explicit(&bp->reserved, &cur, cur + got * unit,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            tp__max_relaxed(&bp->peak_reserved, cur + got * unit);
            return (size_t)got;
        }
    }
}

static inline void unreserve(tp_bufpool *bp, size_t bytes) {
    if (bytes) tp__sub_relaxed(&bp->reserved, bytes);
}

/* ---- allocation --------------------------------------------------------- */
static void data_free(tp_buf *b) {
    TP_UNPOISON(b->data, b->cap);
    if (b->tp_flags_ & F_MMAP)
        munmap(b->data, b->cap);
    else
        free(b->data);
    b->tp_magic_ = 0;
    free(b);
}

#define HUGEPAGE ((size_t)2 << 20)

/* cap bytes mapped at a 2 MiB boundary with transparent huge pages asked for
 * (one fault and one TLB entry per 2 MiB). Over-maps by 2 MiB and unmaps the
 * slack, so the result is an ordinary mapping of exactly cap bytes. */
static void *map_huge(size_t cap, bool populate) {
    if (cap > SIZE_MAX - HUGEPAGE) return NULL;
    uint8_t *raw = mmap(NULL, cap + HUGEPAGE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGEPAGE - 1) & ~(uintptr_t)(HUGEPAGE - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    if (raw + cap + HUGEPAGE > p + cap) munmap(p + cap, (size_t)(raw + cap + HUGEPAGE - (p + cap)));
    (void)madvise(p, cap, MADV_HUGEPAGE); /* advice: fine if THP is off */
    if (populate)
        for (size_t off = 0; off < cap; off += 4096)
            ((volatile uint8_t *)p)[off] = 0;
    return p;
}

/* A new buffer of class c (cap bytes). NULL on ENOMEM. */
static tp_buf *buf_alloc(tp_bufpool *bp, unsigned c, size_t cap, bool populate) {
    tp_buf *b = malloc(sizeof *b);
    if (!b) return NULL;
    memset(b, 0, sizeof *b);
    void *p = NULL;
    bool map = c == HUGE_C || cap >= MMAP_MIN || (bp->o.page_aligned && cap >= bp->page);
    if (map && bp->o.huge_pages && cap >= HUGEPAGE) {
        p = map_huge(cap, populate);
        b->tp_flags_ = F_MMAP;
    } else if (map) {
        int fl = MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0);
        p = mmap(NULL, cap, PROT_READ | PROT_WRITE, fl, -1, 0);
        if (p == MAP_FAILED) p = NULL;
        b->tp_flags_ = F_MMAP;
    } else {
        size_t al = bp->o.page_aligned ? bp->page : TP_CACHELINE;
        if (posix_memalign(&p, al, cap) != 0)
            p = NULL;
        else if (bp->o.zero_on_get || populate)
            memset(p, 0, cap);
    }
    if (!p) {
        free(b);
        return NULL;
    }
    b->data = p;
    b->cap = cap;
    b->tp_pool_ = bp;
    b->tp_magic_ = BUF_MAGIC;
    b->tp_class_ = (uint8_t)c;
    uint64_t tot = tp__add_relaxed(&bp->alloc_total, cap) + cap;
    tp__max_relaxed(&bp->peak_total, tot);
    uint64_t cb = tp__add_relaxed(&bp->alloc_bytes[c], cap) + cap;
    tp__max_relaxed(&bp->peak[c], cb);
    tp__add_relaxed(&bp->alloc_n[c], 1);
    if (bp->o.debug) dbg_add(bp, b);
    return b;
}

/* Take a buffer out of the pool's allocation counters (before it is freed). */
static void buf_unaccount(tp_bufpool *bp, const tp_buf *b) {
    unsigned c = b->tp_class_;
    tp__sub_relaxed(&bp->alloc_total, b->cap);
    tp__sub_relaxed(&bp->alloc_bytes[c], b->cap);
    tp__sub_relaxed(&bp->alloc_n[c], 1);
}

/* Free a buffer whose accounting buf_unaccount() already removed. */
static void buf_free_unaccounted(tp_bufpool *bp, tp_buf *b) {
    if (bp->o.debug) dbg_del(bp, b);
    data_free(b);
}

/* Free a buffer of the pool (accounting included). */
static void buf_release(tp_bufpool *bp, tp_buf *b) {
    buf_unaccount(bp, b);
    buf_free_unaccounted(bp, b);
}

static size_t release_list(tp_bufpool *bp, tp_buf *b) {
    size_t n = 0;
    while (b) {
        tp_buf *next = b->tp_next_;
        buf_release(bp, b);
        b = next;
        n++;
    }
    return n;
}

/* ---- depot ---------------------------------------------------------------- */
static void depot_sync_n(struct depot *d) {
    tp__store_relaxed(&d->nret, d->nfresh + d->nvictim);
}

/* Pop up to max buffers (fresh first, then victims); returns the list. */
static tp_buf *depot_take(struct depot *d, size_t max, size_t *got) {
    tp_buf *head = NULL, **tail = &head;
    size_t n = 0;
    TP_CHAOS_POINT("buf.depot_take");
    pthread_mutex_lock(&d->mu);
    while (n < max && (d->fresh || d->victim)) {
        tp_buf *b;
        if (d->fresh) {
            b = d->fresh;
            d->fresh = b->tp_next_;
            d->nfresh--;
        } else {
            b = d->victim;
            d->victim = b->tp_next_;
            d->nvictim--;
        }
        *tail = b;
        tail = &b->tp_next_;
        n++;
    }
    *tail = NULL;
    depot_sync_n(d);
    pthread_mutex_unlock(&d->mu);
    *got = n;
    return head;
}

/* Push a list of n buffers (their credit travels with them). */
static void depot_give(struct depot *d, tp_buf *head, tp_buf *last, size_t n) {
    TP_CHAOS_POINT("buf.depot_give"); /* the buffers are in no tier right now */
    pthread_mutex_lock(&d->mu);
    last->tp_next_ = d->fresh;
    d->fresh = head;
    d->nfresh += n;
    depot_sync_n(d);
    pthread_mutex_unlock(&d->mu);
}

static void tick_auto(tp_bufpool *bp);

static inline void depot_op(tp_bufpool *bp) {
    uint64_t every = bp->o.tick_ops;
    if (every && (tp__add_relaxed(&bp->depot_ops, 1) + 1) % every == 0) tick_auto(bp);
}

/* ---- thread caches ---------------------------------------------------- */
/* Empty a cache into the depot and give back its unused credit. Owner thread
 * or (at retire / thread exit) under g_mu. */
static void tcache_flush(tp_bufpool *bp, struct tcache *tc) {
    for (unsigned c = 0; c < NCLASS; c++) {
        struct tcache_cls *cc = &tc->cls[c];
        uint32_t n = tp__load_relaxed(&cc->n);
        if (n) {
            tp_buf *last = cc->head;
            while (last->tp_next_)
                last = last->tp_next_;
            depot_give(&bp->dep[c], cc->head, last, n);
        }
        unreserve(bp, (size_t)(cc->credit - n) * class_size(c));
        cc->head = NULL;
        cc->credit = 0;
        tp__store_relaxed(&cc->n, 0);
    }
}

static void tcache_age(tp_bufpool *bp, struct tcache *tc, uint64_t epoch) {
    tc->epoch = epoch;
    tcache_flush(bp, tc);
}

/* Detach a cache from its live pool: contents to the depot, counters to the
 * pool. Under g_mu. */
static void tcache_retire(tp_bufpool *bp, struct tcache *tc) {
    tcache_flush(bp, tc);
    for (unsigned c = 0; c <= NCLASS; c++) {
        tp__add_relaxed(&bp->cnt[c].hits, tp__load_relaxed(&tc->cnt[c].hits));
        tp__add_relaxed(&bp->cnt[c].misses, tp__load_relaxed(&tc->cnt[c].misses));
        tp__add_relaxed(&bp->cnt[c].puts, tp__load_relaxed(&tc->cnt[c].puts));
        tp__add_relaxed(&bp->cnt[c].dropped, tp__load_relaxed(&tc->cnt[c].dropped));
    }
    if (tc->pprev)
        tc->pprev->pnext = tc->pnext;
    else
        bp->caches = tc->pnext;
    if (tc->pnext) tc->pnext->pprev = tc->pprev;
    tc->pnext = tc->pprev = NULL;
    tc->pool = NULL;
}

static void tls_exit(void *v) {
    (void)v;
    TP_CHAOS_POINT("buf.thread_exit"); /* may race with destroy of a pool it used */
    pthread_mutex_lock(&g_mu);
    struct tcache *tc = tls_list;
    while (tc) {
        struct tcache *next = tc->tnext;
        if (tc->pool) tcache_retire(tc->pool, tc);
        free(tc);
        tc = next;
    }
    tls_list = NULL;
    tls_keyed = false; /* a later use (another key's destructor) registers again */
    memset(tls_slots, 0, sizeof tls_slots);
    pthread_mutex_unlock(&g_mu);
}

/* Unload (dlclose() of libtripool.so, or exit()): delete the key, so that
 * threads still alive never run tls_exit() from unmapped code when they
 * exit. Their caches (already emptied by tp_bufpool_destroy) are then never
 * freed: see "Unloading" in buf.h. The unloading thread's own caches are
 * handed back now. g_key_ok stays false: a later use from this instance (a
 * pool used by an exit handler) runs without thread caches. */
__attribute__((destructor)) static void buf_unload(void) {
    if (tp__load_relaxed(&g_key_ok)) {
        tp__store_relaxed(&g_key_ok, false);
        pthread_key_delete(g_key);
    }
    if (tls_keyed) tls_exit(NULL);
}

static struct tcache *tcache_new(tp_bufpool *bp) {
    if (!bp->o.thread_cache) return NULL;
    pthread_once(&g_once, key_create);
    if (!tp__load_relaxed(&g_key_ok)) return NULL;
    if (!tls_keyed) {
        /* Any non-NULL value: it only makes tls_exit() run at thread exit. */
        if (pthread_setspecific(g_key, &tls_list) != 0) return NULL;
        tls_keyed = true;
    }
    struct tcache *tc = NULL;
    TP_CHAOS_POINT("buf.cache_new");
    pthread_mutex_lock(&g_mu);
    int slot = -1;
    for (int i = 0; i < TLS_SLOTS && slot < 0; i++) {
        if (!tls_slots[i].id) {
            slot = i;
        } else if (!tls_slots[i].tc->pool) { /* its pool was destroyed */
            struct tcache *old = tls_slots[i].tc, **pp = &tls_list;
            while (*pp != old)
                pp = &(*pp)->tnext;
            *pp = old->tnext;
            free(old);
            tls_slots[i].id = 0;
            slot = i;
        }
    }
    if (slot >= 0) tc = calloc(1, sizeof *tc);
    if (tc) {
        tc->pool = bp;
        tc->pool_id = bp->id;
        tc->epoch = tp__load_relaxed(&bp->epoch);
        tc->pnext = bp->caches;
        if (bp->caches) bp->caches->pprev = tc;
        bp->caches = tc;
        tc->tnext = tls_list;
        tls_list = tc;
        tls_slots[slot].tc = tc;
        tls_slots[slot].id = bp->id;
    }
    pthread_mutex_unlock(&g_mu);
    return tc;
}

static inline struct tcache *tcache_of(tp_bufpool *bp) {
    for (int i = 0; i < TLS_SLOTS; i++)
        if (tls_slots[i].id == bp->id) return tls_slots[i].tc;
    return tcache_new(bp);
}

/* ---- in-use cap ---------------------------------------------------------- */
static bool inuse_try(tp_bufpool *bp, size_t cap) {
    /* seq_cst: one half of the Dekker pair with inuse_release (DESIGN). */
    uint64_t cur = atomic_load(&bp->inuse);
    while (cur + cap <= bp->o.max_inuse) {
        TP_CHAOS_POINT("buf.cap_claim"); /* room seen, not yet claimed */
        if (atomic_compare_exchange_weak(&bp->inuse, &cur, cur + cap)) return true;
    }
    return false;
}

static void inuse_release(tp_bufpool *bp, size_t cap) {
    /* seq_cst sub then seq_cst load of waiters: the other half of the pair. */
    atomic_fetch_sub(&bp->inuse, cap);
    TP_CHAOS_POINT("buf.cap_release"); /* room given back, waiters not yet read */
    if (atomic_load(&bp->waiters)) {
        pthread_mutex_lock(&bp->wait_mu);
        pthread_cond_broadcast(&bp->wait_cv);
        pthread_mutex_unlock(&bp->wait_mu);
    }
}

/* Room for cap bytes under max_inuse. nowait: fail with -EAGAIN at once.
 * Otherwise wait until deadline (-ETIMEDOUT) or until done() says stop. */
typedef int (*stop_fn)(void *arg);

static int inuse_acquire(tp_bufpool *bp, size_t cap, bool nowait, uint64_t deadline, stop_fn stop,
                         void *stop_arg) {
    if (!bp->o.max_inuse) return 0;
    if (cap > bp->o.max_inuse) return -E2BIG;
    if (inuse_try(bp, cap)) return 0;
    if (nowait) return -EAGAIN;
    tp__add_relaxed(&bp->waits, 1);
    int err = 0;
    TP_CHAOS_POINT("buf.wait"); /* failed once, not yet registered as a waiter */
    pthread_mutex_lock(&bp->wait_mu);
    atomic_fetch_add(&bp->waiters, 1); /* seq_cst: Dekker pair */
    for (;;) {
        TP_CHAOS_POINT("buf.wait_recheck"); /* registered, room not yet re-checked */
        if (inuse_try(bp, cap)) break;
        if (stop && (err = stop(stop_arg)) != 0) break;
        if (tp__cond_wait_until(&bp->wait_cv, &bp->wait_mu, deadline) == -ETIMEDOUT) {
            if (inuse_try(bp, cap)) break;
            err = -ETIMEDOUT;
            break;
        }
    }
    atomic_fetch_sub(&bp->waiters, 1);
    pthread_mutex_unlock(&bp->wait_mu);
    return err;
}

/* ---- get / put ------------------------------------------------------------- */
static inline void bump(struct tcache *tc, tp_bufpool *bp, unsigned c, size_t field) {
    /* field: offset of the counter inside struct cnt */
    if (tc)
        OWN_INC(*(_Atomic uint64_t *)((char *)&tc->cnt[c] + field));
    else
        tp__add_relaxed((_Atomic uint64_t *)((char *)&bp->cnt[c] + field), 1);
}
#define BUMP(tc, bp, c, f) bump((tc), (bp), (c), offsetof(struct cnt, f))

/* Prepare a retained buffer for reuse. */
static inline void reuse(tp_bufpool *bp, tp_buf *b) {
    if (bp->o.debug) {
        TP_UNPOISON(b->data, b->cap);
        for (size_t i = 0; i < b->cap; i++) {
            if (b->data[i] != POISON_BYTE) {
                fprintf(stderr,
                        "tripool: tp_buf_get: buffer %p was written after it was put "
                        "(byte %zu, pool '%s')\n",
                        (void *)b, i, bp->name);
                abort();
            }
        }
    }
    if (bp->o.zero_on_get) memset(b->data, 0, b->cap);
    if (bp->o.reset) bp->o.reset(b, bp->o.reset_arg);
}

static int get_impl(tp_bufpool *bp, size_t min_cap, bool nowait, uint64_t deadline, stop_fn stop,
                    void *stop_arg, tp_buf **out) {
    unsigned c = class_of(min_cap);
    size_t cap;
    if (c == HUGE_C) {
        if (min_cap > SIZE_MAX - bp->page) return -ENOMEM;
        cap = (min_cap + bp->page - 1) & ~(bp->page - 1);
    } else {
        cap = class_size(c);
    }
    int err = inuse_acquire(bp, cap, nowait, deadline, stop, stop_arg);
    if (err) {
        tp__add_relaxed(&bp->cap_failures, 1);
        return err;
    }
    tp_buf *b = NULL;
    struct tcache *tc = NULL;
    bool dop = false;                  /* went to the depot: count it (may tick) at the end */
    TP_CHAOS_POINT("buf.get_claimed"); /* room under the cap claimed, no buffer yet */
    if (c != HUGE_C && !bp->o.passthrough) {
        tc = tcache_of(bp);
        if (tc) {
            uint64_t e = tp__load_relaxed(&bp->epoch);
            if (e != tc->epoch) tcache_age(bp, tc, e);
            struct tcache_cls *cc = &tc->cls[c];
            uint32_t n = tp__load_relaxed(&cc->n);
            if (!n) {
                size_t got;
                tp_buf *list = depot_take(&bp->dep[c], bp->batch[c], &got);
                if (got) {
                    /* Credit: the batch brings its own; the old unused goes back. */
                    unreserve(bp, (size_t)cc->credit * cap);
                    cc->credit = (uint32_t)got;
                    cc->head = list;
                    n = (uint32_t)got;
                }
                dop = true;
            }
            if (n) {
                b = cc->head;
                cc->head = b->tp_next_;
                tp__store_relaxed(&cc->n, n - 1);
            }
        } else {
            size_t got;
            b = depot_take(&bp->dep[c], 1, &got);
            if (b) unreserve(bp, cap);
            dop = true;
        }
    }
    if (b) {
        BUMP(tc, bp, c, hits);
        reuse(bp, b);
    } else {
        b = buf_alloc(bp, c, cap, false);
        if (!b) {
            if (bp->o.max_inuse) inuse_release(bp, cap);
            if (dop) depot_op(bp);
            return -ENOMEM;
        }
        BUMP(tc, bp, c, misses);
    }
    b->tp_next_ = NULL;
    b->len = 0;
    __atomic_store_n(&b->tp_state_, ST_OUT, __ATOMIC_RELAXED);
    TP_CHAOS_POINT("buf.get_handout");
    *out = b;
    if (dop) depot_op(bp); /* last: a tick may flush this thread's cache */
    return 0;
}

static tp_buf *get_slow(tp_bufpool *bp, size_t min_cap);

TP_API tp_buf *tp_buf_get(tp_bufpool *bp, size_t min_cap) {
    TP_PROBE(buf_get, bp, min_cap);
    /* Fast path: a hit in this thread's first cache slot, nothing to check,
     * no tick pending. Everything else takes get_impl(). */
    if (__builtin_expect(bp && bp->fast && min_cap <= TP_BUF_MAX_SIZE, 1) &&
        tls_slots[0].id == bp->id) {
        struct tcache *tc = tls_slots[0].tc;
        unsigned c = class_of(min_cap);
        struct tcache_cls *cc = &tc->cls[c];
        uint32_t n = tp__load_relaxed(&cc->n);
        if (n && tc->epoch == tp__load_relaxed(&bp->epoch)) {
            tp_buf *b = cc->head;
            cc->head = b->tp_next_;
            tp__store_relaxed(&cc->n, n - 1);
            OWN_INC(tc->cnt[c].hits);
            b->len = 0;
            __atomic_store_n(&b->tp_state_, ST_OUT, __ATOMIC_RELAXED);
            return b;
        }
    }
    return get_slow(bp, min_cap);
}

static __attribute__((noinline)) tp_buf *get_slow(tp_bufpool *bp, size_t min_cap) {
    if (!bp) {
        errno = EINVAL;
        return NULL;
    }
    tp_buf *b = NULL;
    int err = get_impl(bp, min_cap, !bp->o.block_on_cap, TP_FOREVER, NULL, NULL, &b);
    if (err) {
        errno = -err;
        return NULL;
    }
    return b;
}

TP_API int tp_buf_get_timeout(tp_bufpool *bp, size_t min_cap, uint64_t timeout_ns, tp_buf **out) {
    if (!bp || !out) return -EINVAL;
    *out = NULL;
    return get_impl(bp, min_cap, timeout_ns == 0, tp__deadline_after(timeout_ns), NULL, NULL, out);
}

static int ctx_stop(void *arg) {
    return tp_ctx_err(arg);
}

/* Cancel callback: wake the in-use waiters so they see the context done.
 * Taking wait_mu orders it after a waiter's check (no lost wake-up). */
static void ctx_wake(void *arg) {
    tp_bufpool *bp = arg;
    pthread_mutex_lock(&bp->wait_mu);
    pthread_cond_broadcast(&bp->wait_cv);
    pthread_mutex_unlock(&bp->wait_mu);
}

TP_API int tp_buf_get_ctx(tp_bufpool *bp, size_t min_cap, tp_ctx *ctx, tp_buf **out) {
    if (!bp || !out) return -EINVAL;
    *out = NULL;
    if (!ctx) ctx = tp_ctx_background();
    int err = tp_ctx_err(ctx);
    if (err) { /* refused like a wait that saw the context end (buf.h, cap_failures) */
        tp__add_relaxed(&bp->cap_failures, 1);
        return err;
    }
    if (!bp->o.max_inuse) /* nothing to wait for */
        return get_impl(bp, min_cap, true, 0, NULL, NULL, out);
    tp_ctx_cb *cb = NULL;
    err = tp_ctx_on_done(ctx, ctx_wake, bp, &cb);
    if (err) return err;
    err = get_impl(bp, min_cap, false, tp_ctx_deadline(ctx), ctx_stop, ctx, out);
    tp_ctx_cb_stop(cb);
    if (err == -ETIMEDOUT && tp_ctx_err(ctx)) err = tp_ctx_err(ctx);
    return err;
}

static void check_put(tp_bufpool *bp, tp_buf *b) {
    if (bp->o.debug && !dbg_has(bp, b)) {
        die("not a buffer of this pool (foreign pointer, another pool's buffer, or freed)", bp, b);
    }
    if (b->tp_magic_ != BUF_MAGIC) die("not a tripool buffer", bp, b);
    if (b->tp_pool_ != bp) die("buffer belongs to another pool", bp, b);
    uint8_t prev;
    if (bp->o.debug) {
        prev = __atomic_exchange_n(&b->tp_state_, ST_IN, __ATOMIC_RELAXED);
    } else {
        prev = __atomic_load_n(&b->tp_state_, __ATOMIC_RELAXED);
        TP_CHAOS_POINT("buf.put_check");
        __atomic_store_n(&b->tp_state_, ST_IN, __ATOMIC_RELAXED);
    }
    if (prev != ST_OUT) die("double put (the buffer is already back in the pool)", bp, b);
}

static void put_slow(tp_bufpool *bp, tp_buf *b);

TP_API void tp_buf_put(tp_bufpool *bp, tp_buf *b) {
    TP_PROBE(buf_put, bp, b);
    /* Fast path: an intact buffer of this pool going into a cache slot this
     * thread already holds credit for. Everything else takes the full path. */
    if (__builtin_expect(b && bp && bp->fast, 1) && tls_slots[0].id == bp->id &&
        b->tp_pool_ == bp && b->tp_magic_ == BUF_MAGIC &&
        __atomic_load_n(&b->tp_state_, __ATOMIC_RELAXED) == ST_OUT) {
        struct tcache *tc = tls_slots[0].tc;
        unsigned c = b->tp_class_;
        if (c <= tp__load_relaxed(&bp->limit_class)) { /* also excludes huge */
            struct tcache_cls *cc = &tc->cls[c];
            uint32_t n = tp__load_relaxed(&cc->n);
            if (n < cc->credit && tc->epoch == tp__load_relaxed(&bp->epoch)) {
                __atomic_store_n(&b->tp_state_, ST_IN, __ATOMIC_RELAXED);
                OWN_INC(tc->cnt[c].puts);
                b->tp_next_ = cc->head;
                cc->head = b;
                tp__store_relaxed(&cc->n, n + 1);
                return;
            }
        }
    }
    put_slow(bp, b);
}

static __attribute__((noinline)) void put_slow(tp_bufpool *bp, tp_buf *b) {
    if (!b || !bp) return;
    check_put(bp, b);
    unsigned c = b->tp_class_;
    if (bp->o.max_inuse) inuse_release(bp, b->cap);
    struct tcache *tc = NULL;
    bool dop = false; /* went to the depot: count it (may tick) at the end */
    bool keep = c != HUGE_C && !bp->o.passthrough;
    if (keep && c > tp__load_relaxed(&bp->limit_class) &&
        tp__load_relaxed(&bp->dep[c].reserve) == 0)
        keep = false; /* the 95th-percentile rule */
    if (keep && bp->o.thread_cache) tc = tcache_of(bp);
    TP_CHAOS_POINT("buf.put"); /* cap room given back, buffer not yet retained */
    BUMP(tc, bp, c, puts);
    if (!keep) goto drop;
    if (bp->o.debug) {
        memset(b->data, POISON_BYTE, b->cap);
        TP_POISON(b->data, b->cap);
    }
    size_t size = b->cap;
    if (tc) {
        uint64_t e = tp__load_relaxed(&bp->epoch);
        if (e != tc->epoch) tcache_age(bp, tc, e);
        struct tcache_cls *cc = &tc->cls[c];
        uint32_t n = tp__load_relaxed(&cc->n);
        if (n == bp->cache_max[c]) {
            /* Full: move a batch (with its credit) to the depot. */
            uint32_t k = bp->batch[c];
            tp_buf *head = cc->head, *last = head;
            for (uint32_t i = 1; i < k; i++)
                last = last->tp_next_;
            cc->head = last->tp_next_;
            depot_give(&bp->dep[c], head, last, k);
            cc->credit -= k;
            n -= k;
            tp__store_relaxed(&cc->n, n);
            dop = true;
        }
        if (n == cc->credit) {
            uint32_t want = bp->batch[c];
            if (want > bp->cache_max[c] - cc->credit) want = bp->cache_max[c] - cc->credit;
            size_t got = reserve_units(bp, size, want);
            if (!got) goto drop;
            cc->credit += (uint32_t)got;
        }
        b->tp_next_ = cc->head;
        cc->head = b;
        tp__store_relaxed(&cc->n, n + 1);
        if (dop) depot_op(bp);
        return;
    }
    if (!reserve_units(bp, size, 1)) goto drop;
    depot_give(&bp->dep[c], b, b, 1);
    depot_op(bp);
    return;
drop:
    if (bp->o.debug) TP_UNPOISON(b->data, b->cap);
    BUMP(tc, bp, c, dropped);
    buf_release(bp, b);
    if (dop) depot_op(bp);
}

TP_API void tp_buf_free(tp_buf *b) {
    if (b && b->tp_magic_ == BUF_MAGIC) data_free(b);
}

/* ---- aging ------------------------------------------------------------------ */
static void calibrate(tp_bufpool *bp) {
    uint64_t now[NCLASS + 1], total = 0;
    pthread_mutex_lock(&g_mu);
    for (unsigned c = 0; c <= NCLASS; c++) {
        now[c] = tp__load_relaxed(&bp->cnt[c].hits) + tp__load_relaxed(&bp->cnt[c].misses);
        for (struct tcache *tc = bp->caches; tc; tc = tc->pnext)
            now[c] += tp__load_relaxed(&tc->cnt[c].hits) + tp__load_relaxed(&tc->cnt[c].misses);
    }
    pthread_mutex_unlock(&g_mu);
    uint64_t delta[NCLASS + 1];
    for (unsigned c = 0; c <= NCLASS; c++) {
        delta[c] = now[c] >= bp->calib_last[c] ? now[c] - bp->calib_last[c] : 0;
        total += delta[c];
    }
    if (!bp->o.outlier_rule || total < bp->o.calibrate_gets || !total) return;
    uint64_t sum = 0, need = (total * 95 + 99) / 100;
    unsigned p95 = NCLASS - 1;
    for (unsigned c = 0; c <= NCLASS; c++) {
        sum += delta[c];
        if (sum >= need) {
            p95 = c < NCLASS ? c : NCLASS - 1;
            break;
        }
    }
    unsigned lim = p95 + 2 < NCLASS ? p95 + 2 : NCLASS - 1; /* "far above" = > 4x */
    tp__store_relaxed(&bp->limit_class, lim);
    memcpy(bp->calib_last, now, sizeof now);
}

/* Under tick_mu. */
static size_t tick_locked(tp_bufpool *bp) {
    uint64_t e = tp__add_relaxed(&bp->epoch, 1) + 1;
    TP_CHAOS_POINT("buf.tick_epoch"); /* new epoch published, depot not yet aged */
    for (int i = 0; i < TLS_SLOTS; i++) {
        if (tls_slots[i].id == bp->id) {
            tcache_age(bp, tls_slots[i].tc, e);
            break;
        }
    }
    size_t freed = 0;
    for (unsigned c = 0; c < NCLASS; c++) {
        struct depot *d = &bp->dep[c];
        pthread_mutex_lock(&d->mu);
        size_t total = d->nfresh + d->nvictim, res = tp__load_relaxed(&d->reserve);
        size_t nfree = total > res ? total - res : 0;
        if (nfree > d->nvictim) nfree = d->nvictim;
        tp_buf *dead = NULL;
        for (size_t i = 0; i < nfree; i++) {
            tp_buf *b = d->victim;
            d->victim = b->tp_next_;
            b->tp_next_ = dead;
            dead = b;
            /* Accounted out under mu, with nret below: stats reads both under
             * mu, so a tick (on the timer thread) never shows the freed
             * buffers as outstanding. */
            buf_unaccount(bp, b);
        }
        d->nvictim -= nfree;
        /* Survivors (reserve) stay victims; everything fresh joins them. */
        if (d->fresh) {
            tp_buf *last = d->fresh;
            while (last->tp_next_)
                last = last->tp_next_;
            last->tp_next_ = d->victim;
            d->victim = d->fresh;
            d->nvictim += d->nfresh;
            d->fresh = NULL;
            d->nfresh = 0;
        }
        depot_sync_n(d);
        pthread_mutex_unlock(&d->mu);
        TP_CHAOS_POINT("buf.tick_class");
        if (nfree) {
            unreserve(bp, nfree * class_size(c));
            while (dead) {
                tp_buf *next = dead->tp_next_;
                buf_free_unaccounted(bp, dead);
                dead = next;
            }
            freed += nfree;
        }
    }
    calibrate(bp);
    tp__add_relaxed(&bp->ticks, 1);
    tp__add_relaxed(&bp->aged, freed);
    return freed;
}

static void tick_auto(tp_bufpool *bp) {
    if (pthread_mutex_trylock(&bp->tick_mu) == 0) {
        tick_locked(bp);
        pthread_mutex_unlock(&bp->tick_mu);
    }
}

TP_API size_t tp_bufpool_tick(tp_bufpool *bp) {
    if (!bp) return 0;
    pthread_mutex_lock(&bp->tick_mu);
    size_t n = tick_locked(bp);
    pthread_mutex_unlock(&bp->tick_mu);
    return n;
}

/* The periodic tick on the timer service thread. It re-arms itself under
 * timer_mu; destroy sets closing under timer_mu and then cancels the pending
 * handle (waiting for a running call), so no tick runs after destroy. */
static void timer_tick(void *arg) {
    tp_bufpool *bp = arg;
    pthread_mutex_lock(&bp->timer_mu);
    if (bp->closing) {
        pthread_mutex_unlock(&bp->timer_mu);
        return;
    }
    tp_timer *self = bp->timer;
    bp->timer = NULL;
    TP_CHAOS_POINT("buf.timer_tick");
    tp_bufpool_tick(bp);
    tp_timer_cancel(self); /* from its own callback: gives the handle back */
    tp_timer *next = NULL;
    if (tp_timer_add_after(bp->o.timers, bp->o.tick_interval_ns, timer_tick, bp, &next) == 0)
        bp->timer = next;
    pthread_mutex_unlock(&bp->timer_mu);
}

TP_API int tp_bufpool_prewarm(tp_bufpool *bp, size_t size, size_t count, bool populate) {
    if (!bp) return -EINVAL;
    unsigned c = class_of(size);
    if (c == HUGE_C || bp->o.passthrough) return -EINVAL;
    if (!count) return 0;
    size_t cap = class_size(c);
    if (count > bp->o.max_retained / cap) return -ENOSPC;
    size_t got = reserve_units(bp, cap, count);
    if (got < count) {
        unreserve(bp, got * cap);
        return -ENOSPC;
    }
    tp_buf *head = NULL, *last = NULL;
    for (size_t i = 0; i < count; i++) {
        tp_buf *b = buf_alloc(bp, c, cap, populate);
        if (!b) {
            release_list(bp, head);
            unreserve(bp, count * cap);
            return -ENOMEM;
        }
        __atomic_store_n(&b->tp_state_, ST_IN, __ATOMIC_RELAXED);
        if (bp->o.debug) {
            memset(b->data, POISON_BYTE, cap);
            TP_POISON(b->data, cap);
        }
        if (!last) last = b;
        b->tp_next_ = head;
        head = b;
    }
    struct depot *d = &bp->dep[c];
    TP_CHAOS_POINT("buf.prewarm_publish"); /* reserved, not yet in the depot */
    pthread_mutex_lock(&d->mu);
    last->tp_next_ = d->fresh;
    d->fresh = head;
    d->nfresh += count;
    tp__store_relaxed(&d->reserve, tp__load_relaxed(&d->reserve) + count);
    depot_sync_n(d);
    pthread_mutex_unlock(&d->mu);
    return 0;
}

/* ---- stats -------------------------------------------------------------------- */
static void add_cls(struct tp_bufpool_class_stats *t, const struct tp_bufpool_class_stats *s) {
    t->gets += s->gets;
    t->hits += s->hits;
    t->misses += s->misses;
    t->puts += s->puts;
    t->dropped += s->dropped;
    t->retained_bytes += s->retained_bytes;
    t->inuse_bytes += s->inuse_bytes;
    t->retained += s->retained;
    t->outstanding += s->outstanding;
}

TP_API void tp_bufpool_stats(tp_bufpool *bp, struct tp_bufpool_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!bp) return;
    pthread_mutex_lock(&g_mu);
    for (unsigned c = 0; c <= NCLASS; c++) {
        struct tp_bufpool_class_stats *s = &out->cls[c];
        s->size = c < NCLASS ? class_size(c) : 0;
        s->hits = tp__load_relaxed(&bp->cnt[c].hits);
        s->misses = tp__load_relaxed(&bp->cnt[c].misses);
        s->puts = tp__load_relaxed(&bp->cnt[c].puts);
        s->dropped = tp__load_relaxed(&bp->cnt[c].dropped);
        /* nret and alloc_* together under the depot lock: an aging tick
         * changes both under it (tick_locked), so a quiet pool is exact. */
        if (c < NCLASS) pthread_mutex_lock(&bp->dep[c].mu);
        size_t ret = c < NCLASS ? tp__load_relaxed(&bp->dep[c].nret) : 0;
        uint64_t an = tp__load_relaxed(&bp->alloc_n[c]), ab = tp__load_relaxed(&bp->alloc_bytes[c]);
        if (c < NCLASS) pthread_mutex_unlock(&bp->dep[c].mu);
        for (struct tcache *tc = bp->caches; tc; tc = tc->pnext) {
            s->hits += tp__load_relaxed(&tc->cnt[c].hits);
            s->misses += tp__load_relaxed(&tc->cnt[c].misses);
            s->puts += tp__load_relaxed(&tc->cnt[c].puts);
            s->dropped += tp__load_relaxed(&tc->cnt[c].dropped);
            if (c < NCLASS) ret += tp__load_relaxed(&tc->cls[c].n);
        }
        s->gets = s->hits + s->misses;
        s->retained = ret;
        s->retained_bytes = c < NCLASS ? ret * class_size(c) : 0;
        s->outstanding = an > ret ? an - ret : 0;
        s->inuse_bytes = ab > s->retained_bytes ? ab - s->retained_bytes : 0;
        s->peak_bytes = tp__load_relaxed(&bp->peak[c]);
        add_cls(&out->total, s);
    }
    pthread_mutex_unlock(&g_mu);
    out->total.peak_bytes = tp__load_relaxed(&bp->peak_total);
    if (bp->o.max_inuse) /* the exact counter the cap uses */
        out->total.inuse_bytes = atomic_load_explicit(&bp->inuse, memory_order_relaxed);
    out->hit_ratio = out->total.gets ? (double)out->total.hits / (double)out->total.gets : 0.0;
    out->max_retained = bp->o.max_retained;
    out->max_inuse = bp->o.max_inuse;
    out->reserved_bytes = tp__load_relaxed(&bp->reserved);
    out->peak_retained = tp__load_relaxed(&bp->peak_reserved);
    out->ticks = tp__load_relaxed(&bp->ticks);
    out->aged = tp__load_relaxed(&bp->aged);
    out->waits = tp__load_relaxed(&bp->waits);
    out->cap_failures = tp__load_relaxed(&bp->cap_failures);
    out->outlier_limit = class_size(tp__load_relaxed(&bp->limit_class));
}

TP_API size_t tp_bufpool_outstanding(tp_bufpool *bp) {
    struct tp_bufpool_stats s;
    tp_bufpool_stats(bp, &s);
    return s.total.outstanding;
}

/* ---- create / destroy ---------------------------------------------------------- */
TP_API void tp_bufpool_opts_init(tp_bufpool_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->max_retained = (size_t)256 << 20;
    o->thread_cache = true;
    o->cache_bytes = (size_t)1 << 20;
    o->tick_ops = 65536;
    o->outlier_rule = true;
    o->calibrate_gets = 10000;
}

TP_API int tp_bufpool_create(tp_bufpool **out, const tp_bufpool_opts *opts) {
    if (!out) return -EINVAL;
    *out = NULL;
    tp_bufpool_opts o;
    if (opts)
        o = *opts;
    else
        tp_bufpool_opts_init(&o);
    if (o.cache_bytes == 0) o.thread_cache = false;
    tp_bufpool *bp;
    if (posix_memalign((void **)&bp, TP_CACHELINE, sizeof *bp) != 0) return -ENOMEM;
    memset(bp, 0, sizeof *bp);
    bp->o = o;
    bp->fast =
        o.thread_cache && !o.passthrough && !o.debug && !o.zero_on_get && !o.reset && !o.max_inuse;
    snprintf(bp->name, sizeof bp->name, "%s", o.name ? o.name : "buf");
    bp->o.name = bp->name;
    bp->page = tp__page_size();
    bp->id = tp__add_relaxed(&g_next_id, 1);
    /* A cache may hold at most 1/64 of the cap per class, so caches of
     * threads that only put (pipeline consumers) cannot absorb the whole cap
     * and starve the depot. */
    size_t per_class = o.cache_bytes < o.max_retained / 64 ? o.cache_bytes : o.max_retained / 64;
    for (unsigned c = 0; c < NCLASS; c++) {
        size_t slots = per_class / class_size(c);
        if (slots < 1) slots = 1;
        if (slots > CACHE_SLOTS_MAX) slots = CACHE_SLOTS_MAX;
        bp->cache_max[c] = (uint32_t)slots;
        bp->batch[c] = slots / 2 ? (uint32_t)(slots / 2) : 1;
        pthread_mutex_init(&bp->dep[c].mu, NULL);
    }
    tp__store_relaxed(&bp->limit_class, NCLASS - 1);
    pthread_mutex_init(&bp->tick_mu, NULL);
    pthread_mutex_init(&bp->wait_mu, NULL);
    pthread_mutex_init(&bp->dbg_mu, NULL);
    pthread_mutex_init(&bp->timer_mu, NULL);
    int err = tp__cond_init_monotonic(&bp->wait_cv);
    if (err) {
        free(bp);
        return err;
    }
    if (o.tick_interval_ns) {
        pthread_mutex_lock(&bp->timer_mu);
        err = tp_timer_add_after(o.timers, o.tick_interval_ns, timer_tick, bp, &bp->timer);
        pthread_mutex_unlock(&bp->timer_mu);
        if (err) {
            pthread_cond_destroy(&bp->wait_cv);
            free(bp);
            return err;
        }
    }
    *out = bp;
    return 0;
}

TP_API void tp_bufpool_destroy(tp_bufpool *bp) {
    if (!bp) return;
    pthread_mutex_lock(&bp->timer_mu);
    bp->closing = true;
    tp_timer *tm = bp->timer;
    bp->timer = NULL;
    pthread_mutex_unlock(&bp->timer_mu);
    if (tm) tp_timer_cancel(tm);   /* waits for a tick that is running */
    TP_CHAOS_POINT("buf.destroy"); /* owners of caches may be exiting now */
    /* Detach every thread cache; their owners free the structs later. */
    pthread_mutex_lock(&g_mu);
    for (struct tcache *tc = bp->caches; tc; tc = tc->pnext) {
        for (unsigned c = 0; c < NCLASS; c++) {
            release_list(bp, tc->cls[c].head);
            tc->cls[c].head = NULL;
            tp__store_relaxed(&tc->cls[c].n, 0);
            tc->cls[c].credit = 0;
        }
        tc->pool = NULL;
    }
    bp->caches = NULL;
    pthread_mutex_unlock(&g_mu);
    for (unsigned c = 0; c < NCLASS; c++) {
        release_list(bp, bp->dep[c].fresh);
        release_list(bp, bp->dep[c].victim);
        pthread_mutex_destroy(&bp->dep[c].mu);
    }
    if (bp->dbg_root) tdestroy(bp->dbg_root, nofree);
    pthread_mutex_destroy(&bp->tick_mu);
    pthread_mutex_destroy(&bp->wait_mu);
    pthread_mutex_destroy(&bp->dbg_mu);
    pthread_mutex_destroy(&bp->timer_mu);
    pthread_cond_destroy(&bp->wait_cv);
    free(bp);
}
