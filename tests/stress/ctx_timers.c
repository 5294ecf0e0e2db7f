/* SPDX-License-Identifier: MIT */
/* Stress: threads add timers with near deadlines and cancel them while they
 * fire; some callbacks cancel their own handle; at the end the service is
 * destroyed while the threads give back the handles they still hold.
 * Invariants (timer.h): a cancel that returned true means the callback never
 * ran; false means it ran exactly once and had returned, or (only for a
 * cancel racing destroy) was dropped unrun by destroy; a callback cancelling
 * itself gets false and runs once; callbacks run one at a time, with no
 * service lock held (each calls tp_timers_pending, which takes it), never
 * before their deadline, never after destroy returned; nothing is pending
 * once every handle was given back; no leaks (ASan), no races (TSan), and
 * cancels after destroy touch no freed memory (ASan). Run under the TP_CHAOS
 * build by make test.
 * Usage: stress_ctx_timers [THREADS [SCALE [ITER]]]
 * TP_TEST_TIMEOUT: 120 */
#include "tp_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdio.h>

struct rec {
    tp_timer *h;
    bool self_cancel;     /* the callback gives the handle back itself */
    _Atomic int runs;     /* callback entries */
    _Atomic int returned; /* callback exits */
    _Atomic int self_ret; /* what tp_timer_cancel returned inside (1/0) */
    int cancel_ret;       /* -1: not cancelled by the worker */
    int runs_at_cancel;   /* returned count seen right after cancel */
    bool late;            /* given back in the destroy phase */
    bool far;             /* an hour away: pending when destroy runs */
    uint64_t deadline;
    struct shared *sh;
};

struct shared {
    tp_timers *t;
    unsigned iters;
    _Atomic int bad;
    _Atomic int in_cb;     /* callbacks running now: at most 1 */
    _Atomic int destroyed; /* tp_timers_destroy returned */
    _Atomic int early, overlap, after_destroy;
    _Atomic int phase2; /* main: give back the rest while I destroy */
    _Atomic unsigned phase1_done;
};

struct worker {
    struct shared *sh;
    uint64_t rng;
    struct rec *recs;
    bool done_phase1;
};

#define NFAR 64 /* far timers per thread left pending for destroy */

static uint64_t rnd(struct worker *w) {
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void fire(void *arg) {
    struct rec *r = arg;
    struct shared *sh = r->sh;
    if (atomic_fetch_add(&sh->in_cb, 1) != 0) atomic_fetch_add(&sh->overlap, 1);
    if (tp_now_ns() < r->deadline) atomic_fetch_add(&sh->early, 1);
    if (atomic_load(&sh->destroyed)) atomic_fetch_add(&sh->after_destroy, 1);
    atomic_fetch_add(&r->runs, 1);
    if (r->self_cancel)
        atomic_store(&r->self_ret, tp_timer_cancel(r->h) ? 1 : 0);
    else if (!atomic_load(&sh->phase2))
        (void)tp_timers_pending(sh->t); /* lock free? */
    atomic_fetch_sub(&sh->in_cb, 1);
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
        r->sh = sh;
        uint64_t after = (rnd(w) % 2000) * TP_NSEC_PER_USEC;
        r->deadline = tp_now_ns() + after;
        if (tp_timer_add(sh->t, r->deadline, fire, r, &r->h)) atomic_store(&sh->bad, 1);
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
    /* Give back about half the handles still held now, the rest while the
     * main thread destroys the service. */
    for (unsigned i = 0; i < sh->iters; i++) {
        struct rec *r = &w->recs[i];
        if (!r->self_cancel && r->cancel_ret < 0) {
            if (rnd(w) % 2) {
                r->late = true;
                continue;
            }
            r->cancel_ret = tp_timer_cancel(r->h);
            r->runs_at_cancel = atomic_load(&r->returned);
        }
    }
    for (unsigned j = 0; j < NFAR; j++) {
        struct rec *r = &w->recs[sh->iters + j];
        r->sh = sh;
        r->far = r->late = true;
        r->cancel_ret = -1;
        r->deadline = tp_now_ns() + 3600 * TP_NSEC_PER_SEC;
        if (tp_timer_add(sh->t, r->deadline, fire, r, &r->h)) atomic_store(&sh->bad, 1);
    }
    w->done_phase1 = true;
    atomic_fetch_add(&w->sh->phase1_done, 1);
    while (!atomic_load(&sh->phase2))
        sched_yield();
    for (unsigned i = 0; i < sh->iters + NFAR; i++) {
        struct rec *r = &w->recs[i];
        if (r->late) {
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
        w[i].recs = calloc(sh.iters + NFAR, sizeof(struct rec));
        if (!w[i].recs || pthread_create(&th[i], NULL, worker_main, &w[i])) return 1;
    }
    TP_TEST_WAIT_FOR(atomic_load(&sh.phase1_done) == threads, 60000);

    /* Self-cancelling timers fire by themselves; wait for them. */
    int failures = 0;
    size_t late = 0;
    for (unsigned i = 0; i < threads; i++)
        for (unsigned k = 0; k < sh.iters + NFAR; k++) {
            struct rec *r = &w[i].recs[k];
            if (r->self_cancel) TP_TEST_WAIT_FOR(atomic_load(&r->returned) == 1, 30000);
            late += r->late;
        }
    tp_test_sleep_ms(5); /* a wrongly fired timer would show now */
    /* Only the far timers are pending: every other deadline was within
     * 2 ms, so all have fired or been cancelled by now. */
    if (tp_timers_pending(sh.t) != (size_t)threads * NFAR) {
        fprintf(stderr, "%zu timers still pending\n", tp_timers_pending(sh.t));
        failures++;
    }
    /* Destroy while the workers give back the rest of their handles. */
    atomic_store(&sh.phase2, 1);
    tp_timers_destroy(sh.t);
    atomic_store(&sh.destroyed, 1);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    if (atomic_load(&sh.overlap) || atomic_load(&sh.early) || atomic_load(&sh.after_destroy)) {
        fprintf(stderr, "callbacks: %d overlapping, %d before their deadline, %d after destroy\n",
                atomic_load(&sh.overlap), atomic_load(&sh.early), atomic_load(&sh.after_destroy));
        failures++;
    }
    size_t stopped = 0, fired = 0, self = 0;
    for (unsigned i = 0; i < threads; i++) {
        for (unsigned k = 0; k < sh.iters + NFAR; k++) {
            struct rec *r = &w[i].recs[k];
            int runs = atomic_load(&r->runs);
            bool ok;
            if (r->far) {
                /* true: cancelled before destroy dropped it; false: dropped.
                 * Never called either way. */
                ok = runs == 0 && r->cancel_ret >= 0;
                stopped += r->cancel_ret == 1;
            } else if (r->self_cancel) {
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
            if (!ok && failures < 10) fprintf(stderr, "timer %u/%u late=%d\n", i, k, r->late);
            if (!ok && failures++ < 10)
                fprintf(stderr, "timer %u/%u: runs=%d cancel=%d returned_at_cancel=%d self=%d\n", i,
                        k, runs, r->cancel_ret, r->runs_at_cancel, r->self_cancel);
        }
        free(w[i].recs);
    }
    if (atomic_load(&sh.bad)) failures++;
    printf("threads=%u iters=%u stopped=%zu fired=%zu self=%zu late=%zu failures=%d\n", threads,
           sh.iters, stopped, fired, self, late, failures);
    free(w);
    free(th);
    return failures ? 1 : 0;
}
