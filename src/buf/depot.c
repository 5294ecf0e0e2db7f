/* SPDX-License-Identifier: MIT */
/*
 * The buffer pool's depot and aging (DESIGN in buf_internal.h): where
 * buffers come from and where they go back to. Allocation and release of
 * buffers (malloc or a mapping, with the pool's accounting), the retained
 * cap (pool->reserved), the aging tick (tick_ops and the periodic timer),
 * the outlier rule's calibration, and prewarm. The depot's push and pop
 * (depot_take/depot_give) are inline in buf_internal.h.
 */
#include "buf/buf_internal.h"

#include "internal/os.h"

/* ---- the retained cap ---------------------------------------------------- */
/* Reserve up to want units of unit bytes under max_retained; returns how
 * many. Relaxed: reserved is a budget counter, it publishes no memory (the
 * buffers themselves move under the depot mutexes or stay thread-local). */
size_t tp__buf_reserve(tp_bufpool *bp, size_t unit, size_t want) {
    uint64_t cur = tp__load_relaxed(&bp->reserved);
    for (;;) {
        uint64_t max = bp->o.max_retained;
        uint64_t avail = max > cur ? (max - cur) / unit : 0;
        uint64_t got = avail < want ? avail : want;
        if (!got) return 0;
        TP_CHAOS_POINT("buf.reserve"); /* read the budget, not yet claimed */
        if (tp__cas_weak_relaxed(&bp->reserved, &cur, cur + got * unit)) {
            tp__max_relaxed(&bp->peak_reserved, cur + got * unit);
            return (size_t)got;
        }
    }
}

/* ---- allocation --------------------------------------------------------- */
void tp__buf_data_free(tp_buf *b) {
    TP_UNPOISON(b->data, b->cap);
    if (b->tp_flags_ & F_MMAP)
        (void)tp__os_unmap(b->data, b->cap);
    else
        free(b->data);
    b->tp_magic_ = 0;
    free(b);
}

/* A new buffer of class c (cap bytes). NULL on ENOMEM. */
tp_buf *tp__buf_alloc(tp_bufpool *bp, unsigned c, size_t cap, bool populate) {
    tp_buf *b = malloc(sizeof *b);
    if (!b) return NULL;
    memset(b, 0, sizeof *b);
    void *p = NULL;
    bool map = c == HUGE_C || cap >= MMAP_MIN || (bp->o.page_aligned && cap >= bp->page);
    if (map && bp->o.huge_pages && cap >= TP__OS_HUGE_PAGE) {
        if (tp__os_map_huge(cap, populate, &p) != 0) p = NULL;
        b->tp_flags_ = F_MMAP;
    } else if (map) {
        if (tp__os_map(cap, populate, &p) != 0) p = NULL;
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
    if (bp->o.debug) tp__buf_dbg_add(bp, b);
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
    if (bp->o.debug) tp__buf_dbg_del(bp, b);
    tp__buf_data_free(b);
}

/* Free a buffer of the pool (accounting included). */
void tp__buf_release(tp_bufpool *bp, tp_buf *b) {
    buf_unaccount(bp, b);
    buf_free_unaccounted(bp, b);
}

size_t tp__buf_release_list(tp_bufpool *bp, tp_buf *b) {
    size_t n = 0;
    while (b) {
        tp_buf *next = b->tp_next_;
        tp__buf_release(bp, b);
        b = next;
        n++;
    }
    return n;
}

/* ---- aging ------------------------------------------------------------------ */
static void calibrate(tp_bufpool *bp) {
    uint64_t now[NCLASS + 1], total = 0;
    pthread_mutex_lock(&tp__buf_g_mu);
    for (unsigned c = 0; c <= NCLASS; c++) {
        now[c] = tp__load_relaxed(&bp->cnt[c].hits) + tp__load_relaxed(&bp->cnt[c].misses);
        for (struct tcache *tc = bp->caches; tc; tc = tc->pnext)
            now[c] += tp__load_relaxed(&tc->cnt[c].hits) + tp__load_relaxed(&tc->cnt[c].misses);
    }
    pthread_mutex_unlock(&tp__buf_g_mu);
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
        if (tp__buf_tls_slots[i].id == bp->id) {
            tcache_age(bp, tp__buf_tls_slots[i].tc, e);
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

void tp__buf_tick_auto(tp_bufpool *bp) {
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
void tp__buf_timer_tick(void *arg) {
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
    if (tp_timer_add_after(bp->o.timers, bp->o.tick_interval_ns, tp__buf_timer_tick, bp, &next) ==
        0)
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
    size_t got = tp__buf_reserve(bp, cap, count);
    if (got < count) {
        unreserve(bp, got * cap);
        return -ENOSPC;
    }
    tp_buf *head = NULL, *last = NULL;
    for (size_t i = 0; i < count; i++) {
        tp_buf *b = tp__buf_alloc(bp, c, cap, populate);
        if (!b) {
            tp__buf_release_list(bp, head);
            unreserve(bp, count * cap);
            return -ENOMEM;
        }
        __atomic_store_n(&b->tp_state_, ST_IN, __ATOMIC_RELAXED);
        if (bp->o.debug) tp__buf_dbg_poison(b);
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
