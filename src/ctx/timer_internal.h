/* SPDX-License-Identifier: MIT */
/*
 * Timer nodes shared by timer.c and ctx.c. A node is either allocated by
 * tp_timer_add() or embedded in another object (a context) and started with
 * tp__timer_start(); embedded nodes are never freed by the service.
 */
#ifndef TP_CTX_TIMER_INTERNAL_H
#define TP_CTX_TIMER_INTERNAL_H

#include "tripool/timer.h"

enum tp__timer_state {
    TP__TIMER_IDLE = 0, /* not started, or cancelled */
    TP__TIMER_PENDING,  /* in the heap */
    TP__TIMER_RUNNING,  /* fn is being called on the service thread */
    TP__TIMER_FIRED,    /* fn returned */
};

enum tp__timer_flags {
    TP__TIMER_HEAP = 1,   /* allocated by tp_timer_add; the service may free it */
    TP__TIMER_HANDLE = 2, /* a handle was given out; freed by tp_timer_cancel */
};

/* All fields are protected by svc->lock once the node is started. */
struct tp_timer {
    uint64_t deadline;
    tp_timer_fn fn;
    void *arg;
    tp_timers *svc;
    uint32_t idx; /* slot in svc->heap while PENDING */
    uint8_t state;
    uint8_t flags;
};

/* Prepare an embedded node. */
void tp__timer_init(struct tp_timer *tm, tp_timer_fn fn, void *arg);

/* Start an embedded node that is new (tp__timer_init) or stopped. t NULL =
 * default service. From then on the node keeps the service's memory alive
 * until tp__timer_stop(), also past tp_timers_destroy(): a started node must
 * be stopped before its memory goes. Returns 0, -EAGAIN (default service
 * unavailable), -ESHUTDOWN (service being destroyed) or -ENOMEM. */
int tp__timer_start(tp_timers *t, struct tp_timer *tm, uint64_t deadline_ns);

/* Stop an embedded node: true if this prevented the call. Waits for a
 * running fn unless called from it. Never frees tm. Gives the node back: a
 * second stop returns false at once, and the node may be started again.
 * Not to be called concurrently with another stop or start of the node. */
bool tp__timer_stop(struct tp_timer *tm);

#endif
