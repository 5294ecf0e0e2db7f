/* SPDX-License-Identifier: MIT */
/*
 * Futures and task groups on top of the task pool.
 *
 * DESIGN
 *
 * A future is shared by the submitter and the queued task node: two
 * references (atomic count). Its state (done, result, err) is written once
 * by the completing worker under the future's mutex and broadcast on its
 * condvar; `done` is also atomic so tp_future_done() needs no lock. A wait
 * with a context registers a tp_ctx_on_done callback that takes the future's
 * mutex and broadcasts; the callback is registered before and stopped after
 * the waiter holds the mutex, so it can never run on a freed future.
 *
 * A group holds one reference on its child context; every queued task of
 * the group holds another. `pending` (under the group mutex) counts tasks
 * submitted and not finished; the group is not freed while pending > 0
 * (destroy waits), so tasks hold no reference on the group itself. A task
 * that fails records first_err and cancels the context BEFORE it decrements
 * pending, so the group (and its context) is still alive when it cancels.
 *
 * Lock order: future/group mutex, then nothing (pool functions and ctx
 * calls are made without holding it, except the callback's broadcast).
 */
#include "pool/pool_internal.h"

#include "internal/atomic.h"
#include "internal/os.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct tp_future {
    _Atomic int refs;
    _Atomic bool done; /* release-stored under mu after result/err */
    int result;        /* the task's return value (under mu) */
    int err;           /* context error if the task was skipped (under mu) */
    pthread_mutex_t mu;
    pthread_cond_t cond;
};

struct tp_group {
    tp_pool *pool;
    tp_ctx *ctx; /* one reference */
    unsigned limit;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    unsigned pending; /* under mu */
    int first_err;    /* under mu */
};

/* ---- futures ------------------------------------------------------------- */

static void future_free(struct tp_future *f) {
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void tp__future_release_ref(struct tp_future *f) {
    /* acq_rel: the last owner sees every write of the others before free. */
    if (tp__sub_acq_rel(&f->refs, 1) == 1) future_free(f);
}

TP_API void tp_future_release(tp_future *f) {
    if (f) tp__future_release_ref(f);
}

void tp__future_complete(struct tp_future *f, int result, bool skipped) {
    pthread_mutex_lock(&f->mu);
    if (skipped)
        f->err = result;
    else
        f->result = result;
    /* release: tp_future_done() readers then see a finished task. */
    tp__store_release(&f->done, true);
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->mu);
}

int tp__submit_future_opts(tp_pool *p, const tp_task_opts *o, uint64_t deadline_ns) {
    struct tp_future *f = calloc(1, sizeof *f);
    if (!f) return -ENOMEM;
    int rc = -pthread_mutex_init(&f->mu, NULL);
    if (rc) {
        free(f);
        return rc;
    }
    rc = tp__cond_init_monotonic(&f->cond);
    if (rc) {
        pthread_mutex_destroy(&f->mu);
        free(f);
        return rc;
    }
    tp__store_relaxed(&f->refs, 2); /* caller + task */
    tp__task *t = malloc(sizeof *t);
    if (!t) {
        future_free(f);
        return -ENOMEM;
    }
    *t = (tp__task){.fn = o->fn, .arg = o->arg, .label = o->label, .fut = f};
    if (o->ctx) t->ctx = tp_ctx_retain(o->ctx);
    rc = tp__pool_submit_task(p, t, deadline_ns);
    if (rc) {
        if (t->ctx) tp_ctx_release(t->ctx);
        free(t);
        future_free(f);
        return rc;
    }
    *o->future = f;
    return 0;
}

TP_API int tp_submit_future(tp_pool *p, tp_ctx *c, tp_task_fn fn, void *arg, tp_future **out) {
    if (!out) return -EINVAL;
    tp_task_opts o;
    tp_task_opts_init(&o);
    o.fn = fn;
    o.arg = arg;
    o.ctx = c;
    o.future = out;
    return tp_submit_ex(p, &o);
}

static int future_finish_locked(struct tp_future *f, int *result) {
    if (f->err) return f->err;
    if (result) *result = f->result;
    return 0;
}

TP_API int tp_future_wait(tp_future *f, uint64_t timeout_ns, int *result) {
    if (!f) return -EINVAL;
    uint64_t deadline = tp__deadline_after(timeout_ns);
    int rc;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        if (tp__load_relaxed(&f->done)) {
            rc = future_finish_locked(f, result);
            break;
        }
        if (tp__now_ns() >= deadline ||
            (tp__cond_wait_until(&f->cond, &f->mu, deadline) == -ETIMEDOUT &&
             !tp__load_relaxed(&f->done))) {
            rc = -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static void future_wake(void *arg) {
    struct tp_future *f = arg;
    pthread_mutex_lock(&f->mu);
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->mu);
}

TP_API int tp_future_wait_ctx(tp_future *f, tp_ctx *wc, int *result) {
    if (!f) return -EINVAL;
    if (!wc) return tp_future_wait(f, TP_FOREVER, result);
    tp_ctx_cb *cb = NULL;
    int rc = tp_ctx_on_done(wc, future_wake, f, &cb);
    if (rc) return rc;
    uint64_t deadline = tp_ctx_deadline(wc);
    pthread_mutex_lock(&f->mu);
    for (;;) {
        if (tp__load_relaxed(&f->done)) {
            rc = future_finish_locked(f, result);
            break;
        }
        if ((rc = tp_ctx_err(wc)) != 0) break;
        /* Once wc's deadline has passed, the timer marking wc done (and
         * its callback, future_wake) may still be on its way: sleep until
         * woken rather than spin on a deadline in the past. */
        tp__cond_wait_until(&f->cond, &f->mu, deadline > tp__now_ns() ? deadline : TP_FOREVER);
    }
    pthread_mutex_unlock(&f->mu);
    tp_ctx_cb_stop(cb);
    return rc;
}

TP_API bool tp_future_done(const tp_future *f) {
    /* acquire: pairs with the completing worker's release. */
    return f && tp__load_acquire(&((struct tp_future *)f)->done);
}

/* ---- groups -------------------------------------------------------------- */

TP_API int tp_group_create(tp_pool *p, tp_ctx *parent, unsigned limit, tp_group **out) {
    if (!out) return -EINVAL;
    *out = NULL;
    if (!p) return -EINVAL;
    struct tp_group *g = calloc(1, sizeof *g);
    if (!g) return -ENOMEM;
    int rc = -pthread_mutex_init(&g->mu, NULL);
    if (rc) goto err_free;
    if ((rc = tp__cond_init_monotonic(&g->cond)) != 0) goto err_mutex;
    if ((rc = tp_ctx_with_cancel(parent, &g->ctx)) != 0) goto err_cond;
    g->pool = p;
    g->limit = limit;
    *out = g;
    return 0;
err_cond:
    pthread_cond_destroy(&g->cond);
err_mutex:
    pthread_mutex_destroy(&g->mu);
err_free:
    free(g);
    return rc;
}

TP_API tp_ctx *tp_group_ctx(tp_group *g) {
    return g ? g->ctx : NULL;
}

void tp__group_complete(struct tp_group *g, int result) {
    bool cancel = false;
    if (result < 0) {
        pthread_mutex_lock(&g->mu);
        if (g->first_err == 0) {
            g->first_err = result;
            cancel = true;
        }
        pthread_mutex_unlock(&g->mu);
    }
    if (cancel) tp_ctx_cancel(g->ctx); /* still alive: pending > 0 until below */
    pthread_mutex_lock(&g->mu);
    g->pending--;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mu);
}

TP_API int tp_group_submit(tp_group *g, tp_task_fn fn, void *arg) {
    if (!g || !fn) return -EINVAL;
    tp__task *t = malloc(sizeof *t);
    if (!t) return -ENOMEM;
    *t = (tp__task){.fn = fn, .arg = arg, .ctx = tp_ctx_retain(g->ctx), .group = g};
    pthread_mutex_lock(&g->mu);
    while (g->limit && g->pending >= g->limit)
        pthread_cond_wait(&g->cond, &g->mu);
    g->pending++;
    pthread_mutex_unlock(&g->mu);
    int rc = tp__pool_submit_task(g->pool, t, TP_FOREVER);
    if (rc) {
        tp_ctx_release(t->ctx);
        free(t);
        pthread_mutex_lock(&g->mu);
        g->pending--;
        pthread_cond_broadcast(&g->cond);
        pthread_mutex_unlock(&g->mu);
    }
    return rc;
}

TP_API int tp_group_wait(tp_group *g, uint64_t timeout_ns) {
    if (!g) return -EINVAL;
    uint64_t deadline = tp__deadline_after(timeout_ns);
    int rc = 0;
    pthread_mutex_lock(&g->mu);
    while (g->pending > 0) {
        if (tp__cond_wait_until(&g->cond, &g->mu, deadline) == -ETIMEDOUT && g->pending > 0) {
            rc = -ETIMEDOUT;
            break;
        }
    }
    if (rc == 0) rc = g->first_err;
    pthread_mutex_unlock(&g->mu);
    return rc;
}

TP_API void tp_group_destroy(tp_group *g) {
    if (!g) return;
    (void)tp_group_wait(g, TP_FOREVER);
    tp_ctx_release(g->ctx);
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->mu);
    free(g);
}
