/* SPDX-License-Identifier: MIT */
/*
 * DESIGN - the timer service.
 *
 * One thread per service runs every timer of that service. Pending timers
 * live in a 4-ary min-heap of (deadline, node) slots; each node
 * stores its heap slot (idx), so cancel removes it in O(log n) and add is
 * O(log n) (O(1) on average for random deadlines). A 4-ary heap is shallower
 * than a binary one and its four children share one cache line.
 *
 * Memory per pending timer: the 40-byte node (48 with malloc's header for
 * tp_timer_add) plus one 16-byte heap slot (up to 32 with doubling slack).
 * The heap shrinks again when it is less than a quarter full.
 *
 * Sleeping: the thread waits on `wake` (a CLOCK_MONOTONIC condvar) until the
 * earliest deadline, or without a limit when the heap is empty - no polling.
 * `sleeping_until` records the deadline it sleeps for (0 while awake); an add
 * signals only when its deadline is earlier, so most adds make no syscall.
 *
 * Firing: the thread pops each expired node, marks it RUNNING, drops the
 * lock and calls fn(arg); then relocks, marks it FIRED, frees it if nobody
 * holds a handle, and wakes cancellers waiting in `done`. So callbacks run
 * outside the service lock, one at a time.
 *
 * Scheduling: the thread blocks all signals, uses 1 us timer slack, and
 * either gets SCHED_FIFO (opts.rt_priority, if permitted) or asks for a short
 * EEVDF slice, so that it preempts CPU hogs soon after its deadline.
 *
 * Cancel: PENDING -> removed from the heap, returns true. RUNNING -> waits on
 * `done` until it is FIRED, unless the caller is the service thread itself
 * (cancel from inside fn: the thread frees a handle after fn;
 * `running_released` tells the thread not to touch the node again, as an
 * embedded node may be freed by then). FIRED/IDLE -> false at once.
 *
 * Lifetime: `refs` counts who may still lock the service: 1 for the service
 * itself until tp_timers_destroy() is done with it, plus 1 per node that
 * points at it and will be given back - every handle (from tp_timer_add
 * until tp_timer_cancel) and every started embedded node (from
 * tp__timer_start until tp__timer_stop). Fire-and-forget nodes hold none:
 * the service frees them itself. Whoever drops the count to 0 (destroy, or
 * the last cancel/stop after destroy) frees the service. So a handle that
 * fired before destroy, whose fn was running during destroy, or that is
 * cancelled while destroy runs, locks a service that is still allocated;
 * destroy never writes a node's svc (a canceller reads it without the lock),
 * it only marks pending nodes IDLE and frees the unowned ones.
 *
 * Locking: one mutex per service, `lock`, protects every field of the service
 * (including `refs`) and every field of its started nodes. Callbacks run without it. There is no
 * other lock here, so no lock order. The default service is published once
 * through an atomic pointer (release on store so its initialised fields are
 * visible to every thread that acquires the pointer) under `default_mu`.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdint.h>

#include "internal/atomic.h"
#include "internal/chaos.h"
#include "internal/os.h"
#include "ctx/timer_internal.h"

/* A heap slot carries the deadline so sifting compares within the array
 * instead of chasing node pointers (one cache miss per level saved). */
struct tp_heap_ent {
    uint64_t deadline;
    struct tp_timer *tm;
};

struct tp_timers {
    pthread_mutex_t lock; /* first: tests/unit/ctx_timer_destroy.c relies on it */
    pthread_cond_t wake;  /* the service thread sleeps here */
    pthread_cond_t done;  /* cancellers wait here for a running fn */
    struct tp_heap_ent *heap;
    size_t n, cap, min_cap;
    uint64_t sleeping_until; /* deadline the thread sleeps for; 0 = awake */
    unsigned done_waiters;
    size_t refs;           /* see DESIGN: Lifetime */
    bool running_released; /* the running node was given back from its fn */
    bool realtime;         /* the thread got SCHED_FIFO */
    bool started;          /* self and realtime are set */
    unsigned rt_priority;  /* requested; immutable */
    bool stop;
    pthread_t thread; /* for join; written by the creator */
    pthread_t self;   /* the service thread's own id, set by it under lock */
};

void tp_timers_opts_init(tp_timers_opts *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof(*opts));
    opts->initial_capacity = 1024;
}

/* ---- the heap (caller holds svc->lock) ----------------------------------- */

static inline void heap_set(struct tp_heap_ent *h, size_t i, struct tp_heap_ent e) {
    h[i] = e;
    e.tm->idx = (uint32_t)i;
}

static void heap_sift_up(struct tp_heap_ent *h, size_t i) {
    struct tp_heap_ent e = h[i];
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (h[p].deadline <= e.deadline) break;
        heap_set(h, i, h[p]);
        i = p;
    }
    heap_set(h, i, e);
}

static void heap_sift_down(struct tp_heap_ent *h, size_t n, size_t i) {
    struct tp_heap_ent e = h[i];
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= n) break;
        size_t end = c + 4 < n ? c + 4 : n;
        size_t best = c;
        for (size_t k = c + 1; k < end; k++)
            if (h[k].deadline < h[best].deadline) best = k;
        if (h[best].deadline >= e.deadline) break;
        heap_set(h, i, h[best]);
        i = best;
    }
    heap_set(h, i, e);
}

static int heap_push(tp_timers *s, struct tp_timer *tm) {
    if (s->n == s->cap) {
        if (s->cap >= UINT32_MAX / 2) return -ENOMEM;
        size_t ncap = s->cap * 2;
        struct tp_heap_ent *nh = realloc(s->heap, ncap * sizeof(*nh));
        if (!nh) return -ENOMEM;
        s->heap = nh;
        s->cap = ncap;
    }
    s->heap[s->n] = (struct tp_heap_ent){tm->deadline, tm};
    heap_sift_up(s->heap, s->n++);
    return 0;
}

static void heap_remove(tp_timers *s, size_t i) {
    struct tp_heap_ent *h = s->heap;
    struct tp_heap_ent last = h[--s->n];
    if (i < s->n) {
        heap_set(h, i, last);
        if (i > 0 && h[(i - 1) / 4].deadline > last.deadline)
            heap_sift_up(h, i);
        else
            heap_sift_down(h, s->n, i);
    }
    /* Give memory back after a mass cancel; failure to shrink is harmless. */
    if (s->cap > s->min_cap && s->n < s->cap / 4) {
        struct tp_heap_ent *nh = realloc(s->heap, (s->cap / 2) * sizeof(*nh));
        if (nh) {
            s->heap = nh;
            s->cap /= 2;
        }
    }
}

/* ---- the service thread ------------------------------------------------- */

/* Chaos build: after a wake-up let adders and cancellers in before the loop
 * re-reads the heap (it decides afresh, so this changes no outcome). */
static inline void timer_thread_woke(tp_timers *s) {
#ifdef TP_CHAOS
    pthread_mutex_unlock(&s->lock);
    TP_CHAOS_POINT("timer.woke");
    pthread_mutex_lock(&s->lock);
#else
    (void)s;
#endif
}

static void *timer_thread(void *arg) {
    tp_timers *s = arg;
    bool rt = tp__os_sched_timer_thread(s->rt_priority);
    pthread_mutex_lock(&s->lock);
    s->self = pthread_self();
    s->realtime = rt;
    s->started = true;
    pthread_cond_broadcast(&s->done); /* tp_timers_realtime() may wait */
    while (!s->stop) {
        if (s->n == 0) {
            s->sleeping_until = TP_FOREVER;
            TP_CHAOS_POINT("timer.sleep"); /* under the lock: adders queue up */
            pthread_cond_wait(&s->wake, &s->lock);
            s->sleeping_until = 0;
            timer_thread_woke(s);
            continue;
        }
        struct tp_timer *tm = s->heap[0].tm;
        uint64_t now = tp__now_ns();
        if (tm->deadline > now) {
            s->sleeping_until = tm->deadline;
            TP_CHAOS_POINT("timer.sleep_until");
            tp__cond_wait_until(&s->wake, &s->lock, tm->deadline);
            s->sleeping_until = 0;
            timer_thread_woke(s);
            continue;
        }
        heap_remove(s, 0);
        tm->state = TP__TIMER_RUNNING;
        uint8_t flags = tm->flags; /* tm may be freed while fn runs */
        pthread_mutex_unlock(&s->lock);
        TP_CHAOS_POINT("timer.fire"); /* RUNNING, lock dropped: cancels wait */
        tm->fn(tm->arg);
        TP_CHAOS_POINT("timer.fired");
        pthread_mutex_lock(&s->lock);
        if (s->running_released) {
            /* fn gave tm back (cancel/stop from inside fn): an embedded node
             * may be gone already; a handle is ours to free. */
            s->running_released = false;
            if (flags & TP__TIMER_HEAP) free(tm);
        } else {
            tm->state = TP__TIMER_FIRED;
            if ((tm->flags & TP__TIMER_HEAP) && !(tm->flags & TP__TIMER_HANDLE)) free(tm);
        }
        if (s->done_waiters) pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static int service_init(tp_timers *s, const tp_timers_opts *o) {
    memset(s, 0, sizeof(*s));
    size_t cap = o->initial_capacity;
    if (cap < 16) cap = 16;
    if (cap > UINT32_MAX / 4 || o->rt_priority > 99) return -EINVAL;
    s->rt_priority = o->rt_priority;
    s->heap = malloc(cap * sizeof(*s->heap));
    if (!s->heap) return -ENOMEM;
    s->cap = s->min_cap = cap;
    s->refs = 1; /* the service's own, dropped by tp_timers_destroy() */
    int err = pthread_mutex_init(&s->lock, NULL);
    if (err) goto err_free_heap;
    err = tp__cond_init_monotonic(&s->wake);
    if (err) goto err_destroy_lock;
    err = pthread_cond_init(&s->done, NULL);
    if (err) goto err_destroy_wake;

    /* The service thread takes no signals: they belong to the application. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&s->thread, NULL, timer_thread, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) goto err_destroy_done;
    pthread_setname_np(s->thread, "tp-timer");
    return 0;

err_destroy_done:
    pthread_cond_destroy(&s->done);
err_destroy_wake:
    pthread_cond_destroy(&s->wake);
err_destroy_lock:
    pthread_mutex_destroy(&s->lock);
err_free_heap:
    free(s->heap);
    return err > 0 ? -err : err;
}

int tp_timers_create(tp_timers **out, const tp_timers_opts *opts) {
    if (!out) return -EINVAL;
    *out = NULL;
    tp_timers_opts o;
    tp_timers_opts_init(&o);
    if (opts) o = *opts;
    tp_timers *s = malloc(sizeof(*s));
    if (!s) return -ENOMEM;
    int err = service_init(s, &o);
    if (err) {
        free(s);
        return err;
    }
    *out = s;
    return 0;
}

/* The process-wide service: the one global this module has (see brief). */
static pthread_mutex_t default_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(tp_timers *) default_svc;
static tp_timers default_storage;
static tp_timers_opts default_opts = {.initial_capacity = 1024}; /* under default_mu */

tp_timers *tp_timers_default(void) {
    /* acquire: pairs with the release below so the service's fields are
     * initialised before we use them. */
    tp_timers *s = tp__load_acquire(&default_svc);
    if (s) return s;
    pthread_mutex_lock(&default_mu);
    s = tp__load_relaxed(&default_svc);
    if (!s && service_init(&default_storage, &default_opts) == 0) {
        s = &default_storage;
        tp__store_release(&default_svc, s); /* publish the initialised service */
    }
    pthread_mutex_unlock(&default_mu);
    return s;
}

int tp_timers_default_configure(const tp_timers_opts *opts) {
    if (!opts || opts->rt_priority > 99) return -EINVAL;
    pthread_mutex_lock(&default_mu);
    int err = tp__load_relaxed(&default_svc) ? -EBUSY : 0;
    if (!err) default_opts = *opts;
    pthread_mutex_unlock(&default_mu);
    return err;
}

bool tp_timers_realtime(tp_timers *s) {
    if (!s) s = tp_timers_default();
    if (!s) return false;
    pthread_mutex_lock(&s->lock);
    while (!s->started)
        pthread_cond_wait(&s->done, &s->lock);
    bool rt = s->realtime;
    pthread_mutex_unlock(&s->lock);
    return rt;
}

static void service_free(tp_timers *s) {
    free(s->heap);
    pthread_cond_destroy(&s->done);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Drop one reference; caller holds s->lock, which this releases. Frees s
 * when it was the last (no other thread can reach s then). */
static void service_unref_unlock(tp_timers *s) {
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (last) service_free(s);
}

void tp_timers_destroy(tp_timers *s) {
    if (!s || s == &default_storage) return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    TP_CHAOS_POINT("timer.destroy_joined"); /* cancels may run here */

    /* The thread is gone: drop what is pending. Nodes keep their svc (see
     * DESIGN: Lifetime); a later cancel or stop finds them IDLE. */
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++) {
        struct tp_timer *tm = s->heap[i].tm;
        tm->state = TP__TIMER_IDLE;
        if ((tm->flags & TP__TIMER_HEAP) && !(tm->flags & TP__TIMER_HANDLE)) free(tm);
    }
    s->n = 0;
    service_unref_unlock(s);
}

/* ---- add / cancel --------------------------------------------------------- */

void tp__timer_init(struct tp_timer *tm, tp_timer_fn fn, void *arg) {
    memset(tm, 0, sizeof(*tm));
    tm->fn = fn;
    tm->arg = arg;
}

int tp__timer_start(tp_timers *s, struct tp_timer *tm, uint64_t deadline_ns) {
    if (!s) s = tp_timers_default();
    if (!s) return -EAGAIN;
    TP_CHAOS_POINT("timer.start");
    pthread_mutex_lock(&s->lock);
    if (s->stop) {
        pthread_mutex_unlock(&s->lock);
        return -ESHUTDOWN;
    }
    tm->deadline = deadline_ns;
    tm->svc = s;
    tm->state = TP__TIMER_PENDING;
    int err = heap_push(s, tm);
    if (err) {
        tm->state = TP__TIMER_IDLE;
        tm->svc = NULL;
    } else {
        /* A node that will be given back (a handle or an embedded node)
         * keeps the service's memory until then. */
        if ((tm->flags & (TP__TIMER_HEAP | TP__TIMER_HANDLE)) != TP__TIMER_HEAP) s->refs++;
        if (deadline_ns < s->sleeping_until) {
            /* The thread sleeps for a later deadline: wake it to re-arm. */
            pthread_cond_signal(&s->wake);
        }
    }
    pthread_mutex_unlock(&s->lock);
    TP_CHAOS_POINT("timer.published"); /* may fire before start returns */
    return err;
}

/* Cancel under the lock; true if this prevented the call. */
static bool timer_cancel_locked(tp_timers *s, struct tp_timer *tm) {
    switch (tm->state) {
    case TP__TIMER_PENDING:
        heap_remove(s, tm->idx);
        tm->state = TP__TIMER_IDLE;
        return true;
    case TP__TIMER_RUNNING:
        if (pthread_equal(pthread_self(), s->self)) {
            /* From inside fn: the thread must not touch tm after fn returns
             * (an embedded node may be freed); it frees a handle itself. */
            s->running_released = true;
            return false;
        }
        s->done_waiters++;
        TP_CHAOS_POINT("timer.cancel_wait");
        while (tm->state == TP__TIMER_RUNNING)
            pthread_cond_wait(&s->done, &s->lock);
        s->done_waiters--;
        return false;
    default:
        return false;
    }
}

bool tp__timer_stop(struct tp_timer *tm) {
    if (!tm) return false;
    tp_timers *s = tm->svc;
    if (!s) return false; /* never started, or already stopped */
    TP_CHAOS_POINT("timer.stop");
    pthread_mutex_lock(&s->lock);
    bool stopped = timer_cancel_locked(s, tm);
    /* Given back: the node no longer holds the service (the running thread
     * does not touch an embedded node released from its fn). */
    tm->svc = NULL;
    service_unref_unlock(s);
    return stopped;
}

int tp_timer_add(tp_timers *s, uint64_t deadline_ns, tp_timer_fn fn, void *arg, tp_timer **out) {
    if (out) *out = NULL;
    if (!fn || deadline_ns == TP_FOREVER) return -EINVAL;
    struct tp_timer *tm = malloc(sizeof(*tm));
    if (!tm) return -ENOMEM;
    tp__timer_init(tm, fn, arg);
    tm->flags = TP__TIMER_HEAP | (out ? TP__TIMER_HANDLE : 0);
    /* Publish the handle before the timer can fire (fn may cancel it). */
    if (out) *out = tm;
    TP_CHAOS_POINT("timer.add");
    int err = tp__timer_start(s, tm, deadline_ns);
    if (err) {
        if (out) *out = NULL;
        free(tm);
    }
    return err;
}

int tp_timer_add_after(tp_timers *s, uint64_t timeout_ns, tp_timer_fn fn, void *arg,
                       tp_timer **out) {
    if (timeout_ns == TP_FOREVER) {
        if (out) *out = NULL;
        return -EINVAL;
    }
    return tp_timer_add(s, tp__deadline_after(timeout_ns), fn, arg, out);
}

bool tp_timer_cancel(tp_timer *tm) {
    if (!tm) return false;
    /* Unlocked read: a handle's svc is set before the handle can be used
     * and never changes (destroy leaves it; see DESIGN: Lifetime). */
    tp_timers *s = tm->svc;
    TP_CHAOS_POINT("timer.cancel");
    pthread_mutex_lock(&s->lock);
    bool stopped = timer_cancel_locked(s, tm);
    /* Still RUNNING here only when called from fn: the thread frees it. */
    bool free_it = tm->state != TP__TIMER_RUNNING;
    service_unref_unlock(s); /* may free s: the last holder after destroy */
    if (free_it) free(tm);
    return stopped;
}

size_t tp_timers_pending(tp_timers *s) {
    if (!s) s = tp_timers_default();
    if (!s) return 0;
    pthread_mutex_lock(&s->lock);
    size_t n = s->n;
    pthread_mutex_unlock(&s->lock);
    return n;
}
