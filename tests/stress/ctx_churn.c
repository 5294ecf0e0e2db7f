/* SPDX-License-Identifier: MIT */
/* Stress: threads grow, cancel, time out and release a shared context tree
 * while registering and stopping callbacks; the root is cancelled midway.
 * Invariants: every callback runs at most once; a stop that returned true
 * means it never ran, false means it ran exactly once (and had returned);
 * every callback not stopped has run once after the root is cancelled;
 * every context ends done with -ECANCELED or -ETIMEDOUT; no leaks (ASan).
 * Usage: stress_ctx_churn [THREADS [SCALE [ITER]]]
 * TP_TEST_TIMEOUT: 120 */
#include "tp_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

struct rec {
    _Atomic int runs;
    tp_ctx_cb *handle;
    int stop_result; /* -1 not stopped, 0 false, 1 true */
};

struct shared {
    tp_ctx *root;
    unsigned iters;
    _Atomic unsigned long ops;
    _Atomic int bad;
};

struct worker {
    struct shared *sh;
    uint64_t rng;
    struct rec **recs;
    size_t nrecs, caprecs;
};

#define LIVE 32

static uint64_t rnd(struct worker *w) {
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void cb_fn(void *arg) {
    struct rec *r = arg;
    atomic_fetch_add(&r->runs, 1);
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
    for (unsigned i = 0; i < sh->iters; i++) {
        unsigned slot = (unsigned)(rnd(w) % LIVE);
        unsigned op = (unsigned)(rnd(w) % 100);
        if (!live[slot]) {
            /* Parent: the root, or another live context of ours (depth). */
            tp_ctx *parent = sh->root;
            unsigned ps = (unsigned)(rnd(w) % LIVE);
            if (live[ps] && rnd(w) % 2) parent = live[ps];
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
            bool keep = rnd(w) % 2;
            if (tp_ctx_on_done(c, cb_fn, r, keep ? &r->handle : NULL)) atomic_store(&sh->bad, 3);
            add_rec(w, r);
            if (keep && rnd(w) % 2) r->stop_result = tp_ctx_cb_stop(r->handle);
        } else if (op < 55) {
            tp_ctx_cancel(c);
            check_done(sh, c);
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
        if (r->handle && r->stop_result < 0) r->stop_result = tp_ctx_cb_stop(r->handle);
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
            if (runs != want) {
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
