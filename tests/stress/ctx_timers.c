/* SPDX-License-Identifier: MIT */
/* Stress: threads add timers with near deadlines and cancel them while they
 * fire; some callbacks cancel their own handle. Invariants: a cancel that
 * returned true means the callback never ran; false means it ran exactly once
 * and had returned; a callback cancelling itself gets false and runs once;
 * nothing is pending at the end; no leaks (ASan), no races (TSan).
 * Usage: stress_ctx_timers [THREADS [SCALE [ITER]]]
 * TP_TEST_TIMEOUT: 120 */
#include "tp_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

struct rec {
    tp_timer *h;
    bool self_cancel;     /* the callback gives the handle back itself */
    _Atomic int runs;     /* callback entries */
    _Atomic int returned; /* callback exits */
    _Atomic int self_ret; /* what tp_timer_cancel returned inside (1/0) */
    int cancel_ret;       /* -1: not cancelled by the worker */
    int runs_at_cancel;   /* returned count seen right after cancel */
};

struct shared {
    tp_timers *t;
    unsigned iters;
    _Atomic int bad;
};

struct worker {
    struct shared *sh;
    uint64_t rng;
    struct rec *recs;
};

static uint64_t rnd(struct worker *w) {
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void fire(void *arg) {
    struct rec *r = arg;
    atomic_fetch_add(&r->runs, 1);
    if (r->self_cancel) atomic_store(&r->self_ret, tp_timer_cancel(r->h) ? 1 : 0);
    atomic_fetch_add(&r->returned, 1);
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct shared *sh = w->sh;
    unsigned pending_from = 0; /* recs [pending_from, i) may still be uncancelled */
    for (unsigned i = 0; i < sh->iters; i++) {
        struct rec *r = &w->recs[i];
        r->cancel_ret = -1;
        r->self_cancel = rnd(w) % 16 == 0;
        atomic_init(&r->self_ret, -1);
        uint64_t after = (rnd(w) % 2000) * TP_NSEC_PER_USEC;
        if (tp_timer_add_after(sh->t, after, fire, r, &r->h)) atomic_store(&sh->bad, 1);
        /* Cancel a random earlier timer of ours, or this one at once. */
        unsigned op = (unsigned)(rnd(w) % 4);
        unsigned k = op == 0 ? i : pending_from + (unsigned)(rnd(w) % (i - pending_from + 1));
        struct rec *v = &w->recs[k];
        if (!v->self_cancel && v->cancel_ret < 0) {
            v->cancel_ret = tp_timer_cancel(v->h);
            v->runs_at_cancel = atomic_load(&v->returned);
        }
        while (pending_from < i &&
               (w->recs[pending_from].cancel_ret >= 0 || w->recs[pending_from].self_cancel))
            pending_from++;
    }
    /* Give back every handle still held. */
    for (unsigned i = 0; i < sh->iters; i++) {
        struct rec *r = &w->recs[i];
        if (!r->self_cancel && r->cancel_ret < 0) {
            r->cancel_ret = tp_timer_cancel(r->h);
            r->runs_at_cancel = atomic_load(&r->returned);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
    unsigned scale = argc > 2 ? (unsigned)atoi(argv[2]) : 1;
    unsigned iter = argc > 3 ? (unsigned)atoi(argv[3]) : 50000;
    if (!threads || !scale || !iter) return 2;
    struct shared sh = {.iters = tp_test_scale(iter * scale)};
    if (tp_timers_create(&sh.t, NULL)) return 1;
    struct worker *w = calloc(threads, sizeof(*w));
    pthread_t *th = calloc(threads, sizeof(*th));
    if (!w || !th) return 1;
    for (unsigned i = 0; i < threads; i++) {
        w[i].sh = &sh;
        w[i].rng = 0x2545f4914f6cdd1dULL * (i + 1);
        w[i].recs = calloc(sh.iters, sizeof(struct rec));
        if (!w[i].recs || pthread_create(&th[i], NULL, worker_main, &w[i])) return 1;
    }
    for (unsigned i = 0; i < threads; i++)
        pthread_join(th[i], NULL);

    /* Self-cancelling timers fire by themselves; wait for them. */
    int failures = 0;
    for (unsigned i = 0; i < threads; i++)
        for (unsigned k = 0; k < sh.iters; k++) {
            struct rec *r = &w[i].recs[k];
            if (r->self_cancel) TP_TEST_WAIT_FOR(atomic_load(&r->returned) == 1, 30000);
        }
    tp_test_sleep_ms(5); /* a wrongly fired timer would show now */
    if (tp_timers_pending(sh.t) != 0) {
        fprintf(stderr, "%zu timers still pending\n", tp_timers_pending(sh.t));
        failures++;
    }
    size_t stopped = 0, fired = 0, self = 0;
    for (unsigned i = 0; i < threads; i++) {
        for (unsigned k = 0; k < sh.iters; k++) {
            struct rec *r = &w[i].recs[k];
            int runs = atomic_load(&r->runs);
            bool ok;
            if (r->self_cancel) {
                ok = runs == 1 && atomic_load(&r->self_ret) == 0;
                self++;
            } else if (r->cancel_ret == 1) {
                ok = runs == 0;
                stopped++;
            } else {
                /* false: it ran, and cancel waited until it had returned */
                ok = r->cancel_ret == 0 && runs == 1 && r->runs_at_cancel == 1;
                fired++;
            }
            if (!ok && failures++ < 10)
                fprintf(stderr, "timer %u/%u: runs=%d cancel=%d returned_at_cancel=%d self=%d\n", i,
                        k, runs, r->cancel_ret, r->runs_at_cancel, r->self_cancel);
        }
        free(w[i].recs);
    }
    if (atomic_load(&sh.bad)) failures++;
    tp_timers_destroy(sh.t);
    printf("threads=%u iters=%u stopped=%zu fired=%zu self=%zu failures=%d\n", threads, sh.iters,
           stopped, fired, self, failures);
    free(w);
    free(th);
    return failures ? 1 : 0;
}
