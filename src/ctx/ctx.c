/* SPDX-License-Identifier: MIT */
/*
 * DESIGN - the context tree.
 *
 * Shape: every context except the background one has a parent pointer
 * (NULL when the parent is the background: the background is never done, so
 * its children need not be linked anywhere and no global lock exists). A
 * context that is not done when it is created is linked into its parent's
 * intrusive list of children (`children`, `prev`/`next`), so a cancel can
 * walk down the tree. Values and the effective deadline are immutable after
 * creation and read without locks.
 *
 * Lifetime: `counts` packs two counters in one atomic word: the low 32 bits
 * are user references (the creator's, tp_ctx_retain()), the high 32 bits are
 * internal pins: one per child, linked or not (a child keeps its parent
 * alive for value lookups), one per callback record until it is disposed of
 * (including tp_ctx_wait()'s), and short-lived pins taken by a canceller
 * while it walks the tree and by a firing deadline. The context is freed
 * when the whole word reaches 0. Keeping user references apart lets every
 * build catch a release of a context that has no user reference left even
 * while internal pins keep the memory alive. Freeing stops the context's
 * timer, unlinks it from the parent (so long-lived parents do not collect
 * dead children) and drops its pin on the parent - iteratively, so deep
 * chains do not recurse.
 *
 * Done state: `err` goes 0 -> -ECANCELED/-ETIMEDOUT exactly once, under the
 * context's lock, and never changes again (the first reason sticks). It is
 * stored with release and read with acquire so a thread that sees a context
 * done also sees what the canceller wrote before cancelling.
 *
 * Cancel: the canceller sets err on the root of the cancel, then walks the
 * subtree with an explicit work list (`work_next`, owned by the canceller
 * that set that context's err, so no two cancellers share an entry). For
 * each context x it holds x's lock and, nested, each child's lock in turn
 * (lock order: parent before child, never more than two levels) and sets the
 * child's err, moves its callbacks to a private run list and queues it if it
 * has children. Children already done are skipped: whoever made them done
 * walks their subtree. A child whose counts are 0 is being freed and has no
 * children or callbacks left; it is not queued. Callbacks run after every lock
 * is dropped, so they may call any tp_ctx function.
 *
 * Walk completion: tp_ctx_cancel(c) returns only once c and every descendant
 * is done, also when another canceller (or a deadline on the timer thread)
 * got to part of the subtree first and is still walking it. A canceller
 * marks every context it set done that has children `walking` (with
 * `walk_root` = the root of its cancel) and keeps it pinned; popped entries
 * are kept on its work list (reused as a "done" list). After its own walk
 * it checks each of them for children still `walking` for another canceller
 * and waits for those (on the global `walk_cv`, entered only on such a
 * conflict); then it clears its own marks, wakes waiters, unpins, and only
 * then runs callbacks. Waits go strictly down the tree (a walk waits only
 * for walks whose root lies inside its own subtree), so they cannot form a
 * cycle. A cancel that finds c already done waits for c's walk the same way.
 *
 * Deadlines: a context whose own deadline is earlier than its parent's
 * effective deadline embeds a timer node on the process-wide timer service;
 * otherwise the parent's cancel reaches it. A context whose effective
 * deadline has passed at creation is born done. tp_ctx_cancel() stops the
 * root's timer once its err is set (no lock held). The timer callback pins the
 * context only if it is still alive (counts != 0); freeing stops the timer
 * first, which waits for a running callback, so the callback never sees a
 * freed context.
 *
 * Callbacks: a tp_ctx_cb is PENDING in its context's list (under the lock),
 * then QUEUED in a canceller's run list, RUNNING, and DONE; STOPPED when
 * tp_ctx_cb_stop() got it first. Every state change happens under the
 * context's lock. A stopper that must wait for a RUNNING callback (or for a
 * QUEUED record on tp_ctx_wait()'s stack) sleeps on a condvar of its own
 * (`waiter`) with the context's lock; a QUEUED allocated record is just
 * marked STOPPED and left for the runner to free. A callback pins its
 * context until the callback record is disposed of.
 *
 * Fields and what protects them: `children`, `nchildren`, `cbs` and a
 * callback's state: the context's `lock`; `prev`/`next`: the parent's lock;
 * `work_next`, `walk_root`: the canceller owning the entry (walk_root is
 * written under the context's lock and read under it); `counts`, `err`,
 * `walking`: atomics.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdint.h>

#include "tripool/ctx.h"
#include "internal/atomic.h"
#include "internal/chaos.h"
#include "internal/check.h"
#include "internal/os.h"
#include "ctx/timer_internal.h"

#define CTX_MAGIC 0x74706378u /* "tpcx" */
#define CTX_DEAD 0x64656164u  /* "dead" */
#define CTX_REF UINT64_C(1)
#define CTX_PIN (UINT64_C(1) << 32)
#define CTX_REFS(v) ((v)&UINT64_C(0xffffffff))

enum cb_state { CB_PENDING, CB_QUEUED, CB_RUNNING, CB_DONE, CB_STOPPED };

struct tp_ctx_cb {
    tp_ctx_fn fn;
    void *arg;
    tp_ctx *ctx;
    struct tp_ctx_cb *prev, *next; /* ctx->cbs (ctx->lock) or a run list */
    pthread_cond_t *waiter;        /* a stopper waiting for CB_DONE */
    pthread_t runner;              /* thread running (or about to run) fn */
    uint8_t state;
    bool heap;     /* malloc'd: free when done with */
    bool handle;   /* a handle was given out: tp_ctx_cb_stop frees it */
    bool returned; /* the handle was given back by the runner thread itself */
};

struct tp_ctx {
    _Atomic uint64_t counts; /* user refs (low 32) | pins (high 32) */
    _Atomic int err;         /* 0 or the sticky reason */
    tp_ctx *parent;          /* NULL = background; immutable */
    /* Past the first 16 bytes, which malloc's free lists overwrite: a release
     * of freed memory then usually still finds CTX_DEAD here. */
    uint32_t magic;
    uint64_t deadline;    /* effective; immutable */
    const void *key;      /* immutable */
    void *val;            /* immutable */
    bool linked;          /* in parent->children; set before publication */
    bool has_timer;       /* `timer` is armed; set before it starts */
    pthread_mutex_t lock; /* protects children, nchildren, cbs */
    tp_ctx *children;
    size_t nchildren;
    tp_ctx *prev, *next; /* siblings: protected by parent->lock */
    struct tp_ctx_cb *cbs;
    tp_ctx *work_next;       /* cancel work list; owned by its canceller */
    const tp_ctx *walk_root; /* the root of the cancel walking us (see DESIGN) */
    _Atomic int walking;     /* 1 while that walk is not finished */
    struct tp_timer timer;
};

static tp_ctx background = {
    .magic = CTX_MAGIC,
    .deadline = TP_FOREVER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

tp_ctx *tp_ctx_background(void) {
    return &background;
}

static inline bool is_bg(const tp_ctx *c) {
    return c == &background;
}

static void ctx_bad(const char *fn, const tp_ctx *c, const char *what) {
    TP__FAIL("%s(%p): %s", fn, (const void *)c, what);
}

/* Misuse checks are on in every build, not only without NDEBUG: they cost
 * one compare on data already loaded, and CMake's RelWithDebInfo (our
 * default) defines NDEBUG. Reading the magic of freed memory is best effort;
 * the over-release check in tp_ctx_release() is exact while pins remain. */
static inline void ctx_check(const char *fn, const tp_ctx *c) {
    if (c->magic != CTX_MAGIC)
        ctx_bad(fn, c,
                c->magic == CTX_DEAD ? "context used after its last release (released twice?)"
                                     : "not a context");
}

/* ---- pins and freeing ------------------------------------------------------ */

/* The caller already holds a reference or pin, so relaxed is enough: the
 * count cannot reach 0 concurrently. */
static inline void ctx_pin(tp_ctx *c) {
    if (!is_bg(c)) tp__add_relaxed(&c->counts, CTX_PIN);
}

/* Pin c unless it is already being freed (counts == 0). */
static bool ctx_try_pin(tp_ctx *c) {
    if (is_bg(c)) return true;
    uint64_t v = tp__load_relaxed(&c->counts);
    do {
        if (v == 0) return false;
    } while (!tp__cas_weak_acq_rel(&c->counts, &v, v + CTX_PIN));
    return true;
}

static void ctx_free(tp_ctx *c);

/* acq_rel: release makes our writes to c visible to the thread that frees
 * it; the acquire half (on the final decrement) orders the free after every
 * other holder's writes. */
static inline void ctx_unpin(tp_ctx *c) {
    if (is_bg(c)) return;
    if (tp__sub_acq_rel(&c->counts, CTX_PIN) == CTX_PIN) ctx_free(c);
}

static void ctx_free(tp_ctx *c) {
    while (c) {
        /* Stops a pending deadline; waits for a running timer callback (which
         * then fails to pin c), unless we are that callback. */
        if (c->has_timer) tp__timer_stop(&c->timer);
        tp_ctx *p = c->parent;
        TP_CHAOS_POINT("ctx.free"); /* still linked: a cancel walk may see c */
        if (c->linked) {
            pthread_mutex_lock(&p->lock);
            if (c->prev)
                c->prev->next = c->next;
            else
                p->children = c->next;
            if (c->next) c->next->prev = c->prev;
            p->nchildren--;
            pthread_mutex_unlock(&p->lock);
        }
        c->magic = CTX_DEAD;
        pthread_mutex_destroy(&c->lock);
        free(c);
        /* Drop our pin on the parent; continue up instead of recursing. */
        if (!p || is_bg(p) || tp__sub_acq_rel(&p->counts, CTX_PIN) != CTX_PIN) break;
        c = p;
    }
}

tp_ctx *tp_ctx_retain(tp_ctx *c) {
    if (!c || is_bg(c)) return c;
    ctx_check("tp_ctx_retain", c);
    /* relaxed: the caller holds a reference already. */
    tp__add_relaxed(&c->counts, CTX_REF);
    return c;
}

void tp_ctx_release(tp_ctx *c) {
    if (!c || is_bg(c)) return;
    ctx_check("tp_ctx_release", c);
    /* acq_rel: see ctx_unpin. */
    uint64_t old = tp__sub_acq_rel(&c->counts, CTX_REF);
    if (CTX_REFS(old) == 0)
        ctx_bad("tp_ctx_release", c, "context released more times than retained");
    if (old == CTX_REF) ctx_free(c);
}

/* ---- callbacks ----------------------------------------------------------- */

/* Drop a callback record: free it if allocated, then its pin on ctx. */
static void cb_dispose(struct tp_ctx_cb *cb) {
    tp_ctx *c = cb->ctx;
    if (cb->heap) free(cb);
    ctx_unpin(c);
}

/* Run one QUEUED or STOPPED callback on its runner thread, no lock held. */
static void cb_run(struct tp_ctx_cb *cb) {
    tp_ctx *c = cb->ctx;
    bool dispose;
    pthread_mutex_lock(&c->lock);
    if (cb->state == CB_STOPPED) {
        /* Stopped before it ran: a stopper on another thread waits for DONE
         * and disposes; one on this thread left the disposal to us. */
        dispose = cb->returned;
        if (!dispose) {
            cb->state = CB_DONE;
            if (cb->waiter) pthread_cond_signal(cb->waiter);
        }
        pthread_mutex_unlock(&c->lock);
        if (dispose) cb_dispose(cb);
        return;
    }
    cb->state = CB_RUNNING;
    pthread_mutex_unlock(&c->lock);
    TP_CHAOS_POINT("ctx.cb_run"); /* RUNNING: a stopper must wait */

    cb->fn(cb->arg);

    pthread_mutex_lock(&c->lock);
    cb->state = CB_DONE;
    dispose = !cb->handle || cb->returned;
    if (cb->waiter) pthread_cond_signal(cb->waiter);
    pthread_mutex_unlock(&c->lock);
    if (dispose) cb_dispose(cb);
}

static void cb_run_list(struct tp_ctx_cb *cb) {
    while (cb) {
        struct tp_ctx_cb *next = cb->next; /* cb may be freed by cb_run */
        cb_run(cb);
        cb = next;
    }
}

/* Move c's pending callbacks to the front of *run, marking them QUEUED for
 * this thread. Caller holds c->lock. */
static void cb_take_locked(tp_ctx *c, struct tp_ctx_cb **run, pthread_t self) {
    struct tp_ctx_cb *cb = c->cbs;
    if (!cb) return;
    struct tp_ctx_cb *last = NULL;
    for (; cb; cb = cb->next) {
        cb->state = CB_QUEUED;
        cb->runner = self;
        last = cb;
    }
    last->next = *run;
    *run = c->cbs;
    c->cbs = NULL;
}

/* Register a prepared callback record on c (which the caller keeps alive). */
static void cb_register(tp_ctx *c, struct tp_ctx_cb *cb) {
    ctx_pin(c);
    cb->ctx = c;
    TP_CHAOS_POINT("ctx.cb_register");
    pthread_mutex_lock(&c->lock);
    if (tp__load_relaxed(&c->err)) { /* relaxed: err only changes under lock */
        cb->state = CB_QUEUED;
        cb->runner = pthread_self();
        cb->next = NULL;
        pthread_mutex_unlock(&c->lock);
        cb_run(cb);
        return;
    }
    cb->state = CB_PENDING;
    cb->prev = NULL;
    cb->next = c->cbs;
    if (c->cbs) c->cbs->prev = cb;
    c->cbs = cb;
    pthread_mutex_unlock(&c->lock);
}

int tp_ctx_on_done(tp_ctx *c, tp_ctx_fn fn, void *arg, tp_ctx_cb **out) {
    if (out) *out = NULL;
    if (!fn) return -EINVAL;
    if (!c) c = &background;
    ctx_check("tp_ctx_on_done", c);
    struct tp_ctx_cb *cb = calloc(1, sizeof(*cb));
    if (!cb) return -ENOMEM;
    cb->fn = fn;
    cb->arg = arg;
    cb->heap = true;
    cb->handle = out != NULL;
    if (out) *out = cb; /* before it can run: fn may stop its own handle */
    cb_register(c, cb);
    return 0;
}

/* Stop a callback record; frees/unpins it unless the runner does. */
static bool cb_stop(struct tp_ctx_cb *cb) {
    tp_ctx *c = cb->ctx;
    bool stopped = false;
    TP_CHAOS_POINT("ctx.cb_stop");
    pthread_mutex_lock(&c->lock);
    switch (cb->state) {
    case CB_PENDING:
        if (cb->prev)
            cb->prev->next = cb->next;
        else
            c->cbs = cb->next;
        if (cb->next) cb->next->prev = cb->prev;
        cb->state = CB_STOPPED;
        stopped = true;
        break;
    case CB_QUEUED:
    case CB_RUNNING:
        stopped = cb->state == CB_QUEUED;
        if (stopped) cb->state = CB_STOPPED;
        if (pthread_equal(cb->runner, pthread_self()) || (stopped && cb->heap)) {
            /* From a callback on the runner thread, or a queued allocated
             * record (no need to wait for the runner to skip it): the runner
             * disposes of it later. */
            cb->returned = true;
            pthread_mutex_unlock(&c->lock);
            return stopped;
        }
        /* wait for the runner to finish with cb */
        __attribute__((fallthrough));
    case CB_STOPPED:
    default: {
        pthread_cond_t cv;
        bool waiting = cb->state != CB_DONE;
        if (waiting) {
            pthread_cond_init(&cv, NULL);
            cb->waiter = &cv;
            while (cb->state != CB_DONE)
                pthread_cond_wait(&cv, &c->lock);
            cb->waiter = NULL;
            pthread_cond_destroy(&cv);
        }
        break;
    }
    }
    pthread_mutex_unlock(&c->lock);
    cb_dispose(cb);
    return stopped;
}

bool tp_ctx_cb_stop(tp_ctx_cb *cb) {
    if (!cb) return false;
    return cb_stop(cb);
}

/* ---- cancel ---------------------------------------------------------------- */

/* Walk completion (see DESIGN). walk_waiters and the walking flags are
 * seq_cst: a waiter counts itself before reading a flag, a walker clears its
 * flags before reading the count, so one of them sees the other. */
static pthread_mutex_t walk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t walk_cv = PTHREAD_COND_INITIALIZER;
static _Atomic unsigned walk_waiters;

/* Wait until k's walk has finished. k is pinned by the caller; no lock held. */
static void walk_wait(tp_ctx *k) {
    atomic_fetch_add(&walk_waiters, 1);
    pthread_mutex_lock(&walk_mu);
    while (atomic_load(&k->walking))
        pthread_cond_wait(&walk_cv, &walk_mu);
    pthread_mutex_unlock(&walk_mu);
    atomic_fetch_sub(&walk_waiters, 1);
}

/* Wait for every child of x (done: its children list no longer grows) that
 * another canceller still walks. No lock held on entry. */
static void walk_wait_children(tp_ctx *x, const tp_ctx *root) {
    for (;;) {
        tp_ctx *busy = NULL;
        pthread_mutex_lock(&x->lock);
        for (tp_ctx *k = x->children; k && !busy; k = k->next) {
            if (!atomic_load(&k->walking)) continue;
            pthread_mutex_lock(&k->lock);
            /* A child being freed (counts 0) has no children left. */
            if (atomic_load(&k->walking) && k->walk_root != root && ctx_try_pin(k)) busy = k;
            pthread_mutex_unlock(&k->lock);
        }
        pthread_mutex_unlock(&x->lock);
        if (!busy) return;
        TP_CHAOS_POINT("ctx.cancel_wait");
        walk_wait(busy);
        ctx_unpin(busy);
    }
}

static void cancel_impl(tp_ctx *c, int err) {
    struct tp_ctx_cb *run = NULL;
    pthread_t self = pthread_self();

    pthread_mutex_lock(&c->lock);
    if (tp__load_relaxed(&c->err)) { /* relaxed: err only changes under lock */
        pthread_mutex_unlock(&c->lock);
        /* Done already: return once whoever made it done has reached every
         * descendant. The caller keeps c alive. */
        if (atomic_load(&c->walking)) walk_wait(c);
        return;
    }
    tp__store_release(&c->err, err); /* see DESIGN: done publishes prior writes */
    cb_take_locked(c, &run, self);
    bool walk = c->children != NULL;
    if (walk) {
        c->walk_root = c;
        atomic_store(&c->walking, 1);
    }
    pthread_mutex_unlock(&c->lock);
    TP_CHAOS_POINT("ctx.cancel_root"); /* c done, descendants not yet */

    tp_ctx *work = NULL, *walked = NULL;
    if (walk) {
        ctx_pin(c); /* the caller keeps c alive; the pin covers the walk */
        c->work_next = NULL;
        work = c;
    }
    while (work) {
        tp_ctx *x = work;
        work = x->work_next;
        pthread_mutex_lock(&x->lock);
        for (tp_ctx *k = x->children; k; k = k->next) {
            pthread_mutex_lock(&k->lock);
            if (!tp__load_relaxed(&k->err)) {
                tp__store_release(&k->err, err);
                cb_take_locked(k, &run, self);
                if (k->children && ctx_try_pin(k)) {
                    k->walk_root = c;
                    atomic_store(&k->walking, 1);
                    k->work_next = work;
                    work = k;
                }
            }
            pthread_mutex_unlock(&k->lock);
        }
        pthread_mutex_unlock(&x->lock);
        TP_CHAOS_POINT("ctx.cancel_walk");
        x->work_next = walked; /* still pinned and marked walking */
        walked = x;
    }
    if (walked) {
        /* Parts of the subtree made done by other cancellers first. */
        for (tp_ctx *x = walked; x; x = x->work_next)
            walk_wait_children(x, c);
        for (tp_ctx *x = walked; x; x = x->work_next)
            atomic_store(&x->walking, 0);
        if (atomic_load(&walk_waiters)) {
            pthread_mutex_lock(&walk_mu);
            pthread_cond_broadcast(&walk_cv);
            pthread_mutex_unlock(&walk_mu);
        }
        while (walked) {
            tp_ctx *next = walked->work_next; /* unpin may free it */
            ctx_unpin(walked);
            walked = next;
        }
    }
    /* A cancelled context no longer needs its deadline: give the heap slot
     * back now rather than at the last release. (Only for the root of this
     * cancel, which the caller keeps alive; descendants keep theirs until
     * released. When the timer is what cancels, it is running: skip.) */
    if (err != -ETIMEDOUT && c->has_timer) tp__timer_stop(&c->timer);
    TP_CHAOS_POINT("ctx.cancel_cbs");
    cb_run_list(run);
}

void tp_ctx_cancel(tp_ctx *c) {
    if (!c || is_bg(c)) return;
    ctx_check("tp_ctx_cancel", c);
    cancel_impl(c, -ECANCELED);
}

static void ctx_timer_fire(void *arg) {
    tp_ctx *c = arg;
    TP_CHAOS_POINT("ctx.deadline");
    if (!ctx_try_pin(c)) return; /* being freed; the freer waits for us */
    cancel_impl(c, -ETIMEDOUT);
    ctx_unpin(c);
}

/* ---- creation ------------------------------------------------------------- */

static int ctx_new(tp_ctx *parent, uint64_t deadline, const void *key, void *val, tp_ctx **out) {
    if (!out) return -EINVAL;
    *out = NULL;
    if (!parent) parent = &background;
    ctx_check("tp_ctx_with_*", parent);
    tp_ctx *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return -ENOMEM;
    }
    c->magic = CTX_MAGIC;
    c->key = key;
    c->val = val;
    atomic_init(&c->counts, CTX_REF);
    bool own_deadline = deadline < parent->deadline;
    c->deadline = own_deadline ? deadline : parent->deadline;

    /* Born done when the effective deadline has passed, also when it is the
     * parent's and the parent's timer has not fired yet. */
    int err = 0;
    if (c->deadline != TP_FOREVER && c->deadline <= tp__now_ns()) err = -ETIMEDOUT;
    if (!is_bg(parent)) {
        ctx_pin(parent); /* the caller holds a reference on parent */
        c->parent = parent;
        pthread_mutex_lock(&parent->lock);
        int perr = tp__load_relaxed(&parent->err); /* relaxed: under its lock */
        if (perr) {
            err = perr; /* the parent was done first */
        } else if (!err) {
            c->linked = true;
            c->next = parent->children;
            if (c->next) c->next->prev = c;
            parent->children = c;
            parent->nchildren++;
        }
        atomic_init(&c->err, err); /* before c is visible under parent->lock */
        pthread_mutex_unlock(&parent->lock);
    } else {
        atomic_init(&c->err, err);
    }

    TP_CHAOS_POINT("ctx.new_linked"); /* a parent's cancel may reach c now */
    if (!err && own_deadline) {
        tp__timer_init(&c->timer, ctx_timer_fire, c);
        /* Set before the start: the timer thread may read it from then on
         * (ordered by the service lock). */
        c->has_timer = true;
        int terr = tp__timer_start(NULL, &c->timer, deadline);
        if (terr) {
            c->has_timer = false; /* never started; no one else saw c yet */
            tp_ctx_release(c);
            return terr;
        }
    }
    *out = c;
    return 0;
}

int tp_ctx_with_cancel(tp_ctx *parent, tp_ctx **out) {
    return ctx_new(parent, TP_FOREVER, NULL, NULL, out);
}

int tp_ctx_with_deadline(tp_ctx *parent, uint64_t deadline_ns, tp_ctx **out) {
    return ctx_new(parent, deadline_ns, NULL, NULL, out);
}

int tp_ctx_with_timeout(tp_ctx *parent, uint64_t timeout_ns, tp_ctx **out) {
    return ctx_new(parent, tp__deadline_after(timeout_ns), NULL, NULL, out);
}

int tp_ctx_with_value(tp_ctx *parent, const void *key, void *val, tp_ctx **out) {
    if (!key) {
        if (out) *out = NULL;
        return -EINVAL;
    }
    return ctx_new(parent, TP_FOREVER, key, val, out);
}

void *tp_ctx_value(const tp_ctx *c, const void *key) {
    if (!key) return NULL;
    for (; c && !is_bg(c); c = c->parent)
        if (c->key == key) return c->val;
    return NULL;
}

int tp_ctx_with_budget(tp_ctx *parent, uint64_t reserve_ns, tp_ctx **out) {
    uint64_t d = tp_ctx_deadline(parent);
    if (d == TP_FOREVER) return ctx_new(parent, TP_FOREVER, NULL, NULL, out);
    return ctx_new(parent, d > reserve_ns ? d - reserve_ns : 0, NULL, NULL, out);
}

int tp_ctx_with_budget_fraction(tp_ctx *parent, double fraction, tp_ctx **out) {
    if (!(fraction > 0.0 && fraction <= 1.0)) { /* also rejects NaN */
        if (out) *out = NULL;
        return -EINVAL;
    }
    uint64_t d = tp_ctx_deadline(parent);
    if (d == TP_FOREVER) return ctx_new(parent, TP_FOREVER, NULL, NULL, out);
    uint64_t now = tp__now_ns();
    uint64_t dl = d <= now ? d : now + (uint64_t)((double)(d - now) * fraction);
    return ctx_new(parent, dl, NULL, NULL, out);
}

/* ---- queries -------------------------------------------------------------- */

int tp_ctx_err(const tp_ctx *c) {
    if (!c) return 0;
    return tp__load_acquire(&c->err); /* pairs with the release in cancel */
}

bool tp_ctx_done(const tp_ctx *c) {
    return tp_ctx_err(c) != 0;
}

uint64_t tp_ctx_deadline(const tp_ctx *c) {
    return c ? c->deadline : TP_FOREVER;
}

size_t tp_ctx_child_count(tp_ctx *c) {
    if (!c) c = &background;
    pthread_mutex_lock(&c->lock);
    size_t n = c->nchildren;
    pthread_mutex_unlock(&c->lock);
    return n;
}

struct wait_state {
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool fired;
};

static void wait_wake(void *arg) {
    struct wait_state *ws = arg;
    pthread_mutex_lock(&ws->m);
    ws->fired = true;
    pthread_cond_signal(&ws->cv);
    pthread_mutex_unlock(&ws->m);
}

int tp_ctx_wait(tp_ctx *c, uint64_t timeout_ns) {
    if (!c) c = &background;
    int err = tp_ctx_err(c);
    if (err) return err;
    if (timeout_ns == 0) return -EAGAIN;
    uint64_t deadline = tp__deadline_after(timeout_ns);

    struct wait_state ws = {.fired = false};
    if (pthread_mutex_init(&ws.m, NULL) != 0) return -ENOMEM;
    if (tp__cond_init_monotonic(&ws.cv) != 0) {
        pthread_mutex_destroy(&ws.m);
        return -ENOMEM;
    }
    /* A callback record on our stack: no allocation; cb_stop below waits
     * until the runner is done with it before the stack goes away. */
    struct tp_ctx_cb cb = {.fn = wait_wake, .arg = &ws, .handle = true};
    cb_register(c, &cb);
    pthread_mutex_lock(&ws.m);
    while (!ws.fired)
        if (tp__cond_wait_until(&ws.cv, &ws.m, deadline) == -ETIMEDOUT) break;
    pthread_mutex_unlock(&ws.m);
    cb_stop(&cb);
    pthread_cond_destroy(&ws.cv);
    pthread_mutex_destroy(&ws.m);
    err = tp_ctx_err(c);
    return err ? err : -EAGAIN;
}
