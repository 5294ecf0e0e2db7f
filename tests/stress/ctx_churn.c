/* SPDX-License-Identifier: MIT */
/* Stress: threads grow, cancel, time out and release a shared context tree
 * while registering and stopping callbacks; the root is cancelled midway.
 * Invariants (ctx.h): every callback runs at most once; a stop that returned
 * true means it never ran, false means it ran exactly once and had returned;
 * a callback runs only once its context is done, with no context lock held
 * (it calls tp_ctx_child_count and tp_ctx_cancel on its own context, which
 * take that lock); every callback not stopped has run once after the root
 * is cancelled; when tp_ctx_cancel(c) returns, c and every descendant is
 * done (checked on each thread's live contexts after its own cancels and
 * after the root's); every context ends done with -ECANCELED or -ETIMEDOUT;
 * no leaks (ASan). Run under the TP_CHAOS build by make test.
 * Usage: stress_ctx_churn [THREADS [SCALE [ITER]]]
 * TP_TEST_TIMEOUT: 120 */
#include "tp_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

struct rec {
    _Atomic int runs;
    _Atomic int returned;
    tp_ctx *ctx; /* kept alive by the registered callback until it ran */
    _Atomic int *bad;
    tp_ctx_cb *handle;
    int stop_result; /* -1 not stopped, 0 false, 1 true */
    int returned_at_stop;
};

struct shared {
    tp_ctx *root;
    unsigned iters;
    _Atomic unsigned long ops;
    _Atomic int bad;
    _Atomic int root_cancelled; /* tp_ctx_cancel(root) has returned */
};

struct worker {
    struct shared *sh;
    uint64_t rng;
    struct rec **recs;
    size_t nrecs, caprecs;
};

#define LIVE 32
#define DEPTH 6 /* deepest chain of a thread's own contexts */

static uint64_t rnd(struct worker *w) {
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void cb_fn(void *arg) {
    struct rec *r = arg;
    atomic_fetch_add(&r->runs, 1);
    if (!tp_ctx_done(r->ctx)) atomic_store(r->bad, 5); /* ran before done */
    (void)tp_ctx_child_count(r->ctx);                  /* deadlocks if run under its lock */
    tp_ctx_cancel(r->ctx);                             /* idempotent, allowed from a callback */
    atomic_fetch_add(&r->returned, 1);
}

/* Every live context that has c among its ancestors (or is c) is done. */
static void check_subtree_done(struct shared *sh, tp_ctx *const *live, tp_ctx *const (*anc)[DEPTH],
                               const tp_ctx *c) {
    for (unsigned s = 0; s < LIVE; s++) {
        if (!live[s]) continue;
        bool below = live[s] == c;
        for (unsigned d = 0; d < DEPTH && !below; d++)
            below = anc[s][d] == c;
        if (below && !tp_ctx_done(live[s])) atomic_store(&sh->bad, 6);
    }
}

static void add_rec(struct worker *w, struct rec *r) {
    if (w->nrecs == w->caprecs) {
        w->caprecs = w->caprecs ? w->caprecs * 2 : 1024;
        w->recs = realloc(w->recs, w->caprecs * sizeof(*w->recs));
        if (!w->recs) abort();
    }
    w->recs[w->nrecs++] = r;
}

static void check_done(struct shared *sh, tp_ctx *c) {
    int e = tp_ctx_err(c);
    if (e != -ECANCELED && e != -ETIMEDOUT) atomic_store(&sh->bad, 1);
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct shared *sh = w->sh;
    tp_ctx *live[LIVE] = {0};
    /* anc[s]: live[s]'s ancestors up to DEPTH below the root (NULL-padded);
     * a child pins its parent, so these pointers stay valid. */
    tp_ctx *anc[LIVE][DEPTH] = {{0}};
    bool seen_root_cancel = false;
    for (unsigned i = 0; i < sh->iters; i++) {
        if (!seen_root_cancel && atomic_load(&sh->root_cancelled)) {
            seen_root_cancel = true;
            check_subtree_done(sh, live, (tp_ctx *const(*)[DEPTH])anc, sh->root);
            for (unsigned s = 0; s < LIVE; s++)
                if (live[s] && !tp_ctx_done(live[s])) atomic_store(&sh->bad, 7);
        }
        unsigned slot = (unsigned)(rnd(w) % LIVE);
        unsigned op = (unsigned)(rnd(w) % 100);
        if (!live[slot]) {
            /* Parent: the root, or another live context of ours (depth). */
            tp_ctx *parent = sh->root;
            unsigned ps = (unsigned)(rnd(w) % LIVE);
            if (live[ps] && rnd(w) % 2 && !anc[ps][DEPTH - 1]) parent = live[ps];
            memset(anc[slot], 0, sizeof(anc[slot]));
            if (parent != sh->root) {
                anc[slot][0] = parent;
                memcpy(&anc[slot][1], anc[ps], (DEPTH - 1) * sizeof(tp_ctx *));
            }
            int err;
            if (op < 40)
                err = tp_ctx_with_cancel(parent, &live[slot]);
            else if (op < 70)
                err = tp_ctx_with_timeout(parent, (rnd(w) % 3000) * TP_NSEC_PER_USEC, &live[slot]);
            else if (op < 85)
                err = tp_ctx_with_value(parent, w, NULL, &live[slot]);
            else
                err = tp_ctx_with_budget(parent, TP_NSEC_PER_MSEC, &live[slot]);
            if (err) atomic_store(&sh->bad, 2);
            continue;
        }
        tp_ctx *c = live[slot];
        if (op < 40) {
            struct rec *r = calloc(1, sizeof(*r));
            if (!r) abort();
            r->stop_result = -1;
            r->ctx = c;
            r->bad = &sh->bad;
            bool keep = rnd(w) % 2;
            if (tp_ctx_on_done(c, cb_fn, r, keep ? &r->handle : NULL)) atomic_store(&sh->bad, 3);
            add_rec(w, r);
            if (keep && rnd(w) % 2) {
                r->stop_result = tp_ctx_cb_stop(r->handle);
                r->returned_at_stop = atomic_load(&r->returned);
            }
        } else if (op < 55) {
            tp_ctx_cancel(c);
            check_done(sh, c);
            check_subtree_done(sh, live, (tp_ctx *const(*)[DEPTH])anc, c);
        } else if (op < 60) {
            if (tp_ctx_wait(c, rnd(w) % 2 ? 0 : TP_NSEC_PER_USEC * 200) == 0)
                atomic_store(&sh->bad, 4);
        } else {
            tp_ctx_release(c);
            live[slot] = NULL;
        }
        atomic_fetch_add_explicit(&sh->ops, 1, memory_order_relaxed);
    }
    /* Give back every handle not yet stopped, then every context. */
    for (size_t i = 0; i < w->nrecs; i++) {
        struct rec *r = w->recs[i];
        if (r->handle && r->stop_result < 0) {
            r->stop_result = tp_ctx_cb_stop(r->handle);
            r->returned_at_stop = atomic_load(&r->returned);
        }
    }
    for (unsigned s = 0; s < LIVE; s++)
        if (live[s]) tp_ctx_release(live[s]);
    return NULL;
}

int main(int argc, char **argv) {
    unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
    unsigned scale = argc > 2 ? (unsigned)atoi(argv[2]) : 1;
    unsigned iter = argc > 3 ? (unsigned)atoi(argv[3]) : 200000;
    if (!threads || !scale || !iter) return 2;
    struct shared sh = {.iters = tp_test_scale(iter * scale)};
    if (tp_ctx_with_cancel(NULL, &sh.root)) return 1;

    struct worker *w = calloc(threads, sizeof(*w));
    pthread_t *th = calloc(threads, sizeof(*th));
    if (!w || !th) return 1;
    for (unsigned i = 0; i < threads; i++) {
        w[i].sh = &sh;
        w[i].rng = 0x9e3779b97f4a7c15ULL * (i + 1);
        if (pthread_create(&th[i], NULL, worker_main, &w[i])) return 1;
    }
    /* Cancel the root while the workers are busy. */
    TP_TEST_WAIT_FOR(atomic_load(&sh.ops) >= (unsigned long)sh.iters * threads / 3, 60000);
    tp_ctx_cancel(sh.root);
    atomic_store(&sh.root_cancelled, 1);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(th[i], NULL);

    int failures = 0;
    if (atomic_load(&sh.bad)) {
        fprintf(stderr, "bad result code %d\n", atomic_load(&sh.bad));
        failures++;
    }
    if (tp_ctx_child_count(sh.root) != 0) {
        fprintf(stderr, "root still has %zu children\n", tp_ctx_child_count(sh.root));
        failures++;
    }
    size_t total = 0, ran = 0, stopped = 0;
    for (unsigned i = 0; i < threads; i++) {
        for (size_t k = 0; k < w[i].nrecs; k++) {
            struct rec *r = w[i].recs[k];
            int runs = atomic_load(&r->runs);
            int want = r->stop_result == 1 ? 0 : 1;
            if (runs != want || (r->stop_result == 0 && r->returned_at_stop != 1)) {
                if (failures++ < 10)
                    fprintf(stderr, "callback ran %d times, stop=%d\n", runs, r->stop_result);
            }
            total++;
            ran += runs == 1;
            stopped += r->stop_result == 1;
            free(r);
        }
        free(w[i].recs);
    }
    tp_ctx_release(sh.root);
    printf("threads=%u iters=%u callbacks=%zu ran=%zu stopped=%zu failures=%d\n", threads, sh.iters,
           total, ran, stopped, failures);
    free(w);
    free(th);
    return failures ? 1 : 0;
}
