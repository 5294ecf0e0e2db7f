/* SPDX-License-Identifier: MIT */
/*
 * The task pool seen from outside: stats, the dump of what every worker
 * does, and the stuck-task watchdog. Readers only: they take the pool's mu
 * (which keeps workers alive and their lists stable) and read the workers'
 * single-writer atomics; labels are read from the workers' copies
 * (label_load), never from the caller's strings. User code (on_stuck, the
 * dump writer) is called with no lock held.
 */
#include "pool/pool_impl.h"

#include "internal/os.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- watchdog ------------------------------------------------------------ */

typedef struct stuck_rec {
    char label[LABEL_MAX]; /* a copy: the task may end before on_stuck runs */
    unsigned id;
    uint64_t running;
} stuck_rec;

void *tp__pool_watchdog(void *arg) {
    tp_pool *p = arg;
    uint64_t period = p->stuck_threshold_ns / 4;
    if (period < TP_NSEC_PER_MSEC) period = TP_NSEC_PER_MSEC;
    if (period > TP_NSEC_PER_SEC) period = TP_NSEC_PER_SEC;
    stuck_rec recs[16];
    tp__pool_mark_hook_thread(p); /* on_stuck may not close or wait for p */
    pthread_mutex_lock(&p->mu);
    while (!p->wd_stop) {
        tp__cond_wait_until(&p->wd_cond, &p->mu, tp__deadline_after(period));
        bool again = true;
        while (again && !p->wd_stop) {
            size_t n = 0;
            uint64_t now = tp__now_ns();
            again = false;
            for (worker *w = p->all; w; w = w->next) {
                /* acquire: pairs with run_task's release of RUNNING. */
                if (tp__load_acquire(&w->state) != W_RUNNING) continue;
                uint64_t st = tp__load_relaxed(&w->start_ns);
                if (st == 0 || st == w->stuck_reported || now - st < p->stuck_threshold_ns)
                    continue;
                if (n == sizeof recs / sizeof recs[0]) {
                    again = true;
                    break;
                }
                w->stuck_reported = st;
                recs[n].id = w->id;
                recs[n].running = now - st;
                label_load(w, recs[n].label);
                n++;
            }
            if (!n) break;
            tp__add_relaxed(&p->stuck, n);
            if (p->on_stuck) {
                pthread_mutex_unlock(&p->mu);
                for (size_t i = 0; i < n; i++)
                    p->on_stuck(recs[i].label[0] ? recs[i].label : NULL, recs[i].id,
                                recs[i].running, p->on_stuck_arg);
                pthread_mutex_lock(&p->mu);
            }
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

TP_API void tp_pool_stats(tp_pool *p, struct tp_pool_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    uint64_t c = p->ret_completed + tp__load_relaxed(&p->inline_completed);
    uint64_t f = p->ret_failed + tp__load_relaxed(&p->inline_failed);
    uint64_t k = p->ret_canceled + tp__load_relaxed(&p->inline_canceled);
    unsigned idle = 0, live = 0;
    uint64_t held = 0;
    for (worker *w = p->all; w; w = w->next) {
        held += held_count(w);
        c += tp__load_relaxed(&w->completed);
        f += tp__load_relaxed(&w->failed);
        k += tp__load_relaxed(&w->canceled);
        live++;
        if (w->in_idle) idle++;
    }
    pthread_mutex_unlock(&p->mu);
    uint64_t depth = ring_depth_sc(p) + held;
    out->workers_running = live;
    out->workers_idle = idle;
    out->max_workers = tp__load_relaxed(&p->max_workers);
    out->queued = (size_t)depth;
    out->submitted =
        (tp__load_relaxed(&p->enq) & ~CLOSED_BIT) + tp__load_relaxed(&p->inline_submitted);
    out->completed = c;
    out->failed = f;
    out->canceled = k;
    out->rejected = tp__load_relaxed(&p->rejected);
    out->peak_workers = tp__load_relaxed(&p->peak_workers);
    uint64_t pk = tp__load_relaxed(&p->peak_queued);
    out->peak_queued = (size_t)(depth > pk ? depth : pk);
    out->stuck = tp__load_relaxed(&p->stuck);
    out->blocked = tp__load_relaxed(&p->nblocked);
}

/* ---- dump ---------------------------------------------------------------- */

static void fmt_dur(char *buf, size_t n, uint64_t ns) {
    snprintf(buf, n, "%llu.%03llus", (unsigned long long)(ns / TP_NSEC_PER_SEC),
             (unsigned long long)(ns % TP_NSEC_PER_SEC / TP_NSEC_PER_MSEC));
}

TP_API void tp_pool_dump(tp_pool *p, void (*write)(void *arg, const char *line), void *arg) {
    if (!p || !write) return;
    enum { LINE = 160 };
    pthread_mutex_lock(&p->mu);
    size_t n = 0;
    for (worker *w = p->all; w; w = w->next)
        n++;
    char *lines = malloc((n + 1) * LINE);
    if (!lines) {
        pthread_mutex_unlock(&p->mu);
        write(arg, "dump: out of memory");
        return;
    }
    uint64_t now = tp__now_ns();
    uint64_t held = 0;
    size_t i = n;
    /* The list is newest first; print oldest (lowest index) first. */
    for (worker *w = p->all; w; w = w->next) {
        char *l = lines + --i * LINE;
        unsigned h = held_count(w);
        held += h;
        int st = tp__load_acquire(&w->state);
        char label[LABEL_MAX];
        label_load(w, label);
        uint64_t done = tp__load_relaxed(&w->completed) + tp__load_relaxed(&w->canceled);
        if (st == W_RUNNING) {
            char d[32] = "unknown";
            uint64_t s = tp__load_relaxed(&w->start_ns);
            if (p->timed && s && now >= s) fmt_dur(d, sizeof d, now - s);
            snprintf(l, LINE, "%s worker %u running label=%.40s for %s done=%llu held=%u", p->name,
                     w->id, label[0] ? label : "-", d, (unsigned long long)done, h);
        } else {
            snprintf(l, LINE, "%s worker %u %s done=%llu", p->name, w->id,
                     st == W_EXITING ? "exiting" : "idle", (unsigned long long)done);
        }
    }
    char age[32] = "unknown";
    uint64_t ring = ring_depth_sc(p), depth = ring + held;
    if (p->timed) {
        if (depth == 0) {
            snprintf(age, sizeof age, "none");
        } else if (ring != 0) { /* held batch tasks: age unknown */
            /* The head slot may be taken meanwhile; its t_enq then belongs
             * to a newer task, which only makes the age smaller. */
            uint64_t pos = tp__load_relaxed(&p->deq);
            slot *s = slot_at(p, pos);
            if (tp__load_acquire(&s->seq) == pos + 1) {
                uint64_t t = tp__load_relaxed(&s->t_enq);
                if (t && now >= t) fmt_dur(age, sizeof age, now - t);
            }
        }
    }
    snprintf(lines + n * LINE, LINE, "%s queue depth=%llu oldest=%s", p->name,
             (unsigned long long)depth, age);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i <= n; i++)
        write(arg, lines + i * LINE);
    free(lines);
}
