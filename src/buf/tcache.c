/* SPDX-License-Identifier: MIT */
/*
 * The buffer pool's thread caches (DESIGN in buf_internal.h): the
 * per-thread slot table that maps pool ids to caches, creating a cache,
 * flushing one into the depot, handing caches back when their thread exits,
 * and the process-wide thread-exit key with its dlclose() handling. The
 * lookup (tcache_of) and aging (tcache_age) are inline in buf_internal.h.
 */
#include "buf/buf_internal.h"

/* ---- process-wide thread-exit hook (see DESIGN) ---------------------- */
pthread_mutex_t tp__buf_g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
/* Set once by key_create, cleared by buf_unload; atomic because an unload at
 * exit() may overlap a thread still calling tcache_new. */
static _Atomic bool g_key_ok;

TP_TLS struct tls_slot tp__buf_tls_slots[TLS_SLOTS];
static TP_TLS struct tcache *tls_list;
static TP_TLS bool tls_keyed;

static void tls_exit(void *v);

static void key_create(void) {
    tp__store_relaxed(&g_key_ok, pthread_key_create(&g_key, tls_exit) == 0);
}

/* Empty a cache into the depot and give back its unused credit. Owner thread
 * or (at retire / thread exit) under tp__buf_g_mu. */
void tp__buf_tcache_flush(tp_bufpool *bp, struct tcache *tc) {
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

/* Detach a cache from its live pool: contents to the depot, counters to the
 * pool. Under tp__buf_g_mu. */
static void tcache_retire(tp_bufpool *bp, struct tcache *tc) {
    tp__buf_tcache_flush(bp, tc);
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
    pthread_mutex_lock(&tp__buf_g_mu);
    struct tcache *tc = tls_list;
    while (tc) {
        struct tcache *next = tc->tnext;
        if (tc->pool) tcache_retire(tc->pool, tc);
        free(tc);
        tc = next;
    }
    tls_list = NULL;
    tls_keyed = false; /* a later use (another key's destructor) registers again */
    memset(tp__buf_tls_slots, 0, sizeof tp__buf_tls_slots);
    pthread_mutex_unlock(&tp__buf_g_mu);
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

struct tcache *tp__buf_tcache_new(tp_bufpool *bp) {
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
    pthread_mutex_lock(&tp__buf_g_mu);
    int slot = -1;
    for (int i = 0; i < TLS_SLOTS && slot < 0; i++) {
        if (!tp__buf_tls_slots[i].id) {
            slot = i;
        } else if (!tp__buf_tls_slots[i].tc->pool) { /* its pool was destroyed */
            struct tcache *old = tp__buf_tls_slots[i].tc, **pp = &tls_list;
            while (*pp != old)
                pp = &(*pp)->tnext;
            *pp = old->tnext;
            free(old);
            tp__buf_tls_slots[i].id = 0;
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
        tp__buf_tls_slots[slot].tc = tc;
        tp__buf_tls_slots[slot].id = bp->id;
    }
    pthread_mutex_unlock(&tp__buf_g_mu);
    return tc;
}
