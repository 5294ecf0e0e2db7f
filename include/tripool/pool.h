/* SPDX-License-Identifier: MIT */
/*
 * tripool/pool.h - the task pool: bounded worker threads and a bounded queue.
 *
 * Workers start lazily up to max_workers; idle workers above min_workers exit
 * after idle_timeout_ns. The queue holds at most queue_cap tasks; when it is
 * full a submit blocks (default), blocks up to a timeout (-ETIMEDOUT), or
 * fails at once (-EAGAIN, nonblocking mode). At most max_blocked submitters
 * may wait at a time; more get -EAGAIN. A blocked submitter is woken as soon
 * as a slot frees, and blocked submitters get freed slots in the order they
 * blocked, before any later submit: while one is blocked the queue counts as
 * full for everyone else (a later non-blocking submit gets -EAGAIN).
 *
 * Close stops intake (-ESHUTDOWN for new submits), runs every accepted task
 * and joins every thread the pool started. No accepted task is lost or run
 * twice, also when other threads submit while close runs.
 *
 * Failures: a task returning < 0 has failed; it is counted and passed to
 * opts.on_error. C cannot recover from a crash inside a task (SIGSEGV, abort):
 * that ends the process, as it would without the pool.
 *
 * Hooks (on_error, observer, on_stuck) and tasks run on the pool's own
 * threads (or inline on a submitter): there tp_pool_close() and
 * tp_pool_wait_idle() return -EDEADLK, and tp_pool_destroy() is undefined.
 *
 * fork(): the child process has none of the pool's threads. A child that
 * does not exec must not use or destroy a pool created before the fork (its
 * memory is simply left); it may create and use new pools. The parent's
 * pools are unaffected.
 */
#ifndef TRIPOOL_POOL_H
#define TRIPOOL_POOL_H

#include "tripool/common.h"
#include "tripool/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tp_pool tp_pool;
typedef struct tp_future tp_future; /* see "futures" below */

/* A task. Returns >= 0 on success, < 0 (a negative errno by convention) on
 * failure. */
typedef int (*tp_task_fn)(void *arg);

/* Called on the worker after a task returned err < 0. */
typedef void (*tp_error_fn)(int err, tp_task_fn fn, void *task_arg, void *hook_arg);

/* Called on the worker after each task leaves the queue (issue 7 metrics):
 * label (NULL if none), time it waited in the queue, time it ran, and its
 * result. A task skipped because its context was done reports run_ns 0 and
 * the context's error. Setting an observer makes the pool read the clock at
 * submit and at the end of every task, and at its start unless the worker
 * comes straight from the previous task (whose end time is then used, so
 * the pool's few tens of ns between tasks count as run time); without an
 * observer it never reads the clock per task. */
typedef void (*tp_observer_fn)(void *arg, const char *label, uint64_t queue_wait_ns,
                               uint64_t run_ns, int result);

/* Stuck-task report: called once per task that has run longer than
 * opts.stuck_threshold_ns, from the pool's watchdog thread, with no pool
 * lock held. label is the pool's copy (NULL if none), valid during the
 * call. worker is the worker's index as shown by tp_pool_dump(). */
typedef void (*tp_stuck_fn)(const char *label, unsigned worker, uint64_t running_ns, void *arg);

typedef struct tp_pool_opts {
    unsigned min_workers;     /* kept alive even when idle; default 0 */
    unsigned max_workers;     /* default tp_usable_cpus() */
    size_t queue_cap;         /* tasks waiting to run; default 65536 */
    uint64_t idle_timeout_ns; /* idle workers above min exit; default 1 s */
    bool prealloc;            /* start max_workers at create (ants' PreAlloc) */
    bool nonblocking;         /* full queue: -EAGAIN at once instead of waiting */
    unsigned max_blocked;     /* cap on submitters blocked on a full queue; 0 = no cap */
    tp_error_fn on_error;     /* failure hook (ants' PanicHandler); may be NULL */
    void *on_error_arg;
    const char *name;        /* label for stats, dumps and metrics; copied */
    tp_observer_fn observer; /* per-task hook (labels, queue wait, run time); may be NULL */
    void *observer_arg;
    /* Observe 1 task in observer_sample (rounded up to a power of two; 0 or
     * 1 = every task): only those are timed and passed to the observer, the
     * others cost no clock read and no call. Each submitting thread picks
     * every Nth of its own submits, so the sample is spread over submitters.
     * For metrics: histogram counts become a sample, means stay unbiased.
     * (A clock read costs ~100 ns on some VMs, more than an empty task.)
     * Ignored while stuck_threshold_ns is set: the watchdog needs every
     * task's start time. */
    unsigned observer_sample;
    /* Stuck-task watchdog: 0 = off. When set the pool runs one watchdog
     * thread (joined by close) that checks running tasks every threshold/4
     * (at least 1 ms, at most 1 s); each task running longer is counted in
     * stats.stuck and passed once to on_stuck (may be NULL). */
    uint64_t stuck_threshold_ns;
    tp_stuck_fn on_stuck;
    void *on_stuck_arg;
    /* Start order. Default (false): when the queue holds at least 4 tasks
     * per worker, a worker takes a small batch (up to 16, at most 1/(2 x
     * workers) of the queue) with one atomic step and runs it in order;
     * workers that find the queue empty steal from such batches before
     * they sleep, so a held task never waits while a worker is free. Tasks
     * therefore start in FIFO order per worker but not across workers: a
     * task that blocks until a *later* task of the same pool starts can
     * wait behind its own worker's batch while every other worker is busy.
     * true: strict FIFO across workers (one task per dequeue), ~1.4x the
     * per-task cost under contention (docs/pool.md). */
    bool fifo;
    /* More fields may be added; always start from tp_pool_opts_init(). */
} tp_pool_opts;

/* The stats type is a struct tag, not a typedef: the name tp_pool_stats is
 * also the function that fills it (C keeps tags and functions apart). */
struct tp_pool_stats {
    unsigned workers_running; /* threads alive */
    unsigned workers_idle;    /* of which waiting for work */
    unsigned max_workers;     /* current bound (after resizes) */
    size_t queued;            /* tasks waiting */
    uint64_t submitted;       /* accepted by submit */
    uint64_t completed;       /* finished (success or failure) */
    uint64_t failed;          /* returned < 0 */
    uint64_t rejected;        /* refused: full, shut down, timed out, context done */
    uint64_t canceled;        /* accepted but not run: context done before start */
    unsigned peak_workers;
    size_t peak_queued; /* sampled at dequeue: may miss short spikes (docs/pool.md) */
    uint64_t stuck;     /* tasks reported by the stuck-task watchdog */
    unsigned blocked;   /* submitters waiting now for room (at most max_blocked) */
};

TP_API void tp_pool_opts_init(tp_pool_opts *o);

/* Create a pool. opts NULL = defaults. Returns 0, -EINVAL (max < min, zero
 * or absurd sizes), -ENOMEM, or -EAGAIN (could not start threads). */
TP_API TP_MUST_USE int tp_pool_create(tp_pool **out, const tp_pool_opts *opts);

/* Queue fn(arg). Blocks while the queue is full (unless nonblocking).
 * Returns 0, -EINVAL (fn NULL), -EAGAIN (full and nonblocking, or too many
 * blocked submitters) or -ESHUTDOWN (pool closed). A task that submits to its
 * own pool while the queue is full runs the new task inline instead of
 * blocking (a worker waiting for itself would deadlock). */
TP_API TP_MUST_USE int tp_submit(tp_pool *p, tp_task_fn fn, void *arg);

/* As tp_submit, waiting at most timeout_ns for room (-ETIMEDOUT). A
 * timeout of 0 does not wait: -EAGAIN at once when the queue is full. */
TP_API TP_MUST_USE int tp_submit_timeout(tp_pool *p, tp_task_fn fn, void *arg, uint64_t timeout_ns);

/* As tp_submit, waiting for room until c is done (returns tp_ctx_err(c)).
 * The task keeps a reference on c; if c is done before the task starts, the
 * task is not run (counted in stats.canceled). A context already done at
 * submit is refused with its error (counted in stats.rejected). A running
 * task reads its context with tp_task_ctx(). */
TP_API TP_MUST_USE int tp_submit_ctx(tp_pool *p, tp_ctx *c, tp_task_fn fn, void *arg);

/* Everything a submit can carry, for tp_submit_ex(). Start from
 * tp_task_opts_init(). */
typedef struct tp_task_opts {
    tp_task_fn fn; /* required */
    void *arg;
    tp_ctx *ctx;         /* NULL = none; as tp_submit_ctx() */
    const char *label;   /* short name shown by dumps, observer, watchdog.
                          * Not copied at submit: it must stay valid until
                          * the task starts (or is skipped, its context
                          * done). At the start the pool copies its first
                          * 47 bytes; dumps, on_stuck and the observer see
                          * that copy, so the string may go as soon as the
                          * task has started. "" counts as no label. */
    uint64_t timeout_ns; /* how long to wait for room; default TP_FOREVER */
    tp_future **future;  /* if non-NULL, receives a future (NULL on error) */
    /* More fields may be added; always start from tp_task_opts_init(). */
} tp_task_opts;

TP_API void tp_task_opts_init(tp_task_opts *o);

/* The general submit: tp_submit, tp_submit_timeout, tp_submit_ctx and
 * tp_submit_future are special cases. Returns as those do: 0, -EINVAL,
 * -EAGAIN, -ETIMEDOUT, -ESHUTDOWN, the context's error, or -ENOMEM. */
TP_API TP_MUST_USE int tp_submit_ex(tp_pool *p, const tp_task_opts *o);

/* The context of the task running on this thread; the background context
 * when the task has none or the caller is not a pool worker. */
TP_API tp_ctx *tp_task_ctx(void);

/* Stop intake, run every accepted task, join every worker. Returns 0 once
 * every accepted task has finished and no thread of the pool is left (also
 * when no thread could be started: close then runs the queue itself, and
 * tasks that submitters run inline are waited for), or -ETIMEDOUT if work
 * remains after timeout_ns: the pool stays closed and close may be called
 * again. Calling close on a closed, drained pool returns 0. Must not be
 * called from one of the pool's own tasks or hooks (-EDEADLK). */
TP_API int tp_pool_close(tp_pool *p, uint64_t timeout_ns);

/* Close (no time limit) if still open, then free. p may be NULL. Destroying
 * twice, destroying from one of the pool's own tasks, or using p while or
 * after it is destroyed is undefined, like free(). */
TP_API void tp_pool_destroy(tp_pool *p);

/* A consistent-enough snapshot (each field read atomically). */
TP_API void tp_pool_stats(tp_pool *p, struct tp_pool_stats *out);

/* Change max_workers at run time (ants' Tune). Growing starts workers for
 * queued work at once; shrinking lets surplus workers exit after their
 * current task. Returns 0 or -EINVAL (0, < min_workers, absurd). */
TP_API int tp_pool_resize(tp_pool *p, unsigned max_workers);

/* Wait for a moment at which every task accepted so far has finished (the
 * queue is empty and no task runs; a task still running is never masked by
 * others submitted and finished meanwhile). Returns 0 or -ETIMEDOUT; -EDEADLK from one of the
 * pool's own tasks or hooks (it would wait for itself). */
TP_API int tp_pool_wait_idle(tp_pool *p, uint64_t timeout_ns);

/* What the pool is doing now, as text: write(arg, line) is called once per
 * worker ("worker 3 running label=hash for 1.204s done=1877 held=0", states
 * idle, running, exiting; run time "unknown" unless the pool tracks time,
 * i.e. has an observer or a stuck threshold; held = tasks the worker took in
 * its last batch and has not started), then once with the queue depth (held
 * tasks included) and the oldest queued task's age ("unknown" when time is
 * not tracked or only held tasks wait). Lines have no newline. write is called with no pool lock
 * held. */
TP_API void tp_pool_dump(tp_pool *p, void (*write)(void *arg, const char *line), void *arg);

/* ---- futures ------------------------------------------------------------ */

/* Submit and get a future for the task's result. c may be NULL. Returns as
 * tp_submit_ctx; on error *out is NULL. */
TP_API TP_MUST_USE int tp_submit_future(tp_pool *p, tp_ctx *c, tp_task_fn fn, void *arg,
                                        tp_future **out);

/* Wait for the task. Returns 0 and sets *result to the task's return value,
 * or -ETIMEDOUT (still pending), or the context's error (-ECANCELED,
 * -ETIMEDOUT) if the task was not run because its context was done. */
TP_API int tp_future_wait(tp_future *f, uint64_t timeout_ns, int *result);
/* As tp_future_wait, giving up when wc is done (returns tp_ctx_err(wc)).
 * Sleeps meanwhile, also between wc's deadline and the timer marking wc
 * done. */
TP_API int tp_future_wait_ctx(tp_future *f, tp_ctx *wc, int *result);
TP_API bool tp_future_done(const tp_future *f);
/* Drop the caller's reference. The task may still be queued or running. */
TP_API void tp_future_release(tp_future *f);

/* ---- task groups (Go's errgroup) --------------------------------------- */
typedef struct tp_group tp_group;

/* A group of tasks on p. It owns a child context of parent (NULL =
 * background) that is cancelled when the first task fails, so the rest can
 * stop early. limit > 0 caps the group's tasks in flight (submit blocks;
 * so, as with Go's errgroup.SetLimit, a group task must not submit to its
 * own limited group). */
TP_API TP_MUST_USE int tp_group_create(tp_pool *p, tp_ctx *parent, unsigned limit, tp_group **out);
TP_API tp_ctx *tp_group_ctx(tp_group *g);
/* Returns as tp_submit_ctx with the group's context: once that is done
 * (a task failed, or the parent is done) new tasks are refused with its
 * error and not counted in the group. */
TP_API TP_MUST_USE int tp_group_submit(tp_group *g, tp_task_fn fn, void *arg);
/* Wait for every submitted task. Returns the first error (a task's < 0
 * return, or the context's error for tasks skipped because it was done), 0
 * if all succeeded, or -ETIMEDOUT if tasks are still pending. */
TP_API int tp_group_wait(tp_group *g, uint64_t timeout_ns);
/* Waits for pending tasks (no limit), then frees. */
TP_API void tp_group_destroy(tp_group *g);

#ifdef __cplusplus
}
#endif
#endif /* TRIPOOL_POOL_H */
