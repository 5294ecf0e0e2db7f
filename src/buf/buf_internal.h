/* SPDX-License-Identifier: MIT */
/*
 * The buffer pool's internals (include/tripool/buf.h), shared by its files:
 *   buf.c     the public calls: create/destroy, get/put with their inline
 *             fast paths, the in-use cap and its waits, stats
 *   tcache.c  thread caches: the per-thread slot table, flush and retire,
 *             the process-wide thread-exit key and its dlclose() handling
 *   depot.c   depot and aging: allocation and release of buffers, the
 *             retained cap (reserve), the aging tick, calibration, prewarm
 *   debug.c   debug checks: poisoning and the tsearch registry
 * The depot's push/pop, the cache lookup and the always-on put checks are
 * static inline here: they run on the get/put paths of buf.c, which inlined
 * them when the pool was one file, and still do.
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
 *
 * g_mu is tp__buf_g_mu (tcache.c); tls_slots is tp__buf_tls_slots.
 */
#ifndef TP_BUF_INTERNAL_H
#define TP_BUF_INTERNAL_H

#include "tripool/buf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal/atomic.h"
#include "internal/chaos.h"
#include "internal/check.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define TP_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define TP_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define TP_POISON(p, n) ((void)(p), (void)(n))
#define TP_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#pragma GCC visibility push(hidden)

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

/* ---- shared state (tcache.c) ------------------------------------------- */
/* The one process-wide lock of the pool: see DESIGN, "Threads and pools". */
extern pthread_mutex_t tp__buf_g_mu;

struct tls_slot {
    uint64_t id;
    struct tcache *tc;
};
/* initial-exec: the library is built -fPIC, whose default TLS model calls
 * __tls_get_addr on every access; these ~150 bytes fit glibc's static TLS
 * surplus even when libtripool.so is dlopen()ed. */
#define TP_TLS __thread __attribute__((tls_model("initial-exec")))
/* This thread's caches by pool id (owner thread; g_mu at exit). */
extern TP_TLS struct tls_slot tp__buf_tls_slots[TLS_SLOTS];

/* ---- sizes -------------------------------------------------------------- */
static inline unsigned class_of(size_t n) {
    if (n <= TP_BUF_MIN_SIZE) return 0;
    if (n > TP_BUF_MAX_SIZE) return HUGE_C;
    return (unsigned)(64 - __builtin_clzll((unsigned long long)(n - 1))) - TP_BUF_MIN_SHIFT;
}

static inline size_t class_size(unsigned c) {
    return (size_t)1 << (c + TP_BUF_MIN_SHIFT);
}

/* ---- depot and aging (depot.c) ------------------------------------------ */
/* A new buffer of class c (cap bytes), accounted. NULL on ENOMEM. */
tp_buf *tp__buf_alloc(tp_bufpool *bp, unsigned c, size_t cap, bool populate);
/* Free a buffer of the pool (accounting included). */
void tp__buf_release(tp_bufpool *bp, tp_buf *b);
/* Free a list of buffers; returns how many. */
size_t tp__buf_release_list(tp_bufpool *bp, tp_buf *b);
/* Free the memory of a buffer (no accounting). */
void tp__buf_data_free(tp_buf *b);
/* Reserve up to want units of unit bytes under max_retained; returns how many. */
size_t tp__buf_reserve(tp_bufpool *bp, size_t unit, size_t want);
/* A tick unless one is running (tick_ops). */
void tp__buf_tick_auto(tp_bufpool *bp);
/* The periodic tick (tick_interval_ns), a tp_timer callback; arg: the pool. */
void tp__buf_timer_tick(void *arg);

static inline void unreserve(tp_bufpool *bp, size_t bytes) {
    if (bytes) tp__sub_relaxed(&bp->reserved, bytes);
}

static inline void depot_sync_n(struct depot *d) {
    tp__store_relaxed(&d->nret, d->nfresh + d->nvictim);
}

/* Pop up to max buffers (fresh first, then victims); returns the list. */
static inline tp_buf *depot_take(struct depot *d, size_t max, size_t *got) {
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
static inline void depot_give(struct depot *d, tp_buf *head, tp_buf *last, size_t n) {
    TP_CHAOS_POINT("buf.depot_give"); /* the buffers are in no tier right now */
    pthread_mutex_lock(&d->mu);
    last->tp_next_ = d->fresh;
    d->fresh = head;
    d->nfresh += n;
    depot_sync_n(d);
    pthread_mutex_unlock(&d->mu);
}

/* Count an operation that went to the depot; every tick_ops-th ticks. */
static inline void depot_op(tp_bufpool *bp) {
    uint64_t every = bp->o.tick_ops;
    if (every && (tp__add_relaxed(&bp->depot_ops, 1) + 1) % every == 0) tp__buf_tick_auto(bp);
}

/* ---- thread caches (tcache.c) ------------------------------------------- */
/* Empty a cache into the depot and give back its unused credit. Owner thread
 * or (at retire / thread exit) under g_mu. */
void tp__buf_tcache_flush(tp_bufpool *bp, struct tcache *tc);
/* This thread's new cache for bp, or NULL (thread caches off, no slot free,
 * no memory). */
struct tcache *tp__buf_tcache_new(tp_bufpool *bp);

static inline void tcache_age(tp_bufpool *bp, struct tcache *tc, uint64_t epoch) {
    tc->epoch = epoch;
    tp__buf_tcache_flush(bp, tc);
}

static inline struct tcache *tcache_of(tp_bufpool *bp) {
    for (int i = 0; i < TLS_SLOTS; i++)
        if (tp__buf_tls_slots[i].id == bp->id) return tp__buf_tls_slots[i].tc;
    return tp__buf_tcache_new(bp);
}

/* ---- debug checks (debug.c) --------------------------------------------- */
void tp__buf_dbg_add(tp_bufpool *bp, tp_buf *b);
bool tp__buf_dbg_has(tp_bufpool *bp, const tp_buf *b);
void tp__buf_dbg_del(tp_bufpool *bp, tp_buf *b);
/* Free the registry (destroy). */
void tp__buf_dbg_destroy(tp_bufpool *bp);
/* Fill a retained buffer with POISON_BYTE and poison it for ASan. */
void tp__buf_dbg_poison(tp_buf *b);
/* Unpoison a buffer taken for reuse; abort if it was written after its put. */
void tp__buf_dbg_check_poison(tp_bufpool *bp, tp_buf *b);

/* The always-on checks of a put through the full path (the debug registry
 * only with o.debug). Inline: every slow put runs them. */
#define PUT_CHECK(cond, what)                                                                      \
    TP__CHECK(cond, "tp_buf_put: %s (buffer %p, pool '%s')", what, (const void *)b, bp->name)
static inline void check_put(tp_bufpool *bp, tp_buf *b) {
    PUT_CHECK(!bp->o.debug || tp__buf_dbg_has(bp, b),
              "not a buffer of this pool (foreign pointer, another pool's buffer, or freed)");
    PUT_CHECK(b->tp_magic_ == BUF_MAGIC, "not a tripool buffer");
    PUT_CHECK(b->tp_pool_ == bp, "buffer belongs to another pool");
    uint8_t prev;
    if (bp->o.debug) {
        prev = __atomic_exchange_n(&b->tp_state_, ST_IN, __ATOMIC_RELAXED);
    } else {
        prev = __atomic_load_n(&b->tp_state_, __ATOMIC_RELAXED);
        TP_CHAOS_POINT("buf.put_check");
        __atomic_store_n(&b->tp_state_, ST_IN, __ATOMIC_RELAXED);
    }
    PUT_CHECK(prev == ST_OUT, "double put (the buffer is already back in the pool)");
}
#undef PUT_CHECK

#pragma GCC visibility pop

#endif
