/* SPDX-License-Identifier: MIT */
/*
 * tripool/timer.h - the timer service: one thread runs many timers.
 *
 * A service owns one thread and a 4-ary min-heap of pending timers (indexed,
 * so cancel is O(log n)); it sleeps on a CLOCK_MONOTONIC condition variable
 * until the earliest deadline and never polls while idle. Millions of timers
 * may be pending; one costs about 80 bytes (node + heap slot).
 *
 * There is a process-wide default service, started on first use (context
 * deadlines use it) and never stopped, and per-owner services made with
 * tp_timers_create() and joined by tp_timers_destroy().
 *
 * Callbacks run on the service thread with no service lock held, one at a
 * time, in deadline order. They should be short (hand real work to a pool);
 * they may add and cancel timers, including their own.
 *
 * Thread safety: every function may be called from any thread.
 *
 * fork(): service threads do not exist in a child process; a child that does
 * not exec must not rely on timers (or context deadlines) created before the
 * fork.
 */
#ifndef TRIPOOL_TIMER_H
#define TRIPOOL_TIMER_H

#include "tripool/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tp_timers tp_timers;
typedef struct tp_timer tp_timer;
typedef void (*tp_timer_fn)(void *arg);

typedef struct tp_timers_opts {
    size_t initial_capacity; /* heap slots reserved at create; default 1024 */
    /* 0 (default): a normal thread that asks for a short scheduler slice.
     * 1..99: try SCHED_FIFO at this priority so deadlines stay on time when
     * every CPU is busy (needs CAP_SYS_NICE or an RLIMIT_RTPRIO; silently
     * falls back to normal). Callbacks then run real-time too: keep them
     * short. */
    unsigned rt_priority;
    /* More fields may be added; always start from tp_timers_opts_init(). */
} tp_timers_opts;

TP_API void tp_timers_opts_init(tp_timers_opts *opts);

/* Start a service with its own thread. Returns 0, -EINVAL, -ENOMEM or the
 * error of pthread_create (-EAGAIN). */
TP_API TP_MUST_USE int tp_timers_create(tp_timers **out, const tp_timers_opts *opts);

/* Stop the thread (waiting for a running callback) and join it, then free the
 * service. Pending timers are dropped without being called; timers that had
 * no handle are freed; handles still held (pending, fired, or whose callback
 * was running) must be given back with tp_timer_cancel() afterwards, which
 * then returns false (true if it won against a concurrent destroy while the
 * timer was still pending); the service's memory is freed with the last of
 * them. A tp_timer_cancel() on another thread may run concurrently with
 * destroy. After destroy returns, t itself must not be used again. Must not
 * be called from a callback of this service. NULL and the default service
 * are ignored. */
TP_API void tp_timers_destroy(tp_timers *t);

/* The process-wide service, started on first call. NULL if its thread could
 * not be started (a later call tries again). */
TP_API tp_timers *tp_timers_default(void);

/* Set the options the default service will start with. Returns 0, -EINVAL
 * (opts NULL or invalid) or -EBUSY (the default service already runs). Meant
 * for the application's start-up (e.g. a --realtime-timers flag). */
TP_API int tp_timers_default_configure(const tp_timers_opts *opts);

/* True if t's thread runs with a real-time policy (rt_priority took effect). */
TP_API bool tp_timers_realtime(tp_timers *t);

/* Call fn(arg) on the service thread once the absolute CLOCK_MONOTONIC time
 * deadline_ns has passed (a deadline in the past fires at once). t == NULL
 * means the default service. If out is NULL the timer is fire-and-forget and
 * freed by the service after the call; otherwise *out is a handle that must
 * be given back exactly once with tp_timer_cancel(). Returns 0, -EINVAL
 * (fn NULL or deadline TP_FOREVER), -ENOMEM, -ESHUTDOWN (tp_timers_destroy()
 * of t has begun, e.g. from a callback running while destroy waits for it)
 * or -EAGAIN (default service could not start). */
TP_API TP_MUST_USE int tp_timer_add(tp_timers *t, uint64_t deadline_ns, tp_timer_fn fn, void *arg,
                                    tp_timer **out);

/* Same with a relative timeout. */
TP_API TP_MUST_USE int tp_timer_add_after(tp_timers *t, uint64_t timeout_ns, tp_timer_fn fn,
                                          void *arg, tp_timer **out);

/* Cancel and free a handle. Returns true if this prevented the call (fn will
 * never run), false if fn already ran or is running now; in the latter case
 * cancel waits until fn has returned, unless called from fn itself. */
TP_API bool tp_timer_cancel(tp_timer *tm);

/* Number of timers pending in t (NULL = default). */
TP_API size_t tp_timers_pending(tp_timers *t);

#ifdef __cplusplus
}
#endif
#endif /* TRIPOOL_TIMER_H */
