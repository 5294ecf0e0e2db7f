/* SPDX-License-Identifier: MIT */
/*
 * The buffer pool's public calls (include/tripool/buf.h; DESIGN in
 * buf_internal.h): create and destroy, get and put with their inline fast
 * paths (tp_buf_get/tp_buf_put) and full paths (get_impl/put_slow), the
 * in-use cap and its waits (timeout, context), stats.
 */
#include "buf/buf_internal.h"

#include <stdio.h>

#include "internal/os.h"
#include "internal/probes.h"

static _Atomic uint64_t g_next_id = 1; /* pool ids, never reused (see DESIGN) */

/* ---- in-use cap ---------------------------------------------------------- */
static bool inuse_try(tp_bufpool *bp, size_t cap) {
    /* seq_cst: one half of the Dekker pair with inuse_release (DESIGN). */
    uint64_t cur = tp__load_seq_cst(&bp->inuse);
    while (cur + cap <= bp->o.max_inuse) {
        TP_CHAOS_POINT("buf.cap_claim"); /* room seen, not yet claimed */
        if (tp__cas_weak_seq_cst(&bp->inuse, &cur, cur + cap)) return true;
    }
    return false;
}

static void inuse_release(tp_bufpool *bp, size_t cap) {
    /* seq_cst sub then seq_cst load of waiters: the other half of the pair. */
    tp__sub_seq_cst(&bp->inuse, cap);
    TP_CHAOS_POINT("buf.cap_release"); /* room given back, waiters not yet read */
    if (tp__load_seq_cst(&bp->waiters)) {
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
    tp__add_seq_cst(&bp->waiters, 1); /* seq_cst: Dekker pair */
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
    tp__sub_seq_cst(&bp->waiters, 1);
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
    if (bp->o.debug) tp__buf_dbg_check_poison(bp, b);
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
        b = tp__buf_alloc(bp, c, cap, false);
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

/* The fast paths start on a cache line of their own (aligned(64)): their
 * speed otherwise depends on where the linker happens to place them (8% on
 * bench/buf_bench.c's 64 B get/fill/put, same instructions, other layout). */
TP_API __attribute__((aligned(64))) tp_buf *tp_buf_get(tp_bufpool *bp, size_t min_cap) {
    TP_PROBE(buf_get, bp, min_cap);
    /* Fast path: a hit in this thread's first cache slot, nothing to check,
     * no tick pending. Everything else takes get_impl(). */
    if (__builtin_expect(bp && bp->fast && min_cap <= TP_BUF_MAX_SIZE, 1) &&
        tp__buf_tls_slots[0].id == bp->id) {
        struct tcache *tc = tp__buf_tls_slots[0].tc;
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

static void put_slow(tp_bufpool *bp, tp_buf *b);

TP_API __attribute__((aligned(64))) void tp_buf_put(tp_bufpool *bp, tp_buf *b) {
    TP_PROBE(buf_put, bp, b);
    /* Fast path: an intact buffer of this pool going into a cache slot this
     * thread already holds credit for. Everything else takes the full path. */
    if (__builtin_expect(b && bp && bp->fast, 1) && tp__buf_tls_slots[0].id == bp->id &&
        b->tp_pool_ == bp && b->tp_magic_ == BUF_MAGIC &&
        __atomic_load_n(&b->tp_state_, __ATOMIC_RELAXED) == ST_OUT) {
        struct tcache *tc = tp__buf_tls_slots[0].tc;
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
    if (bp->o.debug) tp__buf_dbg_poison(b);
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
            size_t got = tp__buf_reserve(bp, size, want);
            if (!got) goto drop;
            cc->credit += (uint32_t)got;
        }
        b->tp_next_ = cc->head;
        cc->head = b;
        tp__store_relaxed(&cc->n, n + 1);
        if (dop) depot_op(bp);
        return;
    }
    if (!tp__buf_reserve(bp, size, 1)) goto drop;
    depot_give(&bp->dep[c], b, b, 1);
    depot_op(bp);
    return;
drop:
    if (bp->o.debug) TP_UNPOISON(b->data, b->cap);
    BUMP(tc, bp, c, dropped);
    tp__buf_release(bp, b);
    if (dop) depot_op(bp);
}

TP_API void tp_buf_free(tp_buf *b) {
    if (b && b->tp_magic_ == BUF_MAGIC) tp__buf_data_free(b);
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
    pthread_mutex_lock(&tp__buf_g_mu);
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
    pthread_mutex_unlock(&tp__buf_g_mu);
    out->total.peak_bytes = tp__load_relaxed(&bp->peak_total);
    if (bp->o.max_inuse) /* the exact counter the cap uses */
        out->total.inuse_bytes = tp__load_relaxed(&bp->inuse);
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
        err = tp_timer_add_after(o.timers, o.tick_interval_ns, tp__buf_timer_tick, bp, &bp->timer);
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
    pthread_mutex_lock(&tp__buf_g_mu);
    for (struct tcache *tc = bp->caches; tc; tc = tc->pnext) {
        for (unsigned c = 0; c < NCLASS; c++) {
            tp__buf_release_list(bp, tc->cls[c].head);
            tc->cls[c].head = NULL;
            tp__store_relaxed(&tc->cls[c].n, 0);
            tc->cls[c].credit = 0;
        }
        tc->pool = NULL;
    }
    bp->caches = NULL;
    pthread_mutex_unlock(&tp__buf_g_mu);
    for (unsigned c = 0; c < NCLASS; c++) {
        tp__buf_release_list(bp, bp->dep[c].fresh);
        tp__buf_release_list(bp, bp->dep[c].victim);
        pthread_mutex_destroy(&bp->dep[c].mu);
    }
    tp__buf_dbg_destroy(bp);
    pthread_mutex_destroy(&bp->tick_mu);
    pthread_mutex_destroy(&bp->wait_mu);
    pthread_mutex_destroy(&bp->dbg_mu);
    pthread_mutex_destroy(&bp->timer_mu);
    pthread_cond_destroy(&bp->wait_cv);
    free(bp);
}
