/* SPDX-License-Identifier: MIT */
/*
 * tripool/ctx.h - deadlines and cancellation: a context tree.
 *
 * A context carries a deadline, a cancel signal and values down a tree, like
 * Go's context.Context. Cancelling a context cancels every descendant; a
 * child's deadline is the earlier of its own and its parent's. Every blocking
 * call in tripool has a variant that takes a context.
 *
 * Lifetime: contexts are reference counted. tp_ctx_with_*() return a context
 * holding one reference, owned by the caller; tp_ctx_release() drops it. A
 * child holds a reference on its parent. Releasing the last reference of a
 * child detaches it from its parent, so long-lived parents do not collect
 * dead children. tp_ctx_background() is a static root: never done, never
 * freed; retain/release on it are no-ops. Passing NULL as a parent means the
 * background context.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef TRIPOOL_CTX_H
#define TRIPOOL_CTX_H

#include "tripool/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tp_ctx tp_ctx;

/* The root context: never done, never freed. */
TP_API tp_ctx *tp_ctx_background(void);

/* A child that is done when tp_ctx_cancel() is called on it or its parent is
 * done. Returns 0, -EINVAL (out NULL) or -ENOMEM. */
TP_API TP_MUST_USE int tp_ctx_with_cancel(tp_ctx *parent, tp_ctx **out);

/* A child that is also done (-ETIMEDOUT) at the absolute CLOCK_MONOTONIC
 * deadline. A deadline in the past gives a context that is born done. */
TP_API TP_MUST_USE int tp_ctx_with_deadline(tp_ctx *parent, uint64_t deadline_ns, tp_ctx **out);

/* tp_ctx_with_deadline(parent, now + timeout_ns). TP_FOREVER = no deadline. */
TP_API TP_MUST_USE int tp_ctx_with_timeout(tp_ctx *parent, uint64_t timeout_ns, tp_ctx **out);

/* Cancel c and all its descendants with -ECANCELED. When it returns, c and
 * every descendant are done, also when another thread's cancel or a deadline
 * got to part of the tree first (it then waits for that thread to reach the
 * rest), and also when c was already done. Idempotent; the first reason
 * (cancel or deadline) sticks, for each context. Safe from inside a cancel
 * callback. */
TP_API void tp_ctx_cancel(tp_ctx *c);

/* 0 while not done; then -ECANCELED or -ETIMEDOUT (deadline passed). */
TP_API int tp_ctx_err(const tp_ctx *c);

/* tp_ctx_err(c) != 0. */
TP_API bool tp_ctx_done(const tp_ctx *c);

/* Block until c is done or timeout_ns passes. Returns tp_ctx_err(c) once
 * done (-ECANCELED or -ETIMEDOUT from the context) or -EAGAIN when the wait
 * itself timed out with c still not done. */
TP_API int tp_ctx_wait(tp_ctx *c, uint64_t timeout_ns);

/* The effective absolute deadline (earliest along the ancestors), or
 * TP_FOREVER when there is none. */
TP_API uint64_t tp_ctx_deadline(const tp_ctx *c);

/* Take / drop a reference. Releasing more often than retained aborts with a
 * message on stderr (checked in every build, so also in debug builds with
 * NDEBUG unset); once the memory is freed a further release is undefined
 * (best effort: a "used after its last release" abort). */
TP_API tp_ctx *tp_ctx_retain(tp_ctx *c);
TP_API void tp_ctx_release(tp_ctx *c);

/* ---- cancel callbacks (Go's context.AfterFunc) -------------------------
 * fn(arg) runs exactly once, on the thread that makes c done (or at once on
 * the registering thread if c is already done), never with a context lock
 * held, so it may call any tp_ctx function, including tp_ctx_cancel().
 * When a deadline makes c done, that thread is the timer service's: keep
 * fn short. Callbacks of one context run newest first. A registered callback
 * keeps c's memory alive until it has run or been stopped (c == NULL means
 * the background: never runs). If out is non-NULL it receives a handle that
 * must be given back with tp_ctx_cb_stop(), which also prevents the call if
 * it has not started. Returns 0, -EINVAL or -ENOMEM. */
typedef void (*tp_ctx_fn)(void *arg);
typedef struct tp_ctx_cb tp_ctx_cb;
TP_API TP_MUST_USE int tp_ctx_on_done(tp_ctx *c, tp_ctx_fn fn, void *arg, tp_ctx_cb **out);

/* Unregister and free a callback handle. Returns true if this stopped the
 * call (fn will never run); false if fn already ran or is running now (in
 * which case stop waits until it has returned, unless called from fn
 * itself). */
TP_API bool tp_ctx_cb_stop(tp_ctx_cb *cb);

/* Number of children linked under c: created while c was not done and not
 * yet freed (a released child whose own children still hold it counts).
 * Children of the background are not linked (0). For diagnostics and tests. */
TP_API size_t tp_ctx_child_count(tp_ctx *c);

/* ---- values ----------------------------------------------------------------
 * A child of parent carrying one key/value pair. It is a cancelable child
 * like tp_ctx_with_cancel() (tp_ctx_cancel() on it cancels its subtree).
 * Keys are compared by pointer (use the address of a static object); key
 * must not be NULL. Returns 0, -EINVAL or -ENOMEM. */
TP_API TP_MUST_USE int tp_ctx_with_value(tp_ctx *parent, const void *key, void *val, tp_ctx **out);

/* The value of the nearest context from c up to the root whose key is key,
 * or NULL if none. The value is not copied or owned by the context. */
TP_API void *tp_ctx_value(const tp_ctx *c, const void *key);

/* ---- stage budgets ---------------------------------------------------------
 * A child whose deadline leaves reserve_ns of the parent's effective
 * deadline for later stages: deadline = tp_ctx_deadline(parent) - reserve_ns
 * (born done with -ETIMEDOUT if that is already past). A parent without a
 * deadline gives a child without one. Returns 0, -EINVAL or -ENOMEM. */
TP_API TP_MUST_USE int tp_ctx_with_budget(tp_ctx *parent, uint64_t reserve_ns, tp_ctx **out);

/* A child whose deadline is now + fraction * (parent's remaining time);
 * fraction in (0, 1]. No parent deadline -> no deadline. Returns 0, -EINVAL
 * (fraction out of range) or -ENOMEM. */
TP_API TP_MUST_USE int tp_ctx_with_budget_fraction(tp_ctx *parent, double fraction, tp_ctx **out);

/* ---- retry with exponential backoff and full jitter ------------------------
 * tp_retry() calls fn(arg, attempt) with attempt = 1, 2, ... until it returns
 * >= 0 (success: that value is returned), returns an error the predicate
 * calls permanent (that error is returned), max_attempts calls failed or the
 * next sleep would end after max_elapsed_ns (the last error is returned), or
 * c is done (tp_ctx_err(c) is returned). Between attempts it sleeps a random
 * time in [0, min(cap_ns, base_ns * 2^(attempt-1))] ("full jitter") by
 * waiting on c, so a cancel or deadline ends the sleep at once. c NULL =
 * background. Bad options give -EINVAL without calling fn. */
typedef bool (*tp_retry_pred)(int err, void *pred_arg);

typedef struct tp_retry_opts {
    unsigned max_attempts;   /* calls in total; default 5; 0 = no limit */
    uint64_t base_ns;        /* first backoff bound; default 10 ms */
    uint64_t cap_ns;         /* largest backoff bound; default 1 s */
    uint64_t max_elapsed_ns; /* time budget from the first call; default TP_FOREVER */
    tp_retry_pred retryable; /* true = try again; default tp_retry_default_retryable */
    void *pred_arg;
    uint64_t seed; /* jitter seed; 0 = derived from the clock */
    /* More fields may be added; always start from tp_retry_opts_init(). */
} tp_retry_opts;

TP_API void tp_retry_opts_init(tp_retry_opts *opts);

/* The default predicate: true for transient errors (-EAGAIN, -EWOULDBLOCK,
 * -ETIMEDOUT, -EINTR, -EBUSY, -ENOBUFS, -ENOMEM, -ECONNRESET, -ECONNREFUSED,
 * -EHOSTUNREACH, -ENETUNREACH), false for everything else. */
TP_API bool tp_retry_default_retryable(int err, void *pred_arg);

TP_API TP_MUST_USE int tp_retry(tp_ctx *c, const tp_retry_opts *opts,
                                int (*fn)(void *arg, unsigned attempt), void *arg);

#ifdef __cplusplus
}
#endif
#endif /* TRIPOOL_CTX_H */
