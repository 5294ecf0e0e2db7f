/* SPDX-License-Identifier: MIT */
/*
 * tripool/obs.h - observability glue above the pools: metrics collectors for
 * the task, buffer and fd pools and the engine, and adaptive sizing of the
 * task pool.
 *
 * Collectors register series with a `pool` label in a tp_metrics registry
 * (see docs/metrics.md for every series). Stats-backed series read the
 * pool's stats call at scrape time, so they cost nothing between scrapes.
 * The task pool's queue-wait and run-time histograms are fed by the pool's
 * per-task observer, which must be installed before the pool is created:
 *
 *     tp_pool_opts o; tp_pool_opts_init(&o); o.name = "io";
 *     tp_obs_pool *op;
 *     tp_obs_pool_prepare(reg, "io", &o, &op);   // sets o.observer
 *     tp_pool_create(&pool, &o);
 *     tp_obs_register_pool(op, pool);            // stats series
 *     ...
 *     tp_pool_close(pool, TP_FOREVER);
 *     tp_obs_pool_destroy(op);                   // before tp_pool_destroy
 *     tp_pool_destroy(pool);
 *
 * Lifetime rule for every collector: destroy it (which removes its series)
 * before destroying the pool it reads, and before destroying the registry.
 *
 * Thread safety: every function may be called from any thread; one
 * collector object must not be destroyed while another thread uses it.
 */
#ifndef TRIPOOL_OBS_H
#define TRIPOOL_OBS_H

#include "tripool/buf.h"
#include "tripool/common.h"
#include "tripool/engine.h"
#include "tripool/fd.h"
#include "tripool/metrics.h"
#include "tripool/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- task pool ----------------------------------------------------------- */
typedef struct tp_obs_pool tp_obs_pool;

/* Create the collector for a pool named name (the `pool` label value) and
 * install its observer in opts (any observer already in opts is kept and
 * called after ours). Call before tp_pool_create(..., opts). Registers the
 * histograms tripool_pool_queue_wait_seconds and
 * tripool_pool_task_run_seconds. reg may be NULL: then nothing is exported
 * but the collector still measures (for tp_autoscale). Returns 0, -EINVAL,
 * -EEXIST (a pool of that name is registered) or -ENOMEM. */
TP_API TP_MUST_USE int tp_obs_pool_prepare(tp_metrics *reg, const char *name, tp_pool_opts *opts,
                                           tp_obs_pool **out);

/* Add the stats-backed series of p (submitted, completed, failed, rejected,
 * canceled, stuck, queue depth, workers running/idle/max). Returns 0,
 * -EINVAL (NULL, or already registered) or -ENOMEM. */
TP_API TP_MUST_USE int tp_obs_register_pool(tp_obs_pool *o, tp_pool *p);

/* Remove every series and free. Call after tp_pool_close() (the observer is
 * called until the pool's last task ran) and before tp_pool_destroy(). o may
 * be NULL. */
TP_API void tp_obs_pool_destroy(tp_obs_pool *o);

/* Tasks timed and their total queue wait and run time so far (ns). With
 * tp_pool_opts.observer_sample > 1 only the sampled tasks count here (and in
 * the histograms); the averages stay unbiased, the totals are a sample. */
struct tp_obs_pool_totals {
    uint64_t tasks;
    uint64_t queue_wait_ns;
    uint64_t run_ns;
};
TP_API void tp_obs_pool_totals(const tp_obs_pool *o, struct tp_obs_pool_totals *out);

/* ---- buffer pool and fd pool -------------------------------------------- */
typedef struct tp_obs_bufpool tp_obs_bufpool;
typedef struct tp_obs_fdpool tp_obs_fdpool;

/* Buffer pool series, one per size class (label class="<bytes>" or
 * "huge"): gets, hits, misses, retained bytes, in-use bytes. Returns 0,
 * -EINVAL, -EEXIST or -ENOMEM. */
TP_API TP_MUST_USE int tp_obs_register_bufpool(tp_metrics *reg, const char *name, tp_bufpool *bp,
                                               tp_obs_bufpool **out);
TP_API void tp_obs_bufpool_destroy(tp_obs_bufpool *o);

/* fd pool series: hits, misses, evictions, expirations, rotations
 * (reopened after the path changed inode), failures, open, leased, max. */
TP_API TP_MUST_USE int tp_obs_register_fdpool(tp_metrics *reg, const char *name, tp_fdpool *fp,
                                              tp_obs_fdpool **out);
TP_API void tp_obs_fdpool_destroy(tp_obs_fdpool *o);

/* ---- engine ---------------------------------------------------------------
 * Series read from tp_engine_stats at scrape time, label pool=<name>:
 * tripool_engine_{bytes_in,bytes_out,chunks}_total and
 * tripool_engine_files_total{result="ok"|"failed"} (counters),
 * tripool_engine_{peak,max}_mem_bytes and tripool_engine_{peak,max}_open_files
 * (gauges). Memory and descriptors in use now, and the engine's task pool,
 * are the buffer, fd and task pool collectors' series. Destroy the
 * collector before the engine and the registry. Returns 0, -EINVAL (NULL
 * argument, bad name), -EEXIST (an engine of that name is registered) or
 * -ENOMEM. */
typedef struct tp_obs_engine tp_obs_engine;

TP_API TP_MUST_USE int tp_obs_register_engine(tp_metrics *reg, const char *name, tp_engine *e,
                                              tp_obs_engine **out);

/* Remove the engine's series and free. o may be NULL. */
TP_API void tp_obs_engine_destroy(tp_obs_engine *o);

/* ---- adaptive scaling of a task pool ------------------------------------
 * A controller thread wakes every tick, samples the pool and sets its
 * max_workers with tp_pool_resize(). The built-in policy (see
 * docs/metrics.md) grows while tasks are queued and the process leaves
 * part of its CPU budget (tp_usable_cpus()) unused, i.e. tasks block;
 * shrinks while that budget is saturated by more busy workers than CPUs,
 * or workers sit idle; past 8 workers per CPU each growth step must raise
 * throughput or it is undone and capped for a while (lifted early when the
 * tasks' compute share or run time changes: a new workload). Hysteresis:
 * growth needs up_ticks consecutive ticks asking for it, shrinking
 * down_ticks and goes in steps of at most a quarter. Exception: when the
 * built-in policy asks for 1.5x the size or more (the workers mostly
 * block), it grows at once, straight to its wish (at most 16 workers per
 * CPU from below 8 per CPU, x2 above). A user policy replaces the built-in
 * one and is always filtered by up_ticks/down_ticks. "Off" is simply not
 * starting a controller. */
typedef struct tp_autoscale tp_autoscale;

/* What the controller saw during the last tick. */
struct tp_autoscale_sample {
    uint64_t tick;        /* 1, 2, ... */
    uint64_t interval_ns; /* length of this tick */
    unsigned current;     /* max_workers now */
    unsigned min, max;    /* the controller's bounds */
    unsigned cpus;        /* tp_usable_cpus() now */
    size_t queued;        /* tasks waiting now */
    unsigned workers;     /* threads alive now */
    unsigned busy;        /* of which running a task now */
    double throughput;    /* tasks completed per second this tick */
    double cpu_util;      /* process CPU time / (interval * cpus), 0..~1 */
    double queue_wait_s;  /* mean queue wait of tasks started this tick; -1 unknown */
    double run_s;         /* mean run time of tasks finished this tick; -1 unknown */
    /* Scheduler view of the threads that ran the pool's tasks (Linux
     * schedstat), -1 when unknown: fraction of their time on a CPU or
     * runnable (1 - blocked/idle), and runnable but waiting for a CPU. */
    double active_frac;
    double runq_frac;
};

/* A policy: returns the wanted max_workers; the controller clamps it to
 * [min, max]. Runs on the controller thread. */
typedef unsigned (*tp_autoscale_fn)(void *arg, const struct tp_autoscale_sample *s);

typedef struct tp_autoscale_opts {
    unsigned min_workers;   /* lower bound; default 1; must be >= the pool's min_workers */
    unsigned max_workers;   /* upper bound; default 32 * tp_usable_cpus(), at most 1024 */
    uint64_t tick_ns;       /* sampling period; default 100 ms; >= 1 ms */
    unsigned up_ticks;      /* ticks of pressure before growing; default 2 (the
                               built-in policy's urgent growth skips it) */
    unsigned down_ticks;    /* ticks of slack before shrinking; default 5 */
    double util_low;        /* grow below this CPU utilisation when backlogged; default 0.80 */
    double util_high;       /* CPUs count as saturated above this; default 0.95 */
    tp_autoscale_fn policy; /* NULL = built-in */
    void *policy_arg;
    /* More fields may be added; always start from tp_autoscale_opts_init(). */
} tp_autoscale_opts;

struct tp_autoscale_stats {
    unsigned target;      /* max_workers last set */
    uint64_t ticks;       /* samples taken */
    uint64_t changes;     /* resizes done */
    uint64_t ups, downs;  /* of which growing / shrinking */
    double last_cpu_util; /* as in the last sample */
    double last_throughput;
};

TP_API void tp_autoscale_opts_init(tp_autoscale_opts *o);

/* Start a controller for p. o (may be NULL) supplies queue-wait and run
 * times (from the pool's observer) and, if it has a registry, the series
 * tripool_pool_autoscale_target and tripool_pool_autoscale_changes_total.
 * The pool keeps its size until the first decision (clamped into
 * [min, max] at the first tick). Returns 0, -EINVAL (NULL p, min 0,
 * min > max, tick < 1 ms, bad utilisation bounds), -EEXIST (o already has
 * a controller), -ENOMEM or -EAGAIN (thread). */
TP_API TP_MUST_USE int tp_autoscale_start(tp_pool *p, tp_obs_pool *o, const tp_autoscale_opts *opts,
                                          tp_autoscale **out);

/* Stop and join the controller, then free. The pool keeps its last size.
 * a may be NULL. Call before destroying the pool or o. */
TP_API void tp_autoscale_stop(tp_autoscale *a);

TP_API void tp_autoscale_stats(tp_autoscale *a, struct tp_autoscale_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* TRIPOOL_OBS_H */
