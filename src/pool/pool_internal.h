/* SPDX-License-Identifier: MIT */
/*
 * Internals shared by pool.c (workers, queue) and future.c (futures,
 * groups). Not installed.
 */
#ifndef TP_POOL_INTERNAL_H
#define TP_POOL_INTERNAL_H

#include "tripool/pool.h"

struct tp_group;

/* A task that carries more than fn/arg. Allocated by the submitter, owned by
 * the queue once accepted, freed by whoever runs (or skips) it. */
typedef struct tp__task {
    tp_task_fn fn;
    void *arg;
    tp_ctx *ctx;            /* one reference, or NULL */
    const char *label;      /* not owned */
    struct tp_future *fut;  /* one reference, or NULL */
    struct tp_group *group; /* not a reference: the group waits for its tasks */
} tp__task;

/* Queue a task node: ownership of t passes to the pool on success (0); on
 * error the caller still owns t. t->ctx (may be NULL) also bounds the wait
 * for room, as tp_submit_ctx does; deadline_ns is absolute (0 = no wait). */
int tp__pool_submit_task(tp_pool *p, tp__task *t, uint64_t deadline_ns);

/* tp_submit_ex() with o->future set (future.c). */
int tp__submit_future_opts(tp_pool *p, const tp_task_opts *o, uint64_t deadline_ns);

/* Completion hooks run by the pool after a node task ran (err = its
 * result) or was skipped (skipped = true, err = the context's error). */
void tp__future_complete(struct tp_future *f, int result, bool skipped);
void tp__future_release_ref(struct tp_future *f);
void tp__group_complete(struct tp_group *g, int result);

#endif
